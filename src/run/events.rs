//! What a run tells other processes: `events.jsonl` (one JSON object a line) and the
//! human-readable `train.log`, both appended and flushed as they happen.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use serde::{Deserialize, Serialize};

use super::{EpochMetrics, RunDir, Scores, TrainConfig};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "lowercase")]
pub enum Event {
    Started {
        config: Box<TrainConfig>,
        train_examples: usize,
        steps: usize,
    },
    Resumed {
        after_epoch: usize,
        /// Batches of the next epoch trained before the stop it resumes from.
        #[serde(default)]
        batches: usize,
    },
    /// Stopped by a signal, the state saved: resumable from `batches` into `epoch`.
    Interrupted {
        signal: String,
        epoch: usize,
        batches: usize,
    },
    Step {
        epoch: usize,
        step: usize,
        loss: f64,
        grad_norm: f64,
        lr_scale: f64,
        examples_per_second: f64,
    },
    Epoch {
        #[serde(flatten)]
        metrics: EpochMetrics,
        best: bool,
    },
    Finished {
        best_epoch: Option<usize>,
        dev_f1: f64,
        test: Option<Scores>,
    },
    Failed {
        reason: String,
    },
}

impl Event {
    /// The event's name in events.jsonl.
    pub fn kind(&self) -> &'static str {
        match self {
            Event::Started { .. } => "started",
            Event::Resumed { .. } => "resumed",
            Event::Interrupted { .. } => "interrupted",
            Event::Step { .. } => "step",
            Event::Epoch { .. } => "epoch",
            Event::Finished { .. } => "finished",
            Event::Failed { .. } => "failed",
        }
    }

    fn describe(&self) -> String {
        match self {
            Event::Started {
                train_examples,
                steps,
                ..
            } => format!("started: {train_examples} training examples an epoch, {steps} steps"),
            Event::Resumed {
                after_epoch,
                batches: 0,
            } => format!("resumed after epoch {after_epoch}"),
            Event::Resumed {
                after_epoch,
                batches,
            } => format!(
                "resumed in epoch {} after {batches} batches",
                after_epoch + 1
            ),
            Event::Interrupted {
                signal,
                epoch,
                batches,
            } => {
                format!("stopped by {signal} in epoch {epoch} after {batches} batches; state saved")
            }
            Event::Step {
                epoch,
                step,
                loss,
                examples_per_second,
                ..
            } => {
                format!(
                    "epoch {epoch} step {step}: loss {loss:.4}, {examples_per_second:.1} examples/s"
                )
            }
            Event::Epoch { metrics, best } => format!(
                "epoch {}: train loss {:.4}, {:.0} s ({:.1} examples/s), dev P {:.2} R {:.2} F1 {:.2}{}",
                metrics.epoch,
                metrics.train_loss,
                metrics.seconds,
                metrics.examples_per_second,
                metrics.dev.precision,
                metrics.dev.recall,
                metrics.dev.f1,
                if *best { " (best)" } else { "" }
            ),
            Event::Finished {
                best_epoch,
                dev_f1,
                test,
            } => format!(
                "finished: best epoch {}, dev F1 {dev_f1:.2}{}",
                best_epoch.map_or("-".to_string(), |e| e.to_string()),
                test.map_or(String::new(), |t| format!(
                    ", test P {:.2} R {:.2} F1 {:.2}",
                    t.precision, t.recall, t.f1
                ))
            ),
            Event::Failed { reason } => format!("failed: {reason}"),
        }
    }
}

/// The two append-only logs of a run directory.
pub struct RunLog {
    files: Mutex<(File, File)>,
}

impl RunLog {
    pub fn open(run: &RunDir) -> std::io::Result<Self> {
        let open = |path: PathBuf| OpenOptions::new().create(true).append(true).open(path);
        Ok(Self {
            files: Mutex::new((open(run.events())?, open(run.train_log())?)),
        })
    }

    /// Appends an event to both logs (a failure to log is reported, not fatal).
    // Each `expect` here states an invariant that holds by construction.
    #[allow(clippy::expect_used)]
    pub fn emit(&self, event: &Event) {
        let seconds = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0.0, |d| d.as_secs_f64());
        let mut json = serde_json::to_value(event).expect("events serialise");
        json["time"] = serde_json::json!(seconds);
        tracing::info!("{}", event.describe());
        let mut files = self.files.lock().expect("log lock");
        let written = writeln!(files.0, "{json}")
            .and_then(|_| files.0.flush())
            .and_then(|_| writeln!(files.1, "[{seconds:.0}] {}", event.describe()))
            .and_then(|_| files.1.flush());
        if let Err(e) = written {
            tracing::warn!("cannot append to the run logs: {e}");
        }
    }
}

/// An event as `events.jsonl` records it: with the time it was written.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct RecordedEvent {
    /// Seconds since the Unix epoch.
    pub time: f64,
    #[serde(flatten)]
    pub event: Event,
}

/// What [`read_events`] found: the events in order, and the lines it could not read
/// (a line cut short by a killed writer, say), by line number.
#[derive(Debug, Clone, Default)]
pub struct EventLog {
    pub events: Vec<RecordedEvent>,
    pub unreadable_lines: Vec<usize>,
}

/// Reads a run's `events.jsonl`; unreadable lines are listed, not fatal.
pub fn read_events(path: &Path) -> std::io::Result<EventLog> {
    let text = crate::util::read_text(path)?;
    let mut log = EventLog::default();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        match serde_json::from_str::<RecordedEvent>(line) {
            Ok(event) => log.events.push(event),
            Err(e) => {
                tracing::warn!("{}:{}: {e}", path.display(), i + 1);
                log.unreadable_lines.push(i + 1);
            }
        }
    }
    Ok(log)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_written_by_the_log_read_back_and_a_cut_line_is_listed() {
        let dir = tempfile::tempdir().unwrap();
        let run = RunDir::new(dir.path());
        let log = RunLog::open(&run).unwrap();
        let events = [
            Event::Resumed {
                after_epoch: 2,
                batches: 5,
            },
            Event::Interrupted {
                signal: "SIGUSR1".into(),
                epoch: 3,
                batches: 9,
            },
            Event::Finished {
                best_epoch: Some(3),
                dev_f1: 71.5,
                test: Some(Scores {
                    precision: 70.0,
                    recall: 69.0,
                    f1: 69.5,
                }),
            },
        ];
        for event in &events {
            log.emit(event);
        }
        drop(log);
        let path = run.events();
        let mut file = OpenOptions::new().append(true).open(&path).unwrap();
        write!(file, "{{\"event\":\"step\",\"epo").unwrap();
        let read = read_events(&path).unwrap();
        let got: Vec<Event> = read.events.into_iter().map(|e| e.event).collect();
        assert_eq!(got, events);
        assert_eq!(read.unreadable_lines, [4]);
        // Each kind is the name events.jsonl gives it.
        for (event, line) in events
            .iter()
            .zip(std::fs::read_to_string(&path).unwrap().lines())
        {
            let value: serde_json::Value = serde_json::from_str(line).unwrap();
            assert_eq!(value["event"], event.kind());
        }
    }
}
