//! Progress of long work, reported to the caller: library code never draws. The CLI
//! turns updates into `indicatif` bars, the engine into events for the workbench's
//! gauges, tests into counters or nothing.

/// One report about a task: `done` of `total` steps, with an optional status line
/// (a loss, a rate); `finished` once the task ends, however it ends.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Update<'a> {
    pub task: &'a str,
    pub done: u64,
    pub total: u64,
    pub message: Option<&'a str>,
    pub finished: bool,
}

/// Where progress goes. Implemented for closures, so `&|u: &Update| ...` works.
pub trait Progress: Sync {
    fn update(&self, update: &Update);
}

impl<F: Fn(&Update) + Sync> Progress for F {
    fn update(&self, update: &Update) {
        self(update)
    }
}

/// Progress that nobody watches.
pub struct NoProgress;

impl Progress for NoProgress {
    fn update(&self, _: &Update) {}
}

/// A running task: counts its steps and reports each change; reports `finished` when
/// dropped, so an early return (an error) still ends the task.
pub struct Task<'a> {
    sink: &'a dyn Progress,
    name: String,
    total: u64,
    done: u64,
}

impl<'a> Task<'a> {
    /// Starts `name` with `total` steps (reported at once, with 0 done).
    pub fn start(sink: &'a dyn Progress, name: impl Into<String>, total: u64) -> Self {
        let task = Self {
            sink,
            name: name.into(),
            total,
            done: 0,
        };
        task.report(None, false);
        task
    }

    fn report(&self, message: Option<&str>, finished: bool) {
        self.sink.update(&Update {
            task: &self.name,
            done: self.done,
            total: self.total,
            message,
            finished,
        });
    }

    /// `steps` more are done.
    pub fn advance(&mut self, steps: u64) {
        self.done = (self.done + steps).min(self.total);
        self.report(None, false);
    }

    /// `steps` more are done; `message` says how it goes.
    pub fn advance_with(&mut self, steps: u64, message: &str) {
        self.done = (self.done + steps).min(self.total);
        self.report(Some(message), false);
    }

    pub fn done(&self) -> u64 {
        self.done
    }
}

impl Drop for Task<'_> {
    fn drop(&mut self) {
        self.report(None, true);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    #[test]
    fn a_task_reports_its_start_each_step_and_its_end_even_on_early_exit() {
        let seen = Mutex::new(Vec::new());
        let sink = |u: &Update| {
            seen.lock()
                .unwrap()
                .push((u.task.to_string(), u.done, u.total, u.finished))
        };
        {
            let mut task = Task::start(&sink, "work", 3);
            task.advance(2);
            task.advance_with(5, "overshoot is clamped");
        }
        assert_eq!(
            *seen.lock().unwrap(),
            [
                ("work".to_string(), 0, 3, false),
                ("work".to_string(), 2, 3, false),
                ("work".to_string(), 3, 3, false),
                ("work".to_string(), 3, 3, true),
            ]
        );
    }
}
