//! The plugins' own log lines, kept out of a normal run and shown when it fails.
//!
//! XLA plugins log with absl straight to file descriptor 2 (`WARNING: All log messages before
//! absl::InitializeLog() ...`, `I0000 ... cpu_device_count set via create_options`, CUDA's
//! `service.cc` and `ptxas warning` lines), from any of their threads and at any time: compile
//! threads, client teardown at exit. Redirecting fd 2 only around our calls into the plugin
//! would miss those and would swallow our own lines printed meanwhile from other threads (the
//! compile spinner ticks during a compile). So [`capture`] points fd 2 at an unlinked temporary
//! file for the whole process, and vidlower's own stderr (warnings, errors, progress bars) goes
//! to a copy of the real stderr taken first: [`user_stderr`], [`user_eprintln!`],
//! [`progress_target`]. Writing vidlower's stderr with plain `eprintln!` or indicatif's default
//! target would hide it with the plugin's lines.
//!
//! A file rather than a pipe: nothing has to drain it, and when a plugin aborts (absl `FATAL`,
//! a failed `CHECK`) its last words are already in the file; a `SIGABRT` handler copies them to
//! the real stderr before the process dies. A panic hook does the same for our own panics.
//!
//! Child processes inherit fd 2, the log file; vidlower's own (pip for `plugin install`,
//! `python3` for plugin discovery) capture their output and report it in their errors.

use std::fs::File;
use std::io::{self, Write};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd};
use std::os::unix::fs::FileExt;
use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::OnceLock;

/// How many lines of the plugin's log a failure shows.
pub const FAILURE_TAIL_LINES: usize = 50;

/// The most bytes of the log read back for a tail (the file itself is not bounded; plugins
/// write a few lines per compile).
const TAIL_BYTES: u64 = 64 * 1024;

struct Capture {
    /// The stderr the process started with: the user's terminal or log.
    real: File,
    /// Another handle on what fd 2 now writes to, read back with `pread` (which leaves the
    /// offset fd 2 appends at alone).
    log: File,
}

static CAPTURE: OnceLock<Capture> = OnceLock::new();
/// The same two descriptors as plain numbers for the abort handler, which may only make
/// async-signal-safe calls; -1 until captured.
static REAL_FD: AtomicI32 = AtomicI32::new(-1);
static LOG_FD: AtomicI32 = AtomicI32::new(-1);

/// Points fd 2 at a temporary file for the rest of the process (once; later calls do nothing).
/// Call it early in `main`, before any plugin is loaded and before other threads start. On
/// error nothing has changed and the plugin's lines simply pass through.
pub fn capture() -> io::Result<()> {
    if CAPTURE.get().is_some() {
        return Ok(());
    }
    // The copy first: with fd 2 closed it fails here, before the temporary file could take
    // the free number 2.
    // SAFETY: fd 2 is only borrowed for the duplication; an fd 2 that is not open makes it fail.
    let real = File::from(unsafe { BorrowedFd::borrow_raw(libc::STDERR_FILENO) }.try_clone_to_owned()?);
    let log = tempfile::tempfile()?;
    // SAFETY: both descriptors are open; dup2 atomically replaces fd 2.
    if unsafe { libc::dup2(log.as_raw_fd(), libc::STDERR_FILENO) } < 0 {
        return Err(io::Error::last_os_error());
    }
    REAL_FD.store(real.as_raw_fd(), Ordering::SeqCst);
    LOG_FD.store(log.as_raw_fd(), Ordering::SeqCst);
    let _ = CAPTURE.set(Capture { real, log });
    install_abort_handler();
    // A panic's message (and the plugin's lines before it) must reach the user: give fd 2 back
    // to the real stderr, print the tail, then let the usual hook print the panic.
    let previous = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        print_tail(FAILURE_TAIL_LINES);
        if let Some(c) = CAPTURE.get() {
            // SAFETY: both descriptors stay open for the process's life (held by CAPTURE).
            unsafe { libc::dup2(c.real.as_raw_fd(), libc::STDERR_FILENO) };
        }
        previous(info);
    }));
    Ok(())
}

/// Asks XLA plugins for warnings and errors only (`TF_CPP_MIN_LOG_LEVEL=1`: absl/TSL's INFO
/// lines such as `cpu_device_count set via create_options` are not even written), unless the
/// user set the variable. Warnings stay: a failed run shows them. Call before any plugin is
/// loaded (the plugin reads it once) and before other threads start (it sets the environment).
pub fn lower_plugin_log_level() {
    if std::env::var_os("TF_CPP_MIN_LOG_LEVEL").is_none() {
        std::env::set_var("TF_CPP_MIN_LOG_LEVEL", "1");
    }
}

/// The last `n` lines the plugins wrote to fd 2 since [`capture`] (empty when not capturing).
pub fn tail(n: usize) -> Vec<String> {
    let Some(c) = CAPTURE.get() else { return Vec::new() };
    let Ok(meta) = c.log.metadata() else { return Vec::new() };
    let start = meta.len().saturating_sub(TAIL_BYTES);
    let mut bytes = vec![0u8; (meta.len() - start) as usize];
    let Ok(read) = c.log.read_at(&mut bytes, start) else { return Vec::new() };
    bytes.truncate(read);
    last_lines(&String::from_utf8_lossy(&bytes), start > 0, n)
}

/// The last `n` lines of `text`, without its first line when the read window `cut` it.
fn last_lines(text: &str, cut: bool, n: usize) -> Vec<String> {
    let lines: Vec<&str> = text.lines().skip(usize::from(cut)).collect();
    let skip = lines.len().saturating_sub(n);
    lines[skip..].iter().map(|l| l.to_string()).collect()
}

/// Writes the last `n` plugin log lines to the real stderr under a header, if there are any:
/// what a failed run shows so that nothing useful stays hidden.
pub fn print_tail(n: usize) {
    let lines = tail(n);
    if lines.is_empty() {
        return;
    }
    let mut out = user_stderr();
    let _ = writeln!(out, "plugin log (last {} lines):", lines.len());
    for line in lines {
        let _ = writeln!(out, "  {line}");
    }
}

/// vidlower's own stderr: the real one when the plugins' fd 2 is captured, fd 2 otherwise.
pub fn user_stderr() -> UserStderr {
    UserStderr
}

/// See [`user_stderr`].
pub struct UserStderr;

impl Write for UserStderr {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match CAPTURE.get() {
            Some(c) => (&c.real).write(buf),
            None => io::stderr().write(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match CAPTURE.get() {
            Some(c) => (&c.real).flush(),
            None => io::stderr().flush(),
        }
    }
}

/// `eprintln!` for vidlower's own lines: to the real stderr, not into the plugins' log.
#[macro_export]
macro_rules! user_eprintln {
    ($($arg:tt)*) => {{
        use ::std::io::Write as _;
        let _ = writeln!($crate::pjrt::plugin_log::user_stderr(), $($arg)*);
    }};
}

/// Where progress bars and spinners draw: the real stderr (a terminal keeps its size and
/// colours) when fd 2 is captured, indicatif's default otherwise.
pub fn progress_target() -> indicatif::ProgressDrawTarget {
    let Some(c) = CAPTURE.get() else { return indicatif::ProgressDrawTarget::stderr() };
    match c.real.as_fd().try_clone_to_owned() {
        Ok(fd) => {
            let term = console::Term::read_write_pair(io::stdin(), File::from(fd));
            indicatif::ProgressDrawTarget::term(term, 20)
        }
        Err(_) => indicatif::ProgressDrawTarget::hidden(),
    }
}

/// On `SIGABRT` (a plugin's `FATAL` or failed `CHECK`, or any other abort) copies the log's
/// last bytes to the real stderr, then dies of the signal as before.
fn install_abort_handler() {
    // SAFETY: a plain sigaction with a handler that only makes async-signal-safe calls.
    unsafe {
        let mut action: libc::sigaction = std::mem::zeroed();
        action.sa_sigaction = on_abort as extern "C" fn(libc::c_int) as usize;
        libc::sigemptyset(&mut action.sa_mask);
        action.sa_flags = libc::SA_RESETHAND;
        libc::sigaction(libc::SIGABRT, &action, std::ptr::null_mut());
    }
}

extern "C" fn on_abort(signal: libc::c_int) {
    let (real, log) = (REAL_FD.load(Ordering::SeqCst), LOG_FD.load(Ordering::SeqCst));
    if real >= 0 && log >= 0 {
        // Only fstat, pread, write, dup2 and raise: all async-signal-safe; no allocation.
        let mut buf = [0u8; 8192];
        // SAFETY: the descriptors are open for the process's life; the buffer is ours.
        unsafe {
            let mut st: libc::stat = std::mem::zeroed();
            if libc::fstat(log, &mut st) == 0 {
                let len = st.st_size.max(0);
                let start = (len - buf.len() as libc::off_t).max(0);
                let n = libc::pread(log, buf.as_mut_ptr().cast(), (len - start) as usize, start);
                let header = b"plugin log (end, before the abort):\n";
                libc::write(real, header.as_ptr().cast(), header.len());
                if n > 0 {
                    libc::write(real, buf.as_ptr().cast(), n as usize);
                }
            }
            libc::dup2(real, libc::STDERR_FILENO);
            // SA_RESETHAND restored the default action: this raise ends the process.
            libc::raise(signal);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::last_lines;

    #[test]
    fn a_tail_keeps_the_last_whole_lines() {
        let text = "first\nsecond\nthird\n";
        assert_eq!(last_lines(text, false, 2), ["second", "third"]);
        assert_eq!(last_lines(text, false, 50), ["first", "second", "third"]);
        // A window that starts mid-line drops the partial line.
        assert_eq!(last_lines("rst\nsecond\nthird", true, 50), ["second", "third"]);
        assert!(last_lines("", true, 50).is_empty());
    }
}
