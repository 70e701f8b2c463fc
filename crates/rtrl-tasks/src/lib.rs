//! # rtrl-tasks
//!
//! Sequence tasks to train and compare online recurrent learners on,
//! producing [`rtrl_core::Batch`]es from seeded streams.
//!
//! - [`CopyTask`]: the copy task of the specification. A network reads a
//!   random pattern of `L` steps of `b` bits between a start and an end
//!   marker and must write the pattern back after the end marker. Every
//!   sample has the same number of steps, `T = 2·L_max + 2`.
//! - [`CopyStream`]: an endless, seeded stream of copy-task batches. The
//!   training and validation streams of one seed are independent, and the
//!   same seed gives the same batches bit for bit.
//! - [`Curriculum`]: the curriculum variant after Menick et al., which
//!   starts at length 1 and raises the maximum length by one whenever the
//!   training loss falls below 0.15 bits per output.
//!
//! Not here: models, losses, training loops and the command line (see
//! `rtrl-core` and `rtrl-bench`). The crate draws random numbers only
//! from the streams it is given and logs nothing.
//!
//! # Example
//!
//! ```
//! use rtrl_core::rng::Stream;
//! use rtrl_tasks::{CopyStream, CopyTask};
//!
//! let task = CopyTask::default();
//! let mut train = CopyStream::new(task, 7, Stream::Train);
//! let batch = train.next_batch::<f32>(16);
//! assert_eq!(batch.steps, 22);
//! assert_eq!(batch.input_width, 3);
//! assert_eq!(batch.output_width, 1);
//! ```

mod copy;
mod curriculum;

pub use copy::{CopyStream, CopyTask};
pub use curriculum::Curriculum;
