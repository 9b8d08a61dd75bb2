//! Subcommands for operators that are more than a call into the store: `verify` (its progress bar and its
//! human and JSON reports), `backup` and `restore` (a verified copy of the SQLite database, and putting one
//! back), `populate` (a development database of production size, built through the ledger engine) and
//! `statement` (import a bank statement; generate made-up ones).

pub mod backup;
pub mod deploy;
pub mod populate;
pub mod statement;
pub mod verify;

use std::io::IsTerminal;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// How often a progress bar redraws on its own, so the elapsed time moves during one long step.
const PROGRESS_TICK: Duration = Duration::from_millis(250);

/// A progress bar of `total` steps on standard error, drawn only when standard error is a terminal: a log
/// file or a monitoring job gets no control characters.
pub fn progress_bar(total: u64, template: &str) -> ProgressBar {
    if !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::stderr());
    // The templates are constants of this module's callers; a bad one falls back to the default style.
    if let Ok(style) = ProgressStyle::with_template(template) {
        bar.set_style(style.progress_chars("=> "));
    }
    bar.enable_steady_tick(PROGRESS_TICK);
    bar
}
