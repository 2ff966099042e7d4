//! `promptmner train --config FILE [--set key=value]...`: the training configuration.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::model::ModelConfig;

/// Backbones by store name or directory.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BackboneNames {
    pub text: String,
    pub clip: String,
}

/// Optimiser settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OptimConfig {
    /// Learning rate of the fine-tuned text encoder.
    pub lr_text: f64,
    /// Learning rate of the new layers (fusion, span head).
    pub lr_new: f64,
    /// Learning rate of the continuous prompt embeddings.
    pub lr_prompts: f64,
    pub weight_decay: f64,
    /// Share of the steps spent warming up linearly from 0.
    pub warmup: f64,
    /// Largest global gradient norm (0 = no clipping).
    pub clip_norm: f64,
    pub beta1: f64,
    pub beta2: f64,
    pub eps: f64,
}

impl Default for OptimConfig {
    fn default() -> Self {
        Self {
            lr_text: 5e-5,
            lr_new: 1e-3,
            lr_prompts: 1e-3,
            weight_decay: 0.01,
            warmup: 0.1,
            clip_norm: 1.0,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
        }
    }
}

fn default_epochs() -> usize {
    3
}
fn default_batch() -> usize {
    16
}
fn default_eval_batch() -> usize {
    32
}
fn default_seed() -> u64 {
    42
}
fn default_log_every() -> usize {
    10
}

/// Everything a training run needs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrainConfig {
    /// Dataset directory (train.txt, valid.txt, test.txt, images/).
    pub data: PathBuf,
    /// Images directory, instead of `data/images`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub images: Option<PathBuf>,
    /// Prompt vocabulary file.
    pub prompts: PathBuf,
    pub backbones: BackboneNames,
    #[serde(default)]
    pub model: ModelConfig,
    #[serde(default)]
    pub optim: OptimConfig,
    #[serde(default = "default_epochs")]
    pub epochs: usize,
    #[serde(default = "default_batch")]
    pub batch_size: usize,
    #[serde(default = "default_eval_batch")]
    pub eval_batch_size: usize,
    #[serde(default = "default_seed")]
    pub seed: u64,
    /// Steps between `step` events.
    #[serde(default = "default_log_every")]
    pub log_every: usize,
    /// Stop after this many training examples per epoch (0 = all); for quick runs.
    #[serde(default)]
    pub max_train_examples: usize,
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read {path}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("--set {0}: expected key=value (e.g. optim.lr_text=3e-5)")]
    BadSet(String),
    #[error("--set {key}: {message}")]
    SetPath { key: String, message: String },
    #[error("--set {sets}: {message}")]
    SetValues { sets: String, message: String },
    #[error("{path}: {key} = {value} is out of range: {expected}")]
    OutOfRange {
        path: PathBuf,
        key: &'static str,
        value: String,
        expected: &'static str,
    },
}

/// A setting outside the values that make sense: checked before anything is built, so
/// a typo cannot divide by zero or ask for terabytes.
struct Bound {
    key: &'static str,
    value: String,
    ok: bool,
    expected: &'static str,
}

fn count(key: &'static str, value: usize, min: usize, max: usize, expected: &'static str) -> Bound {
    Bound {
        key,
        value: value.to_string(),
        ok: (min..=max).contains(&value),
        expected,
    }
}

fn real(key: &'static str, value: f64, ok: bool, expected: &'static str) -> Bound {
    Bound {
        key,
        value: value.to_string(),
        ok: value.is_finite() && ok,
        expected,
    }
}

impl TrainConfig {
    /// Reads a TOML config and applies `key=value` overrides (dotted keys reach into
    /// tables; values are TOML, bare words are strings).
    pub fn load(path: &Path, overrides: &[String]) -> Result<Self, ConfigError> {
        let text = crate::util::read_text(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Self::parse(&text, path, overrides)
    }

    pub fn parse(text: &str, path: &Path, overrides: &[String]) -> Result<Self, ConfigError> {
        let parse_error = |message: String| ConfigError::Parse {
            path: path.to_path_buf(),
            message,
        };
        let mut table: toml::Table = text
            .parse()
            .map_err(|e: toml::de::Error| parse_error(e.to_string()))?;
        if overrides.is_empty() {
            let config: Self = toml::Value::Table(table)
                .try_into()
                .map_err(|e: toml::de::Error| parse_error(e.to_string()))?;
            config.check(path)?;
            return Ok(config);
        }
        // The file on its own first, so that what is wrong is blamed on the file or on
        // the --set values, whichever holds it.
        Self::parse(text, path, &[])?;
        for item in overrides {
            let (key, value) = item
                .split_once('=')
                .ok_or_else(|| ConfigError::BadSet(item.clone()))?;
            set_dotted(&mut table, key.trim(), parse_value(value.trim())).map_err(|message| {
                ConfigError::SetPath {
                    key: key.trim().to_string(),
                    message,
                }
            })?;
        }
        let set_error = |message: String| ConfigError::SetValues {
            sets: overrides.join(" "),
            message,
        };
        let config: Self = toml::Value::Table(table)
            .try_into()
            .map_err(|e: toml::de::Error| set_error(e.message().to_string()))?;
        config.check(path).map_err(|error| match error {
            ConfigError::OutOfRange {
                key,
                value,
                expected,
                ..
            } => set_error(format!("{key} = {value} is out of range: {expected}")),
            other => other,
        })?;
        Ok(config)
    }

    /// Every numeric setting within its range; `path` names where the config came from.
    pub fn check(&self, path: &Path) -> Result<(), ConfigError> {
        match self.bounds().into_iter().find(|bound| !bound.ok) {
            Some(bound) => Err(ConfigError::OutOfRange {
                path: path.to_path_buf(),
                key: bound.key,
                value: bound.value,
                expected: bound.expected,
            }),
            None => Ok(()),
        }
    }

    /// Each numeric setting against its range. The model's limits are far above any
    /// published setting (bert-base: 8 heads, 100 prompts, width 8, 128 pieces).
    fn bounds(&self) -> Vec<Bound> {
        let (model, optim) = (&self.model, &self.optim);
        vec![
            // Zero epochs train nothing and save no weights; a huge count overflows the
            // step count.
            count("epochs", self.epochs, 1, 100_000, "1 to 100000"),
            count("batch_size", self.batch_size, 1, 1 << 16, "1 to 65536"),
            count(
                "eval_batch_size",
                self.eval_batch_size,
                1,
                1 << 16,
                "1 to 65536",
            ),
            count("log_every", self.log_every, 1, usize::MAX, "at least 1"),
            count(
                "model.fusion_heads",
                model.fusion_heads,
                1,
                1024,
                "1 to 1024",
            ),
            count(
                "model.continuous_prompts",
                model.continuous_prompts,
                0,
                4096,
                "0 to 4096",
            ),
            count("model.span_width", model.span_width, 1, 64, "1 to 64 words"),
            count(
                "model.span_hidden",
                model.span_hidden,
                1,
                16384,
                "1 to 16384",
            ),
            count("model.max_pieces", model.max_pieces, 3, 8192, "3 to 8192"),
            real(
                "model.dropout",
                f64::from(model.dropout),
                (0.0..1.0).contains(&model.dropout),
                "0 ≤ p < 1",
            ),
            real(
                "optim.lr_text",
                optim.lr_text,
                optim.lr_text >= 0.0,
                "a rate ≥ 0",
            ),
            real(
                "optim.lr_new",
                optim.lr_new,
                optim.lr_new >= 0.0,
                "a rate ≥ 0",
            ),
            real(
                "optim.lr_prompts",
                optim.lr_prompts,
                optim.lr_prompts >= 0.0,
                "a rate ≥ 0",
            ),
            real(
                "optim.weight_decay",
                optim.weight_decay,
                optim.weight_decay >= 0.0,
                "≥ 0",
            ),
            real(
                "optim.warmup",
                optim.warmup,
                (0.0..=1.0).contains(&optim.warmup),
                "a share from 0 to 1",
            ),
            real(
                "optim.clip_norm",
                optim.clip_norm,
                optim.clip_norm >= 0.0,
                "≥ 0 (0 = no clipping)",
            ),
            real(
                "optim.beta1",
                optim.beta1,
                (0.0..1.0).contains(&optim.beta1),
                "0 ≤ β < 1",
            ),
            real(
                "optim.beta2",
                optim.beta2,
                (0.0..1.0).contains(&optim.beta2),
                "0 ≤ β < 1",
            ),
            real("optim.eps", optim.eps, optim.eps > 0.0, "> 0"),
        ]
    }

    // Each `expect` here states an invariant that holds by construction.
    #[allow(clippy::expect_used)]
    pub fn to_toml(&self) -> String {
        toml::to_string(self).expect("a training config always serialises")
    }
}

fn parse_value(text: &str) -> toml::Value {
    format!("v = {text}")
        .parse::<toml::Table>()
        .ok()
        .and_then(|mut t| t.remove("v"))
        .unwrap_or_else(|| toml::Value::String(text.to_string()))
}

fn set_dotted(table: &mut toml::Table, key: &str, value: toml::Value) -> Result<(), String> {
    let mut parts: Vec<&str> = key.split('.').collect();
    let last = parts.pop().filter(|k| !k.is_empty()).ok_or("empty key")?;
    let mut current = table;
    for part in parts {
        current = current
            .entry(part.to_string())
            .or_insert_with(|| toml::Value::Table(toml::Table::new()))
            .as_table_mut()
            .ok_or_else(|| format!("'{part}' is not a table"))?;
    }
    current.insert(last.to_string(), value);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const BASE: &str = r#"
data = "data/demo"
prompts = "prompts/demo.toml"
[backbones]
text = "tiny-bert"
clip = "tiny-clip"
"#;

    #[test]
    fn defaults_fill_the_rest() {
        let c = TrainConfig::parse(BASE, Path::new("c.toml"), &[]).unwrap();
        assert_eq!(c.epochs, 3);
        assert_eq!(c.optim.lr_text, 5e-5);
        assert_eq!(c.model.span_width, 8);
    }

    #[test]
    fn every_key_can_be_set() {
        let sets = [
            "optim.lr_text=3e-5",
            "epochs=7",
            "model.fusion=none",
            "data=other/dir",
            "backbones.text=/models/x",
            "model.continuous_prompts=2",
        ]
        .map(String::from);
        let c = TrainConfig::parse(BASE, Path::new("c.toml"), &sets).unwrap();
        assert_eq!(c.optim.lr_text, 3e-5);
        assert_eq!(c.epochs, 7);
        assert_eq!(c.model.fusion, crate::model::fusion::FusionMode::None);
        assert_eq!(c.data, PathBuf::from("other/dir"));
        assert_eq!(c.backbones.text, "/models/x");
        assert_eq!(c.model.continuous_prompts, 2);
        // Round trip through the checkpoint's config.toml.
        assert_eq!(
            TrainConfig::parse(&c.to_toml(), Path::new("c.toml"), &[]).unwrap(),
            c
        );
    }

    #[test]
    fn bad_keys_and_values_are_clear_errors() {
        let err =
            TrainConfig::parse(BASE, Path::new("c.toml"), &["optim.lr_txt=1".into()]).unwrap_err();
        assert!(err.to_string().contains("lr_txt"), "{err}");
        let err = TrainConfig::parse(BASE, Path::new("c.toml"), &["epochs".into()]).unwrap_err();
        assert!(matches!(err, ConfigError::BadSet(_)));
        let err =
            TrainConfig::parse(BASE, Path::new("c.toml"), &["epochs=many".into()]).unwrap_err();
        let message = err.to_string();
        assert!(
            message.starts_with("--set epochs=many: ") && !message.contains("c.toml"),
            "the --set value is wrong, not the file: {message}"
        );
        let broken = format!("epochs = 0\n{BASE}");
        let err = TrainConfig::parse(&broken, Path::new("c.toml"), &["seed=1".into()]).unwrap_err();
        assert!(err.to_string().starts_with("c.toml: epochs = 0"), "{err}");
    }

    #[test]
    fn settings_out_of_range_are_refused_by_key() {
        let refused = |set: &str| {
            let err = TrainConfig::parse(BASE, Path::new("c.toml"), &[set.into()]).unwrap_err();
            err.to_string()
        };
        for (set, key) in [
            ("epochs=0", "epochs"),
            ("epochs=9223372036854775807", "epochs"),
            ("batch_size=0", "batch_size"),
            ("log_every=0", "log_every"),
            ("model.fusion_heads=0", "model.fusion_heads"),
            ("model.span_hidden=100000000000", "model.span_hidden"),
            (
                "model.continuous_prompts=1000000",
                "model.continuous_prompts",
            ),
            ("model.span_width=0", "model.span_width"),
            ("model.dropout=1.0", "model.dropout"),
            ("optim.lr_text=nan", "optim.lr_text"),
            ("optim.warmup=-0.5", "optim.warmup"),
            ("optim.beta2=1", "optim.beta2"),
        ] {
            let message = refused(set);
            assert!(
                message.starts_with(&format!("--set {set}: {key} = "))
                    && message.contains("out of range"),
                "{set}: {message}"
            );
        }
        let at_the_edges = [
            "model.continuous_prompts=0",
            "model.span_width=64",
            "model.dropout=0",
            "optim.clip_norm=0",
        ];
        let overrides: Vec<String> = at_the_edges.iter().map(|s| s.to_string()).collect();
        TrainConfig::parse(BASE, Path::new("c.toml"), &overrides).unwrap();
    }
}
