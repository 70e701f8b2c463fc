//! Seeded random streams.
//!
//! Every random choice in the workspace (masks, initial weights, task
//! samples) comes from a ChaCha8 generator seeded with the run's seed and
//! set to a stream that names its purpose, so that changing one consumer
//! never shifts the numbers another one sees.

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

/// The purposes random numbers are drawn for; each has its own streams.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Stream {
    /// Which entries of a sparse matrix are kept (one stream per block).
    Mask,
    /// Initial weights.
    Init,
    /// Training samples of a task.
    Train,
    /// Validation samples of a task.
    Validation,
    /// LoRA factor initialisation.
    Lora,
    /// Anything else a caller needs, told apart by the index.
    Other,
}

impl Stream {
    fn id(self) -> u64 {
        match self {
            Stream::Mask => 1,
            Stream::Init => 2,
            Stream::Train => 3,
            Stream::Validation => 4,
            Stream::Lora => 5,
            Stream::Other => 6,
        }
    }
}

/// A generator for `seed`, set to the stream of `purpose` and `index`.
pub fn seeded(seed: u64, purpose: Stream, index: u32) -> ChaCha8Rng {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    rng.set_stream((purpose.id() << 32) | index as u64);
    rng
}
