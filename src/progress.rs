//! Progress bars for long work (drawn on stderr only when it is a terminal).

use indicatif::{ProgressBar, ProgressStyle};

/// A bar of `len` steps with a message, elapsed time and ETA.
pub fn bar(len: u64, message: &str) -> ProgressBar {
    let bar = ProgressBar::new(len);
    bar.set_style(
        ProgressStyle::with_template("{msg} [{bar:30}] {pos}/{len} ({elapsed} < {eta})")
            .expect("the template is valid")
            .progress_chars("=> "),
    );
    bar.set_message(message.to_string());
    bar
}
