//! The PromptMNER model (DESIGN §4) on candle, with the staged interface of DESIGN §5:
//! `encode_word_states` + `text_batch`, `encode_image`, `encode_prompts` and
//! `score_batch`, each cached so that a prompt edit recomputes only what it touches.

pub mod bert;
pub mod clip;
pub(crate) mod config_check;
pub mod device;
pub mod fusion;
pub mod hub;
pub mod ops;
pub mod params;
pub mod prompts;
pub mod span;
pub mod store;

/// Helpers for the model's unit tests.
#[cfg(test)]
pub(crate) mod testing {
    use candle_core::{DType, Device, Tensor};
    use candle_nn::{VarBuilder, VarMap};

    use super::bert::{BertConfig, BertModel};
    use super::ops::Activation;

    /// A small BERT with every weight (biases and norms too) drawn at random.
    pub(crate) fn tiny_bert(dropout: f32) -> (BertModel, VarMap) {
        let config = BertConfig {
            vocab_size: 50,
            hidden_size: 32,
            num_hidden_layers: 2,
            num_attention_heads: 4,
            intermediate_size: 48,
            hidden_act: Activation::Gelu,
            max_position_embeddings: 16,
            type_vocab_size: 2,
            layer_norm_eps: 1e-12,
            hidden_dropout_prob: dropout,
            attention_probs_dropout_prob: dropout,
        };
        let varmap = VarMap::new();
        let vb = VarBuilder::from_varmap(&varmap, DType::F32, &Device::Cpu);
        let model = BertModel::load(vb, &config).unwrap();
        for var in varmap.all_vars() {
            let mean = if var.rank() == 1 { 0.5 } else { 0.0 };
            var.set(&Tensor::randn(mean, 0.3f32, var.shape(), &Device::Cpu).unwrap())
                .unwrap();
        }
        (model, varmap)
    }

    /// Word pieces whose every piece is a word.
    pub(crate) fn pieces(ids: &[u32]) -> super::bert::tokenizer::WordPieces {
        super::bert::tokenizer::WordPieces {
            ids: ids.to_vec(),
            first_piece: (0..ids.len()).map(Some).collect(),
            cut_words: 0,
        }
    }

    /// Largest absolute element-wise difference of two tensors of one shape.
    pub(crate) fn max_abs_diff(a: &Tensor, b: &Tensor) -> f32 {
        (a - b)
            .unwrap()
            .abs()
            .unwrap()
            .flatten_all()
            .unwrap()
            .max(0)
            .unwrap()
            .to_scalar::<f32>()
            .unwrap()
    }
}

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use candle_core::{DType, Device, Tensor};
use candle_nn::{VarBuilder, VarMap};
use image::DynamicImage;
use serde::{Deserialize, Serialize};

use crate::data::images::{ClipPreprocess, NoImage};
use crate::prompts::Vocabulary;
use bert::cpu::EncoderPass;
use bert::tokenizer::{WordPieceTokenizer, WordPieces};
use bert::{BertModel, TextBackbone};
use clip::{ClipBackbone, ClipModel, ClipTokenizer, l2_normalize};
use device::Precision;
use fusion::{Fusion, FusionMode};
use ops::Mode;
use prompts::{ContinuousPrompts, PromptBank, PromptEncoding, PromptInfo};
use span::{PredictedSpan, ScoredSpan, SpanHead};

/// Errors building or running the model.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    #[error("cannot read {path}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: {message}")]
    Config { path: PathBuf, message: String },
    #[error("cannot load the tokenizer {path}: {message}")]
    Tokenizer { path: PathBuf, message: String },
    #[error(
        "{file} has no tensor '{tensor}': the weights belong to another model; keep them with the config.toml they were saved with"
    )]
    MissingTensor { file: PathBuf, tensor: String },
    #[error(
        "tensor '{tensor}' in {file} has shape {found:?}, the model needs {expected:?}: the weights belong to another config or preset; keep them with the config.toml they were saved with"
    )]
    ShapeMismatch {
        file: PathBuf,
        tensor: String,
        expected: Vec<usize>,
        found: Vec<usize>,
    },
    #[error("cannot load {file}")]
    Weights {
        file: PathBuf,
        source: candle_core::Error,
    },
    #[error("invalid model settings: {0}")]
    Invalid(String),
    #[error(transparent)]
    Store(#[from] store::StoreError),
    #[error(transparent)]
    Device(#[from] device::DeviceError),
    #[error(transparent)]
    Candle(#[from] candle_core::Error),
}

/// Reads a JSON config file.
pub fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> Result<T, ModelError> {
    let text = crate::util::read_text(path).map_err(|source| ModelError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    serde_json::from_str(&text).map_err(|e| ModelError::Config {
        path: path.to_path_buf(),
        message: e.to_string(),
    })
}

/// Loads a `tokenizer.json` with padding turned off (MiniLM's file pads every input to
/// 128 pieces, CANDLE_NOTES trap 4).
pub(crate) fn load_tokenizer(path: &Path) -> Result<tokenizers::Tokenizer, ModelError> {
    let mut tokenizer =
        tokenizers::Tokenizer::from_file(path).map_err(|e| ModelError::Tokenizer {
            path: path.to_path_buf(),
            message: e.to_string(),
        })?;
    tokenizer.with_padding(None);
    Ok(tokenizer)
}

fn default_heads() -> usize {
    4
}
fn default_true() -> bool {
    true
}
fn default_continuous() -> usize {
    16
}
fn default_width() -> usize {
    8
}
fn default_span_hidden() -> usize {
    256
}
fn default_dropout() -> f32 {
    0.1
}
fn default_pieces() -> usize {
    128
}

/// The PromptMNER layers' settings (the backbones bring their own configs).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelConfig {
    /// Fusion ablation switch: `modality`, `plain` or `none` (text only).
    #[serde(default)]
    pub fusion: FusionMode,
    #[serde(default = "default_heads")]
    pub fusion_heads: usize,
    /// Use the vocabulary's discrete prompts.
    #[serde(default = "default_true")]
    pub discrete_prompts: bool,
    /// Continuous prompts the model holds (a bank may use fewer).
    #[serde(default = "default_continuous")]
    pub continuous_prompts: usize,
    /// Longest span in words (W).
    #[serde(default = "default_width")]
    pub span_width: usize,
    #[serde(default = "default_span_hidden")]
    pub span_hidden: usize,
    #[serde(default = "default_dropout")]
    pub dropout: f32,
    /// Word pieces per tweet, special tokens included; later words are not encoded.
    #[serde(default = "default_pieces")]
    pub max_pieces: usize,
}

impl Default for ModelConfig {
    fn default() -> Self {
        Self {
            fusion: FusionMode::default(),
            fusion_heads: default_heads(),
            discrete_prompts: true,
            continuous_prompts: default_continuous(),
            span_width: default_width(),
            span_hidden: default_span_hidden(),
            dropout: default_dropout(),
            max_pieces: default_pieces(),
        }
    }
}

/// The HF-format directories the model is built on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Backbones {
    pub text: PathBuf,
    pub clip: PathBuf,
}

/// A batch of tweets after the text stage, padded, ready for repeated scoring: the
/// whole-split rescoring after a prompt edit runs only [`PromptMner::score_batch`], and
/// the workbench's selected tweet is a batch of one.
pub struct TextBatch {
    form: BatchForm,
    /// Per tweet, which words the encoder saw.
    encoded: Vec<Vec<bool>>,
    /// Per tweet, the words beyond the encoder's limit.
    truncated: Vec<usize>,
}

/// Host buffers for the CPU scoring stage, or the padded words for candle's plain
/// forward on other devices (the stage's two implementations).
enum BatchForm {
    Host(fusion::cpu::HostTextBatch),
    Tensors {
        /// [B, n, d]
        words: Tensor,
        /// [B, n]: 1 for a word the encoder saw.
        mask: Tensor,
    },
}

impl TextBatch {
    pub fn len(&self) -> usize {
        self.encoded.len()
    }

    pub fn is_empty(&self) -> bool {
        self.encoded.is_empty()
    }
}

/// How much a prediction of the scoring stage says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Detail {
    /// Spans and candidates (the whole-split rescoring).
    Spans,
    /// Also each prompt's similarity a_i and the clue attention per word.
    Clues,
}

/// An image after the image stage: its unit CLIP embedding, or why there is none.
#[derive(Clone)]
pub struct ImageState {
    embed: Option<Tensor>,
    pub no_image: Option<NoImage>,
}

impl ImageState {
    /// A tweet without a usable image.
    pub fn none(reason: NoImage) -> Self {
        Self {
            embed: None,
            no_image: Some(reason),
        }
    }

    pub fn has_image(&self) -> bool {
        self.embed.is_some()
    }

    /// The unit CLIP image embedding `[e]`.
    pub fn embedding(&self) -> Option<&Tensor> {
        self.embed.as_ref()
    }
}

/// What the model says about one tweet.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Prediction {
    /// Decoded entities, by position.
    pub spans: Vec<PredictedSpan>,
    /// Every candidate span with its class probabilities.
    pub candidates: Vec<ScoredSpan>,
    /// a_i per prompt of the bank (empty without an image).
    pub similarities: Vec<f32>,
    /// Per word, the attention mass on each prompt clue (empty without an image).
    pub clue_attention: Vec<Vec<f32>>,
    /// Words beyond the encoder's limit, predicted as no entity.
    pub truncated_words: usize,
}

/// The PromptMNER model.
pub struct PromptMner {
    pub config: ModelConfig,
    pub backbones: Backbones,
    text: BertModel,
    tokenizer: WordPieceTokenizer,
    clip: ClipModel,
    clip_tokenizer: ClipTokenizer,
    preprocess: ClipPreprocess,
    fusion: Option<Fusion>,
    span: SpanHead,
    continuous: Option<ContinuousPrompts>,
    /// The trainable weights: fine-tuned text encoder, fusion, span head, continuous prompts.
    pub varmap: VarMap,
    pub device: Device,
    /// The text encoder's CPU forward and its buffers, where it applies.
    cpu_encoder: Option<Mutex<EncoderPass>>,
    /// The precision inference runs in; under bf16, the text encoder's weight matrices
    /// in bf16 (CLIP keeps its own).
    precision: Precision,
    text_bf16: Option<Vec<bert::cpu::LayerBf16>>,
}

/// Copies a backbone's tensors into the variables under `prefix`; every variable must
/// be in the file (its name with or without `alternative` before it) with its shape.
// Each `expect` here states an invariant that holds by construction.
#[allow(clippy::expect_used)]
pub(crate) fn load_into_varmap(
    varmap: &VarMap,
    prefix: &str,
    file: &Path,
    alternative: &str,
    device: &Device,
) -> Result<(), ModelError> {
    // Mapped, and read one tensor at a time: loading the whole file first would hold a
    // second copy of every weight (bert-base: 440 MB) at the peak.
    let weights_error = |source| ModelError::Weights {
        file: file.to_path_buf(),
        source,
    };
    // SAFETY: the mapping is only read while this function runs; promptmner replaces
    // weight files by renaming a complete new file over them (never truncating in
    // place), so the mapped pages stay those of the file that was opened.
    let tensors =
        unsafe { candle_core::safetensors::MmapedSafetensors::new(file) }.map_err(weights_error)?;
    let names: std::collections::HashSet<String> = tensors
        .tensors()
        .into_iter()
        .map(|(name, _)| name)
        .collect();
    let data = varmap
        .data()
        .lock()
        .expect("the varmap lock is not poisoned");
    for (name, var) in data.iter() {
        let Some(local) = name.strip_prefix(prefix) else {
            continue;
        };
        let stored = [local.to_string(), format!("{alternative}{local}")]
            .into_iter()
            .find(|n| names.contains(n))
            .ok_or_else(|| ModelError::MissingTensor {
                file: file.to_path_buf(),
                tensor: local.to_string(),
            })?;
        let tensor = tensors.load(&stored, device).map_err(weights_error)?;
        if tensor.dims() != var.dims() {
            return Err(ModelError::ShapeMismatch {
                file: file.to_path_buf(),
                tensor: local.to_string(),
                expected: var.dims().to_vec(),
                found: tensor.dims().to_vec(),
            });
        }
        var.set(&tensor.to_dtype(var.dtype())?)?;
    }
    Ok(())
}

impl PromptMner {
    /// Builds the model on two backbone directories: the text encoder is loaded into
    /// trainable variables, CLIP is loaded frozen, the new layers start at random.
    pub fn new(
        backbones: &Backbones,
        config: &ModelConfig,
        device: &Device,
    ) -> Result<Self, ModelError> {
        let varmap = VarMap::new();
        let vb = VarBuilder::from_varmap(&varmap, DType::F32, device);
        let text =
            TextBackbone::load(&backbones.text, config.max_pieces, &varmap, "text.", device)?;
        let clip = ClipBackbone::load(&backbones.clip, device)?;
        let hidden = text.model.config.hidden_size;
        let clip_config = clip.model.config.clone();
        if config.fusion != FusionMode::None
            && (config.fusion_heads == 0 || hidden % config.fusion_heads != 0)
        {
            return Err(ModelError::Invalid(format!(
                "model.fusion_heads = {} does not divide the text encoder's width {hidden} \
                 ({}): choose a divisor of {hidden}",
                config.fusion_heads,
                backbones.text.join("config.json").display()
            )));
        }
        if config.span_width == 0 {
            return Err(ModelError::Invalid(
                "model.span_width must be at least 1".into(),
            ));
        }

        let fusion = (config.fusion != FusionMode::None)
            .then(|| {
                Fusion::load(
                    vb.pp("fusion"),
                    config.fusion,
                    hidden,
                    clip_config.projection_dim,
                    config.fusion_heads,
                    config.dropout,
                )
            })
            .transpose()?;
        let span = SpanHead::load(
            vb.pp("span"),
            hidden,
            config.span_hidden,
            config.span_width,
            config.dropout,
        )?;
        let continuous = (config.fusion != FusionMode::None && config.continuous_prompts > 0)
            .then(|| {
                ContinuousPrompts::load(
                    vb.pp("prompts"),
                    config.continuous_prompts,
                    clip_config.text_config.hidden_size,
                )
            })
            .transpose()?;
        let cpu_encoder = bert::cpu::supports(&text.model, device)
            .then(|| Mutex::new(EncoderPass::new(&text.model.config, false)));
        Ok(Self {
            config: config.clone(),
            backbones: backbones.clone(),
            text: text.model,
            tokenizer: text.tokenizer,
            clip: clip.model,
            clip_tokenizer: clip.tokenizer,
            preprocess: ClipPreprocess::for_image_size(clip_config.vision_config.image_size as u32),
            fusion,
            span,
            continuous,
            varmap,
            device: device.clone(),
            cpu_encoder,
            precision: Precision::Fp32,
            text_bf16: None,
        })
    }

    /// Sets the precision of inference's products and returns the one that runs (bf16
    /// needs the CPU path and AVX512_BF16; elsewhere fp32). Training reads the fp32
    /// weights whatever this says; bf16 keeps a packed copy, refreshed by
    /// [`PromptMner::load_weights`].
    pub fn set_precision(&mut self, precision: Precision) -> Result<Precision, ModelError> {
        let effective = match self.cpu_encoder {
            Some(_) => precision.effective(&self.device),
            None => Precision::Fp32,
        };
        self.text_bf16 = match effective {
            Precision::Bf16 => Some(bert::cpu::pack_bf16(&self.text.tensors()?)?),
            Precision::Fp32 => None,
        };
        self.clip.set_precision(effective)?;
        if effective != precision {
            tracing::warn!(
                "--precision {} is not available here (it needs AVX512_BF16 on the CPU): running in {}",
                precision.name(),
                effective.name()
            );
        }
        self.precision = effective;
        Ok(effective)
    }

    /// The precision inference runs in.
    pub fn precision(&self) -> Precision {
        self.precision
    }

    /// Draws the layers PromptMNER adds to the backbones (fusion, span head, continuous
    /// prompts) from `seed`, `seed + 1` and `seed + 2`: the one initialisation that
    /// training, the live benchmark and the tests share.
    pub fn initialize_new_layers(&self, seed: u64) -> Result<(), ModelError> {
        for (i, prefix) in ["fusion.", "span.", "prompts."].iter().enumerate() {
            ops::reinitialize(&self.varmap, prefix, seed.wrapping_add(i as u64))?;
        }
        Ok(())
    }

    /// Loads trained weights (a checkpoint's `model.safetensors`): every trainable
    /// tensor must be present with its shape.
    pub fn load_weights(&mut self, file: &Path) -> Result<(), ModelError> {
        load_into_varmap(&self.varmap, "", file, "", &self.device)?;
        if self.precision == Precision::Bf16 {
            self.set_precision(Precision::Bf16)?;
        }
        Ok(())
    }

    /// Saves the trainable weights as safetensors.
    pub fn save_weights(&self, file: &Path) -> Result<(), ModelError> {
        self.varmap
            .save(file)
            .map_err(|source| ModelError::Weights {
                file: file.to_path_buf(),
                source,
            })
    }

    pub fn clip(&self) -> &ClipModel {
        &self.clip
    }

    /// Each tweet's word states [n_i, d] for a batch of word pieces (the text stage's
    /// expensive half, which the engine caches on disk).
    pub fn encode_word_states(&self, batch: &[&WordPieces]) -> Result<Vec<Tensor>, ModelError> {
        let (states, _) = self.encode_pieces(batch, Mode::Eval)?;
        batch
            .iter()
            .enumerate()
            .map(|(i, p)| Ok(states.get(i)?.narrow(0, 0, p.first_piece.len())?))
            .collect()
    }

    /// A padded batch of tweets from their word states [n_i, d] and word pieces, with
    /// the fusion's text half computed once.
    pub fn text_batch(
        &self,
        word_states: &[&Tensor],
        pieces: &[&WordPieces],
    ) -> Result<TextBatch, ModelError> {
        let encoded: Vec<Vec<bool>> = pieces
            .iter()
            .map(|p| p.first_piece.iter().map(Option::is_some).collect())
            .collect();
        let truncated = pieces.iter().map(|p| p.truncated_words()).collect();
        let n = encoded.iter().map(Vec::len).max().unwrap_or(0).max(1);
        let padded = word_states
            .iter()
            .map(|w| Ok(w.pad_with_zeros(0, 0, n - w.dim(0)?)?))
            .collect::<Result<Vec<_>, ModelError>>()?;
        let words = Tensor::stack(&padded, 0)?;
        let mask: Vec<f32> = encoded
            .iter()
            .flat_map(|e| {
                (0..n).map(move |i| {
                    if e.get(i).copied().unwrap_or(false) {
                        1.0
                    } else {
                        0.0
                    }
                })
            })
            .collect();
        let mask = Tensor::from_vec(mask, (encoded.len(), n), &self.device)?;
        let form = match &self.fusion {
            _ if !self.device.is_cpu() => BatchForm::Tensors { words, mask },
            Some(f) => {
                let side = f.text_side_batch(&words, &mask)?;
                BatchForm::Host(fusion::cpu::HostTextBatch {
                    batch: encoded.len(),
                    len: n,
                    words: fusion::Fusion::side_words(&side)
                        .flatten_all()?
                        .to_vec1::<f32>()?,
                    side: Some(f.host_side(&side)?),
                })
            }
            None => BatchForm::Host(fusion::cpu::HostTextBatch {
                batch: encoded.len(),
                len: n,
                words: words.flatten_all()?.to_vec1::<f32>()?,
                side: None,
            }),
        };
        Ok(TextBatch {
            form,
            encoded,
            truncated,
        })
    }

    /// The scoring stage for a batch: matching, the clue merge, gate, LayerNorm, span
    /// head and decoding, with `images[i]` the unit embedding of tweet i's image (None:
    /// no image). It reuses the text and prompt stages, so after a prompt edit only
    /// this runs. With [`Detail::Clues`] predictions also carry each prompt's a_i and
    /// the clue attention (what the workbench shows of one tweet).
    pub fn score_batch(
        &self,
        batch: &TextBatch,
        images: &[Option<&Tensor>],
        bank: &PromptBank,
        detail: Detail,
    ) -> Result<Vec<Prediction>, ModelError> {
        let b = batch.len();
        // Matching weights a [B, K]; shown even by a text-only model, which ignores them.
        let weights = if !bank.is_empty() && images.iter().any(Option::is_some) {
            let zero = Tensor::zeros(self.clip.config.projection_dim, DType::F32, &self.device)?;
            let v: Vec<Tensor> = images
                .iter()
                .map(|i| i.cloned().unwrap_or_else(|| zero.clone()))
                .collect();
            let logits = (Tensor::stack(&v, 0)?.matmul(&bank.embeds()?.t()?)?
                * self.clip.logit_scale as f64)?;
            Some(candle_nn::ops::softmax_last_dim(&logits)?)
        } else {
            None
        };
        let want_attention = detail == Detail::Clues;
        let present: Vec<bool> = images.iter().map(Option::is_some).collect();
        let (candidates, clue_attention) = match &batch.form {
            BatchForm::Host(text) => {
                let params = fusion::cpu::ScoreParams {
                    fusion: self.fusion.as_ref().map(Fusion::score_params).transpose()?,
                    span: self.span.host_params()?,
                };
                let host_weights = weights
                    .as_ref()
                    .map(|a| a.flatten_all()?.to_vec1::<f32>())
                    .transpose()?;
                let host_clues = match (&bank.clues, &host_weights) {
                    (Some(clues), Some(a)) => Some(fusion::cpu::HostClues {
                        pk: &clues.pk,
                        pv: &clues.pv,
                        bk: &clues.bk,
                        bv: &clues.bv,
                        weights: a,
                        present: &present,
                    }),
                    _ => None,
                };
                let scores =
                    fusion::cpu::score(&params, text, host_clues, &batch.encoded, want_attention)?;
                let attention = scores
                    .clue_attention
                    .map(|a| Tensor::from_vec(a, (b, text.len, bank.len()), &Device::Cpu))
                    .transpose()?;
                (scores.spans, attention)
            }
            BatchForm::Tensors { words, mask } => {
                let (fused, attention) = match &self.fusion {
                    Some(fusion) => {
                        let present: Vec<f32> =
                            present.iter().map(|p| if *p { 1.0 } else { 0.0 }).collect();
                        let present = Tensor::from_vec(present, b, &self.device)?;
                        let embeds = bank.embeds()?;
                        let clues = weights.as_ref().map(|a| (embeds, a, &present));
                        fusion.forward(words, mask, clues, Mode::Eval)?
                    }
                    None => (words.clone(), None),
                };
                let probs = span::class_probs(&self.span.forward(&fused, Mode::Eval)?)?;
                let candidates = batch
                    .encoded
                    .iter()
                    .enumerate()
                    .map(|(i, encoded)| span::scored_spans(&probs.get(i)?, encoded.len(), encoded))
                    .collect::<candle_core::Result<_>>()?;
                (candidates, attention)
            }
        };
        batch
            .encoded
            .iter()
            .zip(candidates)
            .enumerate()
            .map(|(i, (encoded, candidates))| {
                let truncated_words = batch.truncated[i];
                let shown = want_attention && present[i];
                // a_i is one small row: kept at every detail (the split's spread of a
                // prompt's similarity is drawn from the whole-split scoring).
                let similarities = match (&weights, present[i]) {
                    (Some(a), true) => a.get(i)?.to_vec1::<f32>()?,
                    _ => Vec::new(),
                };
                let clue_attention = match (&clue_attention, shown) {
                    (Some(c), true) => c.get(i)?.narrow(0, 0, encoded.len())?.to_vec2::<f32>()?,
                    _ => Vec::new(),
                };
                Ok(Prediction {
                    spans: span::decode(&candidates),
                    candidates,
                    similarities,
                    clue_attention,
                    truncated_words,
                })
            })
            .collect()
    }

    /// Word states [b, n, d] (zeros at padding and beyond the limit) and the word mask
    /// [b, n] (1 = a word the encoder saw).
    fn encode_pieces(
        &self,
        batch: &[&WordPieces],
        mode: Mode,
    ) -> Result<(Tensor, Tensor), ModelError> {
        if let (Some(pass), Mode::Eval) = (&self.cpu_encoder, mode) {
            // Inference on the CPU: the encoder's own forward, which computes only the
            // rows read here (each word's first piece) in its last layer.
            let mut pass = pass.lock().unwrap_or_else(|e| e.into_inner());
            let bf16 = self.text_bf16.as_deref();
            let words =
                bert::cpu::with_host(&self.text.tensors()?, |w| pass.word_states(w, bf16, batch))?;
            let (_, word_mask) = self.word_index(batch, 0)?;
            let n = word_mask.dim(1)?;
            let d = self.text.config.hidden_size;
            let words = Tensor::from_vec(words, (batch.len(), n, d), &self.device)?;
            return Ok((words, word_mask));
        }
        let (ids, mask) = bert::pad_batch(batch, &self.device)?;
        let states = self.text.forward(&ids, &mask, mode)?;
        self.word_states(&states, batch)
    }

    /// Each word's first-piece row in piece states [b, p, d] flattened (0 for padding
    /// and words past the limit), and the word mask [b, n] (1 = a word the encoder saw).
    fn word_index(&self, batch: &[&WordPieces], p: usize) -> Result<(Tensor, Tensor), ModelError> {
        let b = batch.len();
        let n = batch
            .iter()
            .map(|w| w.first_piece.len())
            .max()
            .unwrap_or(0)
            .max(1);
        let mut index = Vec::with_capacity(b * n);
        let mut word_mask = Vec::with_capacity(b * n);
        for (i, pieces) in batch.iter().enumerate() {
            for w in 0..n {
                let piece = pieces.first_piece.get(w).copied().flatten();
                index.push((i * p + piece.unwrap_or(0)) as u32);
                word_mask.push(if piece.is_some() { 1f32 } else { 0.0 });
            }
        }
        Ok((
            Tensor::from_vec(index, b * n, &self.device)?,
            Tensor::from_vec(word_mask, (b, n), &self.device)?,
        ))
    }

    /// Word states [b, n, d] gathered from piece states [b, p, d] at each word's first
    /// piece (zeros at padding and beyond the limit), and the word mask [b, n].
    fn word_states(
        &self,
        states: &Tensor,
        batch: &[&WordPieces],
    ) -> Result<(Tensor, Tensor), ModelError> {
        let (b, p, d) = states.dims3()?;
        let (index, word_mask) = self.word_index(batch, p)?;
        let n = word_mask.dim(1)?;
        let words = states
            .reshape((b * p, d))?
            .index_select(&index, 0)?
            .reshape((b, n, d))?
            .broadcast_mul(&word_mask.unsqueeze(2)?)?;
        Ok((words, word_mask))
    }

    /// CLIP pixels [3, s, s] of an image.
    pub fn pixels(&self, image: &DynamicImage) -> Result<Tensor, ModelError> {
        let size = self.preprocess.crop_size as usize;
        Ok(Tensor::from_vec(
            self.preprocess.apply(image),
            (3, size, size),
            &self.device,
        )?)
    }

    /// The image stage: the unit CLIP embedding of an image.
    pub fn encode_image(&self, image: &DynamicImage) -> Result<ImageState, ModelError> {
        let pixels = self.pixels(image)?.unsqueeze(0)?;
        Ok(self.encode_pixels(&pixels)?.remove(0))
    }

    /// Image states of a batch of pixels [b, 3, s, s].
    pub fn encode_pixels(&self, pixels: &Tensor) -> Result<Vec<ImageState>, ModelError> {
        let b = pixels.dim(0)?;
        let embeds = l2_normalize(&self.clip.image_embeds(pixels, Mode::Eval)?)?;
        (0..b)
            .map(|i| {
                Ok(ImageState {
                    embed: Some(embeds.get(i)?),
                    no_image: None,
                })
            })
            .collect()
    }

    /// An image state from a stored unit embedding `[e]` (the on-disk image cache).
    pub fn image_state_from_embedding(&self, embedding: Tensor) -> ImageState {
        ImageState {
            embed: Some(embedding),
            no_image: None,
        }
    }

    /// The prompts a vocabulary gives this model: its discrete prompts (when the model
    /// uses them), then the first `n_continuous` continuous prompts it holds.
    pub fn prompt_infos(&self, vocabulary: &Vocabulary, n_continuous: usize) -> Vec<PromptInfo> {
        let n_continuous = n_continuous.min(self.continuous_count());
        prompts::prompt_infos(vocabulary, self.config.discrete_prompts, n_continuous)
    }

    /// Continuous prompts the model holds.
    pub fn continuous_count(&self) -> usize {
        self.continuous.as_ref().map_or(0, ContinuousPrompts::len)
    }

    /// The prompt stage's work for discrete prompt texts, one encoding each: unit CLIP
    /// embeddings and (with fusion) their clue rows, on the host.
    pub fn encode_prompt_texts(&self, texts: &[String]) -> Result<Vec<PromptEncoding>, ModelError> {
        let embeds = prompts::encode_texts(&self.clip, &self.clip_tokenizer, texts)?;
        let encoding = self.prompt_encoding(&embeds)?;
        let (e, d) = (embeds.dim(1)?, self.text.config.hidden_size);
        Ok((0..texts.len())
            .map(|i| PromptEncoding {
                embed: encoding.embed[i * e..(i + 1) * e].to_vec(),
                rows: encoding.rows.as_ref().map(|(pk, pv)| {
                    (
                        pk[i * d..(i + 1) * d].to_vec(),
                        pv[i * d..(i + 1) * d].to_vec(),
                    )
                }),
            })
            .collect())
    }

    /// Every continuous prompt the model holds in `template`, as one encoding of [N, ·]
    /// rows (None when it holds none).
    pub fn encode_continuous_prompts(
        &self,
        template: &str,
    ) -> Result<Option<PromptEncoding>, ModelError> {
        let Some(continuous) = self.continuous.as_ref() else {
            return Ok(None);
        };
        let embeds = continuous.encode(
            &self.clip,
            &self.clip_tokenizer,
            template,
            continuous.len(),
            Mode::Eval,
        )?;
        Ok(Some(self.prompt_encoding(&embeds)?))
    }

    /// Unit prompt embeddings [N, e] and (with fusion) their clue rows, on the host.
    fn prompt_encoding(&self, embeds: &Tensor) -> Result<PromptEncoding, ModelError> {
        let host = |t: &Tensor| t.flatten_all()?.to_vec1::<f32>();
        let rows = self
            .fusion
            .as_ref()
            .map(|f| {
                let (pk, pv) = f.prompt_rows(embeds)?;
                Ok::<_, candle_core::Error>((host(&pk)?, host(&pv)?))
            })
            .transpose()?;
        Ok(PromptEncoding {
            embed: host(embeds)?,
            rows,
        })
    }

    /// A bank of `infos` (its continuous prompts encoded in `template`), row i taken
    /// from `rows[i]`: an encoding and which of its rows.
    pub fn prompt_bank(
        &self,
        infos: Vec<PromptInfo>,
        template: &str,
        rows: &[(&PromptEncoding, usize)],
    ) -> Result<PromptBank, ModelError> {
        let clue_bias = self.fusion.as_ref().map(Fusion::clue_bias).transpose()?;
        Ok(PromptBank::new(
            infos,
            template,
            self.clip.config.projection_dim,
            clue_bias,
            rows,
            &self.device,
        ))
    }

    /// The first `n_continuous` continuous prompts in `template` run through the CLIP
    /// text tower in a differentiable mode, so that their token embeddings receive
    /// gradients [n, e] (training; the discrete prompts are constant, CLIP is frozen).
    pub fn training_continuous_prompts(
        &self,
        template: &str,
        n_continuous: usize,
    ) -> Result<Option<Tensor>, ModelError> {
        let n = n_continuous.min(self.continuous_count());
        match self.continuous.as_ref() {
            Some(continuous) if n > 0 => Ok(Some(continuous.encode(
                &self.clip,
                &self.clip_tokenizer,
                template,
                n,
                Mode::Grad,
            )?)),
            _ => Ok(None),
        }
    }

    /// Word pieces of a tweet (the batched path's input).
    pub fn tokenize<S: AsRef<str>>(&self, words: &[S]) -> Result<WordPieces, ModelError> {
        self.tokenizer.encode_words(words)
    }

    /// The plain batched forward: span logits [b, n, W, 5] and the span mask [b, n, W]
    /// for tweets given as word pieces, their unit image embeddings (None = no image)
    /// and the prompt embeddings [K, e].
    pub fn forward_batch(
        &self,
        pieces: &[&WordPieces],
        images: &[Option<&Tensor>],
        prompts: &Tensor,
        mode: Mode,
    ) -> Result<BatchOutput, ModelError> {
        let words = self.encode_pieces(pieces, mode)?;
        self.forward_words(words, pieces, images, prompts, mode)
    }

    /// The batched forward from the text encoder's piece states [b, p, d] on (a trainer
    /// that runs the encoder itself hands them in).
    pub fn forward_batch_from_states(
        &self,
        states: &Tensor,
        pieces: &[&WordPieces],
        images: &[Option<&Tensor>],
        prompts: &Tensor,
        mode: Mode,
    ) -> Result<BatchOutput, ModelError> {
        let words = self.word_states(states, pieces)?;
        self.forward_words(words, pieces, images, prompts, mode)
    }

    /// The text encoder.
    pub fn text_model(&self) -> &BertModel {
        &self.text
    }

    fn forward_words(
        &self,
        (words, word_mask): (Tensor, Tensor),
        pieces: &[&WordPieces],
        images: &[Option<&Tensor>],
        prompts: &Tensor,
        mode: Mode,
    ) -> Result<BatchOutput, ModelError> {
        let n = words.dim(1)?;
        // Matching weights [b, K] and which tweets have an image; shown even by a
        // text-only model, which does not use them.
        let k = prompts.dim(0)?;
        let clues = if k == 0 || images.iter().all(Option::is_none) {
            None
        } else {
            let zero = Tensor::zeros(self.clip.config.projection_dim, DType::F32, &self.device)?;
            let stacked: Vec<Tensor> = images
                .iter()
                .map(|i| i.cloned().unwrap_or_else(|| zero.clone()))
                .collect();
            let v = Tensor::stack(&stacked, 0)?;
            let logits = (v.matmul(&prompts.t()?)? * self.clip.logit_scale as f64)?;
            let a = ops::softmax(&logits, mode)?;
            let present: Vec<f32> = images
                .iter()
                .map(|i| if i.is_some() { 1.0 } else { 0.0 })
                .collect();
            Some((a, Tensor::from_vec(present, images.len(), &self.device)?))
        };
        let (fused, clue_attention) = match &self.fusion {
            None => (words, None),
            Some(fusion) => fusion.forward(
                &words,
                &word_mask,
                clues.as_ref().map(|(a, m)| (prompts, a, m)),
                mode,
            )?,
        };
        let weights = clues.map(|(a, _)| a);
        let logits = self.span.forward(&fused, mode)?;
        let encoded: Vec<Vec<bool>> = pieces
            .iter()
            .map(|p| p.first_piece.iter().map(Option::is_some).collect())
            .collect();
        let span_mask = span::span_mask(&encoded, n, self.config.span_width, &self.device)?;
        Ok(BatchOutput {
            logits,
            span_mask,
            clue_attention,
            weights,
        })
    }

    /// Predictions for a batch of tweets through the plain forward.
    pub fn predict_batch(
        &self,
        pieces: &[&WordPieces],
        images: &[Option<&Tensor>],
        bank: &PromptBank,
    ) -> Result<Vec<Prediction>, ModelError> {
        let out = self.forward_batch(pieces, images, bank.embeds()?, Mode::Eval)?;
        let probs = span::class_probs(&out.logits)?;
        let mut predictions = Vec::with_capacity(pieces.len());
        for (i, p) in pieces.iter().enumerate() {
            let words = p.first_piece.len();
            let encoded: Vec<bool> = p.first_piece.iter().map(Option::is_some).collect();
            let candidates = span::scored_spans(&probs.get(i)?, words, &encoded)?;
            let has_image = images[i].is_some() && out.weights.is_some();
            predictions.push(Prediction {
                spans: span::decode(&candidates),
                candidates,
                similarities: if has_image {
                    out.weights
                        .as_ref()
                        .map(|a| a.get(i)?.to_vec1::<f32>())
                        .transpose()?
                        .unwrap_or_default()
                } else {
                    Vec::new()
                },
                clue_attention: if has_image {
                    out.clue_attention
                        .as_ref()
                        .map(|a| a.get(i)?.narrow(0, 0, words)?.to_vec2::<f32>())
                        .transpose()?
                        .unwrap_or_default()
                } else {
                    Vec::new()
                },
                truncated_words: p.truncated_words(),
            });
        }
        Ok(predictions)
    }
}

/// What the batched forward gives.
pub struct BatchOutput {
    /// [b, n, W, 5]
    pub logits: Tensor,
    /// [b, n, W]: 1 for spans inside the tweet.
    pub span_mask: Tensor,
    /// [b, n, K], when there were clues.
    pub clue_attention: Option<Tensor>,
    /// Matching weights [b, K], when there were clues.
    pub weights: Option<Tensor>,
}
