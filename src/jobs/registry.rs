//! The run registry: one directory per run under a runs root, holding the run's spec,
//! its status, the training config, and what training writes (the events, the log, the
//! checkpoint), all named by [`RunDir`]. Everything is learned from these files, so
//! runs outlive the process that submitted them.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::run::RunDir;
use crate::run::events::{Event, read_events};

/// A run's life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum State {
    Queued,
    Running,
    Finished,
    Failed,
    Cancelled,
    /// No live process and no final event: killed, or the machine restarted (when its
    /// events end with a saved stop, `train --resume` carries it on).
    Interrupted,
    /// Stopped by a signal with its state saved, and queued again (Slurm's requeue):
    /// its next attempt resumes.
    Requeued,
}

impl State {
    pub fn is_final(self) -> bool {
        !matches!(self, State::Queued | State::Running | State::Requeued)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            State::Queued => "queued",
            State::Running => "running",
            State::Finished => "finished",
            State::Failed => "failed",
            State::Cancelled => "cancelled",
            State::Interrupted => "interrupted",
            State::Requeued => "requeued",
        }
    }
}

/// Where a run executes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum BackendKind {
    Local,
    Slurm,
}

/// What was asked for: written once at submission.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunSpec {
    pub id: String,
    /// Runs submitted together (one table).
    pub group: String,
    pub variant: String,
    pub seed: u64,
    pub backend: BackendKind,
    /// Where the variant came from (checkpoint or config).
    pub source: PathBuf,
    /// Seconds since the epoch.
    pub submitted: f64,
}

/// What is known now: rewritten atomically as the run moves on.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunStatus {
    pub state: State,
    /// The local training process.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pid: Option<u32>,
    /// When that process started (clock ticks since boot, `/proc/PID/stat` field 22):
    /// with the pid, it names the process; a pid alone may have been reused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pid_start: Option<u64>,
    /// The Slurm job id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub slurm_job: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exit_code: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    pub updated: f64,
}

impl RunStatus {
    pub fn new(state: State) -> Self {
        Self {
            state,
            pid: None,
            pid_start: None,
            slurm_job: None,
            exit_code: None,
            message: None,
            updated: now(),
        }
    }
}

pub fn now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    #[error("cannot use the runs folder {path}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot read {path}")]
    ReadFile {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path} is not a valid {what}: {message}")]
    Corrupt {
        path: PathBuf,
        what: &'static str,
        message: String,
    },
    #[error("no run '{0}' (see `promptmner runs list`)")]
    NoRun(String),
    #[error("run {id} is already {state}; there is nothing to cancel")]
    AlreadyOver { id: String, state: &'static str },
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> RegistryError + '_ {
    move |source| RegistryError::Io {
        path: path.to_path_buf(),
        source,
    }
}

fn read_error(path: &Path) -> impl FnOnce(std::io::Error) -> RegistryError + '_ {
    move |source| RegistryError::ReadFile {
        path: path.to_path_buf(),
        source,
    }
}

/// A run directory as the registry knows it: its files, and what they say.
#[derive(Debug, Clone)]
pub struct RegisteredRun {
    pub files: RunDir,
}

impl RegisteredRun {
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self {
            files: RunDir::new(dir),
        }
    }

    /// The run's folder.
    pub fn dir(&self) -> &Path {
        self.files.path()
    }

    pub fn spec(&self) -> Result<RunSpec, RegistryError> {
        let path = self.files.job_spec();
        let text = crate::util::read_text(&path).map_err(read_error(&path))?;
        let mut spec: RunSpec = toml::from_str(&text).map_err(|e| RegistryError::Corrupt {
            path,
            what: "run spec",
            message: e.message().to_string(),
        })?;
        // The folder is the run's identity; job.toml's own id is not trusted.
        spec.id = self.id();
        Ok(spec)
    }

    /// The run's id: its folder's name.
    pub fn id(&self) -> String {
        self.dir()
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default()
    }

    pub fn status(&self) -> Result<RunStatus, RegistryError> {
        let path = self.files.status_file();
        let text = crate::util::read_text(&path).map_err(read_error(&path))?;
        serde_json::from_str(&text).map_err(|e| RegistryError::Corrupt {
            path,
            what: "status file",
            message: e.to_string(),
        })
    }

    /// Replaces the status atomically: a reader sees the old or the new file.
    pub fn write_status(&self, status: &RunStatus) -> Result<(), RegistryError> {
        let path = self.files.status_file();
        let json = serde_json::to_vec_pretty(status).unwrap_or_default();
        crate::util::write_atomic(&path, &json).map_err(io(&path))
    }

    /// The last `lines` lines of train.log, else of the process output.
    pub fn log_tail(&self, lines: usize) -> Vec<String> {
        for path in [self.files.train_log(), self.files.output_log()] {
            if let Ok(text) = crate::util::read_text(&path)
                && !text.trim().is_empty()
            {
                let all: Vec<&str> = text.lines().collect();
                let start = all.len().saturating_sub(lines);
                return all[start..].iter().map(|l| l.to_string()).collect();
            }
        }
        Vec::new()
    }

    /// What the events say so far.
    pub fn progress(&self) -> Progress {
        let mut progress = Progress::default();
        let Ok(log) = read_events(&self.files.events()) else {
            return progress;
        };
        for recorded in log.events {
            match &recorded.event {
                Event::Started { .. } | Event::Resumed { .. } => {
                    progress.stopped = None;
                    progress.attempts.push(Attempt {
                        started: recorded.time,
                        resumed: matches!(recorded.event, Event::Resumed { .. }),
                        ended: None,
                    });
                }
                Event::Interrupted { .. } | Event::Finished { .. } | Event::Failed { .. } => {
                    if let Some(attempt) = progress.attempts.last_mut() {
                        attempt.ended = Some((recorded.time, recorded.event.kind()));
                    }
                }
                _ => {}
            }
            match recorded.event {
                Event::Started { config, .. } => progress.epochs = config.epochs,
                Event::Step { epoch, loss, .. } => {
                    progress.epoch = epoch;
                    progress.loss = Some(loss);
                }
                Event::Epoch { metrics, best } => {
                    progress.epoch = metrics.epoch;
                    progress.dev_f1 = Some(metrics.dev.f1);
                    progress.record_epoch(&metrics, best);
                }
                Event::Finished {
                    test,
                    dev_f1,
                    best_epoch,
                } => {
                    progress.finished = true;
                    progress.test = test;
                    progress.dev_f1 = Some(dev_f1);
                    progress.best_epoch = best_epoch.or(progress.best_epoch);
                }
                Event::Failed { reason } => progress.failed = Some(reason),
                Event::Interrupted { signal, .. } => progress.stopped = Some(signal),
                Event::Resumed { .. } => {}
            }
        }
        progress
    }
}

/// The run's training process when it is verifiably alive: the recorded pid exists, is
/// not a zombie, and started when the status says it did.
pub fn live_process(status: &RunStatus) -> Option<u32> {
    let pid = status.pid?;
    let started = status.pid_start?;
    (process_alive(pid) && process_start(pid) == Some(started)).then_some(pid)
}

/// A run's progress from its events.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Progress {
    pub epoch: usize,
    pub epochs: usize,
    pub loss: Option<f64>,
    pub dev_f1: Option<f64>,
    pub finished: bool,
    pub failed: Option<String>,
    pub test: Option<crate::run::Scores>,
    /// The signal of the last attempt's saved stop, when no attempt has begun since.
    pub stopped: Option<String>,
    /// Each process that trained the run: started afresh, then resumed ones.
    pub attempts: Vec<Attempt>,
    /// Each completed epoch's training loss and dev F1, in epoch order.
    pub curve: Vec<EpochPoint>,
    /// The epoch whose weights the run keeps (the best dev F1 so far).
    pub best_epoch: Option<usize>,
}

/// One epoch of a run's learning curve.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct EpochPoint {
    pub epoch: usize,
    pub train_loss: f64,
    pub dev_f1: f64,
}

impl Progress {
    /// An epoch's end. A resumed attempt that repeats an epoch (killed without a word
    /// after the epoch's event, before its state was saved) replaces the first record.
    fn record_epoch(&mut self, metrics: &crate::run::EpochMetrics, best: bool) {
        let point = EpochPoint {
            epoch: metrics.epoch,
            train_loss: metrics.train_loss,
            dev_f1: metrics.dev.f1,
        };
        self.curve.retain(|p| p.epoch < point.epoch);
        self.curve.push(point);
        if best {
            self.best_epoch = Some(point.epoch);
        }
    }
}

/// One process's part of a run, from its events.
#[derive(Debug, Clone, PartialEq)]
pub struct Attempt {
    /// Seconds since the epoch.
    pub started: f64,
    pub resumed: bool,
    /// When and how it ended (the event's kind: interrupted, finished, failed); None
    /// while it runs, or when it was killed without a word.
    pub ended: Option<(f64, &'static str)>,
}

/// A run as the registry sees it now.
#[derive(Debug, Clone)]
pub struct RunView {
    pub run: RegisteredRun,
    pub spec: RunSpec,
    pub status: RunStatus,
    /// The state after checking the process: a dead run is not shown as running.
    pub state: State,
    pub progress: Progress,
}

/// The runs root.
#[derive(Debug, Clone)]
pub struct Registry {
    pub root: PathBuf,
}

/// `$PROMPTMNER_RUNS`, else the platform data directory's `runs/`.
pub fn default_root() -> PathBuf {
    std::env::var_os("PROMPTMNER_RUNS")
        .map(PathBuf::from)
        .or_else(|| {
            directories::ProjectDirs::from("", "", "promptmner").map(|d| d.data_dir().join("runs"))
        })
        .unwrap_or_else(|| PathBuf::from("runs"))
}

impl Registry {
    pub fn open(root: &Path) -> Result<Self, RegistryError> {
        std::fs::create_dir_all(root).map_err(io(root))?;
        Ok(Self {
            root: root.to_path_buf(),
        })
    }

    pub fn run(&self, id: &str) -> Result<RegisteredRun, RegistryError> {
        let run = RegisteredRun::new(self.root.join(id));
        if id.contains(['/', '\\']) || id.starts_with('.') || !run.files.job_spec().is_file() {
            return Err(RegistryError::NoRun(id.to_string()));
        }
        Ok(run)
    }

    /// A new, empty run directory with an id no other process gets: the directory is
    /// created with `create_dir`, which fails when it exists.
    pub fn allocate(&self, stem: &str) -> Result<(String, RegisteredRun), RegistryError> {
        // Submitters at once take numbers one after another (an flock, released by the
        // kernel if a holder dies), so that no two runs share a number.
        let lock_path = self.root.join("registry.lock");
        let lock = crate::util::open_lock_file(&lock_path).map_err(io(&lock_path))?;
        lock.lock().map_err(io(&lock_path))?;
        let existing = std::fs::read_dir(&self.root)
            .map_err(io(&self.root))?
            .filter_map(|e| e.ok())
            .filter_map(|e| {
                let name = e.file_name().to_string_lossy().into_owned();
                name.split('-')
                    .next()?
                    .strip_prefix('r')?
                    .parse::<u64>()
                    .ok()
            })
            .max()
            .unwrap_or(0);
        let mut number = existing + 1;
        loop {
            let id = format!("r{number:04}-{stem}");
            let dir = self.root.join(&id);
            match std::fs::create_dir(&dir) {
                Ok(()) => return Ok((id, RegisteredRun::new(dir))),
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => number += 1,
                Err(e) => return Err(io(&dir)(e)),
            }
        }
    }

    /// Every run, oldest first; a run whose files cannot be read is reported in the
    /// second list and skipped.
    pub fn list(&self) -> Result<(Vec<RunView>, Vec<String>), RegistryError> {
        let mut dirs: Vec<RegisteredRun> = std::fs::read_dir(&self.root)
            .map_err(io(&self.root))?
            .filter_map(|e| e.ok())
            .map(|e| RegisteredRun::new(e.path()))
            .filter(|run| run.files.job_spec().is_file())
            .collect();
        dirs.sort_by(|a, b| a.dir().cmp(b.dir()));
        let mut runs = Vec::new();
        let mut skipped = Vec::new();
        for run in dirs {
            match view(run) {
                Ok(run) => runs.push(run),
                Err(e) => skipped.push(format!("skipped: {}", crate::util::error_chain(&e))),
            }
        }
        Ok((runs, skipped))
    }
}

/// The run, when it is queued or running; a run that is over cannot be cancelled.
pub fn cancellable(run: &RegisteredRun) -> Result<RunView, RegistryError> {
    let current = view(run.clone())?;
    if current.state.is_final() {
        return Err(RegistryError::AlreadyOver {
            id: current.spec.id,
            state: current.state.as_str(),
        });
    }
    Ok(current)
}

/// Reads a run and decides its state.
pub fn view(run: RegisteredRun) -> Result<RunView, RegistryError> {
    let spec = run.spec()?;
    let status = run.status()?;
    let progress = run.progress();
    let state = effective_state(&spec, &status, &progress);
    Ok(RunView {
        run,
        spec,
        status,
        state,
        progress,
    })
}

/// The state a run is really in: a local run marked running whose process is gone is
/// finished if its events say so, failed if they say that, interrupted otherwise.
fn effective_state(spec: &RunSpec, status: &RunStatus, progress: &Progress) -> State {
    let local_and_dead = spec.backend == BackendKind::Local
        && status.state == State::Running
        && live_process(status).is_none();
    if !local_and_dead {
        return status.state;
    }
    if progress.finished {
        State::Finished
    } else if progress.failed.is_some() {
        State::Failed
    } else {
        State::Interrupted
    }
}

/// When process `pid` started, in clock ticks since boot (`/proc/PID/stat` field 22).
pub fn process_start(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the parenthesised command name start at field 3 (the state).
    let (_, rest) = stat.rsplit_once(')')?;
    rest.split_whitespace().nth(22 - 3)?.parse().ok()
}

/// Whether a process with this id exists and is not a zombie.
pub fn process_alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        // The state is the field after the parenthesised command name.
        Ok(stat) => stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().next())
            .is_some_and(|state| state != "Z" && state != "X"),
        Err(_) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_curve_keeps_an_epoch_once_and_a_resume_from_earlier_replaces_what_followed() {
        let epoch = |epoch: usize, f1: f64| crate::run::EpochMetrics {
            epoch,
            train_loss: 1.0 / epoch as f64,
            seconds: 1.0,
            examples_per_second: 1.0,
            dev: crate::run::Scores {
                precision: f1,
                recall: f1,
                f1,
            },
        };
        let mut progress = Progress::default();
        progress.record_epoch(&epoch(1, 50.0), true);
        progress.record_epoch(&epoch(2, 60.0), true);
        progress.record_epoch(&epoch(3, 55.0), false);
        assert_eq!(progress.best_epoch, Some(2));
        // Killed after epoch 3's event, before its state: resumed from epoch 2's.
        progress.record_epoch(&epoch(3, 58.0), false);
        let f1: Vec<(usize, f64)> = progress.curve.iter().map(|p| (p.epoch, p.dev_f1)).collect();
        assert_eq!(f1, [(1, 50.0), (2, 60.0), (3, 58.0)]);
        assert_eq!(progress.curve[0].train_loss, 1.0);
    }

    fn spec(id: &str) -> RunSpec {
        RunSpec {
            id: id.into(),
            group: "g".into(),
            variant: "full".into(),
            seed: 1,
            backend: BackendKind::Local,
            source: PathBuf::from("c.toml"),
            submitted: 0.0,
        }
    }

    fn write_run(registry: &Registry, status: &str) -> RegisteredRun {
        let (id, run) = registry.allocate("full-s1").unwrap();
        std::fs::write(run.files.job_spec(), toml::to_string(&spec(&id)).unwrap()).unwrap();
        std::fs::write(run.files.status_file(), status).unwrap();
        run
    }

    #[test]
    fn ids_are_unique_across_threads() {
        let dir = tempfile::tempdir().unwrap();
        let registry = Registry::open(dir.path()).unwrap();
        let ids: Vec<String> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..8)
                .map(|_| s.spawn(|| registry.allocate("x").unwrap().0))
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        let mut unique = ids.clone();
        unique.sort();
        unique.dedup();
        assert_eq!(unique.len(), 8, "{ids:?}");
    }

    #[test]
    fn a_corrupt_status_is_skipped_with_a_message() {
        let dir = tempfile::tempdir().unwrap();
        let registry = Registry::open(dir.path()).unwrap();
        let good = serde_json::to_string(&RunStatus::new(State::Queued)).unwrap();
        write_run(&registry, &good);
        let bad = write_run(&registry, "{\"state\": \"runn");
        let (runs, skipped) = registry.list().unwrap();
        assert_eq!(runs.len(), 1);
        assert_eq!(skipped.len(), 1);
        assert!(
            skipped[0].contains(&bad.files.status_file().display().to_string()),
            "{skipped:?}"
        );
    }

    #[test]
    fn a_missing_or_garbled_status_file_is_named_as_a_file_not_the_runs_folder() {
        let dir = tempfile::tempdir().unwrap();
        let registry = Registry::open(dir.path()).unwrap();
        let run = write_run(&registry, "{}");
        std::fs::write(run.files.status_file(), [0xff, 0xfe]).unwrap();
        let error = crate::util::error_chain(&run.status().unwrap_err());
        // The file once, then the cause once.
        assert_eq!(
            error,
            format!(
                "cannot read {}: it is not UTF-8 text (byte 0)",
                run.files.status_file().display()
            )
        );
        std::fs::remove_file(run.files.status_file()).unwrap();
        let error = run.status().unwrap_err().to_string();
        assert!(
            !error.contains("runs folder") && error.contains("status.json"),
            "{error}"
        );
    }

    #[test]
    fn a_running_run_without_a_process_is_interrupted() {
        let dir = tempfile::tempdir().unwrap();
        let registry = Registry::open(dir.path()).unwrap();
        let mut status = RunStatus::new(State::Running);
        // No process has this id (above the kernel's pid limit).
        status.pid = Some(u32::MAX - 1);
        let run = write_run(&registry, &serde_json::to_string(&status).unwrap());
        assert_eq!(view(run.clone()).unwrap().state, State::Interrupted);
        std::fs::write(
            run.files.events(),
            "{\"event\":\"finished\",\"time\":1.0,\"best_epoch\":1,\"dev_f1\":50.0,\"test\":null}\n",
        )
        .unwrap();
        assert_eq!(view(run).unwrap().state, State::Finished);
        status.pid = Some(std::process::id());
        assert!(process_alive(std::process::id()));
    }

    #[test]
    fn a_live_pid_that_is_not_the_runs_process_is_not_the_run() {
        let me = std::process::id();
        let mut status = RunStatus::new(State::Running);
        status.pid = Some(me);
        assert_eq!(live_process(&status), None, "no start time: unverified");
        let started = process_start(me).unwrap();
        status.pid_start = Some(started + 1);
        assert_eq!(live_process(&status), None, "another process, same pid");
        status.pid_start = Some(started);
        assert_eq!(live_process(&status), Some(me));
    }
}
