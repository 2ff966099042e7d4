//! The registry as plain values for a live view (the workbench's jobs panel reads one
//! of these every second from a background thread).

use std::path::{Path, PathBuf};

use crate::jobs::registry::{BackendKind, EpochPoint, Registry, RegistryError, RunView, State};
use crate::jobs::table::{Row, rows, with_test_predictions};

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
    /// Training loss and dev F1 per completed epoch.
    pub curve: Vec<EpochPoint>,
    pub best_epoch: Option<usize>,
}

/// Every run, the results table of the newest group, and what could not be read.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct JobsSnapshot {
    pub runs: Vec<RunSummary>,
    pub group: Option<String>,
    pub table: Vec<Row>,
    pub skipped: Vec<String>,
}

/// What the newest group's test predictions add to its table (p-values, per-type F1),
/// kept while its finished runs stay the same: they read every finished run's
/// predictions, too much to do every second.
#[derive(Debug, Default)]
pub(crate) struct TestDetails {
    /// The finished runs they were computed from.
    finished: Vec<String>,
    by_variant: Vec<Row>,
}

impl TestDetails {
    /// Fills the rows' details, computing them again only when a run has finished.
    fn fill(&mut self, rows: &mut [Row], runs: &[RunView]) {
        let finished: Vec<String> = runs
            .iter()
            .filter(|r| r.state == State::Finished)
            .map(|r| r.spec.id.clone())
            .collect();
        if finished != self.finished || self.by_variant.len() != rows.len() {
            with_test_predictions(rows, runs);
            self.finished = finished;
            self.by_variant = rows.to_vec();
            return;
        }
        for row in rows {
            if let Some(known) = self.by_variant.iter().find(|r| r.variant == row.variant) {
                row.p_value = known.p_value;
                row.per_type_f1 = known.per_type_f1.clone();
            }
        }
    }
}

/// Reads the registry; restarts the local runner when runs are queued and none is alive
/// (the queue survives the workbench and the runner).
pub(crate) fn snapshot(
    root: &Path,
    program: &Path,
    details: &mut TestDetails,
) -> Result<JobsSnapshot, RegistryError> {
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
            curve: run.progress.curve,
            best_epoch: run.progress.best_epoch,
        })
        .collect();
    let mut table = rows(&in_group);
    details.fill(&mut table, &in_group);
    Ok(JobsSnapshot {
        runs: summaries,
        group,
        table,
        skipped,
    })
}
