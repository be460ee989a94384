//! Progress bars for long commands, drawn on stderr (and hidden when stderr is not a terminal).

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// A bar labelled `message`; its length is set by the work it follows.
pub fn bar(message: &'static str) -> ProgressBar {
    let bar = ProgressBar::with_draw_target(Some(0), ProgressDrawTarget::stderr());
    // The template is a constant; fall back to the plain bar rather than fail a command over it.
    let style = ProgressStyle::with_template("{msg:>11} [{bar:40}] {percent:>3}% {elapsed_precise} eta {eta}")
        .map(|s| s.progress_chars("=> "))
        .unwrap_or_else(|_| ProgressStyle::default_bar());
    bar.set_style(style);
    bar.set_message(message);
    bar
}

/// A counter for work of unknown length, such as rows streamed from a file.
pub fn counter(message: &'static str) -> ProgressBar {
    let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr());
    // The template is a constant; fall back to the plain spinner rather than fail a command over it.
    let style = ProgressStyle::with_template("{msg:>11} {spinner} {human_pos} rows, {per_sec}, {elapsed_precise}")
        .unwrap_or_else(|_| ProgressStyle::default_spinner());
    bar.set_style(style);
    bar.set_message(message);
    bar
}

/// Restarts `bar` for a new phase of `len` steps.
pub fn phase(bar: &ProgressBar, message: &'static str, len: u64) {
    bar.set_message(message);
    bar.set_length(len);
    bar.set_position(0);
}

/// Adapts a bar to the shared crate's `progress(done, total)` callbacks.
pub fn callback(bar: &ProgressBar) -> impl FnMut(u64, u64) + '_ {
    move |done, total| {
        bar.set_length(total);
        bar.set_position(done);
    }
}
