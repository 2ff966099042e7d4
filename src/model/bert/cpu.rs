//! The BERT text encoder's forward pass on the CPU: matrix products through `gemm`
//! (AVX-512 where the machine has it) and fused row kernels over buffers reused from
//! call to call. One implementation serves inference (activations dropped as soon as
//! the next layer has read them) and training (every activation kept for the
//! hand-written backward pass of `train::encoder`). It computes the same function as
//! [`BertModel::forward`] (tested against it), several times faster on two cores: no
//! allocation per op, no element-wise op run on its own.

use candle_core::{CpuStorage, DType, Device, Layout, Result, Storage, Tensor};
use rayon::prelude::*;

use crate::kernels::attention::{AttentionInput, Segment, attend};
use crate::kernels::packed::{Epilogue, PackedBf16};
use crate::kernels::{self, DropoutMask, MatRef, matmul, simd};
use crate::model::bert::{
    BertConfig, BertModel, BertParams, BertTensors, LayerParams, LinearParams, WordPieces,
};
use crate::model::ops::Activation;

/// The encoder's weights as host slices, by name.
pub type HostWeights<'a> = BertParams<&'a [f32]>;

/// Whether this CPU forward can run `model` here: f32 weights on the CPU, erf GELU.
pub fn supports(model: &BertModel, device: &Device) -> bool {
    device.is_cpu()
        && model.config.hidden_act == Activation::Gelu
        && model
            .tensors()
            .is_ok_and(|t| t.word.dtype() == DType::F32 && t.word.device().is_cpu())
}

/// Read access to the f32 data of the encoder's CPU tensors for the duration of `f`.
pub fn with_host<R>(tensors: &BertTensors, f: impl FnOnce(&HostWeights) -> Result<R>) -> Result<R> {
    let guards = tensors.try_map(|t| Ok::<_, candle_core::Error>(t.storage_and_layout()))?;
    let slices = guards.try_map(|(storage, layout)| host_slice(storage, layout))?;
    f(&slices)
}

/// The f32 data of a contiguous CPU tensor's storage.
pub fn host_slice<'a>(storage: &'a Storage, layout: &Layout) -> Result<&'a [f32]> {
    let Storage::Cpu(CpuStorage::F32(values)) = storage else {
        candle_core::bail!("the CPU forward needs f32 tensors on the CPU");
    };
    let Some((start, end)) = layout.contiguous_offsets() else {
        candle_core::bail!("the CPU forward needs contiguous weights");
    };
    Ok(&values[start..end])
}

/// What one layer's forward pass leaves behind (the backward pass reads it).
#[derive(Default)]
pub struct LayerActivations {
    /// Queries, keys and values side by side: [m, 3d].
    pub qkv: Vec<f32>,
    /// Attention probabilities before dropout: [b, heads, n, n].
    pub probs: Vec<f32>,
    /// Heads merged: [m, d].
    pub context: Vec<f32>,
    /// Normalised residual sum after attention, its 1/σ (training only), and the
    /// norm's output.
    pub xhat1: Vec<f32>,
    pub rstd1: Vec<f32>,
    pub x1: Vec<f32>,
    /// Intermediate pre-activation and activation: [m, i].
    pub z: Vec<f32>,
    pub act: Vec<f32>,
    pub xhat2: Vec<f32>,
    pub rstd2: Vec<f32>,
}

/// Dropout sites (the mask key is seed, site).
pub fn site(layer: usize, which: u32) -> u32 {
    1 + layer as u32 * 4 + which
}
pub const EMBEDDING_SITE: u32 = 0;
pub const ATTENTION_PROBS: u32 = 0;
pub const ATTENTION_OUT: u32 = 1;
pub const FFN_OUT: u32 = 2;

/// The forward pass and its buffers.
pub struct EncoderPass {
    pub config: BertConfig,
    /// Keep every layer's activations (training) or only what the next layer reads.
    keep: bool,
    pub batch: usize,
    /// Padded length in pieces.
    pub len: usize,
    /// Piece ids, padded with 0: [b·n].
    pub ids: Vec<u32>,
    pub lengths: Vec<usize>,
    /// Each row's position in its sequence.
    positions: Vec<usize>,
    /// Dropout seed, when dropout is on.
    pub dropout: Option<u64>,
    /// Layer inputs and the output: L + 1 buffers [m, d] when keeping activations,
    /// else two used in turn.
    hidden: Vec<Vec<f32>>,
    pub embedding_xhat: Vec<f32>,
    pub embedding_rstd: Vec<f32>,
    /// Per layer when keeping activations, else one set reused by every layer.
    layers: Vec<LayerActivations>,
    /// A residual sum before its LayerNorm.
    sum: Vec<f32>,
    /// Inference's last layer: the rows it computes, gathered, and their queries.
    gathered: Vec<f32>,
    queries: Vec<f32>,
}

/// A layer's input (buffer `from`, its first `len` elements) and its output (buffer
/// `to`, sized to `len`) among the hidden buffers.
fn layer_io(
    hidden: &mut [Vec<f32>],
    (from, input_len): (usize, usize),
    (to, output_len): (usize, usize),
) -> (&[f32], &mut [f32]) {
    if from < to {
        let (lo, hi) = hidden.split_at_mut(to);
        (&lo[from][..input_len], sized(&mut hi[0], output_len))
    } else {
        let (lo, hi) = hidden.split_at_mut(from);
        (&hi[0][..input_len], sized(&mut lo[to], output_len))
    }
}

/// Sets `buffer` to `len` elements, reusing its allocation (contents are overwritten).
pub fn sized(buffer: &mut Vec<f32>, len: usize) -> &mut [f32] {
    buffer.resize(len, 0.0);
    &mut buffer[..len]
}

/// Fills each row of `dst` (row stride `ld`, first `bias.len()` columns) with `bias`.
fn fill_rows(dst: &mut [f32], ld: usize, bias: &[f32]) {
    dst.par_chunks_mut(ld * kernels::ROW_CHUNK)
        .for_each(|rows| {
            for row in rows.chunks_mut(ld) {
                row[..bias.len()].copy_from_slice(bias);
            }
        });
}

/// One layer's six weight matrices in bf16, for inference under `--precision bf16`.
pub(crate) struct LayerBf16 {
    query: PackedBf16,
    key: PackedBf16,
    value: PackedBf16,
    attention_out: PackedBf16,
    intermediate: PackedBf16,
    output: PackedBf16,
}

/// Every layer's weight matrices of `tensors` in bf16 (packed once, after loading).
pub(crate) fn pack_bf16(tensors: &BertTensors) -> Result<Vec<LayerBf16>> {
    with_host(tensors, |w| {
        Ok(w.layers
            .iter()
            .map(|l| LayerBf16 {
                query: l.query.pack_bf16(),
                key: l.key.pack_bf16(),
                value: l.value.pack_bf16(),
                attention_out: l.attention_out.pack_bf16(),
                intermediate: l.intermediate.pack_bf16(),
                output: l.output.pack_bf16(),
            })
            .collect())
    })
}

/// dst = x·Wᵀ + b for x [m, in], dst rows of stride `ld`: see [`linear_with`].
pub(crate) fn linear(
    dst: &mut [f32],
    ld: usize,
    x: &[f32],
    m: usize,
    layer: &LinearParams<&[f32]>,
    bf16: Option<&PackedBf16>,
) {
    linear_with(dst, ld, (x, m), layer, bf16, Epilogue::Bias);
}

/// dst = epilogue(x·Wᵀ + b) for x [m, in], dst rows of stride `ld`: through `bf16`,
/// W's bf16 copy, where given; else a few rows by dot products, more by the packed
/// AVX-512 kernel where the CPU has it (the epilogue in its store), by `gemm` elsewhere
/// (the epilogue a pass after).
pub(crate) fn linear_with(
    dst: &mut [f32],
    ld: usize,
    (x, m): (&[f32], usize),
    layer: &LinearParams<&[f32]>,
    bf16: Option<&PackedBf16>,
    epilogue: Epilogue,
) {
    let (w, b) = (layer.weight, layer.bias);
    if let Some(packed) = bf16 {
        kernels::packed::linear_bf16(dst, ld, (x, m), packed, b, epilogue);
        return;
    }
    if m > kernels::FEW_ROWS && kernels::packed::f32_supported() {
        kernels::packed::linear_f32(dst, ld, (x, m), w, b, epilogue);
        return;
    }
    if m <= kernels::FEW_ROWS {
        kernels::linear_few_rows(dst, ld, x, m, w, b);
    } else {
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
    epilogue.after_bias(dst, ld, m, b.len());
}

/// out += x element-wise, in parallel.
pub fn add_assign(out: &mut [f32], x: &[f32]) {
    out.par_chunks_mut(kernels::CHUNK)
        .zip(x.par_chunks(kernels::CHUNK))
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

impl EncoderPass {
    pub fn new(config: &BertConfig, keep_activations: bool) -> Self {
        let layers = config.num_hidden_layers;
        let (hidden, acts) = if keep_activations {
            (layers + 1, layers)
        } else {
            (2, 1)
        };
        Self {
            config: config.clone(),
            keep: keep_activations,
            batch: 0,
            len: 0,
            ids: Vec::new(),
            lengths: Vec::new(),
            positions: Vec::new(),
            dropout: None,
            hidden: (0..hidden).map(|_| Vec::new()).collect(),
            embedding_xhat: Vec::new(),
            embedding_rstd: Vec::new(),
            layers: (0..acts).map(|_| LayerActivations::default()).collect(),
            sum: Vec::new(),
            gathered: Vec::new(),
            queries: Vec::new(),
        }
    }

    /// Which hidden buffers layer `l` reads and writes.
    fn slots(&self, l: usize) -> (usize, usize) {
        if self.keep {
            (l, l + 1)
        } else {
            (l % 2, (l + 1) % 2)
        }
    }

    /// The input of layer `l` [m, d] (needs kept activations for l below the last).
    pub fn layer_input(&self, l: usize) -> &[f32] {
        let m = self.batch * self.len * self.config.hidden_size;
        &self.hidden[self.slots(l).0][..m]
    }

    /// The activations of layer `l` (the last layer's unless they are kept).
    pub fn activations(&self, l: usize) -> &LayerActivations {
        &self.layers[if self.keep { l } else { 0 }]
    }

    /// Hidden states of the last pass: [b·n, d].
    pub fn output(&self) -> &[f32] {
        let m = self.batch * self.len * self.config.hidden_size;
        &self.hidden[self.slots(self.config.num_hidden_layers).0][..m]
    }

    /// Runs the encoder over a padded batch; with `dropout`, BERT's dropouts drawn from
    /// that seed.
    pub fn run(
        &mut self,
        w: &HostWeights,
        batch: &[&WordPieces],
        dropout: Option<u64>,
    ) -> Result<()> {
        let b = batch.len();
        let n = batch.iter().map(|p| p.ids.len()).max().unwrap_or(0).max(1);
        let d = self.config.hidden_size;
        self.batch = b;
        self.len = n;
        self.dropout = dropout;
        self.lengths = batch.iter().map(|p| p.ids.len()).collect();
        self.ids.clear();
        self.positions.clear();
        for p in batch {
            self.ids.extend(p.ids.iter().copied());
            self.ids.extend(std::iter::repeat_n(0u32, n - p.ids.len()));
            self.positions.extend(0..n);
        }
        self.check_ids(n)?;
        self.embeddings_forward(w, b * n, d);
        for (l, layer) in w.layers.iter().enumerate() {
            self.layer_forward(layer, l, b * n, d);
        }
        Ok(())
    }

    /// Refuses sequences longer than the position table and ids outside the vocabulary.
    fn check_ids(&self, longest: usize) -> Result<()> {
        if longest > self.config.max_position_embeddings {
            candle_core::bail!(
                "{longest} pieces exceed the encoder's {} positions",
                self.config.max_position_embeddings
            );
        }
        if let Some(bad) = self
            .ids
            .iter()
            .find(|&&id| id as usize >= self.config.vocab_size)
        {
            candle_core::bail!("piece id {bad} is outside the vocabulary");
        }
        Ok(())
    }

    /// [`EncoderPass::run`] on a model's own weights, returning hidden states [b, n, d].
    pub fn forward(
        &mut self,
        tensors: &BertTensors,
        batch: &[&WordPieces],
        dropout: Option<u64>,
    ) -> Result<Tensor> {
        with_host(tensors, |w| self.run(w, batch, dropout))?;
        let d = self.config.hidden_size;
        Tensor::from_slice(self.output(), (self.batch, self.len, d), &Device::Cpu)
    }

    /// Hidden dropout and attention dropout of this pass (0 without dropout).
    pub fn dropout_rates(&self) -> (f32, f32) {
        match self.dropout {
            Some(_) => (
                self.config.hidden_dropout_prob,
                self.config.attention_probs_dropout_prob,
            ),
            None => (0.0, 0.0),
        }
    }

    /// The dropout mask of `site` at rate `p`, when that dropout is on.
    pub fn mask(&self, site: u32, p: f32) -> Option<DropoutMask> {
        self.dropout
            .filter(|_| p > 0.0)
            .map(|seed| DropoutMask::new(seed, site, p))
    }

    fn embeddings_forward(&mut self, w: &HostWeights, m: usize, d: usize) {
        let (word, position, token_type) = (w.word, w.position, w.token_type);
        let mut sum = std::mem::take(&mut self.sum);
        let (ids, positions) = (&self.ids, &self.positions);
        sized(&mut sum, m * d)
            .par_chunks_mut(d)
            .enumerate()
            .for_each(|(r, row)| {
                let id = ids[r] as usize;
                let pos = positions[r];
                let (we, pe, te) = (
                    &word[id * d..(id + 1) * d],
                    &position[pos * d..(pos + 1) * d],
                    &token_type[..d],
                );
                for i in 0..d {
                    row[i] = we[i] + pe[i] + te[i];
                }
            });
        let mask = self.mask(EMBEDDING_SITE, self.dropout_rates().0);
        let saved = self.keep.then(|| {
            (
                sized(&mut self.embedding_xhat, m * d),
                sized(&mut self.embedding_rstd, m),
            )
        });
        let out = sized(&mut self.hidden[0], m * d);
        kernels::layer_norm_forward(
            &sum,
            w.embedding_norm.weight,
            w.embedding_norm.bias,
            self.config.layer_norm_eps as f32,
            out,
            saved,
        );
        if let Some(mask) = mask {
            mask.apply_all(out);
        }
        self.sum = sum;
    }

    fn layer_forward(&mut self, w: &LayerParams<&[f32]>, l: usize, m: usize, d: usize) {
        let eps = self.config.layer_norm_eps as f32;
        let heads = self.config.num_attention_heads;
        let (hidden_p, attention_p) = self.dropout_rates();
        let attention_mask = self.mask(site(l, ATTENTION_PROBS), attention_p);
        let out_mask = self.mask(site(l, ATTENTION_OUT), hidden_p);
        let ffn_mask = self.mask(site(l, FFN_OUT), hidden_p);
        let (b, n, keep) = (self.batch, self.len, self.keep);
        let (from, to) = self.slots(l);
        let (x, out) = layer_io(&mut self.hidden, (from, m * d), (to, m * d));
        let acts = &mut self.layers[if keep { l } else { 0 }];

        let qkv = sized(&mut acts.qkv, m * 3 * d);
        for (layer, off) in [(&w.query, 0), (&w.key, d), (&w.value, 2 * d)] {
            linear(&mut qkv[off..], 3 * d, x, m, layer, None);
        }
        let probs = sized(&mut acts.probs, b * heads * n * n);
        let context = sized(&mut acts.context, m * d);
        attention_forward(
            qkv,
            probs,
            context,
            &self.lengths,
            AttentionShape {
                n,
                d,
                heads,
                causal: false,
            },
            attention_mask,
        );

        let tail = LayerTail {
            w,
            bf16: None,
            eps,
            keep,
            out_mask,
            ffn_mask,
        };
        tail.run(&mut self.sum, acts, x, m, out);
    }
}

/// Which rows a packed layer computes: all, or (the last layer) only those listed, one
/// run of them per sequence.
struct RowSelection<'a> {
    /// The rows computed after attention; `None`: every row.
    rows: Option<&'a [usize]>,
    segments: &'a [Segment],
}

impl EncoderPass {
    /// Word states for inference, [b, w, d] row-major: each word's first piece's state,
    /// zeros for padding and for words past the limit (w: the most words of a tweet).
    /// The same values as [`EncoderPass::run`]'s states at the first pieces, with less
    /// work: sequences packed (no padded rows), attention fused per head, and the last
    /// layer computing only the first pieces' rows (keys and values still from all).
    /// With `bf16` (every layer's, from [`pack_bf16`]) the products run in bf16.
    pub(crate) fn word_states(
        &mut self,
        w: &HostWeights,
        bf16: Option<&[LayerBf16]>,
        batch: &[&WordPieces],
    ) -> Result<Vec<f32>> {
        let d = self.config.hidden_size;
        self.batch = batch.len();
        self.dropout = None;
        self.lengths = batch.iter().map(|p| p.ids.len()).collect();
        self.len = self.lengths.iter().copied().max().unwrap_or(0);
        self.ids.clear();
        self.positions.clear();
        for p in batch {
            self.ids.extend(p.ids.iter().copied());
            self.positions.extend(0..p.ids.len());
        }
        self.check_ids(self.len)?;
        let m = self.ids.len();
        let mut all = Vec::with_capacity(batch.len());
        let (mut rows, mut firsts) = (Vec::new(), Vec::with_capacity(batch.len()));
        let mut start = 0;
        for p in batch {
            let len = p.ids.len();
            all.push(Segment {
                key_start: start,
                keys: len,
                query_start: start,
                queries: len,
            });
            let query_start = rows.len();
            rows.extend(p.first_piece.iter().flatten().map(|&piece| start + piece));
            firsts.push(Segment {
                key_start: start,
                keys: len,
                query_start,
                queries: rows.len() - query_start,
            });
            start += len;
        }
        self.embeddings_forward(w, m, d);
        let layers = w.layers.len();
        if layers == 0 {
            let hidden = &self.hidden[0];
            self.gathered = rows
                .iter()
                .flat_map(|&r| hidden[r * d..(r + 1) * d].to_vec())
                .collect();
            return Ok(self.scatter_words(batch, &self.gathered));
        }
        let layer_bf16 = |l: usize| bf16.and_then(|layers| layers.get(l));
        for (l, layer) in w.layers[..layers - 1].iter().enumerate() {
            self.packed_layer(
                (layer, layer_bf16(l)),
                l,
                m,
                RowSelection {
                    rows: None,
                    segments: &all,
                },
            );
        }
        let last = RowSelection {
            rows: Some(&rows),
            segments: &firsts,
        };
        let top = layers - 1;
        self.packed_layer((&w.layers[top], layer_bf16(top)), top, m, last);
        let out = &self.hidden[self.slots(layers).0][..rows.len() * d];
        Ok(self.scatter_words(batch, out))
    }

    /// First-piece rows [r, d] (in word order) spread to [b, w, d] with zeros elsewhere.
    fn scatter_words(&self, batch: &[&WordPieces], states: &[f32]) -> Vec<f32> {
        let d = self.config.hidden_size;
        let words = batch
            .iter()
            .map(|p| p.first_piece.len())
            .max()
            .unwrap_or(0)
            .max(1);
        let mut out = vec![0f32; batch.len() * words * d];
        let mut next = states.chunks_exact(d);
        for (i, p) in batch.iter().enumerate() {
            for (k, piece) in p.first_piece.iter().enumerate() {
                if piece.is_some()
                    && let Some(state) = next.next()
                {
                    out[(i * words + k) * d..][..d].copy_from_slice(state);
                }
            }
        }
        out
    }

    /// One layer over packed rows; with `select.rows` set (the last layer), queries and
    /// everything after attention only for those rows.
    fn packed_layer(
        &mut self,
        (w, bf16): (&LayerParams<&[f32]>, Option<&LayerBf16>),
        l: usize,
        m: usize,
        select: RowSelection,
    ) {
        let d = self.config.hidden_size;
        let heads = self.config.num_attention_heads;
        let eps = self.config.layer_norm_eps as f32;
        let keep = self.keep;
        let (from, to) = self.slots(l);
        let mq = select.rows.map_or(m, <[usize]>::len);
        let (x, out) = layer_io(&mut self.hidden, (from, m * d), (to, mq * d));
        let acts = &mut self.layers[if keep { l } else { 0 }];
        let qkv = sized(&mut acts.qkv, m * 3 * d);
        let (key, value) = (bf16.map(|p| &p.key), bf16.map(|p| &p.value));
        for (layer, packed, off) in [(&w.key, key, d), (&w.value, value, 2 * d)] {
            linear(&mut qkv[off..], 3 * d, x, m, layer, packed);
        }
        let query = bf16.map(|p| &p.query);
        let (residual, q, q_ld): (&[f32], &[f32], usize) = match select.rows {
            None => {
                linear(qkv, 3 * d, x, m, &w.query, query);
                (x, &*qkv, 3 * d)
            }
            Some(rows) => {
                let gathered = sized(&mut self.gathered, mq * d);
                for (dst, &r) in gathered.chunks_exact_mut(d).zip(rows) {
                    dst.copy_from_slice(&x[r * d..(r + 1) * d]);
                }
                let queries = sized(&mut self.queries, mq * d);
                linear(queries, d, gathered, mq, &w.query, query);
                (&*gathered, &*queries, d)
            }
        };
        let input = AttentionInput::with_qkv(q, q_ld, qkv, heads, d / heads, &[], false);
        let context = sized(&mut acts.context, mq * d);
        attend(&input, select.segments, context);
        let tail = LayerTail {
            w,
            bf16,
            eps,
            keep,
            out_mask: None,
            ffn_mask: None,
        };
        tail.run(&mut self.sum, acts, residual, mq, out);
    }
}

/// A layer after its attention: output projection, residual, LayerNorm, feed-forward,
/// residual, LayerNorm; the same for training (activations kept, dropout) and inference.
struct LayerTail<'a, 'w> {
    w: &'a LayerParams<&'w [f32]>,
    bf16: Option<&'a LayerBf16>,
    eps: f32,
    keep: bool,
    out_mask: Option<DropoutMask>,
    ffn_mask: Option<DropoutMask>,
}

impl LayerTail<'_, '_> {
    /// From `acts.context` and the layer input `x` (m rows) to `out`.
    fn run(
        &self,
        sum: &mut Vec<f32>,
        acts: &mut LayerActivations,
        x: &[f32],
        m: usize,
        out: &mut [f32],
    ) {
        let (w, keep, eps) = (self.w, self.keep, self.eps);
        let (d, inner) = (w.attention_out.bias.len(), w.intermediate.bias.len());
        let sum = sized(sum, m * d);
        let bf16 = self.bf16;
        let attention_out = bf16.map(|p| &p.attention_out);
        // Without dropout between them, the residual is added in the product's store.
        let residual = |x, mask: Option<DropoutMask>| match mask {
            None => Epilogue::BiasResidual(x),
            Some(_) => Epilogue::Bias,
        };
        let context = (&acts.context[..m * d], m);
        let epilogue = residual(x, self.out_mask);
        linear_with(sum, d, context, &w.attention_out, attention_out, epilogue);
        if let Some(mask) = self.out_mask {
            mask.apply_all(sum);
            add_assign(sum, x);
        }
        let x1 = sized(&mut acts.x1, m * d);
        let saved = keep.then(|| (sized(&mut acts.xhat1, m * d), sized(&mut acts.rstd1, m)));
        let norm = &w.attention_norm;
        kernels::layer_norm_forward(sum, norm.weight, norm.bias, eps, x1, saved);

        let act = sized(&mut acts.act, m * inner);
        let intermediate = bf16.map(|p| &p.intermediate);
        if keep {
            // Training keeps GELU's input for the backward pass.
            let z = sized(&mut acts.z, m * inner);
            linear(z, inner, x1, m, &w.intermediate, intermediate);
            kernels::gelu_forward(z, act);
        } else {
            let epilogue = Epilogue::BiasGelu;
            linear_with(act, inner, (x1, m), &w.intermediate, intermediate, epilogue);
        }
        let epilogue = residual(x1, self.ffn_mask);
        linear_with(
            sum,
            d,
            (act, m),
            &w.output,
            bf16.map(|p| &p.output),
            epilogue,
        );
        if let Some(mask) = self.ffn_mask {
            mask.apply_all(sum);
            add_assign(sum, x1);
        }
        let saved = keep.then(|| (sized(&mut acts.xhat2, m * d), sized(&mut acts.rstd2, m)));
        let norm = &w.output_norm;
        kernels::layer_norm_forward(sum, norm.weight, norm.bias, eps, out, saved);
    }
}

#[derive(Clone, Copy)]
pub struct AttentionShape {
    pub n: usize,
    pub d: usize,
    pub heads: usize,
    /// Each position attends only to itself and those before it (CLIP's text tower).
    pub causal: bool,
}

/// Scaled dot-product attention of every (tweet, head), keys beyond a tweet's length
/// masked out: probs [b, h, n, n] (before dropout) and the merged context [m, d].
pub fn attention_forward(
    qkv: &[f32],
    probs: &mut [f32],
    context: &mut [f32],
    lengths: &[usize],
    s: AttentionShape,
    dropout: Option<DropoutMask>,
) {
    let AttentionShape {
        n,
        d,
        heads,
        causal,
    } = s;
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
                        for (r, row) in p.chunks_mut(n).enumerate() {
                            for x in row.iter_mut() {
                                *x *= scale;
                            }
                            let valid = if causal {
                                lengths[bi].min(r + 1)
                            } else {
                                lengths[bi]
                            };
                            kernels::softmax_row(row, valid);
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::bert::pad_batch;
    use crate::model::ops::Mode;
    use crate::model::testing::{pieces, tiny_bert};

    #[test]
    fn word_states_equal_candles_forward_at_the_first_pieces() {
        let (model, _) = tiny_bert(0.1);
        let batch = [
            pieces(&[1, 7, 9, 3, 2]),
            pieces(&[1, 4, 2]),
            pieces(&[1, 5, 6, 8, 11, 12, 2]),
        ];
        let mut batch = batch.to_vec();
        // Words of several pieces and a word past the limit: only first pieces are read.
        batch[2].first_piece = vec![Some(1), Some(2), Some(5), None];
        let refs: Vec<&WordPieces> = batch.iter().collect();
        let (ids, mask) = pad_batch(&refs, &Device::Cpu).unwrap();
        let reference = model.forward(&ids, &mask, Mode::Eval).unwrap();
        let tensors = model.tensors().unwrap();
        let mut lean = EncoderPass::new(&model.config, false);
        let d = model.config.hidden_size;
        let check = |words: &[f32], batch: &[&WordPieces], offset: usize| {
            let n = batch.iter().map(|p| p.first_piece.len()).max().unwrap();
            assert_eq!(words.len(), batch.len() * n * d);
            for (i, p) in batch.iter().enumerate() {
                for w in 0..n {
                    let got = &words[(i * n + w) * d..][..d];
                    match p.first_piece.get(w).copied().flatten() {
                        Some(piece) => {
                            let want: Vec<f32> = reference
                                .get(i + offset)
                                .unwrap()
                                .get(piece)
                                .unwrap()
                                .to_vec1()
                                .unwrap();
                            let diff = got
                                .iter()
                                .zip(&want)
                                .map(|(a, b)| (a - b).abs())
                                .fold(0f32, f32::max);
                            assert!(diff < 1e-5, "tweet {i}, word {w}: {diff}");
                        }
                        None => assert!(got.iter().all(|&v| v == 0.0), "tweet {i}, word {w}"),
                    }
                }
            }
        };
        let words = with_host(&tensors, |w| lean.word_states(w, None, &refs)).unwrap();
        check(&words, &refs, 0);
        // Buffers are reused: a smaller batch after a larger one is still right.
        let words = with_host(&tensors, |w| lean.word_states(w, None, &refs[1..2])).unwrap();
        check(&words, &refs[1..2], 1);
        assert_eq!(lean.layers.len(), 1);
        assert_eq!(lean.hidden.len(), 2);
    }

    #[test]
    fn bf16_word_states_stay_within_bf16_rounding_of_fp32() {
        let (model, _) = tiny_bert(0.1);
        let batch = [pieces(&[1, 7, 9, 3, 2]), pieces(&[1, 5, 6, 8, 11, 12, 2])];
        let refs: Vec<&WordPieces> = batch.iter().collect();
        let tensors = model.tensors().unwrap();
        let packed = pack_bf16(&tensors).unwrap();
        let mut pass = EncoderPass::new(&model.config, false);
        let fp32 = with_host(&tensors, |w| pass.word_states(w, None, &refs)).unwrap();
        let bf16 = with_host(&tensors, |w| pass.word_states(w, Some(&packed), &refs)).unwrap();
        let worst = fp32
            .iter()
            .zip(&bf16)
            .map(|(a, b)| (a - b).abs())
            .fold(0f32, f32::max);
        // LayerNorm outputs are of order 1; bf16 keeps 8 bits of mantissa (2⁻⁹ relative
        // a rounding), summed over a few layers.
        assert!(worst > 0.0, "the bf16 products ran");
        assert!(worst < 0.05, "bf16 drifted {worst} from fp32");
    }
}
