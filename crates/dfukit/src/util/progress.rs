//! Progress bars for the library's progress events.

use indicatif::{ProgressBar, ProgressStyle};

/// A byte-count bar labelled `label` (hidden when stderr is not a terminal).
pub fn bar(len: u64, label: &str) -> ProgressBar {
    let bar = ProgressBar::new(len);
    bar.set_style(
        ProgressStyle::with_template(
            "{msg:12} [{bar:40}] {bytes}/{total_bytes} {bytes_per_sec} {eta}",
        )
        .expect("static template")
        .progress_chars("=> "),
    );
    bar.set_message(label.to_string());
    bar
}
