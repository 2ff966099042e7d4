//! Backbone `config.json` files checked before anything is allocated: each field
//! against its range, the relations between fields (heads divide the width, a patch
//! fits the image), and the memory the weights would take against what the machine
//! has. A config from elsewhere cannot then divide by zero, abort on allocation or
//! quietly change the scores.

use std::path::Path;

use super::ModelError;

/// The first failed rule of one config file.
pub(crate) struct Checks<'a> {
    path: &'a Path,
    failure: Option<String>,
}

impl<'a> Checks<'a> {
    pub(crate) fn new(path: &'a Path) -> Self {
        Self {
            path,
            failure: None,
        }
    }

    /// `key` within `min..=max`.
    pub(crate) fn range(mut self, key: &str, value: usize, min: usize, max: usize) -> Self {
        if self.failure.is_none() && !(min..=max).contains(&value) {
            self.failure = Some(format!("{key} = {value} is out of range: {min} to {max}"));
        }
        self
    }

    /// A real `key` inside `(low, high)` (`low` itself allowed when `low_inclusive`).
    pub(crate) fn real(
        mut self,
        key: &str,
        value: f64,
        low: f64,
        high: f64,
        low_inclusive: bool,
    ) -> Self {
        let above = if low_inclusive {
            value >= low
        } else {
            value > low
        };
        if self.failure.is_none() && !(above && value < high) {
            let open = if low_inclusive { "[" } else { "(" };
            self.failure = Some(format!(
                "{key} = {value} is out of range: {open}{low}, {high})"
            ));
        }
        self
    }

    /// A relation between fields; `rule` says it in words.
    pub(crate) fn holds(mut self, ok: bool, rule: impl FnOnce() -> String) -> Self {
        if self.failure.is_none() && !ok {
            self.failure = Some(rule());
        }
        self
    }

    /// The weights of `parameters` f32 values fit in the memory this machine has.
    pub(crate) fn fits(mut self, parameters: u128) -> Self {
        let needed = parameters.saturating_mul(4);
        let available = available_memory();
        if self.failure.is_none() && needed > available {
            self.failure = Some(format!(
                "its weights would take about {} GB, more than the {} GB this machine has available",
                gigabytes(needed),
                gigabytes(available)
            ));
        }
        self
    }

    pub(crate) fn done(self) -> Result<(), ModelError> {
        match self.failure {
            None => Ok(()),
            Some(message) => Err(ModelError::Config {
                path: self.path.to_path_buf(),
                message: format!("{message}; fix the backbone's config.json or fetch it again"),
            }),
        }
    }
}

fn gigabytes(bytes: u128) -> String {
    format!("{:.1}", bytes as f64 / 1e9)
}

/// `MemAvailable` of /proc/meminfo; 64 GiB where it cannot be read.
pub(crate) fn available_memory() -> u128 {
    let fallback = 64 << 30;
    std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|text| {
            let line = text.lines().find(|l| l.starts_with("MemAvailable:"))?;
            let kib: u128 = line.split_whitespace().nth(1)?.parse().ok()?;
            Some(kib * 1024)
        })
        .unwrap_or(fallback)
}

/// Parameters of a pre- or post-norm transformer stack: per layer four width×width
/// projections, two width×inner products, their biases and two norms.
pub(crate) fn stack_parameters(width: usize, inner: usize, layers: usize) -> u128 {
    let (w, i, l) = (width as u128, inner as u128, layers as u128);
    l * (4 * w * w + 4 * w + 2 * w * i + i + w + 4 * w)
}

#[cfg(test)]
mod tests {
    use crate::model::bert::BertConfig;
    use crate::model::clip::ClipConfig;

    const REPO: &str = env!("CARGO_MANIFEST_DIR");

    /// The demo backbone's config.json with `key` (dotted for CLIP's towers) set to
    /// `value`, written to a temporary file and loaded by `load`.
    fn edited<T>(
        which: &str,
        key: &str,
        value: serde_json::Value,
        load: fn(&std::path::Path) -> Result<T, crate::model::ModelError>,
    ) -> Result<T, String> {
        let path = std::path::Path::new(REPO).join(format!("checkpoints/demo/{which}/config.json"));
        let mut json: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
        let mut slot = &mut json;
        for part in key.split('.') {
            slot = &mut slot[part];
        }
        *slot = value;
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("config.json");
        std::fs::write(&file, json.to_string()).unwrap();
        load(&file).map_err(|e| e.to_string())
    }

    #[test]
    fn hostile_bert_configs_are_refused_naming_the_key() {
        use serde_json::json;
        for (key, value, says) in [
            (
                "num_attention_heads",
                json!(0),
                "num_attention_heads = 0 is out of range",
            ),
            (
                "num_attention_heads",
                json!(3),
                "does not divide hidden_size = 64",
            ),
            ("hidden_size", json!(0), "hidden_size = 0"),
            (
                "hidden_size",
                json!(1_000_000_000u64),
                "hidden_size = 1000000000",
            ),
            (
                "intermediate_size",
                json!(1_000_000_000_000u64),
                "intermediate_size",
            ),
            ("vocab_size", json!(1_000_000_000_000u64), "vocab_size"),
            (
                "num_hidden_layers",
                json!(1_000_000),
                "num_hidden_layers = 1000000",
            ),
            ("num_hidden_layers", json!(0), "num_hidden_layers = 0"),
            ("layer_norm_eps", json!(-1.0), "layer_norm_eps"),
            ("hidden_dropout_prob", json!(1.5), "hidden_dropout_prob"),
        ] {
            let error = edited("text", key, value, BertConfig::load).unwrap_err();
            assert!(
                error.contains(says) && error.contains("config.json"),
                "{key}: {error}"
            );
        }
        // Within every range but too large for any machine's memory.
        let huge = edited("text", "num_hidden_layers", json!(128), BertConfig::load);
        assert!(huge.is_ok(), "{huge:?}");
        let error = edited("text", "hidden_size", json!(16_384), |path| {
            let mut config: BertConfig = crate::model::read_json(path)?;
            config.num_hidden_layers = 128;
            config.intermediate_size = 131_072;
            config.check(path).map(|_| config)
        })
        .unwrap_err();
        assert!(error.contains("GB, more than the"), "{error}");
    }

    #[test]
    fn hostile_clip_configs_are_refused_naming_the_key() {
        use serde_json::json;
        for (key, value, says) in [
            (
                "vision_config.patch_size",
                json!(0),
                "vision_config.patch_size = 0",
            ),
            (
                "vision_config.patch_size",
                json!(200),
                "vision_config.patch_size = 200",
            ),
            (
                "vision_config.num_attention_heads",
                json!(0),
                "vision_config.num_attention_heads",
            ),
            (
                "text_config.num_attention_heads",
                json!(3),
                "does not divide text_config.hidden_size",
            ),
            (
                "text_config.hidden_size",
                json!(1_000_000_000u64),
                "text_config.hidden_size",
            ),
            (
                "vision_config.image_size",
                json!(1_000_000u64),
                "vision_config.image_size",
            ),
            (
                "text_config.num_hidden_layers",
                json!(0),
                "text_config.num_hidden_layers = 0",
            ),
            ("projection_dim", json!(0), "projection_dim = 0"),
        ] {
            let error = edited("clip", key, value, ClipConfig::load).unwrap_err();
            assert!(error.contains(says), "{key}: {error}");
        }
        assert!(edited("clip", "projection_dim", json!(16), ClipConfig::load).is_ok());
    }
}
