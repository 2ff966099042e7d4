//! A run directory (DESIGN §3): the checkpoint (`config.toml`, `model.safetensors`,
//! `prompts.toml`), `metrics.json`, `events.jsonl` and `train.log`, and the resumable
//! `state/`. Training writes it; evaluation, the engine and the jobs read it here,
//! without the trainer.

pub mod config;
pub mod dir;
pub mod events;

use std::path::{Path, PathBuf};

use candle_core::Device;
use serde::{Deserialize, Serialize};

use crate::eval::score::Prf;
use crate::model::store::ModelStore;
use crate::model::{Backbones, ModelError, PromptMner};
use crate::prompts::Vocabulary;
pub use config::TrainConfig;
pub use dir::RunDir;

/// Errors reading a run directory.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error(transparent)]
    Config(#[from] config::ConfigError),
    #[error(transparent)]
    Vocabulary(#[from] crate::prompts::VocabularyError),
    #[error(transparent)]
    Model(#[from] ModelError),
    #[error("cannot read {path}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path} is not a metrics file: {message}")]
    BadMetrics { path: PathBuf, message: String },
    #[error(
        "{path} asks for {requested} continuous prompts; the checkpoint trained {trained}: more needs a retrain (promptmner runs submit --variant continuous-{requested}), fewer can be set with `continuous = N`"
    )]
    RetrainNeeded {
        path: PathBuf,
        requested: usize,
        trained: usize,
    },
}

/// Scores of one evaluation.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Scores {
    pub precision: f64,
    pub recall: f64,
    pub f1: f64,
}

impl From<Prf> for Scores {
    fn from(p: Prf) -> Self {
        Self {
            precision: p.precision,
            recall: p.recall,
            f1: p.f1,
        }
    }
}

/// One epoch's record in `metrics.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EpochMetrics {
    pub epoch: usize,
    pub train_loss: f64,
    pub seconds: f64,
    pub examples_per_second: f64,
    pub dev: Scores,
}

/// `metrics.json`: per-epoch dev scores, the best epoch and its test scores.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Metrics {
    pub epochs: Vec<EpochMetrics>,
    pub best_epoch: Option<usize>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub test: Option<Scores>,
}

impl Metrics {
    /// Reads a `metrics.json`.
    pub fn load(path: &Path) -> Result<Self, RunError> {
        let text = crate::util::read_text(path).map_err(|source| RunError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        serde_json::from_str(&text).map_err(|e| RunError::BadMetrics {
            path: path.to_path_buf(),
            message: e.to_string(),
        })
    }

    pub fn best_dev_f1(&self) -> f64 {
        self.best_epoch
            .and_then(|b| self.epochs.iter().find(|e| e.epoch == b))
            .map_or(f64::NEG_INFINITY, |e| e.dev.f1)
    }
}

/// Resolves backbone names: a relative path under `base` (a checkpoint directory), an
/// existing path, or a name in the model store.
pub fn resolve_backbones(
    names: &config::BackboneNames,
    base: Option<&Path>,
) -> Result<Backbones, ModelError> {
    let store = ModelStore::default_location();
    let resolve = |name: &str| -> Result<PathBuf, ModelError> {
        if let Some(dir) = base.map(|b| b.join(name)).filter(|d| d.is_dir()) {
            return Ok(store.resolve(dir.to_str().unwrap_or(name))?);
        }
        Ok(store.resolve(name)?)
    };
    Ok(Backbones {
        text: resolve(&names.text)?,
        clip: resolve(&names.clip)?,
    })
}

/// A trained model loaded from a checkpoint directory.
pub struct Checkpoint {
    pub model: PromptMner,
    pub vocabulary: Vocabulary,
    pub config: TrainConfig,
}

impl Checkpoint {
    /// Loads `dir` (config.toml, model.safetensors, prompts.toml); backbones named in the
    /// config resolve under `dir` first, then as paths or store names.
    pub fn load(dir: &Path, device: &Device) -> Result<Self, RunError> {
        let run = RunDir::new(dir);
        let config = TrainConfig::load(&run.config(), &[])?;
        let backbones = resolve_backbones(&config.backbones, Some(dir))?;
        let mut model = PromptMner::new(&backbones, &config.model, device)?;
        model.load_weights(&run.weights())?;
        let vocabulary = Vocabulary::load(&run.prompts())?;
        let trained = config.model.continuous_prompts;
        if vocabulary.continuous > trained {
            return Err(RunError::RetrainNeeded {
                path: run.prompts(),
                requested: vocabulary.continuous,
                trained,
            });
        }
        Ok(Self {
            model,
            vocabulary,
            config,
        })
    }
}
