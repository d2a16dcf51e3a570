//! SIGINT and SIGTERM during `stage2` and `generate`: the first asks the denoising loop to stop
//! between steps (it writes its checkpoint, and the command exits with 128 + the signal and a line
//! saying how to resume); a second exits at once. Stage files and checkpoints are written to a temp
//! file and renamed, so neither way leaves a half-written one.

use anyhow::{Context, Result};
use signal_hook::consts::{SIGINT, SIGTERM};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use vidlower_runtime::stages::stage2::signal_name;

/// Installs the handlers; the returned flag is 0 until a signal arrives, then its number.
pub fn install() -> Result<Arc<AtomicUsize>> {
    let which = Arc::new(AtomicUsize::new(0));
    let seen = Arc::new(AtomicBool::new(false));
    for signal in [SIGINT, SIGTERM] {
        // Handlers run in registration order: a signal that finds `seen` already set exits.
        signal_hook::flag::register_conditional_shutdown(signal, 128 + signal, seen.clone())
            .and_then(|_| signal_hook::flag::register_usize(signal, which.clone(), signal as usize))
            .and_then(|_| signal_hook::flag::register(signal, seen.clone()))
            .with_context(|| format!("installing the {} handler", signal_name(signal as usize)))?;
    }
    Ok(which)
}

/// The signal that arrived, if one did.
pub fn received(flag: &AtomicUsize) -> Option<usize> {
    Some(flag.load(Ordering::SeqCst)).filter(|&s| s != 0)
}

/// A command stopped by a signal: `main` prints the message (no `error:`) and exits with 128 + the signal.
#[derive(Debug)]
pub struct Interrupted {
    pub signal: usize,
    pub message: String,
}

impl std::fmt::Display for Interrupted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}\nresume with: {}", self.message, resume_command())
    }
}

impl std::error::Error for Interrupted {}

impl Interrupted {
    pub fn exit_code(&self) -> i32 {
        128 + self.signal as i32
    }
}

/// This process's command line with `--resume` (added when missing), quoted for a POSIX shell.
pub fn resume_command() -> String {
    let mut args: Vec<String> = std::env::args().collect();
    if !args.iter().any(|a| a == "--resume") {
        args.push("--resume".into());
    }
    args.iter().map(|a| shell_quote(a)).collect::<Vec<_>>().join(" ")
}

fn shell_quote(s: &str) -> String {
    let plain = !s.is_empty() && s.chars().all(|c| c.is_ascii_alphanumeric() || "-_./=:,+@%".contains(c));
    if plain {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', r"'\''"))
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn quotes_what_a_shell_would_split() {
        assert_eq!(super::shell_quote("--seed"), "--seed");
        assert_eq!(super::shell_quote("a red fox"), "'a red fox'");
        assert_eq!(super::shell_quote("it's"), r"'it'\''s'");
        assert_eq!(super::shell_quote(""), "''");
    }
}
