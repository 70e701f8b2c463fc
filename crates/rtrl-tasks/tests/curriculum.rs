//! The copy-task curriculum: when it raises its level, and the batches
//! it leads to.

use rtrl_core::rng::Stream;
use rtrl_core::Error;
use rtrl_tasks::{CopyStream, Curriculum};

/// 0.15 bits per output, in nats.
const THRESHOLD_NATS: f64 = 0.15 * std::f64::consts::LN_2;

#[test]
fn raises_one_level_per_low_loss_up_to_the_cap() {
    let mut curriculum = Curriculum::new(1, 3).unwrap();
    assert_eq!(curriculum.threshold_bits(), 0.15);
    assert!(!curriculum.is_at_max_level());

    assert!(!curriculum.observe(0.7));
    assert!(curriculum.observe(0.05));
    assert_eq!(curriculum.level(), 2);
    assert!(curriculum.observe(0.01));
    assert_eq!(curriculum.level(), 3);
    assert!(curriculum.is_at_max_level());

    // At the cap a low loss changes nothing.
    assert!(!curriculum.observe(0.0));
    assert_eq!(curriculum.level(), 3);
}

#[test]
fn a_high_loss_never_lowers_the_level() {
    let mut curriculum = Curriculum::new(1, 10).unwrap();
    curriculum.observe(0.0);
    curriculum.observe(5.0);
    assert_eq!(curriculum.level(), 2);
}

#[test]
fn non_finite_losses_do_not_raise() {
    let mut curriculum = Curriculum::new(1, 10).unwrap();
    assert!(!curriculum.observe(f64::NAN));
    assert!(!curriculum.observe(f64::INFINITY));
    assert_eq!(curriculum.level(), 1);
}

#[test]
fn the_threshold_is_exactly_at_fifteen_hundredths_of_a_bit() {
    let mut curriculum = Curriculum::new(1, 10).unwrap();
    assert!(!curriculum.observe(THRESHOLD_NATS * 1.000_001));
    assert!(curriculum.observe(THRESHOLD_NATS * 0.999_999));
}

#[test]
fn a_custom_threshold_is_used() {
    let mut curriculum = Curriculum::new(2, 10).unwrap().with_threshold(0.5).unwrap();
    assert_eq!(curriculum.threshold_bits(), 0.5);
    assert!(curriculum.observe(0.3)); // 0.433 bits
    assert!(!curriculum.observe(0.4)); // 0.577 bits
}

#[test]
fn batches_grow_with_the_level_and_draw_lengths_from_one_to_the_level() {
    let mut curriculum = Curriculum::new(2, 4).unwrap();
    let mut stream = CopyStream::new(curriculum.task(), 0, Stream::Train);
    for level in 1..=4 {
        assert_eq!(curriculum.level(), level);
        let batch = stream.next_batch::<f32>(200);
        assert_eq!(
            (batch.steps, batch.input_width, batch.output_width),
            (2 * level + 2, 4, 2)
        );

        // The end marker sits at L + 1; with 200 samples every L in
        // [1, level] turns up (each has probability at least 1/4).
        let mut seen = vec![false; level + 1];
        for b in 0..batch.batch {
            let end = (0..batch.steps).find(|&t| batch.input(b, t)[1] == 1.0).unwrap();
            seen[end - 1] = true;
        }
        assert!(seen[1..].iter().all(|&s| s), "level {level}: lengths seen {seen:?}");

        if curriculum.observe(0.0) {
            stream.set_task(curriculum.task());
        }
    }
}

#[test]
fn bad_settings_are_rejected() {
    assert_eq!(
        Curriculum::new(0, 5),
        Err(Error::ZeroSize { what: "copy task bits per step", value: 0 })
    );
    assert_eq!(
        Curriculum::new(1, 0),
        Err(Error::ZeroSize { what: "copy task maximum length", value: 0 })
    );
    let curriculum = Curriculum::new(1, 5).unwrap();
    for bad in [0.0, -0.1, f64::NAN, f64::INFINITY] {
        assert!(matches!(curriculum.with_threshold(bad), Err(Error::NotPositive { .. })));
    }
}
