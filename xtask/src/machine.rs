//! The machine a measurement ran on.

use std::process::Command;

/// CPU, cores, rayon threads and compiler.
#[derive(Debug, Clone)]
pub struct Machine {
    /// `model name` of `/proc/cpuinfo`.
    pub cpu: String,
    /// Logical cores available to this process.
    pub cores: usize,
    /// Threads of the global rayon pool.
    pub threads: usize,
    /// `rustc --version`.
    pub rustc: String,
}

impl Machine {
    /// Reads the description of this machine.
    pub fn detect() -> Machine {
        let cpu = std::fs::read_to_string("/proc/cpuinfo")
            .ok()
            .and_then(|text| {
                text.lines()
                    .find(|line| line.starts_with("model name"))
                    .and_then(|line| line.split_once(':'))
                    .map(|(_, name)| name.trim().to_string())
            })
            .unwrap_or_else(|| "unknown CPU".to_string());
        let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".to_string());
        let rustc = Command::new(rustc)
            .arg("--version")
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
            .unwrap_or_else(|| "rustc (unknown version)".to_string());
        Machine {
            cpu,
            cores: std::thread::available_parallelism().map_or(1, |n| n.get()),
            threads: rayon::current_num_threads(),
            rustc,
        }
    }

    /// One line: `machine: <cpu>, <cores> cores, rayon <threads> threads, <rustc>`.
    pub fn line(&self) -> String {
        format!(
            "machine: {}, {} cores, rayon {} threads, {}",
            self.cpu, self.cores, self.threads, self.rustc
        )
    }
}
