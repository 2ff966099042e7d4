//! Modality-aware attention (DESIGN §4 item 5): the plain batched forward (training,
//! and live rescoring on devices other than the CPU), and the prompt-independent half
//! of the staged split (DESIGN §5) that the CPU scoring stage in `cpu.rs` finishes.
//!
//! Text queries attend jointly over text keys and clue keys; clues have their own
//! key/value projections and a learned per-head bias on their logits; a sigmoid gate
//! on [h; o] decides how much of the attended output enters the residual; LayerNorm.
//! `plain` shares the projections and drops bias and gate.

use candle_core::{D, Module, Result, Tensor};
use candle_nn::{Linear, VarBuilder};
use serde::{Deserialize, Serialize};

pub(crate) mod cpu;

use crate::model::ops::{LayerNorm, Mode, dropout, mask_value, merge_heads, softmax, split_heads};
use crate::model::params::{LinearParams, NormParams};
use cpu::{FusionParams, HostSide};

/// The fusion ablation switch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum FusionMode {
    /// Separate clue projections, per-head clue bias, gate (the paper's model).
    #[default]
    Modality,
    /// Shared projections, no bias, no gate.
    Plain,
    /// Text only: no fusion layer.
    None,
}

impl FusionMode {
    pub fn as_str(self) -> &'static str {
        match self {
            FusionMode::Modality => "modality",
            FusionMode::Plain => "plain",
            FusionMode::None => "none",
        }
    }
}

/// The prompt-independent half of a batch's attention, heads first so that the clue merge is one
/// matrix product per head for the whole batch: [H, B, n, ·].
pub struct TextSideBatch {
    /// [H, B, n, dh]
    q: Tensor,
    /// [H, B, n, 1]
    max: Tensor,
    norm: Tensor,
    /// [H, B, n, dh]
    acc: Tensor,
    /// [B, n, d]
    words: Tensor,
}

pub struct Fusion {
    clue_proj: Linear,
    query: Linear,
    text_key: Linear,
    text_value: Linear,
    clue_key: Option<Linear>,
    clue_value: Option<Linear>,
    clue_bias: Option<Tensor>,
    gate: Option<Linear>,
    out: Linear,
    norm: LayerNorm,
    heads: usize,
    dropout: f32,
}

impl Fusion {
    pub fn load(
        vb: VarBuilder,
        mode: FusionMode,
        hidden: usize,
        clue_dim: usize,
        heads: usize,
        dropout: f32,
    ) -> Result<Self> {
        let modality = mode == FusionMode::Modality;
        Ok(Self {
            clue_proj: candle_nn::linear(clue_dim, hidden, vb.pp("clue_proj"))?,
            query: candle_nn::linear(hidden, hidden, vb.pp("query"))?,
            text_key: candle_nn::linear(hidden, hidden, vb.pp("text_key"))?,
            text_value: candle_nn::linear(hidden, hidden, vb.pp("text_value"))?,
            clue_key: modality
                .then(|| candle_nn::linear(hidden, hidden, vb.pp("clue_key")))
                .transpose()?,
            clue_value: modality
                .then(|| candle_nn::linear(hidden, hidden, vb.pp("clue_value")))
                .transpose()?,
            clue_bias: modality
                .then(|| vb.get_with_hints(heads, "clue_bias", candle_nn::Init::Const(0.0)))
                .transpose()?,
            gate: modality
                .then(|| candle_nn::linear(2 * hidden, hidden, vb.pp("gate")))
                .transpose()?,
            out: candle_nn::linear(hidden, hidden, vb.pp("out"))?,
            norm: LayerNorm::load(vb.pp("norm"), hidden, 1e-12)?,
            heads,
            dropout,
        })
    }

    fn clue_key(&self) -> &Linear {
        self.clue_key.as_ref().unwrap_or(&self.text_key)
    }

    fn clue_value(&self) -> &Linear {
        self.clue_value.as_ref().unwrap_or(&self.text_value)
    }

    fn scale(&self, hidden: usize) -> f64 {
        1.0 / ((hidden / self.heads) as f64).sqrt()
    }

    /// Residual, gate and LayerNorm after attention: words [.., n, d], attended [.., n, d].
    fn finish(&self, words: &Tensor, attended: &Tensor, mode: Mode) -> Result<Tensor> {
        let attended = dropout(&self.out.forward(attended)?, self.dropout, mode)?;
        let update = match &self.gate {
            Some(gate) => {
                let g = candle_nn::ops::sigmoid(
                    &gate.forward(&Tensor::cat(&[words, &attended], D::Minus1)?)?,
                )?;
                attended.mul(&g)?
            }
            None => attended,
        };
        self.norm.forward(&(words + update)?, mode)
    }

    /// The batched forward: words [b, n, d] with `word_mask` [b, n] (1 = real word);
    /// prompt embeddings `prompts` [K, e] weighted by `weights` [b, K], for the tweets
    /// whose `clue_mask` `[b]` is 1 (the others have no image and get no clues).
    /// Returns the fused words and the attention mass on each clue, averaged over heads
    /// [b, n, K].
    pub fn forward(
        &self,
        words: &Tensor,
        word_mask: &Tensor,
        clues: Option<(&Tensor, &Tensor, &Tensor)>,
        mode: Mode,
    ) -> Result<(Tensor, Option<Tensor>)> {
        let (b, n, d) = words.dims3()?;
        let dtype = words.dtype();
        let q = split_heads(&self.query.forward(words)?, self.heads)?;
        let kt = split_heads(&self.text_key.forward(words)?, self.heads)?;
        let vt = split_heads(&self.text_value.forward(words)?, self.heads)?;
        let text_add =
            ((word_mask.to_dtype(dtype)? - 1.0)? * -mask_value(dtype))?.reshape((b, 1, 1, n))?;
        let text_logits = (q.matmul(&kt.t()?)? * self.scale(d))?.broadcast_add(&text_add)?;
        let Some((prompts, weights, clue_mask)) = clues else {
            let attn = softmax(&text_logits, mode)?;
            let attended = merge_heads(&attn.matmul(&vt)?)?;
            return Ok((self.finish(words, &attended, mode)?, None));
        };
        let k = prompts.dim(0)?;
        let weighted = weights
            .unsqueeze(2)?
            .broadcast_mul(&prompts.unsqueeze(0)?)?; // [b, K, e]
        let clue_states = self.clue_proj.forward(&weighted)?; // [b, K, d]
        let kc = split_heads(&self.clue_key().forward(&clue_states)?, self.heads)?;
        let vc = split_heads(&self.clue_value().forward(&clue_states)?, self.heads)?;
        let mut clue_logits = (q.matmul(&kc.t()?)? * self.scale(d))?;
        if let Some(bias) = &self.clue_bias {
            clue_logits = clue_logits.broadcast_add(&bias.reshape((1, self.heads, 1, 1))?)?;
        }
        let clue_add =
            ((clue_mask.to_dtype(dtype)? - 1.0)? * -mask_value(dtype))?.reshape((b, 1, 1, 1))?;
        let clue_logits = clue_logits.broadcast_add(&clue_add)?;
        let attn = softmax(
            &Tensor::cat(&[&text_logits, &clue_logits], D::Minus1)?,
            mode,
        )?;
        let attn_text = attn.narrow(D::Minus1, 0, n)?;
        let attn_clue = attn.narrow(D::Minus1, n, k)?;
        let attended = (attn_text.matmul(&vt)? + attn_clue.matmul(&vc)?)?;
        let attended = merge_heads(&attended)?;
        let clue_attention = attn_clue.mean(1)?;
        Ok((self.finish(words, &attended, mode)?, Some(clue_attention)))
    }

    /// Per-prompt clue keys and values without a_i: rows [K, d] each, from unit prompt
    /// embeddings [K, e]. Linear in the prompt, so they are computed once per prompt.
    pub fn prompt_rows(&self, prompts: &Tensor) -> Result<(Tensor, Tensor)> {
        let projected = prompts.matmul(&self.clue_proj.weight().t()?)?;
        let pk = projected.matmul(&self.clue_key().weight().t()?)?;
        let pv = projected.matmul(&self.clue_value().weight().t()?)?;
        Ok((pk, pv))
    }

    /// What a clue of weight 0 gives as key and value, d values each (the projections'
    /// biases): the clue of prompt i at weight a_i is `a_i·pk_i + bk` (likewise values).
    pub fn clue_bias(&self) -> Result<(Vec<f32>, Vec<f32>)> {
        let zero = Tensor::zeros(
            (1, self.clue_proj.weight().dim(1)?),
            self.clue_proj.weight().dtype(),
            self.clue_proj.weight().device(),
        )?;
        let base = self.clue_proj.forward(&zero)?;
        let row = |t: Tensor| t.flatten_all()?.to_vec1::<f32>();
        Ok((
            row(self.clue_key().forward(&base)?)?,
            row(self.clue_value().forward(&base)?)?,
        ))
    }

    /// [H, B, n, dh] from [B, n, d].
    fn heads_first(&self, x: &Tensor) -> Result<Tensor> {
        let (b, n, d) = x.dims3()?;
        x.reshape((b, n, self.heads, d / self.heads))?
            .permute((2, 0, 1, 3))?
            .contiguous()
    }

    /// The prompt-independent part of a padded batch's attention (queries, the text
    /// keys' running maximum, normaliser and weighted value sum, per head): words
    /// [B, n, d], `word_mask` [B, n] (1 = a word the encoder saw; the others are no keys).
    pub fn text_side_batch(&self, words: &Tensor, word_mask: &Tensor) -> Result<TextSideBatch> {
        let (b, n, d) = words.dims3()?;
        let q = self.heads_first(&self.query.forward(words)?)?;
        let kt = self.heads_first(&self.text_key.forward(words)?)?;
        let vt = self.heads_first(&self.text_value.forward(words)?)?;
        let dtype = words.dtype();
        let key_add =
            ((word_mask.to_dtype(dtype)? - 1.0)? * -mask_value(dtype))?.reshape((1, b, 1, n))?;
        let logits = (q.matmul(&kt.t()?)? * self.scale(d))?.broadcast_add(&key_add)?;
        let max = logits.max_keepdim(D::Minus1)?;
        let weights = logits.broadcast_sub(&max)?.exp()?;
        let norm = weights.sum_keepdim(D::Minus1)?;
        let acc = weights.matmul(&vt)?;
        Ok(TextSideBatch {
            q,
            max,
            norm,
            acc,
            words: words.clone(),
        })
    }

    /// What the CPU scoring stage reads of this layer.
    pub(crate) fn score_params(&self) -> Result<FusionParams<Tensor>> {
        Ok(FusionParams {
            out: LinearParams::of(&self.out)?,
            gate: self.gate.as_ref().map(LinearParams::of).transpose()?,
            norm: NormParams::of(&self.norm),
            clue_bias: self.clue_bias.clone(),
            eps: self.norm.eps() as f32,
            heads: self.heads,
        })
    }

    /// A batch's text side on the host, with the gate's text half W_h·h + b computed.
    pub(crate) fn host_side(&self, side: &TextSideBatch) -> Result<HostSide> {
        let flat = |t: &Tensor| t.flatten_all()?.to_vec1::<f32>();
        let gate_text = match &self.gate {
            Some(gate) => {
                let d = side.words.dim(2)?;
                let text_half = gate.weight().narrow(1, 0, d)?;
                let mut g = side.words.broadcast_matmul(&text_half.t()?)?;
                if let Some(b) = gate.bias() {
                    g = g.broadcast_add(b)?;
                }
                Some(flat(&g)?)
            }
            None => None,
        };
        Ok(HostSide {
            q: flat(&side.q)?,
            max: flat(&side.max)?,
            norm: flat(&side.norm)?,
            acc: flat(&side.acc)?,
            gate_text,
        })
    }

    /// The words [B, n, d] of a batch's text side.
    pub(crate) fn side_words(side: &TextSideBatch) -> &Tensor {
        &side.words
    }
}
