//! The one place that names a run directory's files (DESIGN §3): what training writes
//! (the checkpoint, its logs, the resumable state) and what the jobs add around it (the
//! spec, the status, the given config). Every module asks here for a path.

use std::path::{Path, PathBuf};

/// A run directory and the names of its files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunDir {
    pub dir: PathBuf,
}

impl RunDir {
    /// The process output's name relative to the run folder (Slurm's script names it
    /// so).
    pub const OUTPUT_LOG: &str = "output.log";
    /// A fresh `tiny` text encoder's folder, as the run's config records it (relative).
    pub const TEXT_BACKBONE: &str = "text";

    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self { dir: dir.into() }
    }

    pub fn path(&self) -> &Path {
        &self.dir
    }

    // The checkpoint, written by training.

    /// The config the run was trained with (backbones as the run resolved them).
    pub fn config(&self) -> PathBuf {
        self.dir.join("config.toml")
    }
    pub fn weights(&self) -> PathBuf {
        self.dir.join("model.safetensors")
    }
    pub fn prompts(&self) -> PathBuf {
        self.dir.join("prompts.toml")
    }
    /// A fresh `tiny` text encoder, written into the run that asked for one.
    pub fn text_backbone(&self) -> PathBuf {
        self.dir.join(Self::TEXT_BACKBONE)
    }
    pub fn metrics(&self) -> PathBuf {
        self.dir.join("metrics.json")
    }
    /// One JSON event a line, for other processes.
    pub fn events(&self) -> PathBuf {
        self.dir.join("events.jsonl")
    }
    /// The best checkpoint's predictions on the test split (CoNLL, token-aligned).
    pub fn test_predictions(&self) -> PathBuf {
        self.dir.join("test-predictions.txt")
    }
    /// The same events for people.
    pub fn train_log(&self) -> PathBuf {
        self.dir.join("train.log")
    }

    // The resumable state: after the last completed epoch, or between two steps of an
    // epoch when the run was stopped by a signal. `state` is a link to the folder of the
    // latest complete set (see `train::state`).

    pub fn state_dir(&self) -> PathBuf {
        self.dir.join("state")
    }
    pub fn state_weights(&self) -> PathBuf {
        self.state_dir().join(Self::STATE_WEIGHTS)
    }
    pub fn state_optimizer(&self) -> PathBuf {
        self.state_dir().join(Self::STATE_OPTIMIZER)
    }
    pub fn state_metrics(&self) -> PathBuf {
        self.state_dir().join(Self::STATE_METRICS)
    }
    /// Where in its epoch the run stopped; absent when it stopped between epochs.
    pub fn state_position(&self) -> PathBuf {
        self.state_dir().join(Self::STATE_POSITION)
    }
    pub const STATE_WEIGHTS: &str = "weights.safetensors";
    pub const STATE_OPTIMIZER: &str = "optimizer.safetensors";
    pub const STATE_METRICS: &str = "metrics.json";
    pub const STATE_POSITION: &str = "position.json";

    // What the jobs write around a training.

    /// What was asked for, written once at submission; a folder without it is no run.
    pub fn job_spec(&self) -> PathBuf {
        self.dir.join("job.toml")
    }
    /// What is known now, rewritten as the run moves on.
    pub fn status_file(&self) -> PathBuf {
        self.dir.join("status.json")
    }
    /// The config training is given (it writes [`RunDir::config`] itself).
    pub fn train_config(&self) -> PathBuf {
        self.dir.join("train-config.toml")
    }
    /// The vocabulary of a `current-vocabulary` run, as it was submitted.
    pub fn submitted_vocabulary(&self) -> PathBuf {
        self.dir.join("vocabulary.toml")
    }
    /// What the training process printed (errors before train.log exists).
    pub fn output_log(&self) -> PathBuf {
        self.dir.join(Self::OUTPUT_LOG)
    }
    /// Slurm's batch script.
    /// The exit status of a Slurm job's trainer, written by its batch script (Slurm
    /// keeps none without accounting).
    pub fn job_exit(&self) -> PathBuf {
        self.dir.join("job.exit")
    }
    pub fn batch_script(&self) -> PathBuf {
        self.dir.join("job.sbatch")
    }
    /// Present while a cancellation is asked for.
    pub fn cancel_marker(&self) -> PathBuf {
        self.dir.join("cancel")
    }
}
