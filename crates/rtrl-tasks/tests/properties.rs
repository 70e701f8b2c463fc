//! Structural invariants of copy-task batches over random task sizes,
//! batch sizes and seeds.

use proptest::prelude::*;
use rtrl_core::rng::Stream;
use rtrl_tasks::{CopyStream, CopyTask, Curriculum};

/// Bits from 1 to 4, L_max from 1 to 12, L_min from 1 to L_max.
fn task() -> impl Strategy<Value = CopyTask> {
    (1usize..=4, 1usize..=12)
        .prop_flat_map(|(bits, max_len)| (Just(bits), 1..=max_len, Just(max_len)))
        .prop_map(|(bits, min_len, max_len)| {
            CopyTask::new(bits, min_len, max_len).unwrap()
        })
}

/// Checks one batch against the copy-task layout, cell by cell.
fn check_batch(
    task: &CopyTask,
    batch: &rtrl_core::Batch<f32>,
) -> Result<(), TestCaseError> {
    let (bits, steps) = (task.bits(), task.steps());
    prop_assert_eq!(batch.steps, 2 * task.max_len() + 2);
    prop_assert_eq!(batch.input_width, bits + 2);
    prop_assert_eq!(batch.output_width, bits);
    prop_assert!(batch.check(bits + 2, bits).is_ok());

    for b in 0..batch.batch {
        // Every value is exactly 0 or 1.
        for t in 0..steps {
            let cells = batch.input(b, t).iter().chain(batch.target(b, t));
            for &v in cells {
                prop_assert!(
                    v == 0.0 || v == 1.0,
                    "value {} at sample {} step {}",
                    v,
                    b,
                    t
                );
            }
        }

        // One start marker, at step 0; one end marker, at step L + 1.
        let starts: Vec<usize> =
            (0..steps).filter(|&t| batch.input(b, t)[0] == 1.0).collect();
        let ends: Vec<usize> =
            (0..steps).filter(|&t| batch.input(b, t)[1] == 1.0).collect();
        prop_assert_eq!(starts, vec![0]);
        prop_assert_eq!(ends.len(), 1);
        let len = ends[0] - 1;
        prop_assert!((task.min_len()..=task.max_len()).contains(&len), "L = {}", len);

        for t in 0..steps {
            let input = batch.input(b, t);
            let target = batch.target(b, t);
            let pattern = &input[2..];

            // The pattern is read only at steps 1 ..= L.
            if !(1..=len).contains(&t) {
                prop_assert!(pattern.iter().all(|&v| v == 0.0), "input at step {}", t);
            }

            // The target repeats it at steps L + 2 ..= 2L + 1, else is zero.
            if (len + 2..=2 * len + 1).contains(&t) {
                prop_assert_eq!(target, &batch.input(b, t - len - 1)[2..]);
            } else {
                prop_assert!(target.iter().all(|&v| v == 0.0), "target at step {}", t);
            }
        }
    }
    Ok(())
}

proptest! {
    #[test]
    fn batches_follow_the_layout(
        task in task(),
        batch_size in 1usize..=6,
        seed in any::<u64>(),
        validation in any::<bool>(),
    ) {
        let purpose = if validation { Stream::Validation } else { Stream::Train };
        let mut stream = CopyStream::new(task, seed, purpose);
        let batch = stream.next_batch::<f32>(batch_size);
        check_batch(&task, &batch)?;

        // Refilling keeps the layout and the batch size.
        let mut refilled = batch.clone();
        stream.fill_batch(&mut refilled);
        prop_assert_eq!(refilled.batch, batch_size);
        check_batch(&task, &refilled)?;
    }

    #[test]
    fn seeds_reproduce_batches(task in task(), seed in any::<u64>()) {
        let first = CopyStream::new(task, seed, Stream::Train).next_batch::<f32>(4);
        let again = CopyStream::new(task, seed, Stream::Train).next_batch::<f32>(4);
        prop_assert_eq!(first, again);
    }

    #[test]
    fn invalid_ranges_are_rejected(
        bits in 0usize..=4,
        min_len in 0usize..=14,
        max_len in 0usize..=14,
    ) {
        let valid = bits >= 1 && min_len >= 1 && min_len <= max_len;
        prop_assert_eq!(CopyTask::new(bits, min_len, max_len).is_ok(), valid);
    }

    #[test]
    fn curriculum_levels_stay_in_range(
        bits in 1usize..=3,
        max_level in 1usize..=8,
        losses in proptest::collection::vec(0.0f64..0.3, 0..40),
    ) {
        let mut curriculum = Curriculum::new(bits, max_level).unwrap();
        let mut raises = 0;
        for loss in losses {
            let level = curriculum.level();
            let raised = curriculum.observe(loss);
            raises += usize::from(raised);
            prop_assert_eq!(curriculum.level(), level + usize::from(raised));
            prop_assert!((1..=max_level).contains(&curriculum.level()));

            let task = curriculum.task();
            prop_assert_eq!((task.min_len(), task.max_len()), (1, curriculum.level()));
            prop_assert_eq!(task.steps(), 2 * curriculum.level() + 2);
        }
        prop_assert_eq!(curriculum.level(), 1 + raises);
    }
}
