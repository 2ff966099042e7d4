//! The CLI's view of progress: an `indicatif` bar per running task, on stderr (hidden
//! when stderr is not a terminal).

use std::collections::HashMap;
use std::sync::Mutex;

use indicatif::{MultiProgress, ProgressBar, ProgressStyle};

use crate::progress::{Progress, Update};

/// Draws each task of the library's progress updates as a bar.
#[derive(Default)]
pub struct Bars {
    multi: MultiProgress,
    bars: Mutex<HashMap<String, ProgressBar>>,
}

fn style() -> ProgressStyle {
    ProgressStyle::with_template("{msg} [{bar:30}] {pos}/{len} ({elapsed} < {eta})")
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> ")
}

impl Progress for Bars {
    fn update(&self, update: &Update) {
        let mut bars = self.bars.lock().unwrap_or_else(|e| e.into_inner());
        if update.finished {
            if let Some(bar) = bars.remove(update.task) {
                bar.finish_and_clear();
                self.multi.remove(&bar);
            }
            return;
        }
        let bar = bars.entry(update.task.to_string()).or_insert_with(|| {
            let bar = self.multi.add(ProgressBar::new(update.total));
            bar.set_style(style());
            bar.set_message(update.task.to_string());
            bar
        });
        bar.set_length(update.total);
        bar.set_position(update.done);
        if let Some(message) = update.message {
            bar.set_message(format!("{} {message}", update.task));
        }
    }
}
