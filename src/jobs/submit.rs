//! Submitting runs: the base config from a checkpoint or a config file, one run
//! directory per variant and seed, each with its own complete config.

use std::path::{Path, PathBuf};

use crate::jobs::registry::{
    BackendKind, RegisteredRun, Registry, RegistryError, RunSpec, RunStatus, State, now,
};
use crate::jobs::variant::Variant;
use crate::prompts::Vocabulary;
use crate::run::events::{Event, read_events};
use crate::run::{RunDir, TrainConfig};

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
    #[error("cannot write {path}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(transparent)]
    Vocabulary(#[from] crate::prompts::VocabularyError),
    #[error("--seeds {0}: between 1 and {MAX_SEEDS} seeds per variant")]
    Seeds(usize),
    #[error("--name {0:?}: a label without control characters (newline, ESC, ...)")]
    Name(String),
    #[error(
        "{what} {path} is found neither beside the checkpoint {checkpoint} nor in the current folder; give it with --set {key}=PATH"
    )]
    Missing {
        what: &'static str,
        key: &'static str,
        path: PathBuf,
        checkpoint: PathBuf,
    },
    #[error("variant {variant}")]
    Variant {
        variant: String,
        source: crate::run::config::ConfigError,
    },
}

/// The most seeds one submission makes per variant.
pub(crate) const MAX_SEEDS: usize = 100;

/// The training config a checkpoint was trained from: the `started` event's config (the
/// one given, with its backbone names), else its config.toml; or a config file itself.
/// `--set` overrides apply on top. Relative paths come back absolute: a config file's
/// against the current folder (as `train` reads them); a checkpoint's against the
/// checkpoint first, so that a copy of it trains with its own files.
pub(crate) fn base_config(source: &Path, overrides: &[String]) -> Result<TrainConfig, SubmitError> {
    let cwd = std::env::current_dir().unwrap_or_default();
    if source.is_file() {
        let mut config = TrainConfig::load(source, overrides)?;
        absolutize(&mut config, &cwd);
        return Ok(config);
    }
    let checkpoint = RunDir::new(source);
    let saved_path = checkpoint.config();
    if !saved_path.is_file() {
        return Err(SubmitError::NoSource(source.to_path_buf()));
    }
    let saved = TrainConfig::load(&saved_path, overrides)?;
    let started = read_events(&checkpoint.events()).ok().and_then(|log| {
        log.events.into_iter().find_map(|e| match e.event {
            Event::Started { config, .. } => Some(*config),
            _ => None,
        })
    });
    let mut config = match started {
        Some(config) => {
            let text = config.to_toml();
            TrainConfig::parse(&text, &checkpoint.events(), overrides)?
        }
        None => saved.clone(),
    };
    let set = |key: &str| overrides.iter().any(|o| o.trim_start().starts_with(key));
    // The checkpoint's own copies of its backbones (recorded relative to it), unless a
    // fresh `tiny` encoder is asked for or --set names another.
    for (name, own, key) in [
        (
            &mut config.backbones.text,
            &saved.backbones.text,
            "backbones.text",
        ),
        (
            &mut config.backbones.clip,
            &saved.backbones.clip,
            "backbones.clip",
        ),
    ] {
        let copy = source.join(own);
        if name != "tiny" && !set(key) && copy.is_dir() {
            *name = copy.to_string_lossy().into_owned();
        }
    }
    if !set("prompts") && checkpoint.prompts().is_file() {
        config.prompts = checkpoint.prompts();
    }
    absolutize(&mut config, source);
    absolutize(&mut config, &cwd);
    for (what, key, path) in [
        ("the data folder", "data", &config.data),
        ("the vocabulary", "prompts", &config.prompts),
    ] {
        if !path.exists() {
            return Err(SubmitError::Missing {
                what,
                key,
                path: path.clone(),
                checkpoint: source.to_path_buf(),
            });
        }
    }
    Ok(config)
}

/// Relative paths made absolute against `dir` where they exist there, so that a run
/// started from another directory (a runner, a Slurm node) finds them.
fn absolutize(config: &mut TrainConfig, dir: &Path) {
    let dir = std::path::absolute(dir).unwrap_or_else(|_| dir.to_path_buf());
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

/// Writes one queued run directory per variant and seed; returns them. Everything is
/// checked before the first folder is made, and a folder whose writing fails is
/// removed: no half-made run is left behind.
pub(crate) fn submit(
    registry: &Registry,
    submission: &Submission,
) -> Result<Vec<RegisteredRun>, SubmitError> {
    if !(1..=MAX_SEEDS).contains(&submission.seeds) {
        return Err(SubmitError::Seeds(submission.seeds));
    }
    if let Some(name) = submission
        .name
        .as_deref()
        .filter(|n| n.chars().any(char::is_control))
    {
        return Err(SubmitError::Name(name.to_string()));
    }
    let needs_vocabulary = submission.variants.contains(&Variant::CurrentVocabulary);
    if needs_vocabulary && submission.vocabulary.is_none() {
        return Err(SubmitError::NoVocabulary);
    }
    let base = base_config(&submission.source, &submission.overrides)?;
    let mut configs = Vec::new();
    for &variant in &submission.variants {
        let config = variant.apply(&base);
        config
            .check(&submission.source)
            .map_err(|source| SubmitError::Variant {
                variant: variant.to_string(),
                source,
            })?;
        configs.push((variant, config));
    }
    let group = format!(
        "{}-{}",
        submission.name.as_deref().unwrap_or("group"),
        now() as u64
    );
    let mut runs = Vec::new();
    for (variant, config) in configs {
        for i in 0..submission.seeds {
            let mut config = config.clone();
            config.seed = base.seed.wrapping_add(i as u64);
            let (id, run) = registry.allocate(&format!("{variant}-s{}", config.seed))?;
            let spec = RunSpec {
                id,
                group: group.clone(),
                variant: variant.to_string(),
                seed: config.seed,
                backend: submission.backend,
                source: std::path::absolute(&submission.source)
                    .unwrap_or_else(|_| submission.source.clone()),
                submitted: now(),
            };
            if let Err(e) = write_run(&run, &spec, config, submission) {
                let _ = std::fs::remove_dir_all(run.dir());
                return Err(e);
            }
            runs.push(run);
        }
    }
    Ok(runs)
}

/// The files of one queued run; the spec last: a directory without job.toml is not a
/// run yet.
fn write_run(
    run: &RegisteredRun,
    spec: &RunSpec,
    mut config: TrainConfig,
    submission: &Submission,
) -> Result<(), SubmitError> {
    if spec.variant == Variant::CurrentVocabulary.to_string()
        && let Some(vocabulary) = &submission.vocabulary
    {
        let path = run.files.submitted_vocabulary();
        vocabulary.save(&path)?;
        config.prompts = path;
    }
    write(&run.files.train_config(), config.to_toml().as_bytes())?;
    run.write_status(&RunStatus::new(State::Queued))?;
    let spec_text = toml::to_string(spec).unwrap_or_default();
    write(&run.files.job_spec(), spec_text.as_bytes())
}

fn write(path: &Path, bytes: &[u8]) -> Result<(), SubmitError> {
    crate::util::write_atomic(path, bytes).map_err(|source| SubmitError::Write {
        path: path.to_path_buf(),
        source,
    })
}
