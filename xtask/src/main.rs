//! `cargo xtask`: regenerates the thesis's tables, figure and timing
//! comparisons from this workspace.
//!
//! ```text
//! cargo xtask reproduce            # everything, into results/
//! cargo xtask reproduce --quick    # a smoke test in under 2 minutes, into results/quick/
//! cargo xtask table | curves | timing | scaling
//! cargo xtask check-results results/quick
//! ```
//!
//! Every file is written atomically (a temporary file in the same folder,
//! then a rename); progress goes to stderr; a run that fails is reported
//! on stderr and in the outputs, the others' results are kept, and the
//! command ends with a non-zero status.

mod check;
mod curves;
mod harness;
mod machine;
mod methods;
mod output;
mod plot;
mod report;
mod scaling;
mod table;
mod timing;

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use rtrl_cells::CellKind;
use thiserror::Error;

use crate::curves::CurvesSettings;
use crate::machine::Machine;
use crate::methods::Method;
use crate::scaling::ScalingSettings;
use crate::timing::TimingSettings;

/// What can stop a subcommand, or one run of it.
#[derive(Debug, Error)]
pub enum XtaskError {
    /// A file or folder cannot be written or read.
    #[error("{path}: {source}")]
    Io {
        /// The file or folder.
        path: PathBuf,
        /// The operating system's reason.
        source: std::io::Error,
    },
    /// An output cannot be produced.
    #[error("cannot write the results: {0}")]
    Output(String),
    /// A figure cannot be drawn.
    #[error("cannot draw {0}")]
    Plot(String),
    /// One training run or measurement failed.
    #[error("{what} failed: {reason}")]
    Run {
        /// Which run.
        what: String,
        /// Why.
        reason: String,
    },
    /// The workspace does not build this estimator or feature yet.
    #[error("{0} is not available in this build of the workspace")]
    Unavailable(String),
    /// A command-line value out of range.
    #[error("{0}")]
    Setting(String),
    /// `check-results` found a missing or malformed output.
    #[error("check failed: {0}")]
    Check(String),
    /// Some runs failed; their errors were reported as they happened.
    #[error("{0} failed; see the messages above and the report")]
    Incomplete(String),
}

/// Regenerate the thesis's tables, figure and timings.
#[derive(Debug, Parser)]
#[command(name = "cargo xtask")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Jacobian sizes of the thesis network (jacobian.md, jacobian.csv).
    Table {
        /// Output folder.
        #[arg(long, default_value_os_t = results_dir(false))]
        out: PathBuf,
    },
    /// The thesis figure: ten training runs (curves.png/.svg/.csv).
    Curves {
        /// Output folder.
        #[arg(long, default_value_os_t = results_dir(false))]
        out: PathBuf,
        /// Epochs per run.
        #[arg(long, default_value_t = 500)]
        epochs: usize,
        /// Epochs of the BPTT base LoRA-RTRL starts from.
        #[arg(long, default_value_t = 500)]
        base_epochs: usize,
        /// Seed of every run.
        #[arg(long, default_value_t = 0)]
        seed: u64,
    },
    /// Seconds per epoch of every estimator (timing.md, timing.csv).
    Timing {
        /// Output folder.
        #[arg(long, default_value_os_t = results_dir(false))]
        out: PathBuf,
        /// Untimed epochs first.
        #[arg(long, default_value_t = 3)]
        warmup: usize,
        /// Timed epochs (the median is reported).
        #[arg(long, default_value_t = 15)]
        repeats: usize,
    },
    /// Time and memory against the hidden size (scaling.png/.svg/.csv/.md).
    Scaling {
        /// Output folder.
        #[arg(long, default_value_os_t = results_dir(false))]
        out: PathBuf,
        /// Hidden sizes.
        #[arg(long, value_delimiter = ',', default_value = "16,32,64,128,256")]
        sizes: Vec<usize>,
        /// Skip a configuration predicted to take longer than this (seconds).
        #[arg(long, default_value_t = 40.0)]
        budget: f64,
    },
    /// Table, curves, timing and scaling, then REPORT.md.
    Reproduce {
        /// Output folder (default results/, or results/quick/ with --quick).
        #[arg(long)]
        out: Option<PathBuf>,
        /// A smoke test: 20 epochs, few timing repetitions, sizes 16 and 32.
        #[arg(long)]
        quick: bool,
    },
    /// Checks that the outputs of `reproduce` in DIR exist and parse.
    CheckResults {
        /// The folder `reproduce` wrote.
        dir: PathBuf,
    },
    /// Measures one scaling configuration and prints it as JSON (used by
    /// `scaling`, one process per configuration).
    #[command(hide = true)]
    Probe {
        #[arg(long)]
        cell: String,
        #[arg(long)]
        method: String,
        #[arg(long)]
        hidden: usize,
        #[arg(long, default_value_t = 1)]
        warmup: usize,
        #[arg(long, default_value_t = 3)]
        repeats: usize,
    },
}

/// `results/` (or `results/quick/`) at the root of the workspace.
fn results_dir(quick: bool) -> PathBuf {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap_or(Path::new("."));
    let dir = root.join("results");
    if quick {
        dir.join("quick")
    } else {
        dir
    }
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(error) => return usage_error(error),
    };
    match check_command(&cli.command).and_then(|()| execute(cli.command)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error}");
            ExitCode::FAILURE
        }
    }
}

/// Prints a clap error as one line (help as clap prints it) and returns
/// the usage status.
fn usage_error(error: clap::Error) -> ExitCode {
    use clap::error::ErrorKind;
    if matches!(error.kind(), ErrorKind::DisplayHelp | ErrorKind::DisplayVersion) {
        let _ = error.print();
        return ExitCode::SUCCESS;
    }
    let line = match error.kind() {
        ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand => {
            "no command given; run 'cargo xtask reproduce' or see 'cargo xtask --help'"
                .to_string()
        }
        _ => format!("{}; see 'cargo xtask --help'", rtrl_bench::cli::usage_line(&error)),
    };
    eprintln!("error: {line}");
    ExitCode::from(2)
}

/// Checks the command's values before anything runs: counts of at least
/// one, a finite positive budget, and an output folder that is not a file.
fn check_command(command: &Command) -> Result<(), XtaskError> {
    let at_least_one = |flag: &str, value: usize| {
        if value >= 1 {
            Ok(())
        } else {
            Err(XtaskError::Setting(format!("{flag} must be at least 1, got {value}")))
        }
    };
    let out = match command {
        Command::Table { out } => Some(out.clone()),
        Command::Curves { out, epochs, base_epochs, .. } => {
            at_least_one("--epochs", *epochs)?;
            at_least_one("--base-epochs", *base_epochs)?;
            Some(out.clone())
        }
        Command::Timing { out, repeats, .. } => {
            at_least_one("--repeats", *repeats)?;
            Some(out.clone())
        }
        Command::Scaling { out, sizes, budget } => {
            if sizes.is_empty() {
                return Err(XtaskError::Setting("--sizes names no hidden size".into()));
            }
            for &size in sizes {
                at_least_one("every --sizes value", size)?;
            }
            if !(budget.is_finite() && *budget > 0.0) {
                return Err(XtaskError::Setting(format!(
                    "--budget must be a finite number of seconds above 0, got {budget}"
                )));
            }
            Some(out.clone())
        }
        Command::Reproduce { out, quick } => {
            Some(out.clone().unwrap_or_else(|| results_dir(*quick)))
        }
        Command::CheckResults { dir } => {
            if !dir.is_dir() {
                return Err(XtaskError::Check(format!(
                    "{} is not a folder of results; run 'cargo xtask reproduce' (or \
                     'cargo xtask reproduce --quick') first",
                    dir.display()
                )));
            }
            None
        }
        Command::Probe { .. } => None,
    };
    match out {
        Some(out) if out.exists() && !out.is_dir() => Err(XtaskError::Setting(format!(
            "--out {} is a file, not a folder; give a folder (it is created if missing)",
            out.display()
        ))),
        _ => Ok(()),
    }
}

fn execute(command: Command) -> Result<(), XtaskError> {
    match command {
        Command::Table { out } => {
            let rows = table::write(&out)?;
            println!("{}", table::markdown(&rows));
            eprintln!(
                "wrote {} and {}",
                out.join("jacobian.md").display(),
                out.join("jacobian.csv").display()
            );
            Ok(())
        }
        Command::Curves { out, epochs, base_epochs, seed } => {
            let settings = CurvesSettings { epochs, base_epochs, seed };
            let summaries = curves::write(&out, &settings)?;
            println!("{}", curves::markdown(&summaries, &settings));
            eprintln!("wrote {}", out.join("curves.png").display());
            failures(summaries.iter().map(|s| s.status.as_str()), "some curve runs")
        }
        Command::Timing { out, warmup, repeats } => {
            let machine = Machine::detect();
            eprintln!("{}", machine.line());
            let settings = TimingSettings { warmup, repeats };
            let rows = timing::write(&out, settings, &machine)?;
            println!("{}", timing::markdown(&rows, &machine, settings));
            failures(rows.iter().map(|r| r.status.as_str()), "some timings")
        }
        Command::Scaling { out, sizes, budget } => {
            let settings =
                ScalingSettings { sizes, warmup: 1, repeats: 3, budget_seconds: budget };
            let rows = scaling::write(&out, &settings)?;
            println!("{}", scaling::markdown(&rows, &settings));
            failures(rows.iter().map(|r| r.status.as_str()), "some scaling probes")
        }
        Command::Reproduce { out, quick } => {
            reproduce(&out.unwrap_or_else(|| results_dir(quick)), quick)
        }
        Command::CheckResults { dir } => {
            for line in check::check(&dir)? {
                eprintln!("ok: {line}");
            }
            println!("results in {} are complete", dir.display());
            Ok(())
        }
        Command::Probe { cell, method, hidden, warmup, repeats } => {
            let cell: CellKind = cell
                .parse()
                .map_err(|e: rtrl_core::Error| XtaskError::Check(e.to_string()))?;
            let method = Method::from_slug(&method)
                .ok_or_else(|| XtaskError::Check(format!("unknown method '{method}'")))?;
            let probe = scaling::probe(cell, method, hidden, warmup, repeats)?;
            let json = serde_json::to_string(&probe)
                .map_err(|e| XtaskError::Output(e.to_string()))?;
            println!("{json}");
            Ok(())
        }
    }
}

/// `Err(Incomplete)` when a status is neither `ok` nor `skipped: …`.
fn failures<'a>(
    statuses: impl Iterator<Item = &'a str>,
    what: &str,
) -> Result<(), XtaskError> {
    let failed = statuses.filter(|s| *s != "ok" && !s.starts_with("skipped")).count();
    if failed == 0 {
        Ok(())
    } else {
        Err(XtaskError::Incomplete(format!("{what} ({failed})")))
    }
}

/// Everything, then the report. A step that fails is written into the
/// report as such; the others still run.
fn reproduce(dir: &Path, quick: bool) -> Result<(), XtaskError> {
    let machine = Machine::detect();
    eprintln!("{}", machine.line());
    eprintln!("writing to {}", dir.display());
    let (curves_settings, timing_settings, scaling_settings) = if quick {
        (
            CurvesSettings { epochs: 20, base_epochs: 20, seed: 0 },
            TimingSettings { warmup: 1, repeats: 5 },
            ScalingSettings {
                sizes: vec![16, 32],
                warmup: 1,
                repeats: 3,
                budget_seconds: 5.0,
            },
        )
    } else {
        (
            CurvesSettings { epochs: 500, base_epochs: 500, seed: 0 },
            TimingSettings { warmup: 3, repeats: 15 },
            ScalingSettings {
                sizes: vec![16, 32, 64, 128, 256],
                warmup: 1,
                repeats: 3,
                budget_seconds: 40.0,
            },
        )
    };
    let mut failed = Vec::new();

    eprintln!("== Jacobian sizes");
    let table = table::write(dir).map(|rows| table::markdown(&rows));

    eprintln!("== Loss curves");
    let curves = curves::write(dir, &curves_settings).map(|summaries| {
        if failures(summaries.iter().map(|s| s.status.as_str()), "").is_err() {
            failed.push("curves");
        }
        curves::markdown(&summaries, &curves_settings)
    });

    eprintln!("== Timing");
    let timing = timing::write(dir, timing_settings, &machine).map(|rows| {
        if failures(rows.iter().map(|r| r.status.as_str()), "").is_err() {
            failed.push("timing");
        }
        timing::markdown(&rows, &machine, timing_settings)
    });

    eprintln!("== Scaling");
    let scaling = scaling::write(dir, &scaling_settings).map(|rows| {
        if failures(rows.iter().map(|r| r.status.as_str()), "").is_err() {
            failed.push("scaling");
        }
        scaling::markdown(&rows, &scaling_settings)
    });

    let command =
        if quick { "cargo xtask reproduce --quick" } else { "cargo xtask reproduce" };
    let report = report::Report {
        machine: &machine,
        command: command.to_string(),
        table: table.map_err(|e| e.to_string()),
        curves: curves.map_err(|e| e.to_string()),
        timing: timing.map_err(|e| e.to_string()),
        scaling: scaling.map_err(|e| e.to_string()),
    };
    report.write(dir)?;
    eprintln!("wrote {}", dir.join("REPORT.md").display());
    for (name, section) in [
        ("table", &report.table),
        ("curves", &report.curves),
        ("timing", &report.timing),
        ("scaling", &report.scaling),
    ] {
        if let Err(error) = section {
            eprintln!("error: {name}: {error}");
            failed.push(name);
        }
    }
    if failed.is_empty() {
        Ok(())
    } else {
        Err(XtaskError::Incomplete(failed.join(", ")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Values out of range are refused before anything runs, by name.
    #[test]
    fn bad_values_are_refused_up_front() {
        let out = std::env::temp_dir();
        let cases = [
            (
                Command::Curves { out: out.clone(), epochs: 0, base_epochs: 5, seed: 0 },
                "--epochs must be at least 1, got 0",
            ),
            (
                Command::Timing { out: out.clone(), warmup: 1, repeats: 0 },
                "--repeats must be at least 1, got 0",
            ),
            (
                Command::Scaling { out: out.clone(), sizes: vec![16, 0], budget: 1.0 },
                "every --sizes value must be at least 1, got 0",
            ),
            (
                Command::Scaling { out: out.clone(), sizes: vec![16], budget: f64::NAN },
                "--budget must be a finite number of seconds above 0, got NaN",
            ),
            (
                Command::Table { out: PathBuf::from(env!("CARGO_MANIFEST_PATH")) },
                "is a file, not a folder",
            ),
        ];
        for (command, message) in cases {
            let error = check_command(&command).unwrap_err().to_string();
            assert!(error.contains(message), "{error}");
        }
        assert!(check_command(&Command::Table { out }).is_ok());
    }
}
