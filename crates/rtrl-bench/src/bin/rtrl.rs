//! The `rtrl` command line: train a recurrent network online on the copy
//! task and report its loss curve.
//!
//! ```text
//! rtrl train --model gru --algo rtrl --epochs 500 --log gru-rtrl.csv
//! ```
//!
//! Every failure, from a bad flag to a diverging loss, ends the process
//! with a non-zero status and one line on stderr; a `--log` file appears
//! only when the run completed.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{ArgAction, Args, Parser, Subcommand, ValueEnum};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use rtrl_bench::{
    jacobian_size, run, Algo, CsvLog, LoraReadout, OptimizerKind, RunConfig, RunError,
    RunSummary,
};
use rtrl_cells::CellKind;
use rtrl_core::checkpoint::CheckpointError;
use rtrl_lora::LoraConfig;

/// Exit status of a command line that could not be parsed.
const USAGE_ERROR: u8 = 2;

/// Train recurrent networks online (RTRL) or with BPTT on the copy task.
#[derive(Debug, Parser)]
#[command(name = "rtrl", version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Train one network on the copy task; print a summary line and
    /// optionally write the loss curve as CSV.
    Train(TrainArgs),
    /// Print the Jacobian size a training run would have (entries of J^h
    /// and bytes stored per sequence) without training. Takes the flags of
    /// `train`; those that only steer training (--epochs, --log, …) are
    /// ignored.
    Count(TrainArgs),
}

/// The cells, as named on the command line.
#[derive(Debug, Clone, Copy, ValueEnum)]
enum Model {
    /// Gated recurrent unit.
    Gru,
    /// Long short-term memory.
    Lstm,
    /// Plain tanh RNN.
    Rnn,
}

impl From<Model> for CellKind {
    fn from(model: Model) -> Self {
        match model {
            Model::Gru => CellKind::Gru,
            Model::Lstm => CellKind::Lstm,
            Model::Rnn => CellKind::Rnn,
        }
    }
}

/// The flags of `rtrl train`, named after the thesis's code. Defaults are
/// the thesis's protocol.
#[derive(Debug, Args)]
#[command(allow_negative_numbers = true)]
struct TrainArgs {
    /// Recurrent cell.
    #[arg(long, value_enum, default_value_t = Model::Gru)]
    model: Model,

    /// Gradient estimator.
    #[arg(long, visible_alias = "type", value_enum, default_value_t = Algo::Rtrl)]
    algo: Algo,

    /// Update the weights whenever a gradient is ready (after every step
    /// for RTRL) instead of once per batch.
    #[arg(long, action = ArgAction::Set, value_name = "true|false",
          default_value_t = RunConfig::default().online)]
    online: bool,

    /// Hidden units.
    #[arg(long, default_value_t = RunConfig::default().hidden)]
    hidden: usize,

    /// Sequences per batch (one batch per epoch).
    #[arg(long, default_value_t = RunConfig::default().batch)]
    batch: usize,

    /// Number of epochs (training batches).
    #[arg(long, default_value_t = RunConfig::default().epochs)]
    epochs: usize,

    /// Learning rate.
    #[arg(long, default_value_t = RunConfig::default().lr)]
    lr: f64,

    /// Optimizer.
    #[arg(long, value_enum, default_value_t = OptimizerKind::Adam)]
    optimizer: OptimizerKind,

    /// Seed of the masks, initial weights and data.
    #[arg(long, default_value_t = RunConfig::default().seed)]
    seed: u64,

    /// Longest copy pattern; sequences have 2·max-len + 2 steps.
    #[arg(long, default_value_t = RunConfig::default().max_len)]
    max_len: usize,

    /// Shortest copy pattern [default: max(1, max-len − 5)].
    #[arg(long)]
    min_len: Option<usize>,

    /// Bits per pattern step.
    #[arg(long, default_value_t = RunConfig::default().bits)]
    bits: usize,

    /// Fraction of each recurrent matrix kept, in (0, 1].
    #[arg(long, default_value_t = RunConfig::default().recurrent_density)]
    recurrent_density: f64,

    /// Fraction of each input and readout matrix kept, in (0, 1].
    #[arg(long, default_value_t = RunConfig::default().inout_density)]
    inout_density: f64,

    /// Window of truncated BPTT in steps (with --algo tbptt only).
    #[arg(long)]
    window: Option<usize>,

    /// Level n of SnAp-n (with --algo snap only) [default: 1].
    #[arg(long)]
    level: Option<usize>,

    /// Add one bias vector per gate.
    #[arg(long)]
    bias: bool,

    /// Write one CSV row per epoch to this file (written when the run
    /// completes).
    #[arg(long, value_name = "FILE.csv")]
    log: Option<PathBuf>,

    /// No progress bar.
    #[arg(long)]
    quiet: bool,

    /// Rank of the LoRA factors of every input matrix W (lora-rtrl only)
    /// [default: 2].
    #[arg(long)]
    rank_input: Option<usize>,

    /// Rank of the LoRA factors of every recurrent matrix R (lora-rtrl
    /// only) [default: 8].
    #[arg(long)]
    rank_recurrent: Option<usize>,

    /// Scale α of the LoRA updates (α/r)·B·A (lora-rtrl only) [default: 1].
    #[arg(long)]
    alpha: Option<f64>,

    /// How lora-rtrl trains the readout: through its own LoRA factors, or
    /// every entry (lora-rtrl only) [default: lora].
    #[arg(long, value_enum)]
    readout: Option<LoraReadout>,

    /// Rank of the readout's LoRA factors (lora-rtrl with --readout lora
    /// only) [default: 1].
    #[arg(long)]
    rank_readout: Option<usize>,

    /// Start from the weights in this file: a checkpoint (.safetensors)
    /// or a .npz with a flat `params` array; for lora-rtrl, the frozen
    /// base.
    #[arg(long, value_name = "FILE")]
    init_from: Option<PathBuf>,

    /// Write a checkpoint of the trained network to this file when the
    /// run completes (atomically).
    #[arg(long, value_name = "FILE.safetensors")]
    save: Option<PathBuf>,

    /// lora-rtrl: merge the factors into the base and write a plain
    /// checkpoint to this file when the run completes.
    #[arg(long, value_name = "FILE.safetensors")]
    save_merged: Option<PathBuf>,
}

impl TrainArgs {
    fn config(&self) -> RunConfig {
        let defaults = RunConfig::default();
        RunConfig {
            model: self.model.into(),
            algo: self.algo,
            online: self.online,
            hidden: self.hidden,
            batch: self.batch,
            epochs: self.epochs,
            lr: self.lr,
            optimizer: self.optimizer,
            seed: self.seed,
            max_len: self.max_len,
            min_len: self.min_len,
            bits: self.bits,
            recurrent_density: self.recurrent_density,
            inout_density: self.inout_density,
            window: self.window,
            level: self.level,
            bias: self.bias,
            lora: LoraConfig {
                rank_input: self.rank_input.unwrap_or(defaults.lora.rank_input),
                rank_recurrent: self
                    .rank_recurrent
                    .unwrap_or(defaults.lora.rank_recurrent),
                alpha: self.alpha.unwrap_or(defaults.lora.alpha),
            },
            lora_readout: self.readout.unwrap_or(defaults.lora_readout),
            rank_readout: self.rank_readout.unwrap_or(defaults.rank_readout),
            init_from: self.init_from.clone(),
            save: self.save.clone(),
            save_merged: self.save_merged.clone(),
            ..defaults
        }
    }

    /// Refuses flags that the chosen estimator would ignore.
    fn check_estimator_flags(&self) -> Result<(), String> {
        let lora_flags = [
            ("--rank-input", self.rank_input.is_some()),
            ("--rank-recurrent", self.rank_recurrent.is_some()),
            ("--alpha", self.alpha.is_some()),
            ("--readout", self.readout.is_some()),
            ("--rank-readout", self.rank_readout.is_some()),
        ];
        if self.algo != Algo::LoraRtrl {
            if let Some((flag, _)) = lora_flags.iter().find(|(_, given)| *given) {
                return Err(format!(
                    "{flag} applies to --algo lora-rtrl only, not to --algo {}; drop it",
                    self.algo
                ));
            }
        } else if self.readout == Some(LoraReadout::Full) && self.rank_readout.is_some() {
            return Err("--rank-readout applies to --readout lora only; drop it or use \
                        --readout lora"
                .to_string());
        }
        Ok(())
    }

    /// Refuses a log that shares its path with a checkpoint (the library
    /// refuses two checkpoints on one path).
    fn check_log_path(&self) -> Result<(), String> {
        let Some(log) = &self.log else { return Ok(()) };
        for (flag, path) in [("--save", &self.save), ("--save-merged", &self.save_merged)]
        {
            if path.as_ref() == Some(log) {
                return Err(format!(
                    "--log and {flag} name the same file {}; give each its own path",
                    log.display()
                ));
            }
        }
        Ok(())
    }
}

fn main() -> ExitCode {
    // An unexpected panic still ends in one line.
    std::panic::set_hook(Box::new(|info| {
        let message = info
            .payload()
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| info.payload().downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "unknown cause".to_string());
        let place = info.location().map(|l| format!(" at {}:{}", l.file(), l.line()));
        let message = message.replace('\n', " ");
        eprintln!("error: internal failure{}: {message}", place.unwrap_or_default());
    }));

    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(error) => return usage_error(error),
    };
    let outcome = match cli.command {
        Command::Train(args) => train(&args),
        Command::Count(args) => count(&args),
    };
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("error: {message}");
            ExitCode::FAILURE
        }
    }
}

/// Prints a clap error as one line (help and version as clap prints
/// them) and returns its exit status.
fn usage_error(error: clap::Error) -> ExitCode {
    use clap::error::ErrorKind;
    if matches!(error.kind(), ErrorKind::DisplayHelp | ErrorKind::DisplayVersion) {
        let _ = error.print();
        return ExitCode::SUCCESS;
    }
    if error.kind() == ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand {
        eprintln!(
            "error: no command given; run 'rtrl train [OPTIONS]' or 'rtrl count \
             [OPTIONS]', see 'rtrl --help'"
        );
        return ExitCode::from(USAGE_ERROR);
    }

    let line = rtrl_bench::cli::usage_line(&error);
    // Point to the help of the subcommand that was asked for.
    let command =
        std::env::args().nth(1).filter(|a| a == "count").unwrap_or("train".into());
    eprintln!("error: {line}; see 'rtrl {command} --help'");
    ExitCode::from(USAGE_ERROR)
}

/// Runs `rtrl train`; an error comes back as one sentence.
fn train(args: &TrainArgs) -> Result<(), String> {
    let config = args.config();
    args.check_estimator_flags()?;
    args.check_log_path()?;
    config.validate().map_err(|e| sentence(&e))?;
    check_memory(&config)?;
    if config.algo == Algo::LoraRtrl && config.init_from.is_none() {
        eprintln!(
            "note: no --init-from: lora-rtrl fine-tunes a random frozen base (seed {})",
            config.seed
        );
    }

    // The log's folder is checked before any training.
    let mut log = match &args.log {
        Some(path) => Some(CsvLog::create(path).map_err(|e| sentence(&e))?),
        None => None,
    };

    let progress = if args.quiet || !std::io::stderr().is_terminal() {
        ProgressBar::hidden()
    } else {
        let bar = ProgressBar::with_draw_target(
            Some(config.epochs as u64),
            ProgressDrawTarget::stderr(),
        );
        let style = ProgressStyle::with_template(
            "{prefix} [{wide_bar}] {pos}/{len} {msg} {elapsed}<{eta}",
        )
        .expect("valid template")
        .progress_chars("=> ");
        bar.set_style(style);
        bar.set_prefix(format!("{} {}", config.model, config.algo));
        bar
    };

    // Train; rows go to the log as they come, the first write error is kept.
    let mut log_error = None;
    let mut last_val = f64::NAN;
    let result = run(&config, &mut |record| {
        if let Some(val) = record.val_loss {
            last_val = val;
        }
        progress.set_message(format!("train {:.4} val {last_val:.4}", record.train_loss));
        progress.inc(1);
        if let (Some(log), None) = (log.as_mut(), &log_error) {
            log_error = log.write(record).err();
        }
    });
    progress.finish_and_clear();
    let summary = result.map_err(|e| match e {
        RunError::Diverged { .. } if config.algo == Algo::LoraRtrl => {
            format!("{} or the LoRA scale (--alpha)", sentence(&e))
        }
        e => sentence(&e),
    })?;
    if let Some(error) = log_error {
        return Err(sentence(&error));
    }
    if let Some(log) = log.take() {
        log.finish().map_err(|e| sentence(&e))?;
    }

    println!("{}", summary_line(&config, &summary));
    Ok(())
}

/// Runs `rtrl count`: the influence storage of one sequence's estimator.
fn count(args: &TrainArgs) -> Result<(), String> {
    // Only the network and the estimator count: the training flags take
    // their defaults, whatever was given.
    let defaults = RunConfig::default();
    let config = RunConfig {
        batch: 1,
        epochs: defaults.epochs,
        lr: defaults.lr,
        init_from: None,
        save: None,
        save_merged: None,
        ..args.config()
    };
    args.check_estimator_flags()?;
    config.validate().map_err(|e| sentence(&e))?;
    check_memory(&config)?;
    let size = jacobian_size(&config).map_err(|e| sentence(&e))?;
    println!(
        "{model} {algo}: {p} core parameters, {entries} entries of J^h, {bytes} bytes of \
         influence per sequence (f32)",
        model = config.model,
        algo = algo_label(&config),
        p = size.core_params,
        entries = size.entries,
        bytes = size.bytes,
    );
    Ok(())
}

/// Refuses a run whose memory estimate exceeds the memory available
/// (`MemAvailable` of `/proc/meminfo`; no check where that is unknown),
/// before anything is allocated.
fn check_memory(config: &RunConfig) -> Result<(), String> {
    const GIB: f64 = (1u64 << 30) as f64;
    let advice = "lower --hidden, --batch, --bits or --max-len (or the LoRA ranks)";
    let Some(needed) = config.memory_estimate() else {
        return Err(format!("this run is too large to fit in any memory; {advice}"));
    };
    let available = std::fs::read_to_string("/proc/meminfo").ok().and_then(|text| {
        let line = text.lines().find(|l| l.starts_with("MemAvailable:"))?;
        let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
        kib.checked_mul(1024)
    });
    match available {
        Some(available) if needed > available => Err(format!(
            "this run needs about {:.1} GiB of memory, more than the {:.1} GiB \
             available; {advice}",
            needed as f64 / GIB,
            available as f64 / GIB
        )),
        _ => Ok(()),
    }
}

/// A library error as one sentence, naming the flag at fault.
fn sentence(error: &RunError) -> String {
    match error {
        RunError::InvalidSetting { setting, value, requirement } => {
            format!("--{setting} must be {requirement}, got {value}")
        }
        RunError::WindowRequired => {
            "--algo tbptt needs a window: add --window K with K at least 1".to_string()
        }
        RunError::WindowUnused { algo } => format!(
            "--window applies to --algo tbptt only, not to --algo {algo}; drop it"
        ),
        RunError::LevelUnused { algo } => {
            format!("--level applies to --algo snap only, not to --algo {algo}; drop it")
        }
        RunError::CheckpointMismatch { path, source } => mismatch_sentence(path, source),
        RunError::MergeWithoutLora { algo } => format!(
            "--save-merged applies to --algo lora-rtrl only, not to --algo {algo}; use \
             --save to write the weights"
        ),
        RunError::Diverged { epoch, value } => format!(
            "training diverged: the loss became {value:.3e} at epoch {epoch}; \
             lower the learning rate (--lr)"
        ),
        other => other.to_string(),
    }
}

/// A checkpoint that does not fit the run, with the flags that would make
/// it fit.
fn mismatch_sentence(path: &str, error: &CheckpointError) -> String {
    match error {
        CheckpointError::WrongCell { expected, found } => format!(
            "{path} holds a {found} model, not a {expected}; pass --model {found} or \
             another checkpoint"
        ),
        CheckpointError::WrongSize { what: "hidden size", expected, found } => format!(
            "{path} has {found} hidden units, this run {expected}; pass --hidden {found} \
             or another checkpoint"
        ),
        CheckpointError::WrongSize { what: "biases", found, .. } => format!(
            "{path} was trained with biases {found}; {} or use another checkpoint",
            if found == "on" { "add --bias" } else { "drop --bias" }
        ),
        CheckpointError::WrongSize { what, expected, found } => format!(
            "{path} has {what} {found}, this run's copy task {expected}; set --bits so \
             that the widths match (input bits + 2, output bits) or use another checkpoint"
        ),
        CheckpointError::MaskMismatch { block, recurrent, inout, seed, .. } => format!(
            "{path} was trained with other masks (first difference in {block}); pass \
             --recurrent-density {recurrent} --inout-density {inout} --seed {seed}"
        ),
        other => format!("{path} does not fit this run: {other}"),
    }
}

/// The estimator as the summary names it: the `--algo` value, with the
/// level for SnAp (`snap-2`).
fn algo_label(config: &RunConfig) -> String {
    match config.algo {
        Algo::Snap => format!("snap-{}", config.level.unwrap_or(1)),
        algo => algo.to_string(),
    }
}

/// The summary printed at the end of a run.
fn summary_line(config: &RunConfig, summary: &RunSummary) -> String {
    format!(
        "{model} {algo}: final train loss {train:.4}, final val loss {val:.4}, \
         mean val loss over the last {tail} epochs {mean:.4}, wall time {wall:.1} s, \
         {per_epoch:.4} s/epoch, Jacobian entries {entries} ({bytes} bytes)",
        model = config.model,
        algo = algo_label(config),
        train = summary.final_train_loss,
        val = summary.final_val_loss,
        tail = rtrl_bench::experiment::TAIL_EPOCHS.min(summary.epochs),
        mean = summary.mean_val_loss_tail,
        wall = summary.wall_seconds,
        per_epoch = summary.seconds_per_epoch,
        entries = summary.jacobian_entries,
        bytes = summary.jacobian_bytes,
    )
}
