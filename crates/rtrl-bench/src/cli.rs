//! What the workspace's command lines (`rtrl`, `cargo xtask`) share.

/// A command-line parse error as one line: clap's message and its hints,
/// without the `error: ` prefix, the usage block and the pointer to
/// `--help` (the caller adds its own).
pub fn usage_line(error: &clap::Error) -> String {
    let rendered = error.render().to_string();
    let parts: Vec<&str> = rendered
        .lines()
        .map(str::trim)
        .filter(|line| {
            !line.is_empty()
                && !line.starts_with("Usage:")
                && !line.starts_with("For more information")
        })
        .map(|line| line.strip_prefix("error: ").unwrap_or(line))
        .collect();
    if parts.is_empty() {
        "invalid command line".to_string()
    } else {
        parts.join(" ")
    }
}
