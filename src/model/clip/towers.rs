//! CLIP's two towers (HF `CLIPTextTransformer`, `CLIPVisionTransformer`): pre-LayerNorm
//! transformer layers over token or patch embeddings.

use candle_core::{DType, Device, Module, Result, Tensor};
use candle_nn::{Embedding, Linear, VarBuilder};

use crate::model::clip::cpu::ClipLayerParams;
use crate::model::clip::{ClipTextConfig, ClipVisionConfig};
use crate::model::ops::{
    Activation, LayerNorm, Mode, mask_value, merge_heads, softmax, split_heads,
};
use crate::model::params::{LinearParams, NormParams};

/// A pre-LayerNorm transformer layer, as CLIP's text and vision towers use.
pub(crate) struct EncoderLayer {
    q: Linear,
    k: Linear,
    v: Linear,
    out: Linear,
    norm1: LayerNorm,
    norm2: LayerNorm,
    fc1: Linear,
    fc2: Linear,
    heads: usize,
    act: Activation,
}

impl EncoderLayer {
    fn load(
        vb: VarBuilder,
        hidden: usize,
        inner: usize,
        heads: usize,
        act: Activation,
        eps: f64,
    ) -> Result<Self> {
        let att = vb.pp("self_attn");
        Ok(Self {
            q: candle_nn::linear(hidden, hidden, att.pp("q_proj"))?,
            k: candle_nn::linear(hidden, hidden, att.pp("k_proj"))?,
            v: candle_nn::linear(hidden, hidden, att.pp("v_proj"))?,
            out: candle_nn::linear(hidden, hidden, att.pp("out_proj"))?,
            norm1: LayerNorm::load(vb.pp("layer_norm1"), hidden, eps)?,
            norm2: LayerNorm::load(vb.pp("layer_norm2"), hidden, eps)?,
            fc1: candle_nn::linear(hidden, inner, vb.pp("mlp").pp("fc1"))?,
            fc2: candle_nn::linear(inner, hidden, vb.pp("mlp").pp("fc2"))?,
            heads,
            act,
        })
    }

    /// The layer's tensors, by name (for the CPU forward).
    pub(crate) fn params(&self) -> Result<ClipLayerParams<Tensor>> {
        Ok(ClipLayerParams {
            q: LinearParams::of(&self.q)?,
            k: LinearParams::of(&self.k)?,
            v: LinearParams::of(&self.v)?,
            out: LinearParams::of(&self.out)?,
            norm1: NormParams::of(&self.norm1),
            norm2: NormParams::of(&self.norm2),
            fc1: LinearParams::of(&self.fc1)?,
            fc2: LinearParams::of(&self.fc2)?,
        })
    }

    fn forward(&self, xs: &Tensor, additive_mask: Option<&Tensor>, mode: Mode) -> Result<Tensor> {
        let h = self.norm1.forward(xs, mode)?;
        let q = split_heads(&self.q.forward(&h)?, self.heads)?;
        let k = split_heads(&self.k.forward(&h)?, self.heads)?;
        let v = split_heads(&self.v.forward(&h)?, self.heads)?;
        let scale = 1.0 / (q.dim(3)? as f64).sqrt();
        let mut scores = (q.matmul(&k.t()?)? * scale)?;
        if let Some(mask) = additive_mask {
            scores = scores.broadcast_add(mask)?;
        }
        let context = merge_heads(&softmax(&scores, mode)?.matmul(&v)?)?;
        let xs = (xs + self.out.forward(&context)?)?;
        let h = self.norm2.forward(&xs, mode)?;
        let h = self
            .fc2
            .forward(&self.act.forward(&self.fc1.forward(&h)?)?)?;
        xs + h
    }
}

fn load_layers(
    vb: VarBuilder,
    count: usize,
    hidden: usize,
    inner: usize,
    heads: usize,
    act: Activation,
    eps: f64,
) -> Result<Vec<EncoderLayer>> {
    (0..count)
        .map(|i| EncoderLayer::load(vb.pp("layers").pp(i), hidden, inner, heads, act, eps))
        .collect()
}

/// CLIP's text tower up to the final LayerNorm.
pub struct ClipTextTransformer {
    pub(crate) token_embedding: Embedding,
    pub(crate) position_embedding: Embedding,
    pub(crate) layers: Vec<EncoderLayer>,
    pub(crate) final_norm: LayerNorm,
    pub config: ClipTextConfig,
}

impl ClipTextTransformer {
    pub fn load(vb: VarBuilder, cfg: &ClipTextConfig) -> Result<Self> {
        let emb = vb.pp("embeddings");
        Ok(Self {
            token_embedding: candle_nn::embedding(
                cfg.vocab_size,
                cfg.hidden_size,
                emb.pp("token_embedding"),
            )?,
            position_embedding: candle_nn::embedding(
                cfg.max_position_embeddings,
                cfg.hidden_size,
                emb.pp("position_embedding"),
            )?,
            layers: load_layers(
                vb.pp("encoder"),
                cfg.num_hidden_layers,
                cfg.hidden_size,
                cfg.intermediate_size,
                cfg.num_attention_heads,
                cfg.hidden_act,
                cfg.layer_norm_eps,
            )?,
            final_norm: LayerNorm::load(
                vb.pp("final_layer_norm"),
                cfg.hidden_size,
                cfg.layer_norm_eps,
            )?,
            config: cfg.clone(),
        })
    }

    /// Token embeddings [b, n, hidden] of ids [b, n] (before positions are added).
    pub fn embed_tokens(&self, ids: &Tensor) -> Result<Tensor> {
        self.token_embedding.forward(ids)
    }

    /// Pooled states [b, hidden]: the final-LayerNorm state at each sequence's end token
    /// (`end[i]`), from token embeddings [b, n, hidden]. The mask is causal, so padding
    /// after the end token changes nothing.
    pub fn forward_embeds(
        &self,
        token_embeds: &Tensor,
        end: &[usize],
        mode: Mode,
    ) -> Result<Tensor> {
        let (b, n, _) = token_embeds.dims3()?;
        let device = token_embeds.device();
        let positions = Tensor::arange(0u32, n as u32, device)?;
        let mut xs = token_embeds.broadcast_add(&self.position_embedding.forward(&positions)?)?;
        let causal = causal_mask(n, token_embeds.dtype(), device)?;
        for layer in &self.layers {
            xs = layer.forward(&xs, Some(&causal), mode)?;
        }
        let xs = self.final_norm.forward(&xs, mode)?;
        let index: Vec<u32> = end
            .iter()
            .enumerate()
            .map(|(i, &e)| (i * n + e) as u32)
            .collect();
        let index = Tensor::from_vec(index, b, device)?;
        xs.reshape((b * n, ()))?.index_select(&index, 0)
    }
}

fn causal_mask(n: usize, dtype: DType, device: &Device) -> Result<Tensor> {
    let masked = mask_value(dtype) as f32;
    let values: Vec<f32> = (0..n)
        .flat_map(|i| (0..n).map(move |j| if j > i { masked } else { 0.0 }))
        .collect();
    Tensor::from_vec(values, (1, 1, n, n), device)?.to_dtype(dtype)
}

/// CLIP's vision tower up to the post-LayerNorm of the class token.
pub struct ClipVisionTransformer {
    pub(crate) class_embedding: Tensor,
    pub(crate) patch_embedding: candle_nn::Conv2d,
    pub(crate) position_embedding: Embedding,
    pub(crate) pre_norm: LayerNorm,
    pub(crate) layers: Vec<EncoderLayer>,
    pub(crate) post_norm: LayerNorm,
    pub config: ClipVisionConfig,
}

impl ClipVisionTransformer {
    pub fn load(vb: VarBuilder, cfg: &ClipVisionConfig) -> Result<Self> {
        let emb = vb.pp("embeddings");
        let patches = (cfg.image_size / cfg.patch_size).pow(2);
        let conv = candle_nn::Conv2dConfig {
            stride: cfg.patch_size,
            ..Default::default()
        };
        Ok(Self {
            class_embedding: emb.get(cfg.hidden_size, "class_embedding")?,
            patch_embedding: candle_nn::conv2d_no_bias(
                cfg.num_channels,
                cfg.hidden_size,
                cfg.patch_size,
                conv,
                emb.pp("patch_embedding"),
            )?,
            position_embedding: candle_nn::embedding(
                patches + 1,
                cfg.hidden_size,
                emb.pp("position_embedding"),
            )?,
            // "pre_layrnorm" is HF's spelling.
            pre_norm: LayerNorm::load(vb.pp("pre_layrnorm"), cfg.hidden_size, cfg.layer_norm_eps)?,
            layers: load_layers(
                vb.pp("encoder"),
                cfg.num_hidden_layers,
                cfg.hidden_size,
                cfg.intermediate_size,
                cfg.num_attention_heads,
                cfg.hidden_act,
                cfg.layer_norm_eps,
            )?,
            post_norm: LayerNorm::load(
                vb.pp("post_layernorm"),
                cfg.hidden_size,
                cfg.layer_norm_eps,
            )?,
            config: cfg.clone(),
        })
    }

    /// Pooled states [b, hidden] of pixels [b, 3, size, size].
    pub fn forward(&self, pixels: &Tensor, mode: Mode) -> Result<Tensor> {
        let b = pixels.dim(0)?;
        let patches = self
            .patch_embedding
            .forward(pixels)?
            .flatten_from(2)?
            .transpose(1, 2)?;
        let hidden = self.config.hidden_size;
        let class = self
            .class_embedding
            .reshape((1, 1, hidden))?
            .broadcast_as((b, 1, hidden))?;
        let xs = Tensor::cat(&[&class, &patches], 1)?;
        let positions = Tensor::arange(0u32, xs.dim(1)? as u32, pixels.device())?;
        let mut xs = self.pre_norm.forward(
            &xs.broadcast_add(&self.position_embedding.forward(&positions)?)?,
            mode,
        )?;
        for layer in &self.layers {
            xs = layer.forward(&xs, None, mode)?;
        }
        self.post_norm
            .forward(&xs.narrow(1, 0, 1)?.squeeze(1)?, mode)
    }
}
