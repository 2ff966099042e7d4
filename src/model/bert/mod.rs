//! The text backbone: a BERT-family encoder (HF `bert` weights layout) over word
//! pieces, each word represented by its first piece.

use std::path::Path;

use candle_core::{DType, Device, Module, Result, Tensor};
use candle_nn::{Embedding, Linear, VarBuilder};
use serde::{Deserialize, Serialize};

pub(crate) mod backward;
pub mod cpu;
pub mod tokenizer;

use crate::model::ModelError;
use crate::model::ops::{
    Activation, LayerNorm, Mode, dropout, mask_value, merge_heads, softmax, split_heads,
};
use crate::model::params::{LinearParams, NormParams};
pub use tokenizer::{WordPieceTokenizer, WordPieces};

fn default_eps() -> f64 {
    1e-12
}

fn default_type_vocab() -> usize {
    2
}

fn default_dropout() -> f32 {
    0.1
}

/// `config.json` of a BERT-family model (the fields the encoder needs).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BertConfig {
    pub vocab_size: usize,
    pub hidden_size: usize,
    pub num_hidden_layers: usize,
    pub num_attention_heads: usize,
    pub intermediate_size: usize,
    pub hidden_act: Activation,
    pub max_position_embeddings: usize,
    #[serde(default = "default_type_vocab")]
    pub type_vocab_size: usize,
    #[serde(default = "default_eps")]
    pub layer_norm_eps: f64,
    #[serde(default = "default_dropout")]
    pub hidden_dropout_prob: f32,
    #[serde(default = "default_dropout")]
    pub attention_probs_dropout_prob: f32,
}

impl BertConfig {
    /// Reads a `config.json` and checks it (see [`BertConfig::check`]).
    pub fn load(path: &Path) -> std::result::Result<Self, ModelError> {
        let config: Self = crate::model::read_json(path)?;
        config.check(path)?;
        Ok(config)
    }

    /// The number of weights (embeddings and layers).
    pub fn parameters(&self) -> u128 {
        let embeddings = (self.vocab_size + self.max_position_embeddings + self.type_vocab_size)
            as u128
            * self.hidden_size as u128;
        embeddings
            + crate::model::config_check::stack_parameters(
                self.hidden_size,
                self.intermediate_size,
                self.num_hidden_layers,
            )
    }

    /// Every field in range (far above any published BERT), heads dividing the width,
    /// and the weights fitting in memory; `path` names the file in the error.
    pub fn check(&self, path: &Path) -> std::result::Result<(), ModelError> {
        let heads = self.num_attention_heads.max(1);
        crate::model::config_check::Checks::new(path)
            .range("vocab_size", self.vocab_size, 1, 1_000_000)
            .range("hidden_size", self.hidden_size, 1, 16_384)
            .range("num_hidden_layers", self.num_hidden_layers, 1, 128)
            .range("num_attention_heads", self.num_attention_heads, 1, 256)
            .range("intermediate_size", self.intermediate_size, 1, 131_072)
            .range(
                "max_position_embeddings",
                self.max_position_embeddings,
                1,
                65_536,
            )
            .range("type_vocab_size", self.type_vocab_size, 1, 1_024)
            .real("layer_norm_eps", self.layer_norm_eps, 0.0, 1.0, false)
            .real(
                "hidden_dropout_prob",
                self.hidden_dropout_prob.into(),
                0.0,
                1.0,
                true,
            )
            .real(
                "attention_probs_dropout_prob",
                self.attention_probs_dropout_prob.into(),
                0.0,
                1.0,
                true,
            )
            .holds(self.hidden_size.is_multiple_of(heads), || {
                format!(
                    "num_attention_heads = {} does not divide hidden_size = {}",
                    self.num_attention_heads, self.hidden_size
                )
            })
            .fits(self.parameters())
            .done()
    }
}

struct Embeddings {
    word: Embedding,
    position: Embedding,
    token_type: Embedding,
    norm: LayerNorm,
    dropout: f32,
}

impl Embeddings {
    fn load(vb: VarBuilder, cfg: &BertConfig) -> Result<Self> {
        Ok(Self {
            word: candle_nn::embedding(cfg.vocab_size, cfg.hidden_size, vb.pp("word_embeddings"))?,
            position: candle_nn::embedding(
                cfg.max_position_embeddings,
                cfg.hidden_size,
                vb.pp("position_embeddings"),
            )?,
            token_type: candle_nn::embedding(
                cfg.type_vocab_size,
                cfg.hidden_size,
                vb.pp("token_type_embeddings"),
            )?,
            norm: LayerNorm::load(vb.pp("LayerNorm"), cfg.hidden_size, cfg.layer_norm_eps)?,
            dropout: cfg.hidden_dropout_prob,
        })
    }

    fn forward(&self, ids: &Tensor, mode: Mode) -> Result<Tensor> {
        let (_, n) = ids.dims2()?;
        let positions = Tensor::arange(0u32, n as u32, ids.device())?;
        // Single-segment input: token type 0 everywhere (CANDLE_NOTES trap 7).
        let types = ids.zeros_like()?;
        let xs = self
            .word
            .forward(ids)?
            .broadcast_add(&self.position.forward(&positions)?)?
            .add(&self.token_type.forward(&types)?)?;
        dropout(&self.norm.forward(&xs, mode)?, self.dropout, mode)
    }
}

struct Layer {
    query: Linear,
    key: Linear,
    value: Linear,
    attention_out: Linear,
    attention_norm: LayerNorm,
    intermediate: Linear,
    output: Linear,
    output_norm: LayerNorm,
    heads: usize,
    act: Activation,
    hidden_dropout: f32,
    attention_dropout: f32,
}

impl Layer {
    fn load(vb: VarBuilder, cfg: &BertConfig) -> Result<Self> {
        let h = cfg.hidden_size;
        let att = vb.pp("attention");
        Ok(Self {
            query: candle_nn::linear(h, h, att.pp("self").pp("query"))?,
            key: candle_nn::linear(h, h, att.pp("self").pp("key"))?,
            value: candle_nn::linear(h, h, att.pp("self").pp("value"))?,
            attention_out: candle_nn::linear(h, h, att.pp("output").pp("dense"))?,
            attention_norm: LayerNorm::load(
                att.pp("output").pp("LayerNorm"),
                h,
                cfg.layer_norm_eps,
            )?,
            intermediate: candle_nn::linear(
                h,
                cfg.intermediate_size,
                vb.pp("intermediate").pp("dense"),
            )?,
            output: candle_nn::linear(cfg.intermediate_size, h, vb.pp("output").pp("dense"))?,
            output_norm: LayerNorm::load(vb.pp("output").pp("LayerNorm"), h, cfg.layer_norm_eps)?,
            heads: cfg.num_attention_heads,
            act: cfg.hidden_act,
            hidden_dropout: cfg.hidden_dropout_prob,
            attention_dropout: cfg.attention_probs_dropout_prob,
        })
    }

    fn forward(&self, xs: &Tensor, additive_mask: &Tensor, mode: Mode) -> Result<Tensor> {
        let q = split_heads(&self.query.forward(xs)?, self.heads)?;
        let k = split_heads(&self.key.forward(xs)?, self.heads)?;
        let v = split_heads(&self.value.forward(xs)?, self.heads)?;
        let scale = 1.0 / (q.dim(3)? as f64).sqrt();
        let scores = (q.matmul(&k.t()?)? * scale)?.broadcast_add(additive_mask)?;
        let probs = dropout(&softmax(&scores, mode)?, self.attention_dropout, mode)?;
        let context = merge_heads(&probs.matmul(&v)?)?;
        let attended = dropout(
            &self.attention_out.forward(&context)?,
            self.hidden_dropout,
            mode,
        )?;
        let xs = self.attention_norm.forward(&(attended + xs)?, mode)?;
        let inner = self.act.forward(&self.intermediate.forward(&xs)?)?;
        let out = dropout(&self.output.forward(&inner)?, self.hidden_dropout, mode)?;
        self.output_norm.forward(&(out + xs)?, mode)
    }
}

/// One encoder layer's parameters.
#[derive(Debug, Clone, Default)]
pub struct LayerParams<T> {
    pub query: LinearParams<T>,
    pub key: LinearParams<T>,
    pub value: LinearParams<T>,
    pub attention_out: LinearParams<T>,
    pub attention_norm: NormParams<T>,
    pub intermediate: LinearParams<T>,
    pub output: LinearParams<T>,
    pub output_norm: NormParams<T>,
}

/// Every trainable parameter of the encoder, by name. `T` is what is held per
/// parameter: the candle variables (`Tensor`), their host data (`&[f32]`), or gradient
/// buffers (`Vec<f32>`).
#[derive(Debug, Clone, Default)]
pub struct BertParams<T> {
    pub word: T,
    pub position: T,
    pub token_type: T,
    pub embedding_norm: NormParams<T>,
    pub layers: Vec<LayerParams<T>>,
}

impl<T> LayerParams<T> {
    fn try_map<'a, U, E>(
        &'a self,
        f: &mut impl FnMut(&'a T) -> std::result::Result<U, E>,
    ) -> std::result::Result<LayerParams<U>, E> {
        Ok(LayerParams {
            query: self.query.try_map(f)?,
            key: self.key.try_map(f)?,
            value: self.value.try_map(f)?,
            attention_out: self.attention_out.try_map(f)?,
            attention_norm: self.attention_norm.try_map(f)?,
            intermediate: self.intermediate.try_map(f)?,
            output: self.output.try_map(f)?,
            output_norm: self.output_norm.try_map(f)?,
        })
    }

    /// Biases and norm parameters (the vectors), mutably.
    pub fn vectors_mut(&mut self) -> [&mut T; 10] {
        [
            &mut self.query.bias,
            &mut self.key.bias,
            &mut self.value.bias,
            &mut self.attention_out.bias,
            &mut self.attention_norm.weight,
            &mut self.attention_norm.bias,
            &mut self.intermediate.bias,
            &mut self.output.bias,
            &mut self.output_norm.weight,
            &mut self.output_norm.bias,
        ]
    }
}

impl<T> BertParams<T> {
    /// The same structure with `f` applied to every parameter.
    pub fn try_map<'a, U, E>(
        &'a self,
        mut f: impl FnMut(&'a T) -> std::result::Result<U, E>,
    ) -> std::result::Result<BertParams<U>, E> {
        Ok(BertParams {
            word: f(&self.word)?,
            position: f(&self.position)?,
            token_type: f(&self.token_type)?,
            embedding_norm: self.embedding_norm.try_map(&mut f)?,
            layers: self
                .layers
                .iter()
                .map(|l| l.try_map(&mut f))
                .collect::<std::result::Result<_, _>>()?,
        })
    }

    /// Every parameter, in one fixed order (to pair two structures element by element).
    pub fn leaves(&self) -> Vec<&T> {
        let mut all = vec![
            &self.word,
            &self.position,
            &self.token_type,
            &self.embedding_norm.weight,
            &self.embedding_norm.bias,
        ];
        for l in &self.layers {
            for lin in [&l.query, &l.key, &l.value, &l.attention_out] {
                all.extend([&lin.weight, &lin.bias]);
            }
            all.extend([&l.attention_norm.weight, &l.attention_norm.bias]);
            for lin in [&l.intermediate, &l.output] {
                all.extend([&lin.weight, &lin.bias]);
            }
            all.extend([&l.output_norm.weight, &l.output_norm.bias]);
        }
        all
    }
}

/// The encoder's trainable tensors (the variables themselves, sharing their storage).
pub type BertTensors = BertParams<Tensor>;

/// The BERT encoder (embeddings and layers; no pooler).
pub struct BertModel {
    embeddings: Embeddings,
    layers: Vec<Layer>,
    pub config: BertConfig,
}

impl BertModel {
    /// Loads from a [`VarBuilder`] whose root holds `embeddings.*` and `encoder.*`.
    pub fn load(vb: VarBuilder, cfg: &BertConfig) -> Result<Self> {
        let layers = (0..cfg.num_hidden_layers)
            .map(|i| Layer::load(vb.pp("encoder").pp("layer").pp(i), cfg))
            .collect::<Result<_>>()?;
        Ok(Self {
            embeddings: Embeddings::load(vb.pp("embeddings"), cfg)?,
            layers,
            config: cfg.clone(),
        })
    }

    /// The tensors of every trainable weight.
    pub fn tensors(&self) -> Result<BertTensors> {
        let e = &self.embeddings;
        Ok(BertParams {
            word: e.word.embeddings().clone(),
            position: e.position.embeddings().clone(),
            token_type: e.token_type.embeddings().clone(),
            embedding_norm: NormParams::of(&e.norm),
            layers: self
                .layers
                .iter()
                .map(|l| {
                    Ok(LayerParams {
                        query: LinearParams::of(&l.query)?,
                        key: LinearParams::of(&l.key)?,
                        value: LinearParams::of(&l.value)?,
                        attention_out: LinearParams::of(&l.attention_out)?,
                        attention_norm: NormParams::of(&l.attention_norm),
                        intermediate: LinearParams::of(&l.intermediate)?,
                        output: LinearParams::of(&l.output)?,
                        output_norm: NormParams::of(&l.output_norm),
                    })
                })
                .collect::<Result<_>>()?,
        })
    }

    /// Hidden states [b, n, hidden] of ids [b, n]; `mask` [b, n] is 1 for real pieces.
    pub fn forward(&self, ids: &Tensor, mask: &Tensor, mode: Mode) -> Result<Tensor> {
        let (b, n) = ids.dims2()?;
        let dtype = self.embeddings.word.embeddings().dtype();
        // 0 where attended, a large negative number at padding: [b, 1, 1, n].
        let additive =
            ((mask.to_dtype(dtype)? - 1.0)? * -mask_value(dtype))?.reshape((b, 1, 1, n))?;
        let mut xs = self.embeddings.forward(ids, mode)?;
        for layer in &self.layers {
            xs = layer.forward(&xs, &additive, mode)?;
        }
        Ok(xs)
    }
}

/// A BERT-family HF directory loaded into trainable variables: encoder and tokenizer.
pub struct TextBackbone {
    pub model: BertModel,
    pub tokenizer: WordPieceTokenizer,
}

impl TextBackbone {
    /// Loads `dir` (config.json, model.safetensors with or without the `bert.` prefix,
    /// tokenizer.json) into `varmap` under `prefix`.
    pub fn load(
        dir: &Path,
        max_pieces: usize,
        varmap: &candle_nn::VarMap,
        prefix: &str,
        device: &Device,
    ) -> std::result::Result<Self, ModelError> {
        let config = BertConfig::load(&dir.join("config.json"))?;
        let tokenizer = WordPieceTokenizer::load(
            &dir.join("tokenizer.json"),
            max_pieces.min(config.max_position_embeddings),
        )?;
        let vb = VarBuilder::from_varmap(varmap, DType::F32, device);
        let vb = match prefix.strip_suffix('.') {
            Some(p) => vb.pp(p),
            None => vb,
        };
        let model = BertModel::load(vb, &config)?;
        crate::model::load_into_varmap(
            varmap,
            prefix,
            &dir.join("model.safetensors"),
            "bert.",
            device,
        )?;
        Ok(Self { model, tokenizer })
    }

    /// Hidden states [b, p, d] of a padded batch of word pieces.
    pub fn hidden_states(&self, batch: &[&WordPieces], mode: Mode) -> Result<Tensor> {
        let device = self.model.embeddings.word.embeddings().device().clone();
        let (ids, mask) = pad_batch(batch, &device)?;
        self.model.forward(&ids, &mask, mode)
    }
}

/// Pads piece ids into a batch: ids [b, n] (pad 0) and mask [b, n].
pub fn pad_batch(batch: &[&WordPieces], device: &Device) -> Result<(Tensor, Tensor)> {
    let n = batch.iter().map(|p| p.ids.len()).max().unwrap_or(0);
    let mut ids = Vec::with_capacity(batch.len() * n);
    let mut mask = Vec::with_capacity(batch.len() * n);
    for pieces in batch {
        ids.extend(pieces.ids.iter().copied());
        ids.extend(std::iter::repeat_n(0u32, n - pieces.ids.len()));
        mask.extend(std::iter::repeat_n(1u8, pieces.ids.len()));
        mask.extend(std::iter::repeat_n(0u8, n - pieces.ids.len()));
    }
    Ok((
        Tensor::from_vec(ids, (batch.len(), n), device)?,
        Tensor::from_vec(mask, (batch.len(), n), device)?.to_dtype(DType::F32)?,
    ))
}
