//! The copy task through its public interface: batch shapes, seeding,
//! pinned values and input validation.

use rtrl_core::rng::Stream;
use rtrl_core::{Batch, Error};
use rtrl_tasks::{CopyStream, CopyTask};

/// The pattern length of sample `b`, read from where its end marker is.
fn length_of<T: rtrl_core::Scalar>(batch: &Batch<T>, b: usize) -> usize {
    let ends: Vec<usize> =
        (0..batch.steps).filter(|&t| batch.input(b, t)[1] == T::one()).collect();
    assert_eq!(ends.len(), 1, "sample {b} has end markers at {ends:?}");
    ends[0] - 1
}

/// A batch written as 0/1 bytes, for literal comparisons.
fn rows(values: &[f64], width: usize) -> Vec<Vec<u8>> {
    values.chunks(width).map(|row| row.iter().map(|&v| v as u8).collect()).collect()
}

#[test]
fn default_task_is_the_thesis_task() {
    let task = CopyTask::default();
    assert_eq!(task.bits(), 1);
    assert_eq!(task.min_len(), 5);
    assert_eq!(task.max_len(), 10);
    assert_eq!(task.input_width(), 3);
    assert_eq!(task.output_width(), 1);
    assert_eq!(task.steps(), 22);
    assert_eq!(CopyTask::with_max_len(1, 10).unwrap(), task);
}

#[test]
fn default_minimum_length_is_five_below_the_maximum_but_at_least_one() {
    assert_eq!(CopyTask::default_min_len(1), 1);
    assert_eq!(CopyTask::default_min_len(5), 1);
    assert_eq!(CopyTask::default_min_len(6), 1);
    assert_eq!(CopyTask::default_min_len(7), 2);
    assert_eq!(CopyTask::default_min_len(12), 7);
    assert_eq!(CopyTask::with_max_len(3, 3).unwrap().min_len(), 1);
}

#[test]
fn widths_and_steps_follow_bits_and_maximum_length() {
    let task = CopyTask::new(3, 2, 7).unwrap();
    assert_eq!((task.input_width(), task.output_width(), task.steps()), (5, 3, 16));

    let batch = CopyStream::new(task, 1, Stream::Train).next_batch::<f32>(5);
    assert_eq!((batch.batch, batch.steps), (5, 16));
    batch.check(5, 3).unwrap();
}

#[test]
fn every_length_in_range_is_drawn_and_no_other() {
    let task = CopyTask::new(1, 3, 8).unwrap();
    let batch = CopyStream::new(task, 5, Stream::Train).next_batch::<f32>(600);
    let mut counts = [0usize; 9];
    for b in 0..batch.batch {
        counts[length_of(&batch, b)] += 1;
    }

    // 600 draws over 6 lengths: 100 expected each; 60 is > 4 standard
    // deviations (about 9.1) below that.
    assert_eq!(&counts[..3], &[0, 0, 0]);
    for len in 3..=8 {
        assert!(counts[len] > 60, "length {len} drawn {} times", counts[len]);
    }
}

#[test]
fn bits_are_fair_coins() {
    let task = CopyTask::new(2, 10, 10).unwrap();
    let batch = CopyStream::new(task, 9, Stream::Validation).next_batch::<f64>(100);

    // 100 samples · 10 steps · 2 bits = 2000 bits, standard deviation of
    // the count of ones about 22.4: allow 5 of them around 1000.
    let ones: f64 = batch.targets.iter().sum();
    assert!((ones - 1000.0).abs() < 112.0, "{ones} ones in 2000 bits");
}

#[test]
fn same_seed_and_stream_give_identical_batches() {
    let task = CopyTask::new(2, 1, 9).unwrap();
    let mut first = CopyStream::new(task, 42, Stream::Train);
    let mut second = CopyStream::new(task, 42, Stream::Train);
    for _ in 0..3 {
        assert_eq!(first.next_batch::<f32>(16), second.next_batch::<f32>(16));
    }
}

#[test]
fn precision_does_not_change_the_samples() {
    let task = CopyTask::default();
    let single = CopyStream::new(task, 3, Stream::Train).next_batch::<f32>(16);
    let double = CopyStream::new(task, 3, Stream::Train).next_batch::<f64>(16);
    let widened: Vec<f64> = single.inputs.iter().map(|&v| v as f64).collect();
    assert_eq!(widened, double.inputs);
    let widened: Vec<f64> = single.targets.iter().map(|&v| v as f64).collect();
    assert_eq!(widened, double.targets);
}

#[test]
fn training_validation_and_other_seeds_differ() {
    let task = CopyTask::default();
    let train = CopyStream::new(task, 0, Stream::Train).next_batch::<f32>(16);
    let validation = CopyStream::new(task, 0, Stream::Validation).next_batch::<f32>(16);
    let other_seed = CopyStream::new(task, 1, Stream::Train).next_batch::<f32>(16);
    assert_ne!(train, validation);
    assert_ne!(train, other_seed);
    assert_ne!(validation, other_seed);
}

#[test]
fn consecutive_batches_differ() {
    let mut stream = CopyStream::new(CopyTask::default(), 0, Stream::Train);
    let first = stream.next_batch::<f32>(16);
    let second = stream.next_batch::<f32>(16);
    assert_ne!(first, second);
}

#[test]
fn fill_batch_matches_next_batch_and_reuses_the_buffers() {
    let task = CopyTask::new(3, 2, 6).unwrap();
    let mut fresh = CopyStream::new(task, 8, Stream::Train);
    let mut reused = CopyStream::new(task, 8, Stream::Train);

    let mut batch = reused.next_batch::<f32>(4);
    let (inputs, targets) = (batch.inputs.as_ptr(), batch.targets.as_ptr());
    assert_eq!(batch, fresh.next_batch::<f32>(4));
    for _ in 0..3 {
        reused.fill_batch(&mut batch);
        assert_eq!(batch, fresh.next_batch::<f32>(4));
        assert_eq!(batch.inputs.as_ptr(), inputs);
        assert_eq!(batch.targets.as_ptr(), targets);
    }
}

#[test]
fn fill_batch_reshapes_a_batch_of_another_shape() {
    let task = CopyTask::new(2, 1, 3).unwrap();
    let mut batch = Batch::<f64>::zeros(3, 1, 7, 1);
    batch.inputs.fill(0.5);
    CopyStream::new(task, 2, Stream::Train).fill_batch(&mut batch);

    assert_eq!(batch, CopyStream::new(task, 2, Stream::Train).next_batch::<f64>(3));
}

#[test]
fn set_task_continues_the_same_random_numbers() {
    let short = CopyTask::new(1, 2, 2).unwrap();
    let long = CopyTask::new(1, 4, 4).unwrap();
    let mut stream = CopyStream::new(short, 4, Stream::Train);
    let before = stream.next_batch::<f64>(2);
    stream.set_task(long);
    assert_eq!(stream.task(), long);
    let after = stream.next_batch::<f64>(2);
    assert_eq!(after.steps, 10);

    // A fresh stream of the long task starts elsewhere in the sequence.
    let fresh = CopyStream::new(long, 4, Stream::Train).next_batch::<f64>(2);
    assert_eq!(before.steps, 6);
    assert_ne!(after, fresh);
}

#[test]
fn first_training_sample_of_seed_zero_is_pinned() {
    // Computed once with rand 0.9 / rand_chacha 0.9; a change here means
    // every copy-task result of the workspace changes too.
    let batch =
        CopyStream::new(CopyTask::default(), 0, Stream::Train).next_batch::<f64>(2);
    let first_inputs = &batch.inputs[..22 * 3];
    let first_targets = &batch.targets[..22];

    // L = 7, pattern 1 0 0 1 1 0 0.
    let inputs: [[u8; 3]; 22] = [
        [1, 0, 0],
        [0, 0, 1],
        [0, 0, 0],
        [0, 0, 0],
        [0, 0, 1],
        [0, 0, 1],
        [0, 0, 0],
        [0, 0, 0],
        [0, 1, 0],
        [0, 0, 0],
        [0, 0, 0],
        [0, 0, 0],
        [0, 0, 0],
        [0, 0, 0],
        [0, 0, 0],
        [0, 0, 0],
        [0, 0, 0],
        [0, 0, 0],
        [0, 0, 0],
        [0, 0, 0],
        [0, 0, 0],
        [0, 0, 0],
    ];
    let targets: [u8; 22] =
        [0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0];
    assert_eq!(rows(first_inputs, 3), inputs.map(Vec::from).to_vec());
    assert_eq!(rows(first_targets, 1).concat(), targets.to_vec());

    // The second sample: L = 10, pattern 1 0 1 0 0 0 0 0 0 0.
    assert_eq!(length_of(&batch, 1), 10);
    let pattern: Vec<u8> = (1..=10).map(|t| batch.input(1, t)[2] as u8).collect();
    assert_eq!(pattern, [1, 0, 1, 0, 0, 0, 0, 0, 0, 0]);
}

#[test]
fn first_validation_sample_with_three_bits_is_pinned() {
    let task = CopyTask::new(3, 1, 4).unwrap();
    let batch = CopyStream::new(task, 0, Stream::Validation).next_batch::<f64>(1);

    // L = 4; rows are steps, columns start, end, then the three bits.
    let inputs: [[u8; 5]; 10] = [
        [1, 0, 0, 0, 0],
        [0, 0, 1, 1, 1],
        [0, 0, 0, 1, 1],
        [0, 0, 1, 0, 1],
        [0, 0, 0, 1, 1],
        [0, 1, 0, 0, 0],
        [0, 0, 0, 0, 0],
        [0, 0, 0, 0, 0],
        [0, 0, 0, 0, 0],
        [0, 0, 0, 0, 0],
    ];
    let targets: [[u8; 3]; 10] = [
        [0, 0, 0],
        [0, 0, 0],
        [0, 0, 0],
        [0, 0, 0],
        [0, 0, 0],
        [0, 0, 0],
        [1, 1, 1],
        [0, 1, 1],
        [1, 0, 1],
        [0, 1, 1],
    ];
    assert_eq!(rows(&batch.inputs, 5), inputs.map(Vec::from).to_vec());
    assert_eq!(rows(&batch.targets, 3), targets.map(Vec::from).to_vec());
}

#[test]
fn an_empty_batch_is_allowed() {
    let batch =
        CopyStream::new(CopyTask::default(), 0, Stream::Train).next_batch::<f32>(0);
    assert_eq!(batch.batch, 0);
    assert!(batch.inputs.is_empty() && batch.targets.is_empty());
}

#[test]
fn zero_sizes_are_rejected() {
    let zero = |what| Err(Error::ZeroSize { what, value: 0 });
    assert_eq!(CopyTask::new(0, 1, 10), zero("copy task bits per step"));
    assert_eq!(CopyTask::new(1, 0, 10), zero("copy task minimum length"));
    assert_eq!(CopyTask::new(1, 0, 0), zero("copy task maximum length"));
    assert_eq!(CopyTask::with_max_len(1, 0), zero("copy task maximum length"));
}

#[test]
fn a_minimum_above_the_maximum_is_rejected_with_a_sentence() {
    let Err(Error::Unsupported(message)) = CopyTask::new(1, 6, 5) else {
        panic!("minimum 6 above maximum 5 was accepted");
    };
    assert!(
        message.contains("minimum length 6 exceeds its maximum length 5"),
        "{message}"
    );
}

#[test]
fn a_task_too_long_to_count_is_rejected() {
    assert!(matches!(CopyTask::new(1, 1, usize::MAX / 2), Err(Error::Unsupported(_))));
    assert!(matches!(CopyTask::new(usize::MAX, 1, 2), Err(Error::Unsupported(_))));
    assert!(CopyTask::new(1, 1, (usize::MAX - 2) / 2).is_ok());
}
