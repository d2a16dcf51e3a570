//! One file per subcommand.

pub mod bench;
pub mod bench_upload;
pub mod cache;
pub mod compile;
pub mod convert;
pub mod dump_ir;
pub mod exec;
pub mod generate;
pub mod models;
pub mod plan;
pub mod plugin;
pub mod stage1;
pub mod stage2;
pub mod stage3;

/// A spinner on stderr with the elapsed time, for work whose length is not known ahead.
pub fn spinner(message: &'static str) -> indicatif::ProgressBar {
    let bar = indicatif::ProgressBar::with_draw_target(None, vidlower_runtime::pjrt::plugin_log::progress_target());
    bar.set_style(indicatif::ProgressStyle::with_template("{spinner} {msg} {elapsed}").expect("valid template"));
    bar.set_message(message);
    bar.enable_steady_tick(std::time::Duration::from_millis(100));
    bar
}
