//! Progress on a terminal: a bar (or a spinner when the amount of work is unknown) on
//! stderr, drawn only when stderr is a terminal, so pipes and logs stay clean.

use std::io::IsTerminal;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressStyle};

const TICK: Duration = Duration::from_millis(120);

fn attended() -> bool {
    std::io::stderr().is_terminal()
}

/// A bar over `total` bytes.
pub(crate) fn bytes(total: u64, what: &str) -> ProgressBar {
    bar(
        total,
        what,
        "{msg} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
    )
}

/// A bar over `total` items (entries, keys).
pub(crate) fn items(total: u64, what: &str) -> ProgressBar {
    bar(
        total,
        what,
        "{msg} [{bar:30}] {human_pos}/{human_len} {per_sec} eta {eta}",
    )
}

fn bar(total: u64, what: &str, template: &str) -> ProgressBar {
    if !attended() {
        return ProgressBar::hidden();
    }
    let style = ProgressStyle::with_template(template)
        .expect("a valid template")
        .progress_chars("=> ");
    let bar = ProgressBar::new(total).with_style(style);
    bar.set_message(what.to_owned());
    bar.enable_steady_tick(TICK);
    bar
}

/// A spinner for work of unknown size; `{pos}` counts what was done.
pub(crate) fn spinner(what: &str) -> ProgressBar {
    if !attended() {
        return ProgressBar::hidden();
    }
    let style = ProgressStyle::with_template("{spinner} {msg} {human_pos} {elapsed}")
        .expect("a valid template");
    let bar = ProgressBar::new_spinner().with_style(style);
    bar.set_message(what.to_owned());
    bar.enable_steady_tick(TICK);
    bar
}
