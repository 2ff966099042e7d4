//! Ablation runs (DESIGN §7, jobs ↔ train is a process boundary): variants derived from
//! a checkpoint's config, a registry of run directories, and two backends behind one
//! trait: local child processes under a detached runner, and Slurm.

pub(crate) mod local;
pub mod registry;
pub(crate) mod slurm;
pub(crate) mod submit;
pub(crate) mod table;
pub(crate) mod variant;
pub(crate) mod watch;

use std::path::{Path, PathBuf};

use registry::{BackendKind, RegisteredRun, RegistryError, State, view};
pub use slurm::SlurmConfig;

#[derive(Debug, thiserror::Error)]
pub enum JobsError {
    #[error(transparent)]
    Registry(#[from] RegistryError),
    #[error(transparent)]
    Slurm(#[from] slurm::SlurmError),
    #[error(transparent)]
    Submit(#[from] submit::SubmitError),
}

/// Where runs execute: submit queued runs (one submission's together), learn a run's
/// state, cancel it.
pub trait Backend {
    fn submit(&self, runs: &[RegisteredRun]) -> Result<(), JobsError>;
    fn poll(&self, run: &RegisteredRun) -> Result<State, JobsError>;
    fn cancel(&self, run: &RegisteredRun) -> Result<(), JobsError>;
}

/// Child processes of this machine, `limit` at a time, under a detached runner.
pub struct LocalBackend {
    pub root: PathBuf,
    /// This executable (the runner and the trainings run it).
    pub program: PathBuf,
    pub limit: usize,
}

impl Backend for LocalBackend {
    fn submit(&self, _runs: &[RegisteredRun]) -> Result<(), JobsError> {
        // The runs are queued on disk already; the runner picks them up.
        local::ensure_runner(&self.root, &self.program, self.limit)?;
        Ok(())
    }

    fn poll(&self, run: &RegisteredRun) -> Result<State, JobsError> {
        Ok(view(run.clone())?.state)
    }

    fn cancel(&self, run: &RegisteredRun) -> Result<(), JobsError> {
        Ok(local::cancel(run)?)
    }
}

/// An sbatch job for a single run; a job array, one task a run, for a submission of
/// several.
pub struct SlurmBackend {
    pub root: PathBuf,
    pub program: PathBuf,
    pub config: SlurmConfig,
}

impl Backend for SlurmBackend {
    fn submit(&self, runs: &[RegisteredRun]) -> Result<(), JobsError> {
        // The group carries the user's label: reduced to safe characters in the script.
        if let [run] = runs {
            let spec = run.spec()?;
            let name = format!("promptmner-{}-{}", spec.group, spec.id);
            slurm::submit(run, &name, &self.program, &self.config)?;
        } else if let Some(first) = runs.first() {
            let name = format!("promptmner-{}", first.spec()?.group);
            slurm::submit_array(&self.root, runs, &name, &self.program, &self.config)?;
        }
        Ok(())
    }

    fn poll(&self, run: &RegisteredRun) -> Result<State, JobsError> {
        Ok(slurm::poll(run)?)
    }

    fn cancel(&self, run: &RegisteredRun) -> Result<(), JobsError> {
        Ok(slurm::cancel(run)?)
    }
}

/// The backend a run was submitted to.
pub fn backend_for(
    kind: BackendKind,
    root: &Path,
    program: &Path,
    slurm: &SlurmConfig,
) -> Box<dyn Backend> {
    match kind {
        BackendKind::Local => Box::new(LocalBackend {
            root: root.to_path_buf(),
            program: program.to_path_buf(),
            limit: 1,
        }),
        BackendKind::Slurm => Box::new(SlurmBackend {
            root: root.to_path_buf(),
            program: program.to_path_buf(),
            config: slurm.clone(),
        }),
    }
}
