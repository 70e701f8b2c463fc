//! `results/REPORT.md`: the table, the figure, the timing and the
//! scaling sweep with the machine description, beside the thesis.

use std::path::Path;

use crate::machine::Machine;
use crate::output::write_atomic;
use crate::XtaskError;

/// One section: its Markdown, or the error that prevented it.
pub type Section = Result<String, String>;

/// The parts of the report.
pub struct Report<'a> {
    /// Where and with what it ran.
    pub machine: &'a Machine,
    /// The command that produced it.
    pub command: String,
    /// Jacobian sizes.
    pub table: Section,
    /// Loss curves.
    pub curves: Section,
    /// Timing.
    pub timing: Section,
    /// Scaling sweep.
    pub scaling: Section,
}

fn section(title: &str, body: &Section) -> String {
    match body {
        Ok(text) => format!("## {title}\n\n{text}\n"),
        Err(error) => format!("## {title}\n\n**Failed:** {error}\n"),
    }
}

impl Report<'_> {
    /// The whole report.
    pub fn markdown(&self) -> String {
        let mut out = String::from(
            "# Reproduction of \"Real-time Low-rank Recurrent Learning\"\n\n\
             Every number below was measured by this workspace on the machine named \
             next; the thesis's own numbers stand beside ours. Regenerate with \
             the command given.\n\n",
        );
        out.push_str(&format!(
            "## Machine\n\n{}\n\nCommand: `{}`\n\n",
            self.machine.line(),
            self.command
        ));
        out.push_str(&section("Jacobian sizes", &self.table));
        out.push_str(&section("Loss curves", &self.curves));
        out.push_str(&section("Timing", &self.timing));
        out.push_str(&section("Scaling", &self.scaling));
        out.push_str(
            "\nFiles: [jacobian.csv](jacobian.csv), [curves.csv](curves.csv), \
             [curves-summary.csv](curves-summary.csv), [curves.svg](curves.svg), \
             [timing.csv](timing.csv), [scaling.csv](scaling.csv), \
             [scaling.svg](scaling.svg).\n",
        );
        out
    }

    /// Writes `REPORT.md` under `dir`.
    pub fn write(&self, dir: &Path) -> Result<(), XtaskError> {
        write_atomic(&dir.join("REPORT.md"), self.markdown().as_bytes())
    }
}
