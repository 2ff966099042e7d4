//! Submitting runs: the base config from a checkpoint or a config file, one run
//! directory per variant and seed, each with its own complete config.

use std::path::{Path, PathBuf};

use crate::jobs::registry::{
    BackendKind, Registry, RegistryError, RunDir, RunSpec, RunStatus, State, now,
};
use crate::jobs::variant::Variant;
use crate::prompts::Vocabulary;
use crate::run::TrainConfig;
use crate::run::events::{Event, read_events};

#[derive(Debug, thiserror::Error)]
pub enum SubmitError {
    #[error(transparent)]
    Registry(#[from] RegistryError),
    #[error(transparent)]
    Config(#[from] crate::run::config::ConfigError),
    #[error("{0}: neither a checkpoint directory (with config.toml) nor a config file")]
    NoSource(PathBuf),
    #[error("the variant current-vocabulary needs a vocabulary (the workbench's, or --prompts)")]
    NoVocabulary,
    #[error("cannot write {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(transparent)]
    Vocabulary(#[from] crate::prompts::VocabularyError),
}

/// The training config a checkpoint was trained from: the `started` event's config (the
/// one given, with its backbone names), else its config.toml; or a config file itself.
/// `--set` overrides apply on top.
pub(crate) fn base_config(source: &Path, overrides: &[String]) -> Result<TrainConfig, SubmitError> {
    if source.is_file() {
        return Ok(TrainConfig::load(source, overrides)?);
    }
    if !source.join("config.toml").is_file() {
        return Err(SubmitError::NoSource(source.to_path_buf()));
    }
    let started = read_events(&source.join("events.jsonl"))
        .ok()
        .and_then(|log| {
            log.events.into_iter().find_map(|e| match e.event {
                Event::Started { config, .. } => Some(*config),
                _ => None,
            })
        });
    let config = match started {
        Some(config) => {
            let text = config.to_toml();
            TrainConfig::parse(&text, &source.join("events.jsonl"), overrides)?
        }
        None => TrainConfig::load(&source.join("config.toml"), overrides)?,
    };
    Ok(config)
}

/// Relative paths made absolute against `dir` where they exist there, so that a run
/// started from another directory (a runner, a Slurm node) finds them.
pub(crate) fn absolutize(config: &mut TrainConfig, dir: &Path) {
    let fix = |path: &mut PathBuf| {
        if path.is_relative() && dir.join(&*path).exists() {
            *path = dir.join(&*path);
        }
    };
    fix(&mut config.data);
    fix(&mut config.prompts);
    if let Some(images) = &mut config.images {
        fix(images);
    }
    for name in [&mut config.backbones.text, &mut config.backbones.clip] {
        let mut path = PathBuf::from(&*name);
        fix(&mut path);
        *name = path.to_string_lossy().into_owned();
    }
}

/// What one submission asks for.
#[derive(Debug, Clone)]
pub(crate) struct Submission {
    pub source: PathBuf,
    pub variants: Vec<Variant>,
    /// Seeds per variant: base seed, base + 1, ...
    pub seeds: usize,
    pub overrides: Vec<String>,
    pub backend: BackendKind,
    /// The vocabulary of `current-vocabulary` runs.
    pub vocabulary: Option<Vocabulary>,
    /// A label for the group (free text: it never reaches a shell).
    pub name: Option<String>,
}

/// Writes one queued run directory per variant and seed; returns them.
pub(crate) fn submit(
    registry: &Registry,
    submission: &Submission,
) -> Result<Vec<RunDir>, SubmitError> {
    let mut base = base_config(&submission.source, &submission.overrides)?;
    let cwd = std::env::current_dir().unwrap_or_default();
    absolutize(&mut base, &cwd);
    let group = format!(
        "{}-{}",
        submission.name.as_deref().unwrap_or("group"),
        now() as u64
    );
    let mut runs = Vec::new();
    for &variant in &submission.variants {
        for i in 0..submission.seeds.max(1) {
            let seed = base.seed + i as u64;
            let (id, run) = registry.allocate(&format!("{variant}-s{seed}"))?;
            let mut config = variant.apply(&base);
            config.seed = seed;
            if variant == Variant::CurrentVocabulary {
                let vocabulary = submission
                    .vocabulary
                    .as_ref()
                    .ok_or(SubmitError::NoVocabulary)?;
                let path = run.dir.join("vocabulary.toml");
                vocabulary.save(&path)?;
                config.prompts = path;
            }
            write(&run.config_path(), config.to_toml().as_bytes())?;
            let spec = RunSpec {
                id,
                group: group.clone(),
                variant: variant.to_string(),
                seed,
                backend: submission.backend,
                source: submission.source.clone(),
                submitted: now(),
            };
            let spec_text = toml::to_string(&spec).unwrap_or_default();
            run.write_status(&RunStatus::new(State::Queued))?;
            // The spec last: a directory without job.toml is not a run yet.
            write(&run.spec_path(), spec_text.as_bytes())?;
            runs.push(run);
        }
    }
    Ok(runs)
}

fn write(path: &Path, bytes: &[u8]) -> Result<(), SubmitError> {
    crate::util::write_atomic(path, bytes).map_err(|source| SubmitError::Write {
        path: path.to_path_buf(),
        source,
    })
}
