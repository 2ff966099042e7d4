//! The Slurm backend: one sbatch script per run (resources from the config), status
//! from `squeue` (and the run's events once the job has left the queue), cancel with
//! `scancel`. Every value in a script is shell-quoted; commands get arguments, never a
//! shell line.

use std::path::Path;
use std::process::Command;

use serde::{Deserialize, Serialize};

use crate::jobs::registry::{RegistryError, RunDir, RunStatus, State, view};

/// Resources asked of Slurm for each run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SlurmConfig {
    pub partition: Option<String>,
    pub gpus: usize,
    pub cpus: usize,
    /// Memory, in Slurm's notation (e.g. 16G).
    pub memory: String,
    /// Time limit, in Slurm's notation (e.g. 04:00:00).
    pub time: String,
}

impl Default for SlurmConfig {
    fn default() -> Self {
        Self {
            partition: None,
            gpus: 0,
            cpus: 2,
            memory: "8G".into(),
            time: "04:00:00".into(),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SlurmError {
    #[error(transparent)]
    Registry(#[from] RegistryError),
    #[error("cannot run {command}: {source} (is Slurm installed and on PATH?)")]
    Spawn {
        command: &'static str,
        source: std::io::Error,
    },
    #[error("{command} failed: {stderr}")]
    Failed {
        command: &'static str,
        stderr: String,
    },
    #[error("cannot write {path}: {source}")]
    Write {
        path: std::path::PathBuf,
        source: std::io::Error,
    },
}

fn quote(text: &str) -> String {
    shlex::try_quote(text).map_or_else(
        // Only a NUL byte cannot be quoted; no path or name here has one.
        |_| "''".to_string(),
        |quoted| quoted.into_owned(),
    )
}

/// The batch script of one run.
pub(crate) fn script(run: &RunDir, name: &str, program: &Path, config: &SlurmConfig) -> String {
    let dir = run.dir.to_string_lossy();
    let mut lines = vec![
        "#!/bin/bash".to_string(),
        format!("#SBATCH --job-name={}", quote(name)),
        format!(
            "#SBATCH --output={}",
            quote(&run.output_path().to_string_lossy())
        ),
        format!("#SBATCH --chdir={}", quote(&dir)),
        format!("#SBATCH --cpus-per-task={}", config.cpus),
        format!("#SBATCH --mem={}", quote(&config.memory)),
        format!("#SBATCH --time={}", quote(&config.time)),
    ];
    if let Some(partition) = &config.partition {
        lines.push(format!("#SBATCH --partition={}", quote(partition)));
    }
    if config.gpus > 0 {
        lines.push(format!("#SBATCH --gpus={}", config.gpus));
    }
    lines.push(format!(
        "exec {} train --config {} --out {}",
        quote(&program.to_string_lossy()),
        quote(&run.config_path().to_string_lossy()),
        quote(&dir)
    ));
    lines.join("\n") + "\n"
}

fn run_command(command: &'static str, args: &[&str]) -> Result<String, SlurmError> {
    let out = Command::new(command)
        .args(args)
        .output()
        .map_err(|source| SlurmError::Spawn { command, source })?;
    if !out.status.success() {
        return Err(SlurmError::Failed {
            command,
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        });
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// Writes the script and submits it; the run is queued with its Slurm job id.
pub(crate) fn submit(
    run: &RunDir,
    name: &str,
    program: &Path,
    config: &SlurmConfig,
) -> Result<String, SlurmError> {
    let path = run.dir.join("job.sbatch");
    crate::util::write_atomic(&path, script(run, name, program, config).as_bytes()).map_err(
        |source| SlurmError::Write {
            path: path.clone(),
            source,
        },
    )?;
    let path_text = path.to_string_lossy();
    let out = run_command("sbatch", &["--parsable", &path_text])?;
    // --parsable prints "id" or "id;cluster".
    let job = out.split(';').next().unwrap_or_default().to_string();
    let mut status = RunStatus::new(State::Queued);
    status.slurm_job = Some(job.clone());
    run.write_status(&status)?;
    Ok(job)
}

/// Asks Slurm where the run's job is and records it; once the job has left the queue,
/// its events decide (finished, failed) or it was interrupted.
pub(crate) fn poll(run: &RunDir) -> Result<State, SlurmError> {
    let current = view(run.clone())?;
    let Some(job) = current.status.slurm_job.clone() else {
        return Ok(current.state);
    };
    if current.state.is_final() {
        return Ok(current.state);
    }
    let queue_state = run_command("squeue", &["-h", "-j", &job, "-o", "%T"]).unwrap_or_default();
    let state = match queue_state.as_str() {
        "PENDING" | "CONFIGURING" => State::Queued,
        "RUNNING" | "COMPLETING" | "SUSPENDED" => State::Running,
        _ if current.progress.finished => State::Finished,
        _ if current.progress.failed.is_some() => State::Failed,
        _ if run.cancel_marker().exists() => State::Cancelled,
        _ => State::Interrupted,
    };
    if state != current.status.state {
        let mut status = RunStatus::new(state);
        status.slurm_job = Some(job);
        run.write_status(&status)?;
    }
    Ok(state)
}

/// Cancels the run's job.
pub(crate) fn cancel(run: &RunDir) -> Result<(), SlurmError> {
    let current = view(run.clone())?;
    if let Some(job) = &current.status.slurm_job {
        std::fs::write(run.cancel_marker(), b"").map_err(|source| SlurmError::Write {
            path: run.cancel_marker(),
            source,
        })?;
        run_command("scancel", &[job])?;
    }
    Ok(())
}
