//! A CPU trainer for the BERT text encoder: a forward pass that keeps what its backward
//! pass needs, and that backward pass written out by hand.
//!
//! Fine-tuning the encoder through candle's autograd spends most of a step outside the
//! matrix products: every op allocates its output, every gradient is summed into a
//! fresh zero tensor, and element-wise ops run one at a time. Here a layer is a handful
//! of matrix products (gemm, AVX-512) and fused row kernels over buffers reused from
//! step to step, and the weight gradients land in host buffers that the optimiser
//! reads in place. It computes the same function as [`crate::model::text::BertModel`]
//! (tested against candle's gradients); the rest of the model stays in candle and hands
//! back the gradient of the hidden states.

use std::collections::HashMap;

use candle_core::{CpuStorage, DType, Device, Result, Storage, Tensor, TensorId};
use rayon::prelude::*;

use crate::model::cpu::{self, DropoutMask, MatRef, matmul, simd};
use crate::model::ops::Activation;
use crate::model::text::{BertConfig, BertModel, BertTensors, WordPieces};

/// Parameters per layer, in the order of [`layer_tensors`].
const PER_LAYER: usize = 16;
/// Embedding parameters: word, position, token type, norm weight, norm bias.
const EMBEDDING_PARAMS: usize = 5;

/// Offsets of a layer's parameters within its block of [`PER_LAYER`].
mod at {
    pub const Q: usize = 0;
    pub const K: usize = 2;
    pub const V: usize = 4;
    pub const ATTENTION_OUT: usize = 6;
    pub const ATTENTION_NORM: usize = 8;
    pub const INTERMEDIATE: usize = 10;
    pub const OUTPUT: usize = 12;
    pub const OUTPUT_NORM: usize = 14;
}

fn layer_tensors(t: &BertTensors) -> Vec<Tensor> {
    let mut all = vec![
        t.word.clone(),
        t.position.clone(),
        t.token_type.clone(),
        t.embedding_norm.0.clone(),
        t.embedding_norm.1.clone(),
    ];
    for l in &t.layers {
        for lin in [&l.query, &l.key, &l.value, &l.attention_out] {
            all.push(lin.weight.clone());
            all.push(lin.bias.clone());
        }
        all.push(l.attention_norm.0.clone());
        all.push(l.attention_norm.1.clone());
        for lin in [&l.intermediate, &l.output] {
            all.push(lin.weight.clone());
            all.push(lin.bias.clone());
        }
        all.push(l.output_norm.0.clone());
        all.push(l.output_norm.1.clone());
    }
    all
}

/// What the backward pass needs of one layer's forward pass.
#[derive(Default)]
struct LayerActivations {
    /// Queries, keys and values side by side: [m, 3d].
    qkv: Vec<f32>,
    /// Attention probabilities before dropout: [b, heads, n, n].
    probs: Vec<f32>,
    /// Heads merged: [m, d].
    context: Vec<f32>,
    /// Normalised residual sum after attention, its 1/σ, and the norm's output.
    xhat1: Vec<f32>,
    rstd1: Vec<f32>,
    x1: Vec<f32>,
    /// Intermediate pre-activation and activation: [m, i].
    z: Vec<f32>,
    act: Vec<f32>,
    xhat2: Vec<f32>,
    rstd2: Vec<f32>,
}

/// The trainer; it reads the encoder's weights from the model's own variables.
pub struct EncoderTrainer {
    config: BertConfig,
    params: Vec<Tensor>,
    index: HashMap<TensorId, usize>,
    grads: Vec<Vec<f32>>,
    /// Rows of the word-embedding gradient written by the last backward pass.
    touched_words: Vec<u32>,
    // The last forward pass.
    batch: usize,
    len: usize,
    ids: Vec<u32>,
    lengths: Vec<usize>,
    seed: u64,
    dropout: bool,
    /// Inputs of each layer and the encoder's output: L + 1 buffers [m, d].
    hidden: Vec<Vec<f32>>,
    embedding_xhat: Vec<f32>,
    embedding_rstd: Vec<f32>,
    layers: Vec<LayerActivations>,
}

/// Dropout sites of a layer (the mask key is seed, site).
fn site(layer: usize, which: u32) -> u32 {
    1 + layer as u32 * 4 + which
}
const EMBEDDING_SITE: u32 = 0;
const ATTENTION_PROBS: u32 = 0;
const ATTENTION_OUT: u32 = 1;
const FFN_OUT: u32 = 2;

/// Read access to the f32 data of CPU tensors for the duration of `f`.
fn with_host<R>(tensors: &[Tensor], f: impl FnOnce(&[&[f32]]) -> Result<R>) -> Result<R> {
    let guards: Vec<_> = tensors.iter().map(|t| t.storage_and_layout()).collect();
    let mut slices = Vec::with_capacity(guards.len());
    for (storage, layout) in &guards {
        let Storage::Cpu(CpuStorage::F32(values)) = &**storage else {
            candle_core::bail!("the encoder trainer needs f32 tensors on the CPU");
        };
        let Some((start, end)) = layout.contiguous_offsets() else {
            candle_core::bail!("the encoder trainer needs contiguous weights");
        };
        slices.push(&values[start..end]);
    }
    f(&slices)
}

/// Sets `buffer` to `len` elements, reusing its allocation (contents are overwritten).
fn sized(buffer: &mut Vec<f32>, len: usize) -> &mut [f32] {
    buffer.resize(len, 0.0);
    &mut buffer[..len]
}

/// Fills each row of `dst` (row stride `ld`, first `bias.len()` columns) with `bias`.
fn fill_rows(dst: &mut [f32], ld: usize, bias: &[f32]) {
    dst.par_chunks_mut(ld * cpu::ROW_CHUNK).for_each(|rows| {
        for row in rows.chunks_mut(ld) {
            row[..bias.len()].copy_from_slice(bias);
        }
    });
}

/// dst = x·Wᵀ + b for x [m, in], W [out, in], dst rows of stride `ld`.
fn linear(dst: &mut [f32], ld: usize, x: &[f32], m: usize, w: &[f32], b: &[f32]) {
    let (out, inp) = (b.len(), w.len() / b.len());
    fill_rows(dst, ld, b);
    matmul(
        dst,
        ld,
        MatRef::new(x, m, inp),
        MatRef::new(w, out, inp).t(),
        true,
        true,
    );
}

/// out += x element-wise, in parallel.
fn add_assign(out: &mut [f32], x: &[f32]) {
    out.par_chunks_mut(cpu::CHUNK)
        .zip(x.par_chunks(cpu::CHUNK))
        .for_each(|(o, x)| {
            simd(|| {
                for (o, x) in o.iter_mut().zip(x) {
                    *o += x;
                }
            })
        });
}

impl EncoderTrainer {
    /// Whether the trainer can run this encoder here (f32 weights on the CPU, erf GELU).
    pub fn supports(model: &BertModel, device: &Device) -> bool {
        device.is_cpu()
            && model.config.hidden_act == Activation::Gelu
            && model
                .tensors()
                .is_ok_and(|t| t.word.dtype() == DType::F32 && t.word.device().is_cpu())
    }

    pub fn new(model: &BertModel) -> Result<Self> {
        let params = layer_tensors(&model.tensors()?);
        let index = params.iter().enumerate().map(|(i, t)| (t.id(), i)).collect();
        let grads = params.iter().map(|t| vec![0f32; t.elem_count()]).collect();
        let layers = model.config.num_hidden_layers;
        Ok(Self {
            config: model.config.clone(),
            params,
            index,
            grads,
            touched_words: Vec::new(),
            batch: 0,
            len: 0,
            ids: Vec::new(),
            lengths: Vec::new(),
            seed: 0,
            dropout: false,
            hidden: (0..=layers).map(|_| Vec::new()).collect(),
            embedding_xhat: Vec::new(),
            embedding_rstd: Vec::new(),
            layers: (0..layers).map(|_| LayerActivations::default()).collect(),
        })
    }

    /// The gradient the last backward pass computed for `tensor`, if it is an encoder
    /// weight.
    pub fn gradient(&self, tensor: &Tensor) -> Option<&[f32]> {
        self.index.get(&tensor.id()).map(|&i| self.grads[i].as_slice())
    }

    fn dropouts(&self) -> (f32, f32) {
        if self.dropout {
            (
                self.config.hidden_dropout_prob,
                self.config.attention_probs_dropout_prob,
            )
        } else {
            (0.0, 0.0)
        }
    }

    /// Hidden states [b, n, d] of a padded batch; with `dropout`, BERT's dropouts drawn
    /// from `seed`. Keeps what [`EncoderTrainer::backward`] needs.
    pub fn forward(&mut self, batch: &[&WordPieces], seed: u64, dropout: bool) -> Result<Tensor> {
        let b = batch.len();
        let n = batch.iter().map(|p| p.ids.len()).max().unwrap_or(0).max(1);
        let d = self.config.hidden_size;
        let m = b * n;
        self.batch = b;
        self.len = n;
        self.seed = seed;
        self.dropout = dropout;
        self.lengths = batch.iter().map(|p| p.ids.len()).collect();
        self.ids.clear();
        for p in batch {
            self.ids.extend(p.ids.iter().copied());
            self.ids.extend(std::iter::repeat_n(0u32, n - p.ids.len()));
        }
        if let Some(bad) = self.ids.iter().find(|&&id| id as usize >= self.config.vocab_size) {
            candle_core::bail!("piece id {bad} is outside the vocabulary");
        }
        if n > self.config.max_position_embeddings {
            candle_core::bail!("{n} pieces exceed the encoder's {} positions", self.config.max_position_embeddings);
        }
        let params = self.params.clone();
        with_host(&params, |w| {
            self.embeddings_forward(w, m, n, d);
            for l in 0..self.layers.len() {
                self.layer_forward(w, l, m, d);
            }
            Ok(())
        })?;
        Tensor::from_slice(&self.hidden[self.layers.len()][..m * d], (b, n, d), &Device::Cpu)
    }

    fn embeddings_forward(&mut self, w: &[&[f32]], m: usize, n: usize, d: usize) {
        let (word, position, token_type) = (w[0], w[1], w[2]);
        let mut sum = vec![0f32; m * d];
        let ids = &self.ids;
        sum.par_chunks_mut(d).enumerate().for_each(|(r, row)| {
            let id = ids[r] as usize;
            let pos = r % n;
            let (we, pe, te) = (
                &word[id * d..(id + 1) * d],
                &position[pos * d..(pos + 1) * d],
                &token_type[..d],
            );
            for i in 0..d {
                row[i] = we[i] + pe[i] + te[i];
            }
        });
        let (hidden_p, _) = self.dropouts();
        let out = sized(&mut self.hidden[0], m * d);
        cpu::layer_norm_forward(
            &sum,
            w[3],
            w[4],
            self.config.layer_norm_eps as f32,
            out,
            Some((
                sized(&mut self.embedding_xhat, m * d),
                sized(&mut self.embedding_rstd, m),
            )),
        );
        if hidden_p > 0.0 {
            DropoutMask::new(self.seed, EMBEDDING_SITE, hidden_p).apply_all(out);
        }
    }

    fn layer_forward(&mut self, w: &[&[f32]], l: usize, m: usize, d: usize) {
        let p = EMBEDDING_PARAMS + l * PER_LAYER;
        let eps = self.config.layer_norm_eps as f32;
        let heads = self.config.num_attention_heads;
        let inner = self.config.intermediate_size;
        let (hidden_p, attention_p) = self.dropouts();
        let (b, n, seed) = (self.batch, self.len, self.seed);
        let (before, after) = self.hidden.split_at_mut(l + 1);
        let x = &before[l][..m * d];
        let out = sized(&mut after[0], m * d);
        let acts = &mut self.layers[l];

        let qkv = sized(&mut acts.qkv, m * 3 * d);
        for (j, off) in [(at::Q, 0), (at::K, d), (at::V, 2 * d)] {
            linear(&mut qkv[off..], 3 * d, x, m, w[p + j], w[p + j + 1]);
        }
        let probs = sized(&mut acts.probs, b * heads * n * n);
        let context = sized(&mut acts.context, m * d);
        attention_forward(
            qkv,
            probs,
            context,
            &self.lengths,
            AttentionShape { n, d, heads },
            (attention_p > 0.0).then(|| DropoutMask::new(seed, site(l, ATTENTION_PROBS), attention_p)),
        );

        let mut sum = vec![0f32; m * d];
        linear(
            &mut sum,
            d,
            context,
            m,
            w[p + at::ATTENTION_OUT],
            w[p + at::ATTENTION_OUT + 1],
        );
        if hidden_p > 0.0 {
            DropoutMask::new(seed, site(l, ATTENTION_OUT), hidden_p).apply_all(&mut sum);
        }
        add_assign(&mut sum, x);
        let x1 = sized(&mut acts.x1, m * d);
        cpu::layer_norm_forward(
            &sum,
            w[p + at::ATTENTION_NORM],
            w[p + at::ATTENTION_NORM + 1],
            eps,
            x1,
            Some((sized(&mut acts.xhat1, m * d), sized(&mut acts.rstd1, m))),
        );

        let z = sized(&mut acts.z, m * inner);
        linear(z, inner, x1, m, w[p + at::INTERMEDIATE], w[p + at::INTERMEDIATE + 1]);
        let act = sized(&mut acts.act, m * inner);
        cpu::gelu_forward(z, act);
        linear(&mut sum, d, act, m, w[p + at::OUTPUT], w[p + at::OUTPUT + 1]);
        if hidden_p > 0.0 {
            DropoutMask::new(seed, site(l, FFN_OUT), hidden_p).apply_all(&mut sum);
        }
        add_assign(&mut sum, x1);
        cpu::layer_norm_forward(
            &sum,
            w[p + at::OUTPUT_NORM],
            w[p + at::OUTPUT_NORM + 1],
            eps,
            out,
            Some((sized(&mut acts.xhat2, m * d), sized(&mut acts.rstd2, m))),
        );
    }

    /// Weight gradients from the gradient [b, n, d] of the last forward pass's hidden
    /// states; they replace those of the previous backward pass.
    pub fn backward(&mut self, grad: &Tensor) -> Result<()> {
        let (b, n, d) = (self.batch, self.len, self.config.hidden_size);
        let m = b * n;
        if grad.dims() != [b, n, d] {
            candle_core::bail!("gradient {:?} does not match the forward pass [{b}, {n}, {d}]", grad.dims());
        }
        let mut dy = grad.flatten_all()?.to_vec1::<f32>()?;
        // Every weight gradient below is written, not added, except these.
        let word_dim = d;
        for &row in &self.touched_words {
            let r = row as usize;
            self.grads[0][r * word_dim..(r + 1) * word_dim].fill(0.0);
        }
        for (i, g) in self.grads.iter_mut().enumerate().skip(1) {
            if i < EMBEDDING_PARAMS || self.params[i].rank() == 1 {
                g.fill(0.0);
            }
        }
        let params = self.params.clone();
        let mut grads = std::mem::take(&mut self.grads);
        let result = with_host(&params, |w| {
            for l in (0..self.layers.len()).rev() {
                dy = self.layer_backward(w, &mut grads, l, dy, m, d);
            }
            self.embeddings_backward(w, &mut grads, dy, m, n, d);
            Ok(())
        });
        self.grads = grads;
        result
    }

    /// Returns the gradient of the layer's input.
    fn layer_backward(
        &self,
        w: &[&[f32]],
        g: &mut [Vec<f32>],
        l: usize,
        dy: Vec<f32>,
        m: usize,
        d: usize,
    ) -> Vec<f32> {
        let p = EMBEDDING_PARAMS + l * PER_LAYER;
        let inner = self.config.intermediate_size;
        let heads = self.config.num_attention_heads;
        let (hidden_p, attention_p) = self.dropouts();
        let acts = &self.layers[l];
        let x = &self.hidden[l][..m * d];

        // Output LayerNorm, then the residual branch and the feed-forward one.
        let mut dx1 = vec![0f32; m * d];
        let (ga, gb) = two(g, p + at::OUTPUT_NORM, p + at::OUTPUT_NORM + 1);
        cpu::layer_norm_backward(&acts.xhat2, &acts.rstd2, w[p + at::OUTPUT_NORM], &dy, &mut dx1, false, ga, gb);
        let mut d_out = dx1.clone();
        if hidden_p > 0.0 {
            DropoutMask::new(self.seed, site(l, FFN_OUT), hidden_p).apply_all(&mut d_out);
        }
        let (gw, gbias) = two(g, p + at::OUTPUT, p + at::OUTPUT + 1);
        linear_backward_weights(gw, gbias, &d_out, &acts.act, m, d, inner);
        let mut d_act = vec![0f32; m * inner];
        matmul(&mut d_act, inner, MatRef::new(&d_out, m, d), MatRef::new(w[p + at::OUTPUT], d, inner), false, true);
        let mut dz = vec![0f32; m * inner];
        cpu::gelu_backward(&acts.z, &d_act, &mut dz);
        let (gw, gbias) = two(g, p + at::INTERMEDIATE, p + at::INTERMEDIATE + 1);
        linear_backward_weights(gw, gbias, &dz, &acts.x1, m, inner, d);
        matmul(&mut dx1, d, MatRef::new(&dz, m, inner), MatRef::new(w[p + at::INTERMEDIATE], inner, d), true, true);

        // Attention LayerNorm, residual, output projection, attention, q/k/v.
        let mut dx = dz;
        dx.truncate(m * d);
        let (ga, gb) = two(g, p + at::ATTENTION_NORM, p + at::ATTENTION_NORM + 1);
        cpu::layer_norm_backward(&acts.xhat1, &acts.rstd1, w[p + at::ATTENTION_NORM], &dx1, &mut dx, false, ga, gb);
        let mut d_attn = dx1;
        d_attn.copy_from_slice(&dx);
        if hidden_p > 0.0 {
            DropoutMask::new(self.seed, site(l, ATTENTION_OUT), hidden_p).apply_all(&mut d_attn);
        }
        let (gw, gbias) = two(g, p + at::ATTENTION_OUT, p + at::ATTENTION_OUT + 1);
        linear_backward_weights(gw, gbias, &d_attn, &acts.context, m, d, d);
        let mut d_context = d_act;
        d_context.truncate(m * d);
        matmul(&mut d_context, d, MatRef::new(&d_attn, m, d), MatRef::new(w[p + at::ATTENTION_OUT], d, d), false, true);

        let mut d_qkv = vec![0f32; m * 3 * d];
        attention_backward(
            &acts.qkv,
            &acts.probs,
            &d_context,
            &mut d_qkv,
            AttentionShape { n: self.len, d, heads },
            (attention_p > 0.0).then(|| DropoutMask::new(self.seed, site(l, ATTENTION_PROBS), attention_p)),
        );
        let mut bias_sums = vec![0f32; 3 * d];
        cpu::add_column_sums(&d_qkv, 3 * d, &mut bias_sums);
        for (j, off) in [(at::Q, 0), (at::K, d), (at::V, 2 * d)] {
            g[p + j + 1].copy_from_slice(&bias_sums[off..off + d]);
            let dq = MatRef::strided(&d_qkv[off..], m, d, 3 * d, 1);
            matmul(&mut g[p + j], d, dq.t(), MatRef::new(x, m, d), false, true);
            matmul(&mut dx, d, dq, MatRef::new(w[p + j], d, d), true, true);
        }
        dx
    }

    fn embeddings_backward(
        &mut self,
        w: &[&[f32]],
        g: &mut [Vec<f32>],
        mut dy: Vec<f32>,
        m: usize,
        n: usize,
        d: usize,
    ) {
        let (hidden_p, _) = self.dropouts();
        if hidden_p > 0.0 {
            DropoutMask::new(self.seed, EMBEDDING_SITE, hidden_p).apply_all(&mut dy);
        }
        let mut de = vec![0f32; m * d];
        let (ga, gb) = two(g, 3, 4);
        cpu::layer_norm_backward(&self.embedding_xhat, &self.embedding_rstd, w[3], &dy, &mut de, false, ga, gb);
        self.touched_words.clear();
        for (r, row) in de.chunks(d).enumerate() {
            let id = self.ids[r] as usize;
            self.touched_words.push(id as u32);
            let pos = r % n;
            for (dst, v) in g[0][id * d..(id + 1) * d].iter_mut().zip(row) {
                *dst += v;
            }
            for (dst, v) in g[1][pos * d..(pos + 1) * d].iter_mut().zip(row) {
                *dst += v;
            }
            for (dst, v) in g[2][..d].iter_mut().zip(row) {
                *dst += v;
            }
        }
        self.touched_words.sort_unstable();
        self.touched_words.dedup();
    }
}

/// Two distinct gradient buffers at once.
fn two(g: &mut [Vec<f32>], i: usize, j: usize) -> (&mut [f32], &mut [f32]) {
    assert!(i < j);
    let (a, b) = g.split_at_mut(j);
    (&mut a[i], &mut b[0])
}

/// dW = dyᵀ·x (written) and db = Σ rows of dy (written) for y = x·Wᵀ + b.
fn linear_backward_weights(
    gw: &mut [f32],
    gb: &mut [f32],
    dy: &[f32],
    x: &[f32],
    m: usize,
    out: usize,
    inp: usize,
) {
    matmul(gw, inp, MatRef::new(dy, m, out).t(), MatRef::new(x, m, inp), false, true);
    gb.fill(0.0);
    cpu::add_column_sums(dy, out, gb);
}

#[derive(Clone, Copy)]
struct AttentionShape {
    n: usize,
    d: usize,
    heads: usize,
}

/// Scaled dot-product attention of every (tweet, head), keys beyond a tweet's length
/// masked out: probs [b, h, n, n] (before dropout) and the merged context [m, d].
fn attention_forward(
    qkv: &[f32],
    probs: &mut [f32],
    context: &mut [f32],
    lengths: &[usize],
    s: AttentionShape,
    dropout: Option<DropoutMask>,
) {
    let AttentionShape { n, d, heads } = s;
    let dh = d / heads;
    let scale = 1.0 / (dh as f32).sqrt();
    probs
        .par_chunks_mut(heads * n * n)
        .zip(context.par_chunks_mut(n * d))
        .enumerate()
        .for_each(|(bi, (probs, context))| {
            let rows = &qkv[bi * n * 3 * d..(bi + 1) * n * 3 * d];
            let mut dropped = vec![0f32; n * n];
            for h in 0..heads {
                let p = &mut probs[h * n * n..(h + 1) * n * n];
                let q = MatRef::strided(&rows[h * dh..], n, dh, 3 * d, 1);
                let k = MatRef::strided(&rows[d + h * dh..], n, dh, 3 * d, 1);
                let v = MatRef::strided(&rows[2 * d + h * dh..], n, dh, 3 * d, 1);
                matmul(p, n, q, k.t(), false, false);
                simd(|| {
                    for row in p.chunks_mut(n) {
                        for x in row.iter_mut() {
                            *x *= scale;
                        }
                        cpu::softmax_row(row, lengths[bi]);
                    }
                });
                let used: &[f32] = match &dropout {
                    Some(mask) => {
                        dropped.copy_from_slice(p);
                        simd(|| mask.apply(&mut dropped, (bi * heads + h) * n * n));
                        &dropped
                    }
                    None => p,
                };
                matmul(&mut context[h * dh..], d, MatRef::new(used, n, n), v, false, false);
            }
        });
}

/// Gradients of queries, keys and values [m, 3d] from the context gradient [m, d].
fn attention_backward(
    qkv: &[f32],
    probs: &[f32],
    d_context: &[f32],
    d_qkv: &mut [f32],
    s: AttentionShape,
    dropout: Option<DropoutMask>,
) {
    let AttentionShape { n, d, heads } = s;
    let dh = d / heads;
    let scale = 1.0 / (dh as f32).sqrt();
    d_qkv
        .par_chunks_mut(n * 3 * d)
        .enumerate()
        .for_each(|(bi, d_rows)| {
            let rows = &qkv[bi * n * 3 * d..(bi + 1) * n * 3 * d];
            let dc_rows = &d_context[bi * n * d..(bi + 1) * n * d];
            let mut dropped = vec![0f32; n * n];
            let mut d_probs = vec![0f32; n * n];
            let mut d_scores = vec![0f32; n * n];
            for h in 0..heads {
                let at = (bi * heads + h) * n * n;
                let p = &probs[at..at + n * n];
                let q = MatRef::strided(&rows[h * dh..], n, dh, 3 * d, 1);
                let k = MatRef::strided(&rows[d + h * dh..], n, dh, 3 * d, 1);
                let v = MatRef::strided(&rows[2 * d + h * dh..], n, dh, 3 * d, 1);
                let dc = MatRef::strided(&dc_rows[h * dh..], n, dh, d, 1);
                let used: &[f32] = match &dropout {
                    Some(mask) => {
                        dropped.copy_from_slice(p);
                        simd(|| mask.apply(&mut dropped, at));
                        &dropped
                    }
                    None => p,
                };
                // dV = P̃ᵀ·dC; dP̃ = dC·Vᵀ, then through dropout and softmax.
                matmul(&mut d_rows[2 * d + h * dh..], 3 * d, MatRef::new(used, n, n).t(), dc, false, false);
                matmul(&mut d_probs, n, dc, v.t(), false, false);
                simd(|| {
                    if let Some(mask) = &dropout {
                        mask.apply(&mut d_probs, at);
                    }
                    for ((ds, pr), dp) in d_scores
                        .chunks_mut(n)
                        .zip(p.chunks(n))
                        .zip(d_probs.chunks(n))
                    {
                        cpu::softmax_row_backward(pr, dp, ds);
                        for x in ds.iter_mut() {
                            *x *= scale;
                        }
                    }
                });
                let ds = MatRef::new(&d_scores, n, n);
                matmul(&mut d_rows[h * dh..], 3 * d, ds, k, false, false);
                matmul(&mut d_rows[d + h * dh..], 3 * d, ds.t(), q, false, false);
            }
        });
}
