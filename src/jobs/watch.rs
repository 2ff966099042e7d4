//! The registry as plain values for a live view (the workbench's jobs panel reads one
//! of these every second from a background thread).

use std::path::{Path, PathBuf};

use crate::jobs::registry::{BackendKind, Registry, RegistryError, State};
use crate::jobs::table::{Row, rows};

/// One run, as the jobs panel shows it.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct RunSummary {
    pub id: String,
    pub group: String,
    pub variant: String,
    pub seed: u64,
    pub state: State,
    pub epoch: usize,
    pub epochs: usize,
    pub loss: Option<f64>,
    pub dev_f1: Option<f64>,
    pub test_f1: Option<f64>,
    pub log_tail: Vec<String>,
    pub dir: PathBuf,
}

/// Every run, the results table of the newest group, and what could not be read.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct JobsSnapshot {
    pub runs: Vec<RunSummary>,
    pub group: Option<String>,
    pub table: Vec<Row>,
    pub skipped: Vec<String>,
}

/// Reads the registry; restarts the local runner when runs are queued and none is alive
/// (the queue survives the workbench and the runner).
pub(crate) fn snapshot(root: &Path, program: &Path) -> Result<JobsSnapshot, RegistryError> {
    let registry = Registry::open(root)?;
    let (runs, skipped) = registry.list()?;
    let queued_locally = runs
        .iter()
        .any(|r| r.spec.backend == BackendKind::Local && r.state == State::Queued);
    if queued_locally {
        crate::jobs::local::ensure_runner(root, program, 1)?;
    }
    let group = runs
        .iter()
        .max_by(|a, b| a.spec.submitted.total_cmp(&b.spec.submitted))
        .map(|r| r.spec.group.clone());
    let in_group: Vec<_> = runs
        .iter()
        .filter(|r| Some(&r.spec.group) == group.as_ref())
        .cloned()
        .collect();
    let summaries = runs
        .into_iter()
        .map(|run| RunSummary {
            log_tail: run.run.log_tail(8),
            id: run.spec.id,
            group: run.spec.group,
            variant: run.spec.variant,
            seed: run.spec.seed,
            state: run.state,
            epoch: run.progress.epoch,
            epochs: run.progress.epochs,
            loss: run.progress.loss,
            dev_f1: run.progress.dev_f1,
            test_f1: run.progress.test.map(|t| t.f1),
            dir: run.run.files.dir,
        })
        .collect();
    Ok(JobsSnapshot {
        runs: summaries,
        group,
        table: rows(&in_group),
        skipped,
    })
}
