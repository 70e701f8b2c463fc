//! The `rtrl` binary: bad input fails cleanly, a good run writes its log.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicUsize, Ordering};

/// A fresh, empty folder for one test.
fn scratch(name: &str) -> PathBuf {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("rtrl-cli-{name}-{}-{n}", std::process::id()));
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(&dir).unwrap();
    dir
}

fn rtrl(args: &[&str], threads: &str) -> Output {
    Command::new(env!("CARGO_BIN_EXE_rtrl"))
        .args(args)
        .env("RAYON_NUM_THREADS", threads)
        .output()
        .expect("the rtrl binary runs")
}

/// Runs `rtrl train <args> --log <empty folder>/x.csv` and checks a clean
/// failure: non-zero status, one stderr line, no panic, no file.
fn fails_cleanly(args: &[&str], expected: &str) {
    let dir = scratch("bad");
    let log = dir.join("x.csv");
    let mut full = vec!["train"];
    full.extend_from_slice(args);
    if !args.contains(&"--log") {
        full.extend_from_slice(&["--log", log.to_str().unwrap()]);
    }
    let output = rtrl(&full, "2");
    let stderr = String::from_utf8_lossy(&output.stderr);

    assert!(!output.status.success(), "{args:?} succeeded");
    assert_eq!(stderr.lines().count(), 1, "{args:?}: stderr is not one line: {stderr:?}");
    assert!(stderr.starts_with("error: "), "{args:?}: {stderr:?}");
    assert!(stderr.contains(expected), "{args:?}: {stderr:?} lacks {expected:?}");
    assert!(!stderr.contains("panicked"), "{args:?}: {stderr:?}");
    assert!(output.stdout.is_empty(), "{args:?} printed a summary");
    let left: Vec<_> = fs::read_dir(&dir).unwrap().collect();
    assert!(left.is_empty(), "{args:?} left files behind: {left:?}");
    fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn zero_hidden_units() {
    fails_cleanly(&["--hidden", "0"], "--hidden must be at least 1, got 0");
}

#[test]
fn density_above_one() {
    fails_cleanly(
        &["--recurrent-density", "1.5"],
        "--recurrent-density must be in (0, 1]",
    );
}

#[test]
fn unknown_algorithm() {
    fails_cleanly(&["--algo", "foo"], "invalid value 'foo' for '--algo");
    fails_cleanly(&["--type", "foo"], "possible values: bptt, tbptt, rtrl, snap");
}

#[test]
fn learning_rate_not_a_number() {
    fails_cleanly(
        &["--lr", "nan"],
        "--lr must be a finite number greater than 0, got NaN",
    );
}

#[test]
fn negative_learning_rate() {
    fails_cleanly(&["--lr", "-1"], "--lr must be a finite number greater than 0, got -1");
}

#[test]
fn zero_epochs() {
    fails_cleanly(&["--epochs", "0"], "--epochs must be at least 1, got 0");
}

#[test]
fn zero_window() {
    fails_cleanly(&["--algo", "tbptt", "--window", "0"], "--window must be at least 1");
}

#[test]
fn snap_levels() {
    fails_cleanly(
        &["--algo", "snap", "--level", "0"],
        "--level must be at least 1, got 0",
    );
    fails_cleanly(
        &["--algo", "rtrl", "--level", "2"],
        "--level applies to --algo snap only, not to --algo rtrl",
    );
}

#[test]
fn log_in_a_missing_folder() {
    let missing = Path::new("/no/such/dir");
    assert!(!missing.exists());
    fails_cleanly(
        &["--log", "/no/such/dir/x.csv"],
        "the folder /no/such/dir does not exist",
    );
    assert!(!missing.exists());
}

#[test]
fn minimum_length_above_maximum() {
    fails_cleanly(
        &["--min-len", "9", "--max-len", "3"],
        "--min-len must be between 1 and the maximum length (3), got 9",
    );
}

#[test]
fn diverging_loss() {
    // Exact RTRL reaches NaN, full BPTT a finite but absurd loss: both stop.
    for algo in ["rtrl", "bptt"] {
        fails_cleanly(
            &["--algo", algo, "--hidden", "4", "--epochs", "20", "--lr", "1e30"],
            "training diverged",
        );
    }
}

#[test]
fn unknown_flag_and_missing_command() {
    fails_cleanly(&["--bogus"], "unexpected argument '--bogus'");
    let output = rtrl(&[], "1");
    assert!(!output.status.success());
    assert_eq!(String::from_utf8_lossy(&output.stderr).lines().count(), 1);
}

/// The CSV of a short run, with the timing column blanked. `algo` is
/// one or more words of the command line (`["snap", "--level", "2"]`).
fn curve(algo: &[&str], threads: &str) -> (String, String) {
    let dir = scratch("good");
    let log = dir.join("curve.csv");
    let mut args = vec!["train", "--algo"];
    args.extend_from_slice(algo);
    args.extend_from_slice(&[
        "--hidden",
        "5",
        "--epochs",
        "11",
        "--max-len",
        "4",
        "--seed",
        "3",
        "--quiet",
        "--log",
        log.to_str().unwrap(),
    ]);
    let output = rtrl(&args, threads);
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let text = fs::read_to_string(&log).unwrap();
    assert_eq!(fs::read_dir(&dir).unwrap().count(), 1, "only the log is left");
    fs::remove_dir_all(&dir).unwrap();

    let blanked = text
        .lines()
        .map(|line| {
            let mut fields: Vec<&str> = line.split(',').collect();
            fields[3] = "";
            fields.join(",")
        })
        .collect::<Vec<_>>()
        .join("\n");
    (blanked, String::from_utf8(output.stdout).unwrap())
}

#[test]
fn a_run_writes_its_curve_and_one_summary_line() {
    let (csv, stdout) = curve(&["rtrl"], "2");
    let lines: Vec<&str> = csv.lines().collect();
    assert_eq!(
        lines[0],
        "epoch,train_loss,val_loss,,jacobian_entries,jacobian_bytes,updates"
    );
    assert_eq!(lines.len(), 12);
    // Validated at epochs 5, 10 and the last one, 11; empty elsewhere.
    let validated: Vec<&str> = lines[1..]
        .iter()
        .filter(|l| !l.split(',').nth(2).unwrap().is_empty())
        .map(|l| l.split(',').next().unwrap())
        .collect();
    assert_eq!(validated, ["5", "10", "11"]);
    assert_eq!(stdout.lines().count(), 1);
    assert!(stdout.starts_with("gru rtrl: final train loss "), "{stdout}");
}

#[test]
fn the_csv_does_not_depend_on_the_thread_count() {
    for algo in [&["rtrl"][..], &["bptt"], &["snap", "--level", "2"], &["lora-rtrl"]] {
        assert_eq!(curve(algo, "1").0, curve(algo, "2").0, "{algo:?}");
    }
}

#[test]
fn snap_trains_at_any_level() {
    for (level, name) in [("1", "gru snap-1: "), ("3", "gru snap-3: ")] {
        let (csv, stdout) = curve(&["snap", "--level", level], "2");
        assert_eq!(csv.lines().count(), 12);
        assert!(stdout.starts_with(name), "{stdout}");
    }
}

/// `rtrl count` prints the thesis's Jacobian sizes without training.
#[test]
fn count_prints_the_thesis_sizes() {
    let cases: [(&[&str], &str); 4] = [
        (&["--model", "lstm", "--algo", "rtrl"], "143360 entries of J^h"),
        (&["--model", "gru", "--algo", "snap"], "3360 entries of J^h"),
        (&["--model", "lstm", "--algo", "lora-rtrl"], "74496 entries of J^h"),
        (&["--model", "gru", "--algo", "lora-rtrl"], "55872 entries of J^h"),
    ];
    for (args, expected) in cases {
        let mut full = vec!["count"];
        full.extend_from_slice(args);
        let output = rtrl(&full, "1");
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert!(output.status.success(), "{args:?}");
        assert_eq!(stdout.lines().count(), 1);
        assert!(stdout.contains(expected), "{args:?}: {stdout}");
    }
    let output = rtrl(&["count", "--hidden", "0"], "1");
    assert!(!output.status.success());
    assert_eq!(
        String::from_utf8_lossy(&output.stderr).trim(),
        "error: --hidden must be at least 1, got 0"
    );
}

#[test]
fn runs_too_large_for_memory_are_refused_before_allocating() {
    fails_cleanly(&["--hidden", "100000"], "GiB of memory, more than the");
    fails_cleanly(
        &["--hidden", "18446744073709551615"],
        "too large to fit in any memory",
    );
    let output = rtrl(&["count", "--hidden", "100000"], "1");
    assert!(!output.status.success());
    assert_eq!(String::from_utf8_lossy(&output.stderr).lines().count(), 1);
}

#[test]
fn flags_the_estimator_would_ignore_are_refused() {
    fails_cleanly(
        &["--rank-input", "4"],
        "--rank-input applies to --algo lora-rtrl only, not to --algo rtrl",
    );
    fails_cleanly(
        &["--algo", "lora-rtrl", "--readout", "full", "--rank-readout", "3"],
        "--rank-readout applies to --readout lora only",
    );
}

#[test]
fn special_files_are_not_outputs() {
    fails_cleanly(&["--save", "/dev/null"], "it is a device or other special file");
}

/// A run killed while it trains leaves no log, finished or temporary.
#[test]
fn a_killed_run_leaves_no_file() {
    let dir = scratch("killed");
    let log = dir.join("x.csv");
    let mut child = Command::new(env!("CARGO_BIN_EXE_rtrl"))
        .args(["train", "--hidden", "4", "--epochs", "10000000", "--quiet", "--log"])
        .arg(&log)
        .spawn()
        .expect("the rtrl binary runs");
    std::thread::sleep(std::time::Duration::from_millis(400));
    child.kill().unwrap();
    child.wait().unwrap();
    let left: Vec<_> = fs::read_dir(&dir).unwrap().collect();
    assert!(left.is_empty(), "left behind: {left:?}");
    fs::remove_dir_all(&dir).unwrap();
}
