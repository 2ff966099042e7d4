//! CLIP (HF `CLIPModel` layout): vision tower and text tower with their projections.
//! The text tower also runs from embeddings, so a learnable token can fill a prompt's
//! word slot (continuous prompts); its LayerNorms pass gradients back to that token.

use std::path::Path;

use candle_core::{D, DType, Device, Module, Result, Tensor};
use candle_nn::{Linear, VarBuilder};
use serde::{Deserialize, Serialize};

pub(crate) mod cpu;
pub mod tokenizer;
pub mod towers;

pub use tokenizer::ClipTokenizer;
use towers::EncoderLayer;
pub use towers::{ClipTextTransformer, ClipVisionTransformer};

use crate::kernels::{self, MatRef};
use crate::model::ModelError;
use crate::model::device::Precision;
use crate::model::ops::{Activation, Mode};
use crate::model::params::NormParams;
use cpu::TowerShape;

fn quick_gelu() -> Activation {
    Activation::QuickGelu
}
fn eps() -> f64 {
    1e-5
}

/// `text_config` of a CLIP `config.json` (HF defaults for absent fields).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClipTextConfig {
    #[serde(default = "ClipTextConfig::vocab")]
    pub vocab_size: usize,
    #[serde(default = "ClipTextConfig::hidden")]
    pub hidden_size: usize,
    #[serde(default = "ClipTextConfig::intermediate")]
    pub intermediate_size: usize,
    #[serde(default = "ClipTextConfig::layers")]
    pub num_hidden_layers: usize,
    #[serde(default = "ClipTextConfig::heads")]
    pub num_attention_heads: usize,
    #[serde(default = "ClipTextConfig::positions")]
    pub max_position_embeddings: usize,
    #[serde(default = "quick_gelu")]
    pub hidden_act: Activation,
    #[serde(default = "eps")]
    pub layer_norm_eps: f64,
}

impl ClipTextConfig {
    fn vocab() -> usize {
        49408
    }
    fn hidden() -> usize {
        512
    }
    fn intermediate() -> usize {
        2048
    }
    fn layers() -> usize {
        12
    }
    fn heads() -> usize {
        8
    }
    fn positions() -> usize {
        77
    }
}

/// `vision_config` of a CLIP `config.json` (HF defaults for absent fields).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClipVisionConfig {
    #[serde(default = "ClipVisionConfig::hidden")]
    pub hidden_size: usize,
    #[serde(default = "ClipVisionConfig::intermediate")]
    pub intermediate_size: usize,
    #[serde(default = "ClipVisionConfig::layers")]
    pub num_hidden_layers: usize,
    #[serde(default = "ClipVisionConfig::heads")]
    pub num_attention_heads: usize,
    #[serde(default = "ClipVisionConfig::image")]
    pub image_size: usize,
    #[serde(default = "ClipVisionConfig::patch")]
    pub patch_size: usize,
    #[serde(default = "ClipVisionConfig::channels")]
    pub num_channels: usize,
    #[serde(default = "quick_gelu")]
    pub hidden_act: Activation,
    #[serde(default = "eps")]
    pub layer_norm_eps: f64,
}

impl ClipVisionConfig {
    fn hidden() -> usize {
        768
    }
    fn intermediate() -> usize {
        3072
    }
    fn layers() -> usize {
        12
    }
    fn heads() -> usize {
        12
    }
    fn image() -> usize {
        224
    }
    fn patch() -> usize {
        32
    }
    fn channels() -> usize {
        3
    }
}

/// A CLIP `config.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClipConfig {
    pub text_config: ClipTextConfig,
    pub vision_config: ClipVisionConfig,
    #[serde(default = "ClipConfig::projection")]
    pub projection_dim: usize,
}

impl ClipConfig {
    fn projection() -> usize {
        512
    }

    /// Reads a CLIP `config.json` and checks it (see [`ClipConfig::check`]).
    pub fn load(path: &Path) -> std::result::Result<Self, ModelError> {
        let config: Self = crate::model::read_json(path)?;
        config.check(path)?;
        Ok(config)
    }

    /// The number of weights of both towers and their projections.
    pub fn parameters(&self) -> u128 {
        let (t, v) = (&self.text_config, &self.vision_config);
        let patches = (v.image_size / v.patch_size.max(1)).pow(2) + 1;
        (t.vocab_size + t.max_position_embeddings) as u128 * t.hidden_size as u128
            + (patches + v.num_channels * v.patch_size * v.patch_size) as u128
                * v.hidden_size as u128
            + (t.hidden_size + v.hidden_size) as u128 * self.projection_dim as u128
            + crate::model::config_check::stack_parameters(
                t.hidden_size,
                t.intermediate_size,
                t.num_hidden_layers,
            )
            + crate::model::config_check::stack_parameters(
                v.hidden_size,
                v.intermediate_size,
                v.num_hidden_layers,
            )
    }

    /// Both towers' fields in range (far above ViT-L/14), heads dividing each width, a
    /// patch no larger than the image, and the weights fitting in memory.
    pub fn check(&self, path: &Path) -> std::result::Result<(), ModelError> {
        let (t, v) = (&self.text_config, &self.vision_config);
        let divides = |width: usize, heads: usize| width.is_multiple_of(heads.max(1));
        let parameters = self.parameters();
        crate::model::config_check::Checks::new(path)
            .range("text_config.vocab_size", t.vocab_size, 1, 1_000_000)
            .range("text_config.hidden_size", t.hidden_size, 1, 16_384)
            .range("text_config.intermediate_size", t.intermediate_size, 1, 131_072)
            .range("text_config.num_hidden_layers", t.num_hidden_layers, 1, 128)
            .range("text_config.num_attention_heads", t.num_attention_heads, 1, 256)
            .range("text_config.max_position_embeddings", t.max_position_embeddings, 2, 4_096)
            .real("text_config.layer_norm_eps", t.layer_norm_eps, 0.0, 1.0, false)
            .range("vision_config.hidden_size", v.hidden_size, 1, 16_384)
            .range("vision_config.intermediate_size", v.intermediate_size, 1, 131_072)
            .range("vision_config.num_hidden_layers", v.num_hidden_layers, 1, 128)
            .range("vision_config.num_attention_heads", v.num_attention_heads, 1, 256)
            .range("vision_config.image_size", v.image_size, 1, 4_096)
            .range("vision_config.patch_size", v.patch_size, 1, v.image_size.max(1))
            .range("vision_config.num_channels", v.num_channels, 1, 4)
            .real("vision_config.layer_norm_eps", v.layer_norm_eps, 0.0, 1.0, false)
            .range("projection_dim", self.projection_dim, 1, 16_384)
            .holds(divides(t.hidden_size, t.num_attention_heads), || {
                format!(
                    "text_config.num_attention_heads = {} does not divide text_config.hidden_size = {}",
                    t.num_attention_heads, t.hidden_size
                )
            })
            .holds(divides(v.hidden_size, v.num_attention_heads), || {
                format!(
                    "vision_config.num_attention_heads = {} does not divide vision_config.hidden_size = {}",
                    v.num_attention_heads, v.hidden_size
                )
            })
            .fits(parameters)
            .done()
    }
}

/// CLIP: both towers, their projections and the logit scale.
pub struct ClipModel {
    pub text: ClipTextTransformer,
    pub vision: ClipVisionTransformer,
    text_projection: Linear,
    visual_projection: Linear,
    /// τ = exp(logit_scale).
    pub logit_scale: f32,
    pub config: ClipConfig,
    pub device: Device,
    /// Both towers' weight matrices in bf16 under `--precision bf16`.
    bf16: Option<ClipBf16>,
}

/// The towers' layers packed for the bf16 products.
struct ClipBf16 {
    text: Vec<cpu::ClipLayerBf16>,
    vision: Vec<cpu::ClipLayerBf16>,
}

impl ClipModel {
    pub fn load(vb: VarBuilder, cfg: &ClipConfig) -> Result<Self> {
        let logit_scale = vb
            .get_with_hints((), "logit_scale", candle_nn::Init::Const(2.6592))?
            .to_dtype(DType::F32)?
            .to_scalar::<f32>()?
            .exp();
        Ok(Self {
            text: ClipTextTransformer::load(vb.pp("text_model"), &cfg.text_config)?,
            vision: ClipVisionTransformer::load(vb.pp("vision_model"), &cfg.vision_config)?,
            text_projection: candle_nn::linear_no_bias(
                cfg.text_config.hidden_size,
                cfg.projection_dim,
                vb.pp("text_projection"),
            )?,
            visual_projection: candle_nn::linear_no_bias(
                cfg.vision_config.hidden_size,
                cfg.projection_dim,
                vb.pp("visual_projection"),
            )?,
            logit_scale,
            config: cfg.clone(),
            device: vb.device().clone(),
            bf16: None,
        })
    }

    /// Sets the precision of the CPU towers' products and returns the one that runs
    /// (bf16 needs AVX512_BF16). bf16 packs a copy of the weights: call it again after
    /// the weights change.
    pub fn set_precision(&mut self, precision: Precision) -> Result<Precision> {
        let effective = precision.effective(&self.device);
        self.bf16 = None;
        if effective == Precision::Bf16 {
            let params = |layers: &[EncoderLayer]| {
                let layers = layers
                    .iter()
                    .map(EncoderLayer::params)
                    .collect::<Result<Vec<_>>>()?;
                cpu::pack_bf16(&layers)
            };
            self.bf16 = Some(ClipBf16 {
                text: params(&self.text.layers)?,
                vision: params(&self.vision.layers)?,
            });
        }
        Ok(effective)
    }

    /// Projected image embeddings [b, e] (not normalised).
    pub fn image_embeds(&self, pixels: &Tensor, mode: Mode) -> Result<Tensor> {
        let cfg = &self.vision.config;
        if matches!(mode, Mode::Eval) && cpu::supports(&self.vision.class_embedding, cfg.hidden_act)
        {
            return self.image_embeds_cpu(pixels);
        }
        self.visual_projection
            .forward(&self.vision.forward(pixels, mode)?)
    }

    /// Projected text embeddings [b, e] (not normalised) from token embeddings.
    pub fn text_embeds(&self, token_embeds: &Tensor, end: &[usize], mode: Mode) -> Result<Tensor> {
        let cfg = &self.text.config;
        if matches!(mode, Mode::Eval)
            && cpu::supports(self.text.position_embedding.embeddings(), cfg.hidden_act)
            && token_embeds.device().is_cpu()
        {
            return self.text_embeds_cpu(token_embeds, end);
        }
        self.text_projection
            .forward(&self.text.forward_embeds(token_embeds, end, mode)?)
    }

    /// [`ClipModel::image_embeds`] through the CPU tower.
    fn image_embeds_cpu(&self, pixels: &Tensor) -> Result<Tensor> {
        let vision = &self.vision;
        let cfg = &vision.config;
        let (b, channels, size, _) = pixels.dims4()?;
        let (p, d) = (cfg.patch_size, cfg.hidden_size);
        let grid = size / p;
        let n = grid * grid + 1;
        let pixels = pixels
            .to_dtype(DType::F32)?
            .flatten_all()?
            .to_vec1::<f32>()?;
        let patches = cpu::patches(&pixels, b, channels, size, p);
        let k = channels * p * p;
        let weight = vision
            .patch_embedding
            .weight()
            .flatten_from(1)?
            .contiguous()?;
        let weight = weight.to_vec2::<f32>()?.concat();
        let mut embedded = vec![0f32; b * (n - 1) * d];
        kernels::matmul(
            &mut embedded,
            d,
            MatRef::new(&patches, b * (n - 1), k),
            MatRef::new(&weight, d, k).t(),
            false,
            true,
        );
        let class = vision.class_embedding.to_vec1::<f32>()?;
        let positions = vision.position_embedding.embeddings().to_vec2::<f32>()?;
        let mut tokens = vec![0f32; b * n * d];
        for (r, row) in tokens.chunks_mut(d).enumerate() {
            let (img, at) = (r / n, r % n);
            let source = if at == 0 {
                &class[..]
            } else {
                &embedded[(img * (n - 1) + at - 1) * d..][..d]
            };
            for ((o, s), q) in row.iter_mut().zip(source).zip(&positions[at]) {
                *o = s + q;
            }
        }
        let (pre_w, pre_b) = vision.pre_norm.tensors();
        let (pre_w, pre_b) = (pre_w.to_vec1::<f32>()?, pre_b.to_vec1::<f32>()?);
        let eps = cfg.layer_norm_eps as f32;
        let mut x = vec![0f32; tokens.len()];
        kernels::layer_norm_forward(&tokens, &pre_w, &pre_b, eps, &mut x, None);
        let layers = vision
            .layers
            .iter()
            .map(EncoderLayer::params)
            .collect::<Result<Vec<_>>>()?;
        let shape = TowerShape {
            heads: cfg.num_attention_heads,
            eps,
            act: cfg.hidden_act,
            causal: false,
        };
        let class_tokens: Vec<usize> = (0..b).map(|img| img * n).collect();
        let packed = self.bf16.as_ref().map(|p| &p.vision[..]);
        let class_rows = cpu::layers_forward(x, &layers, packed, b, n, shape, &class_tokens)?;
        cpu::norm_and_project(
            &class_rows,
            &NormParams::of(&vision.post_norm),
            eps,
            self.visual_projection.weight(),
        )
    }

    /// [`ClipModel::text_embeds`] through the CPU tower.
    fn text_embeds_cpu(&self, token_embeds: &Tensor, end: &[usize]) -> Result<Tensor> {
        let text = &self.text;
        let cfg = &text.config;
        let (b, n, _) = token_embeds.dims3()?;
        let positions = text.position_embedding.embeddings().narrow(0, 0, n)?;
        let x = token_embeds
            .to_dtype(DType::F32)?
            .broadcast_add(&positions.unsqueeze(0)?)?
            .flatten_all()?
            .to_vec1::<f32>()?;
        let layers = text
            .layers
            .iter()
            .map(EncoderLayer::params)
            .collect::<Result<Vec<_>>>()?;
        let eps = cfg.layer_norm_eps as f32;
        let shape = TowerShape {
            heads: cfg.num_attention_heads,
            eps,
            act: cfg.hidden_act,
            causal: true,
        };
        let end_rows: Vec<usize> = end.iter().enumerate().map(|(i, &e)| i * n + e).collect();
        let packed = self.bf16.as_ref().map(|p| &p.text[..]);
        let ends = cpu::layers_forward(x, &layers, packed, b, n, shape, &end_rows)?;
        cpu::norm_and_project(
            &ends,
            &NormParams::of(&text.final_norm),
            eps,
            self.text_projection.weight(),
        )
    }
}

/// Rows scaled to unit L2 norm.
pub fn l2_normalize(xs: &Tensor) -> Result<Tensor> {
    xs.broadcast_div(&xs.sqr()?.sum_keepdim(D::Minus1)?.sqrt()?)
}

/// A CLIP HF directory loaded frozen: model and tokenizer.
pub struct ClipBackbone {
    pub model: ClipModel,
    pub tokenizer: ClipTokenizer,
}

impl ClipBackbone {
    /// Loads `dir` (config.json, model.safetensors, tokenizer.json).
    pub fn load(dir: &Path, device: &Device) -> std::result::Result<Self, ModelError> {
        let config = ClipConfig::load(&dir.join("config.json"))?;
        let file = dir.join("model.safetensors");
        let weights_error = |source| ModelError::Weights {
            file: file.clone(),
            source,
        };
        let tensors = candle_core::safetensors::load(&file, device).map_err(weights_error)?;
        let model = ClipModel::load(
            VarBuilder::from_tensors(tensors, DType::F32, device),
            &config,
        )
        .map_err(weights_error)?;
        let tokenizer = ClipTokenizer::load(
            &dir.join("tokenizer.json"),
            config.text_config.max_position_embeddings,
        )?;
        Ok(Self { model, tokenizer })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::testing::max_abs_diff;
    use candle_nn::VarMap;

    #[test]
    fn a_tokenizer_without_start_and_end_tokens_is_refused_naming_the_file() {
        let demo = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("checkpoints/demo/clip/tokenizer.json");
        let good = ClipTokenizer::load(&demo, 77).unwrap();
        assert_ne!(good.start, good.end);
        let mut json: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&demo).unwrap()).unwrap();
        json["post_processor"] = serde_json::Value::Null;
        let dir = tempfile::tempdir().unwrap();
        let bare = dir.path().join("tokenizer.json");
        std::fs::write(&bare, json.to_string()).unwrap();
        let err = ClipTokenizer::load(&bare, 77)
            .err()
            .expect("refused")
            .to_string();
        assert!(err.contains(&bare.display().to_string()), "{err}");
        assert!(err.contains("start and end tokens"), "{err}");
    }

    /// A small CLIP with every weight (biases and norms too) drawn at random.
    fn tiny_clip() -> ClipModel {
        let config: ClipConfig = serde_json::from_str(
            r#"{"text_config": {"vocab_size": 40, "hidden_size": 32, "intermediate_size": 48,
                 "num_hidden_layers": 2, "num_attention_heads": 4, "max_position_embeddings": 16},
                "vision_config": {"hidden_size": 32, "intermediate_size": 48, "num_hidden_layers": 2,
                 "num_attention_heads": 4, "image_size": 48, "patch_size": 16},
                "projection_dim": 24}"#,
        )
        .unwrap();
        let varmap = VarMap::new();
        let vb = VarBuilder::from_varmap(&varmap, DType::F32, &Device::Cpu);
        let model = ClipModel::load(vb, &config).unwrap();
        for var in varmap.all_vars() {
            let mean = if var.rank() == 1 { 0.5 } else { 0.0 };
            var.set(&Tensor::randn(mean, 0.3f32, var.shape(), &Device::Cpu).unwrap())
                .unwrap();
        }
        model
    }

    #[test]
    fn cpu_towers_equal_the_candle_towers() {
        let clip = tiny_clip();
        let pixels = Tensor::randn(0f32, 1.0, (3, 3, 48, 48), &Device::Cpu).unwrap();
        let fast = clip.image_embeds(&pixels, Mode::Eval).unwrap();
        let reference = clip
            .visual_projection
            .forward(&clip.vision.forward(&pixels, Mode::Eval).unwrap())
            .unwrap();
        let diff = max_abs_diff(&fast, &reference);
        assert!(diff < 1e-5, "vision: {diff}");

        // Prompts of different lengths, padded after their end tokens (causal mask).
        let ids = Tensor::from_vec(
            vec![1u32, 5, 9, 2, 2, 2, 1, 7, 8, 11, 12, 2],
            (2, 6),
            &Device::Cpu,
        )
        .unwrap();
        let tokens = clip.text.embed_tokens(&ids).unwrap();
        let fast = clip.text_embeds(&tokens, &[3, 5], Mode::Eval).unwrap();
        let reference = clip
            .text_projection
            .forward(
                &clip
                    .text
                    .forward_embeds(&tokens, &[3, 5], Mode::Eval)
                    .unwrap(),
            )
            .unwrap();
        let diff = max_abs_diff(&fast, &reference);
        assert!(diff < 1e-5, "text: {diff}");
    }
}
