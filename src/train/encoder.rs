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

/// Buffers reused from step to step (fresh large allocations each step would cost page
/// faults: the kernel clears every new page).
#[derive(Default)]
struct Scratch {
    /// A residual sum before its LayerNorm.
    sum: Vec<f32>,
    /// Gradient of the current layer's output, and of its input.
    dy: Vec<f32>,
    dx: Vec<f32>,
    /// Gradient of the residual sum after attention.
    dx1: Vec<f32>,
    /// Gradient of a dropped-out branch output.
    d_branch: Vec<f32>,
    d_context: Vec<f32>,
    d_act: Vec<f32>,
    dz: Vec<f32>,
    d_qkv: Vec<f32>,
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
    scratch: Scratch,
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
            simd(
                #[inline(always)]
                || {
                    for (o, x) in o.iter_mut().zip(x) {
                        *o += x;
                    }
                },
            )
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
        let index = params
            .iter()
            .enumerate()
            .map(|(i, t)| (t.id(), i))
            .collect();
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
            scratch: Scratch::default(),
        })
    }

    /// The gradient the last backward pass computed for `tensor`, if it is an encoder
    /// weight.
    pub fn gradient(&self, tensor: &Tensor) -> Option<&[f32]> {
        self.index
            .get(&tensor.id())
            .map(|&i| self.grads[i].as_slice())
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
        if let Some(bad) = self
            .ids
            .iter()
            .find(|&&id| id as usize >= self.config.vocab_size)
        {
            candle_core::bail!("piece id {bad} is outside the vocabulary");
        }
        if n > self.config.max_position_embeddings {
            candle_core::bail!(
                "{n} pieces exceed the encoder's {} positions",
                self.config.max_position_embeddings
            );
        }
        let params = self.params.clone();
        with_host(&params, |w| {
            self.embeddings_forward(w, m, n, d);
            for l in 0..self.layers.len() {
                self.layer_forward(w, l, m, d);
            }
            Ok(())
        })?;
        Tensor::from_slice(
            &self.hidden[self.layers.len()][..m * d],
            (b, n, d),
            &Device::Cpu,
        )
    }

    fn embeddings_forward(&mut self, w: &[&[f32]], m: usize, n: usize, d: usize) {
        let (word, position, token_type) = (w[0], w[1], w[2]);
        let mut sum = std::mem::take(&mut self.scratch.sum);
        let ids = &self.ids;
        sized(&mut sum, m * d)
            .par_chunks_mut(d)
            .enumerate()
            .for_each(|(r, row)| {
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
        self.scratch.sum = sum;
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
            (attention_p > 0.0)
                .then(|| DropoutMask::new(seed, site(l, ATTENTION_PROBS), attention_p)),
        );

        let sum = sized(&mut self.scratch.sum, m * d);
        linear(
            sum,
            d,
            context,
            m,
            w[p + at::ATTENTION_OUT],
            w[p + at::ATTENTION_OUT + 1],
        );
        if hidden_p > 0.0 {
            DropoutMask::new(seed, site(l, ATTENTION_OUT), hidden_p).apply_all(sum);
        }
        add_assign(sum, x);
        let x1 = sized(&mut acts.x1, m * d);
        cpu::layer_norm_forward(
            sum,
            w[p + at::ATTENTION_NORM],
            w[p + at::ATTENTION_NORM + 1],
            eps,
            x1,
            Some((sized(&mut acts.xhat1, m * d), sized(&mut acts.rstd1, m))),
        );

        let z = sized(&mut acts.z, m * inner);
        linear(
            z,
            inner,
            x1,
            m,
            w[p + at::INTERMEDIATE],
            w[p + at::INTERMEDIATE + 1],
        );
        let act = sized(&mut acts.act, m * inner);
        cpu::gelu_forward(z, act);
        linear(sum, d, act, m, w[p + at::OUTPUT], w[p + at::OUTPUT + 1]);
        if hidden_p > 0.0 {
            DropoutMask::new(seed, site(l, FFN_OUT), hidden_p).apply_all(sum);
        }
        add_assign(sum, x1);
        cpu::layer_norm_forward(
            sum,
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
            candle_core::bail!(
                "gradient {:?} does not match the forward pass [{b}, {n}, {d}]",
                grad.dims()
            );
        }
        let mut scratch = std::mem::take(&mut self.scratch);
        {
            let (storage, layout) = grad.storage_and_layout();
            let Storage::Cpu(CpuStorage::F32(values)) = &*storage else {
                candle_core::bail!("the encoder trainer needs an f32 gradient on the CPU");
            };
            match layout.contiguous_offsets() {
                Some((start, end)) => {
                    sized(&mut scratch.dy, m * d).copy_from_slice(&values[start..end])
                }
                None => {
                    drop(storage);
                    scratch.dy = grad.flatten_all()?.to_vec1::<f32>()?;
                }
            }
        }
        // Weight matrices' gradients below are written; these are added to.
        for &row in &self.touched_words {
            let r = row as usize;
            self.grads[0][r * d..(r + 1) * d].fill(0.0);
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
                self.layer_backward(w, &mut grads, &mut scratch, l, m, d);
            }
            self.embeddings_backward(w, &mut grads, &mut scratch, m, n, d);
            Ok(())
        });
        self.grads = grads;
        self.scratch = scratch;
        result
    }

    /// From the gradient of the layer's output in `s.dy`, leaves that of its input there.
    fn layer_backward(
        &self,
        w: &[&[f32]],
        g: &mut [Vec<f32>],
        s: &mut Scratch,
        l: usize,
        m: usize,
        d: usize,
    ) {
        let p = EMBEDDING_PARAMS + l * PER_LAYER;
        let inner = self.config.intermediate_size;
        let heads = self.config.num_attention_heads;
        let (hidden_p, attention_p) = self.dropouts();
        let acts = &self.layers[l];
        let x = &self.hidden[l][..m * d];
        let dy = &s.dy[..m * d];

        // Output LayerNorm and its residual, the feed-forward branch, then the attention
        // LayerNorm and its residual and the attention output projection.
        let dx1 = sized(&mut s.dx1, m * d);
        let d_act = sized(&mut s.d_act, m * inner);
        let branch = Branch {
            norm: p + at::OUTPUT_NORM,
            xhat: &acts.xhat2,
            rstd: &acts.rstd2,
            dropout: (hidden_p > 0.0)
                .then(|| DropoutMask::new(self.seed, site(l, FFN_OUT), hidden_p)),
            linear: p + at::OUTPUT,
            input: &acts.act,
        };
        branch.backward(w, g, dy, dx1, &mut s.d_branch, d_act);
        let dz = sized(&mut s.dz, m * inner);
        cpu::gelu_backward(&acts.z, d_act, dz);
        let (gw, gbias) = two(g, p + at::INTERMEDIATE, p + at::INTERMEDIATE + 1);
        linear_backward_weights(gw, gbias, dz, &acts.x1, m, inner, d);
        matmul(
            dx1,
            d,
            MatRef::new(dz, m, inner),
            MatRef::new(w[p + at::INTERMEDIATE], inner, d),
            true,
            true,
        );

        let dx = sized(&mut s.dx, m * d);
        let d_context = sized(&mut s.d_context, m * d);
        let branch = Branch {
            norm: p + at::ATTENTION_NORM,
            xhat: &acts.xhat1,
            rstd: &acts.rstd1,
            dropout: (hidden_p > 0.0)
                .then(|| DropoutMask::new(self.seed, site(l, ATTENTION_OUT), hidden_p)),
            linear: p + at::ATTENTION_OUT,
            input: &acts.context,
        };
        branch.backward(w, g, dx1, dx, &mut s.d_branch, d_context);

        let d_qkv = sized(&mut s.d_qkv, m * 3 * d);
        attention_backward(
            &acts.qkv,
            &acts.probs,
            d_context,
            d_qkv,
            AttentionShape {
                n: self.len,
                d,
                heads,
            },
            (attention_p > 0.0)
                .then(|| DropoutMask::new(self.seed, site(l, ATTENTION_PROBS), attention_p)),
        );
        let mut bias_sums = vec![0f32; 3 * d];
        cpu::add_column_sums(d_qkv, 3 * d, &mut bias_sums);
        for (j, off) in [(at::Q, 0), (at::K, d), (at::V, 2 * d)] {
            g[p + j + 1].copy_from_slice(&bias_sums[off..off + d]);
            let dq = MatRef::strided(&d_qkv[off..], m, d, 3 * d, 1);
            matmul(&mut g[p + j], d, dq.t(), MatRef::new(x, m, d), false, true);
            matmul(dx, d, dq, MatRef::new(w[p + j], d, d), true, true);
        }
        std::mem::swap(&mut s.dy, &mut s.dx);
    }

    fn embeddings_backward(
        &mut self,
        w: &[&[f32]],
        g: &mut [Vec<f32>],
        s: &mut Scratch,
        m: usize,
        n: usize,
        d: usize,
    ) {
        let (hidden_p, _) = self.dropouts();
        let dy = &mut s.dy[..m * d];
        if hidden_p > 0.0 {
            DropoutMask::new(self.seed, EMBEDDING_SITE, hidden_p).apply_all(dy);
        }
        let de = sized(&mut s.dx, m * d);
        let (ga, gb) = two(g, 3, 4);
        cpu::layer_norm_backward(
            &self.embedding_xhat,
            &self.embedding_rstd,
            w[3],
            dy,
            de,
            false,
            ga,
            gb,
        );
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

/// The backward pass of `LayerNorm(x + dropout(input·Wᵀ + b))`: a residual sum's norm
/// (parameters at `norm`, `norm + 1`) over a linear branch (at `linear`, `linear + 1`).
struct Branch<'a> {
    norm: usize,
    xhat: &'a [f32],
    rstd: &'a [f32],
    dropout: Option<DropoutMask>,
    linear: usize,
    input: &'a [f32],
}

impl Branch<'_> {
    /// From the gradient `dy` of the norm's output: writes the residual's gradient to
    /// `d_residual` and the branch input's to `d_input`, and the weight gradients to `g`.
    #[allow(clippy::too_many_arguments)]
    fn backward(
        &self,
        w: &[&[f32]],
        g: &mut [Vec<f32>],
        dy: &[f32],
        d_residual: &mut [f32],
        d_branch: &mut Vec<f32>,
        d_input: &mut [f32],
    ) {
        let (m, d) = (self.rstd.len(), d_residual.len() / self.rstd.len().max(1));
        let inp = self.input.len() / m.max(1);
        let (ga, gb) = two(g, self.norm, self.norm + 1);
        cpu::layer_norm_backward(
            self.xhat,
            self.rstd,
            w[self.norm],
            dy,
            d_residual,
            false,
            ga,
            gb,
        );
        let d_out = sized(d_branch, m * d);
        d_out.copy_from_slice(d_residual);
        if let Some(mask) = &self.dropout {
            mask.apply_all(d_out);
        }
        let (gw, gbias) = two(g, self.linear, self.linear + 1);
        linear_backward_weights(gw, gbias, d_out, self.input, m, d, inp);
        matmul(
            d_input,
            inp,
            MatRef::new(d_out, m, d),
            MatRef::new(w[self.linear], d, inp),
            false,
            true,
        );
    }
}

/// dW = dyᵀ·x (written) and db += Σ rows of dy (biases start each pass at zero) for
/// y = x·Wᵀ + b.
fn linear_backward_weights(
    gw: &mut [f32],
    gb: &mut [f32],
    dy: &[f32],
    x: &[f32],
    m: usize,
    out: usize,
    inp: usize,
) {
    matmul(
        gw,
        inp,
        MatRef::new(dy, m, out).t(),
        MatRef::new(x, m, inp),
        false,
        true,
    );
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
                simd(
                    #[inline(always)]
                    || {
                        for row in p.chunks_mut(n) {
                            for x in row.iter_mut() {
                                *x *= scale;
                            }
                            cpu::softmax_row(row, lengths[bi]);
                        }
                    },
                );
                let used: &[f32] = match &dropout {
                    Some(mask) => {
                        dropped.copy_from_slice(p);
                        simd(
                            #[inline(always)]
                            || mask.apply(&mut dropped, (bi * heads + h) * n * n),
                        );
                        &dropped
                    }
                    None => p,
                };
                matmul(
                    &mut context[h * dh..],
                    d,
                    MatRef::new(used, n, n),
                    v,
                    false,
                    false,
                );
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
                        simd(
                            #[inline(always)]
                            || mask.apply(&mut dropped, at),
                        );
                        &dropped
                    }
                    None => p,
                };
                // dV = P̃ᵀ·dC; dP̃ = dC·Vᵀ, then through dropout and softmax.
                matmul(
                    &mut d_rows[2 * d + h * dh..],
                    3 * d,
                    MatRef::new(used, n, n).t(),
                    dc,
                    false,
                    false,
                );
                matmul(&mut d_probs, n, dc, v.t(), false, false);
                simd(
                    #[inline(always)]
                    || {
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
                    },
                );
                let ds = MatRef::new(&d_scores, n, n);
                matmul(&mut d_rows[h * dh..], 3 * d, ds, k, false, false);
                matmul(&mut d_rows[d + h * dh..], 3 * d, ds.t(), q, false, false);
            }
        });
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::ops::Mode;
    use crate::model::testing::max_abs_diff;
    use crate::model::text::pad_batch;
    use candle_nn::{VarBuilder, VarMap};

    /// A small BERT with every weight (biases and norms too) drawn at random.
    fn tiny_bert(dropout: f32) -> (BertModel, VarMap) {
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

    fn pieces(ids: &[u32]) -> WordPieces {
        WordPieces {
            ids: ids.to_vec(),
            first_piece: (0..ids.len()).map(Some).collect(),
        }
    }

    #[test]
    fn forward_and_gradients_match_candles_autograd_on_a_padded_batch() {
        let (model, varmap) = tiny_bert(0.1);
        let batch = [
            pieces(&[1, 7, 9, 3, 2]),
            pieces(&[1, 4, 2]),
            pieces(&[1, 5, 6, 8, 11, 12, 2]),
        ];
        let refs: Vec<&WordPieces> = batch.iter().collect();
        let mut trainer = EncoderTrainer::new(&model).unwrap();
        let ours = trainer.forward(&refs, 0, false).unwrap();

        let (ids, mask) = pad_batch(&refs, &Device::Cpu).unwrap();
        let reference = model.forward(&ids, &mask, Mode::Grad).unwrap();
        let diff = max_abs_diff(&ours, &reference);
        assert!(diff < 1e-5, "hidden states differ by {diff}");

        // Loss Σ h ⊙ W, with W zero at padding as the model's word gather leaves it.
        let weights = (Tensor::randn(0f32, 1.0, reference.shape(), &Device::Cpu).unwrap()
            * mask
                .unsqueeze(2)
                .unwrap()
                .broadcast_as(reference.shape())
                .unwrap())
        .unwrap();
        let grads = (&reference * &weights)
            .unwrap()
            .sum_all()
            .unwrap()
            .backward()
            .unwrap();
        trainer.backward(&weights).unwrap();
        let named = varmap.data().lock().unwrap();
        assert_eq!(named.len(), EMBEDDING_PARAMS + 2 * PER_LAYER);
        for (name, var) in named.iter() {
            let theirs = grads.get(var.as_tensor()).unwrap();
            let ours = trainer.gradient(var.as_tensor()).unwrap();
            let ours = Tensor::from_slice(ours, theirs.shape(), &Device::Cpu).unwrap();
            let scale = theirs
                .abs()
                .unwrap()
                .max_all()
                .unwrap()
                .to_scalar::<f32>()
                .unwrap();
            let diff = max_abs_diff(&ours, theirs);
            assert!(
                diff <= 1e-4 * scale.max(1.0),
                "{name}: gradient differs by {diff} (scale {scale})"
            );
        }
        // A second backward pass replaces the gradients rather than adding to them.
        let first = trainer
            .gradient(named["embeddings.word_embeddings.weight"].as_tensor())
            .unwrap()
            .to_vec();
        trainer.backward(&weights).unwrap();
        let again = trainer
            .gradient(named["embeddings.word_embeddings.weight"].as_tensor())
            .unwrap();
        assert_eq!(first, again);
    }

    #[test]
    fn dropout_is_seeded_and_its_gradient_matches_finite_differences() {
        let (model, varmap) = tiny_bert(0.2);
        let batch = [pieces(&[1, 7, 9, 3, 2]), pieces(&[1, 4, 2])];
        let refs: Vec<&WordPieces> = batch.iter().collect();
        let mut trainer = EncoderTrainer::new(&model).unwrap();
        let a = trainer.forward(&refs, 11, true).unwrap();
        let b = trainer.forward(&refs, 11, true).unwrap();
        let c = trainer.forward(&refs, 12, true).unwrap();
        let plain = trainer.forward(&refs, 11, false).unwrap();
        assert_eq!(max_abs_diff(&a, &b), 0.0);
        assert!(max_abs_diff(&a, &c) > 1e-3);
        assert!(max_abs_diff(&a, &plain) > 1e-3);

        // f(θ) = Σ h(θ) ⊙ W under fixed masks; compare ⟨∇f, v⟩ with a central difference
        // along a random direction v of every weight.
        let weights = Tensor::randn(0f32, 1.0, a.shape(), &Device::Cpu).unwrap();
        let f = |t: &mut EncoderTrainer| {
            let h = t.forward(&refs, 11, true).unwrap();
            (h * &weights)
                .unwrap()
                .sum_all()
                .unwrap()
                .to_scalar::<f32>()
                .unwrap() as f64
        };
        f(&mut trainer);
        trainer.backward(&weights).unwrap();
        let vars = varmap.all_vars();
        let directions: Vec<Tensor> = vars
            .iter()
            .map(|v| Tensor::randn(0f32, 1.0, v.shape(), &Device::Cpu).unwrap())
            .collect();
        let predicted: f64 = vars
            .iter()
            .zip(&directions)
            .map(|(v, d)| {
                let g = trainer.gradient(v.as_tensor()).unwrap();
                let d = d.flatten_all().unwrap().to_vec1::<f32>().unwrap();
                g.iter().zip(&d).map(|(a, b)| (a * b) as f64).sum::<f64>()
            })
            .sum();
        let originals: Vec<Tensor> = vars.iter().map(|v| v.as_tensor().copy().unwrap()).collect();
        let shifted = |t: &mut EncoderTrainer, eps: f64| {
            for ((v, o), d) in vars.iter().zip(&originals).zip(&directions) {
                v.set(&(o + (d * eps).unwrap()).unwrap()).unwrap();
            }
            f(t)
        };
        let eps = 1e-3;
        let numeric = (shifted(&mut trainer, eps) - shifted(&mut trainer, -eps)) / (2.0 * eps);
        let rel = (numeric - predicted).abs() / predicted.abs().max(1.0);
        assert!(
            rel < 2e-2,
            "directional derivative {predicted} vs finite difference {numeric}"
        );
    }
}
