//! `--save`, `--init-from` and `--save-merged`, through the library and
//! through the `rtrl` binary.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use rtrl_bench::{checkpoints, run, Algo, LoraReadout, RunConfig};
use rtrl_core::checkpoint::Checkpoint;
use rtrl_core::Cell;

/// A fresh, empty folder for one test.
fn scratch(name: &str) -> PathBuf {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("rtrl-ckpt-{name}-{}-{n}", std::process::id()));
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(&dir).unwrap();
    dir
}

/// `rtrl train <args>` on a small network (hidden 5 and maximum length 3
/// unless `args` say otherwise).
fn rtrl(args: &[&str]) -> Output {
    let mut full = vec!["train", "--quiet", "--batch", "2"];
    for (flag, value) in [("--hidden", "5"), ("--max-len", "3")] {
        if !args.contains(&flag) {
            full.extend_from_slice(&[flag, value]);
        }
    }
    full.extend_from_slice(args);
    Command::new(env!("CARGO_BIN_EXE_rtrl"))
        .args(full)
        .output()
        .expect("the rtrl binary runs")
}

/// A small run of `algo` on `model`.
fn small(model: rtrl_cells::CellKind, algo: Algo) -> RunConfig {
    RunConfig {
        model,
        algo,
        hidden: 5,
        batch: 2,
        epochs: 4,
        max_len: 3,
        ..RunConfig::default()
    }
}

fn cell(config: &RunConfig) -> Arc<dyn Cell<f32>> {
    rtrl_cells::build(&config.cell_config(&config.task().unwrap())).unwrap()
}

/// The hidden states of `cell` run on a fixed input sequence.
fn states(cell: &dyn Cell<f32>, params: &[f32]) -> Vec<f32> {
    let shape = cell.shape();
    let mut state = vec![0.0; shape.state];
    let mut next = vec![0.0; shape.state];
    let mut cache = cell.new_cache();
    let mut out = Vec::new();
    for t in 0..6 {
        let x: Vec<f32> = (0..shape.input).map(|i| ((t + i) % 3) as f32 - 1.0).collect();
        cell.forward(params, &state, &x, &mut cache, &mut next);
        std::mem::swap(&mut state, &mut next);
        out.extend_from_slice(&state);
    }
    out
}

/// Saving a LoRA-RTRL run, and saving it merged, gives the same network:
/// loading the factored checkpoint merges it into exactly the merged
/// checkpoint's weights, and both compute the same states.
#[test]
fn merged_checkpoint_matches_the_factored_model() {
    for model in [rtrl_cells::CellKind::Gru, rtrl_cells::CellKind::Lstm] {
        for lora_readout in [LoraReadout::Lora, LoraReadout::Full] {
            let dir = scratch("merge");
            let config = RunConfig {
                lora_readout,
                save: Some(dir.join("factored.safetensors")),
                save_merged: Some(dir.join("merged.safetensors")),
                ..small(model, Algo::LoraRtrl)
            };
            run(&config, &mut |_| {}).unwrap();

            let cell = cell(&config);
            let factored = Checkpoint::load(dir.join("factored.safetensors")).unwrap();
            assert!(factored.lora.is_some());
            let merged = Checkpoint::load(dir.join("merged.safetensors")).unwrap();
            assert!(merged.lora.is_none());
            assert_eq!(merged.epoch, 4);

            let from_factored =
                checkpoints::load(&dir.join("factored.safetensors"), &*cell).unwrap();
            let from_merged =
                checkpoints::load(&dir.join("merged.safetensors"), &*cell).unwrap();
            assert_eq!(from_factored, from_merged, "{model} {lora_readout:?}");
            let core = cell.layout().core_len();
            assert_eq!(
                states(&*cell, &from_factored.params[..core]),
                states(&*cell, &from_merged.params[..core])
            );

            // The training moved the factors: the merged core is not the base.
            assert_ne!(from_merged.params[..core], factored.params[..core]);
            fs::remove_dir_all(&dir).unwrap();
        }
    }
}

/// A checkpoint written by `--save` restarts a run exactly where it
/// ended: the loaded weights are the saved ones, bit for bit.
#[test]
fn save_then_init_from_round_trips() {
    let dir = scratch("resume");
    let path = dir.join("rtrl.safetensors");
    let config = RunConfig {
        save: Some(path.clone()),
        ..small(rtrl_cells::CellKind::Gru, Algo::Rtrl)
    };
    run(&config, &mut |_| {}).unwrap();
    let saved = Checkpoint::load(&path).unwrap();
    let cell = cell(&config);
    let loaded = checkpoints::load(&path, &*cell).unwrap();
    assert_eq!(loaded.params, saved.params);
    assert_eq!(loaded.epoch, 4);

    // Another run from there records the epochs of both.
    let again = RunConfig {
        init_from: Some(path.clone()),
        save: Some(dir.join("again.safetensors")),
        ..config.clone()
    };
    run(&again, &mut |_| {}).unwrap();
    assert_eq!(Checkpoint::load(dir.join("again.safetensors")).unwrap().epoch, 8);
    fs::remove_dir_all(&dir).unwrap();
}

/// The thesis protocol in small, through the binary: BPTT on short
/// patterns saved, then LoRA-RTRL from that base on longer ones. Without
/// `--init-from`, LoRA-RTRL says in one line that its base is random.
#[test]
fn binary_fine_tunes_a_saved_base() {
    let dir = scratch("protocol");
    let base = dir.join("base.safetensors");
    let base_arg = base.to_str().unwrap();
    let output = rtrl(&["--algo", "bptt", "--epochs", "3", "--save", base_arg]);
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    assert!(base.exists());

    let output = rtrl(&[
        "--algo",
        "lora_rtrl",
        "--epochs",
        "3",
        "--max-len",
        "4",
        "--init-from",
        base_arg,
    ]);
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    assert!(output.stderr.is_empty(), "{}", String::from_utf8_lossy(&output.stderr));
    assert!(String::from_utf8_lossy(&output.stdout).starts_with("gru lora-rtrl:"));

    let output = rtrl(&["--algo", "lora-rtrl", "--epochs", "2"]);
    assert!(output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.contains("random frozen base"), "{stderr}");

    // Only the checkpoint is left: no temporary files.
    let left: Vec<_> =
        fs::read_dir(&dir).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert_eq!(left, ["base.safetensors"]);
    fs::remove_dir_all(&dir).unwrap();
}

/// Files that do not fit end the run with one line naming the remedy,
/// and nothing is written.
#[test]
fn unfit_files_fail_cleanly() {
    let dir = scratch("unfit");
    let base = dir.join("base.safetensors");
    let base_arg = base.to_str().unwrap();
    assert!(rtrl(&["--algo", "bptt", "--epochs", "1", "--save", base_arg])
        .status
        .success());
    let junk = dir.join("junk.safetensors");
    fs::write(&junk, b"not a checkpoint at all, just text").unwrap();
    let cut = dir.join("cut.safetensors");
    let bytes = fs::read(&base).unwrap();
    fs::write(&cut, &bytes[..bytes.len() - 7]).unwrap();
    let out = dir.join("out.safetensors");
    let out_arg = out.to_str().unwrap();
    let merged = dir.join("merged.safetensors");
    let merged_arg = merged.to_str().unwrap();

    // A `.npz` of the right length (GRU, input 3, hidden 5: 120 core
    // weights and 5 of the readout), every weight NaN.
    let nan = dir.join("nan.npz");
    {
        use npyz::WriterBuilder;
        let mut npz = npyz::npz::NpzWriter::create(&nan).unwrap();
        let builder = npz.array("params", Default::default()).unwrap();
        let mut w = builder.default_dtype().shape(&[125]).begin_nd().unwrap();
        w.extend(std::iter::repeat_n(f64::NAN, 125)).unwrap();
        w.finish().unwrap();
    }

    let cases: [(&[&str], &str); 8] = [
        (&["--model", "lstm", "--init-from", base_arg], "pass --model gru"),
        (&["--hidden", "6", "--init-from", base_arg], "pass --hidden 5"),
        (&["--init-from", junk.to_str().unwrap()], "is not an rtrl checkpoint"),
        (&["--init-from", cut.to_str().unwrap()], "is truncated"),
        (
            &["--recurrent-density", "0.5", "--init-from", base_arg],
            "--recurrent-density 1",
        ),
        (&["--algo", "rtrl", "--save-merged", merged_arg], "--save-merged applies to"),
        (&["--init-from", nan.to_str().unwrap()], "holds a weight that is not a finite"),
        (&["--log", out_arg], "--log and --save name the same file"),
    ];
    for (args, expected) in cases {
        let mut full = vec!["--epochs", "1", "--save", out_arg];
        full.extend_from_slice(args);
        let output = rtrl(&full);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!output.status.success(), "{args:?} succeeded");
        assert_eq!(stderr.lines().count(), 1, "{args:?}: {stderr:?}");
        assert!(stderr.contains(expected), "{args:?}: {stderr:?} lacks {expected:?}");
        assert!(!out.exists(), "{args:?} wrote a checkpoint");
    }
    fs::remove_dir_all(&dir).unwrap();
}
