//! What a run tells other processes: `events.jsonl` (one JSON object a line) and the
//! human-readable `train.log`, both appended and flushed as they happen.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::Path;
use std::sync::Mutex;

use serde::Serialize;

use super::{EpochMetrics, Scores, TrainConfig};

#[derive(Debug, Clone, Serialize)]
#[serde(tag = "event", rename_all = "lowercase")]
pub enum Event {
    Started {
        config: Box<TrainConfig>,
        train_examples: usize,
        steps: usize,
    },
    Resumed {
        after_epoch: usize,
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
    fn describe(&self) -> String {
        match self {
            Event::Started {
                train_examples,
                steps,
                ..
            } => format!("started: {train_examples} training examples an epoch, {steps} steps"),
            Event::Resumed { after_epoch } => format!("resumed after epoch {after_epoch}"),
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
    pub fn open(dir: &Path) -> std::io::Result<Self> {
        let open = |name: &str| {
            OpenOptions::new()
                .create(true)
                .append(true)
                .open(dir.join(name))
        };
        Ok(Self {
            files: Mutex::new((open("events.jsonl")?, open("train.log")?)),
        })
    }

    /// Appends an event to both logs (a failure to log is reported, not fatal).
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
