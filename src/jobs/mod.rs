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

/// Where runs execute: submit a queued run, learn its state, cancel it.
pub trait Backend {
    fn submit(&self, run: &RegisteredRun) -> Result<(), JobsError>;
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
    fn submit(&self, _run: &RegisteredRun) -> Result<(), JobsError> {
        // The run is queued on disk already; the runner picks it up.
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

/// One sbatch job per run.
pub struct SlurmBackend {
    pub program: PathBuf,
    pub config: SlurmConfig,
}

impl Backend for SlurmBackend {
    fn submit(&self, run: &RegisteredRun) -> Result<(), JobsError> {
        // The group carries the user's label: quoted in the script like every value.
        let spec = run.spec()?;
        let name = format!("promptmner-{}-{}", spec.group, spec.id);
        slurm::submit(run, &name, &self.program, &self.config)?;
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
            program: program.to_path_buf(),
            config: slurm.clone(),
        }),
    }
}
