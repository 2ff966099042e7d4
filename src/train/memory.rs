//! The memory a training run will take, estimated from its config and backbones
//! before anything is allocated, so that a run that cannot fit says so at once rather
//! than after the kernel kills it an hour in.

use crate::model::Backbones;
use crate::model::bert::BertConfig;
use crate::model::clip::ClipConfig;
use crate::run::TrainConfig;

use super::TrainError;

/// Floats kept per token and layer for the backward pass (inputs of every product and
/// norm, attention scores, the GELU input); fitted to the peak measured at base size
/// (BENCHMARKS.md, "Reproducing the paper").
const FLOATS_PER_TOKEN_LAYER: u128 = 24;
/// Tokens of a continuous prompt through CLIP's text tower (template, slot, frame).
const PROMPT_TOKENS: u128 = 16;

/// An upper bound of the run's peak memory in bytes: the text encoder trained with
/// AdamW (weights, gradients, two moments), CLIP frozen, the activations of a batch of
/// `batch_size` tweets at `max_pieces`, and the continuous prompts through CLIP's text
/// tower with gradients.
pub(crate) fn estimate(config: &TrainConfig, backbones: &Backbones) -> Result<u128, TrainError> {
    let text = BertConfig::load(&backbones.text.join("config.json"))?;
    let clip = ClipConfig::load(&backbones.clip.join("config.json"))?;
    let weights = 16 * text.parameters() + 4 * clip.parameters();
    let tokens = config.batch_size as u128 * config.model.max_pieces as u128;
    let activations = tokens
        * text.hidden_size as u128
        * text.num_hidden_layers as u128
        * FLOATS_PER_TOKEN_LAYER
        * 4;
    let clip_text = &clip.text_config;
    let prompts = config.model.continuous_prompts as u128
        * PROMPT_TOKENS
        * clip_text.hidden_size as u128
        * clip_text.num_hidden_layers as u128
        * FLOATS_PER_TOKEN_LAYER
        * 4;
    Ok(weights + activations + prompts)
}

/// Refuses a run whose estimate is above what the machine has available.
pub(crate) fn check_fits(config: &TrainConfig, backbones: &Backbones) -> Result<u128, TrainError> {
    let needed = estimate(config, backbones)?;
    let available = crate::model::config_check::available_memory();
    tracing::info!(
        "training needs about {:.1} GB ({:.1} GB available)",
        needed as f64 / 1e9,
        available as f64 / 1e9
    );
    if needed > available {
        return Err(TrainError::TooLarge {
            needed_gb: needed as f64 / 1e9,
            available_gb: available as f64 / 1e9,
            batch_size: config.batch_size,
            max_pieces: config.model.max_pieces,
        });
    }
    Ok(needed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    /// bert-base and CLIP ViT-B/32 configs in `dir`, and the paper's training config.
    fn base_size(dir: &Path) -> (TrainConfig, Backbones) {
        let backbones = Backbones {
            text: dir.join("text"),
            clip: dir.join("clip"),
        };
        for (path, json) in [
            (
                &backbones.text,
                serde_json::to_string(&crate::bench::bert_base_config(30522)),
            ),
            (
                &backbones.clip,
                serde_json::to_string(&crate::bench::clip_b32_config()),
            ),
        ] {
            std::fs::create_dir_all(path).unwrap();
            std::fs::write(path.join("config.json"), json.unwrap()).unwrap();
        }
        let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
        let config = TrainConfig::load(&repo.join("configs/twitter2015-paper.toml"), &[]).unwrap();
        (config, backbones)
    }

    #[test]
    fn the_estimate_at_base_size_bounds_the_measured_peak_and_a_huge_batch_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let (config, backbones) = base_size(dir.path());
        let gb = estimate(&config, &backbones).unwrap() as f64 / 1e9;
        // Measured: 6.76 GB peak for batch 32 (BENCHMARKS.md); the estimate is an upper
        // bound that should not be far above it.
        assert!((6.76..9.0).contains(&gb), "{gb} GB");
        let huge = TrainConfig {
            batch_size: 65536,
            ..config
        };
        let error = check_fits(&huge, &backbones).unwrap_err().to_string();
        assert!(error.contains("lower batch_size (65536)"), "{error}");
    }
}
