//! CLIP's towers on the CPU for inference: the same kernels and attention as the text
//! encoder's CPU forward ([`crate::model::bert::cpu`]), laid out as CLIP's pre-LayerNorm
//! layers (causal attention in the text tower). Equal to the candle towers within
//! float rounding (tested); used for `Mode::Eval` on f32 CPU weights.

use candle_core::{DType, Device, Result, Tensor};

use crate::kernels::attention::{AttentionInput, Segment, attend};
use crate::kernels::packed::PackedBf16;
use crate::kernels::{self, MatRef, matmul};
use crate::model::bert::cpu::{add_assign, host_slice, linear, sized};
use crate::model::ops::Activation;
use crate::model::params::{LinearParams, NormParams};

/// One pre-LayerNorm layer's parameters.
#[derive(Debug, Clone)]
pub(crate) struct ClipLayerParams<T> {
    pub q: LinearParams<T>,
    pub k: LinearParams<T>,
    pub v: LinearParams<T>,
    pub out: LinearParams<T>,
    pub norm1: NormParams<T>,
    pub norm2: NormParams<T>,
    pub fc1: LinearParams<T>,
    pub fc2: LinearParams<T>,
}

impl<T> ClipLayerParams<T> {
    /// The same structure with `f` applied to every parameter.
    pub(crate) fn try_map<'a, U>(
        &'a self,
        mut f: impl FnMut(&'a T) -> Result<U>,
    ) -> Result<ClipLayerParams<U>> {
        Ok(ClipLayerParams {
            q: self.q.try_map(&mut f)?,
            k: self.k.try_map(&mut f)?,
            v: self.v.try_map(&mut f)?,
            out: self.out.try_map(&mut f)?,
            norm1: self.norm1.try_map(&mut f)?,
            norm2: self.norm2.try_map(&mut f)?,
            fc1: self.fc1.try_map(&mut f)?,
            fc2: self.fc2.try_map(&mut f)?,
        })
    }
}

/// One layer's six weight matrices in bf16, for inference under `--precision bf16`.
pub(crate) struct ClipLayerBf16 {
    q: PackedBf16,
    k: PackedBf16,
    v: PackedBf16,
    out: PackedBf16,
    fc1: PackedBf16,
    fc2: PackedBf16,
}

/// Every layer's weight matrices in bf16 (packed once, after loading).
pub(crate) fn pack_bf16(layers: &[ClipLayerParams<Tensor>]) -> Result<Vec<ClipLayerBf16>> {
    layers
        .iter()
        .map(|layer| {
            let guards = layer.try_map(|t| Ok(t.storage_and_layout()))?;
            let w = guards.try_map(|(storage, layout)| host_slice(storage, layout))?;
            Ok(ClipLayerBf16 {
                q: w.q.pack_bf16(),
                k: w.k.pack_bf16(),
                v: w.v.pack_bf16(),
                out: w.out.pack_bf16(),
                fc1: w.fc1.pack_bf16(),
                fc2: w.fc2.pack_bf16(),
            })
        })
        .collect()
}

/// Whether a tower with these weights and activation can run here.
pub(crate) fn supports(weight: &Tensor, act: Activation) -> bool {
    weight.device().is_cpu()
        && weight.dtype() == DType::F32
        && matches!(act, Activation::QuickGelu | Activation::Gelu)
}

/// How a tower's layers run.
#[derive(Debug, Clone, Copy)]
pub(crate) struct TowerShape {
    pub heads: usize,
    pub eps: f32,
    pub act: Activation,
    pub causal: bool,
}

/// Runs pre-LayerNorm layers over `x` [b·n, d] (b sequences of n tokens) and returns
/// the rows `read` after the last layer, [r, d]. The last layer computes queries and
/// everything after attention for those rows only (keys and values from all): the
/// towers read one row a sequence (the class token, the end of text). With `bf16`
/// (every layer's, from [`pack_bf16`]) the products run in bf16.
pub(crate) fn layers_forward(
    mut x: Vec<f32>,
    layers: &[ClipLayerParams<Tensor>],
    bf16: Option<&[ClipLayerBf16]>,
    b: usize,
    n: usize,
    shape: TowerShape,
    read: &[usize],
) -> Result<Vec<f32>> {
    let m = b * n;
    let d = x.len() / m.max(1);
    let mut buffers = LayerBuffers::default();
    let positions: Vec<usize> = (0..m).map(|r| r % n).collect();
    let all: Vec<Segment> = (0..b)
        .map(|i| Segment {
            key_start: i * n,
            keys: n,
            query_start: i * n,
            queries: n,
        })
        .collect();
    let Some((last, body)) = layers.split_last() else {
        return Ok(read
            .iter()
            .flat_map(|&r| x[r * d..(r + 1) * d].to_vec())
            .collect());
    };
    let layer_bf16 = |l: usize| bf16.and_then(|layers| layers.get(l));
    for (l, layer) in body.iter().enumerate() {
        let guards = layer.try_map(|t| Ok(t.storage_and_layout()))?;
        let w = guards.try_map(|(storage, layout)| host_slice(storage, layout))?;
        buffers.layer(&mut x, (&w, layer_bf16(l)), shape, &positions, &all, None);
    }
    // The rows read, one run per sequence in sequence order.
    let mut firsts = Vec::with_capacity(b);
    for (i, segment) in all.iter().enumerate() {
        let queries = read.iter().filter(|&&r| r / n.max(1) == i).count();
        let query_start = firsts.iter().map(|s: &Segment| s.queries).sum();
        firsts.push(Segment {
            query_start,
            queries,
            ..*segment
        });
    }
    let mut sorted = read.to_vec();
    sorted.sort_unstable();
    let guards = last.try_map(|t| Ok(t.storage_and_layout()))?;
    let w = guards.try_map(|(storage, layout)| host_slice(storage, layout))?;
    let top = layer_bf16(body.len());
    let out = buffers.layer(&mut x, (&w, top), shape, &positions, &firsts, Some(&sorted));
    // Back to the order asked for.
    Ok(read
        .iter()
        .flat_map(|r| {
            let at = sorted.binary_search(r).unwrap_or_default();
            out[at * d..(at + 1) * d].to_vec()
        })
        .collect())
}

/// Scratch buffers of the layers, reused from layer to layer.
#[derive(Default)]
struct LayerBuffers {
    h: Vec<f32>,
    qkv: Vec<f32>,
    gathered: Vec<f32>,
    queries: Vec<f32>,
    context: Vec<f32>,
    z: Vec<f32>,
    act: Vec<f32>,
    branch: Vec<f32>,
}

impl LayerBuffers {
    /// One layer in place over `x` [m, d]; with `rows` (sorted), queries and everything
    /// after attention only for those rows, whose states it returns [r, d] (else `x`).
    fn layer<'a>(
        &'a mut self,
        x: &'a mut [f32],
        (w, bf16): (&ClipLayerParams<&[f32]>, Option<&ClipLayerBf16>),
        shape: TowerShape,
        positions: &[usize],
        segments: &[Segment],
        rows: Option<&[usize]>,
    ) -> &'a [f32] {
        let d = w.norm1.weight.len();
        let m = x.len() / d.max(1);
        let inner = w.fc1.bias.len();
        let h = sized(&mut self.h, m * d);
        kernels::layer_norm_forward(x, w.norm1.weight, w.norm1.bias, shape.eps, h, None);
        let qkv = sized(&mut self.qkv, m * 3 * d);
        let (k, v) = (bf16.map(|p| &p.k), bf16.map(|p| &p.v));
        for (lin, packed, off) in [(&w.k, k, d), (&w.v, v, 2 * d)] {
            linear(&mut qkv[off..], 3 * d, h, m, lin, packed);
        }
        let query = bf16.map(|p| &p.q);
        let query_positions: Vec<usize>;
        let (residual, q, q_ld, positions, mq): (&mut [f32], &[f32], usize, &[usize], usize) =
            match rows {
                None => {
                    linear(qkv, 3 * d, h, m, &w.q, query);
                    (x, &*qkv, 3 * d, positions, m)
                }
                Some(rows) => {
                    let mq = rows.len();
                    let (gathered, normed) = (sized(&mut self.gathered, mq * d), &*h);
                    let queries = sized(&mut self.queries, mq * d);
                    let mut normed_rows = vec![0f32; mq * d];
                    for ((g, nr), &r) in gathered
                        .chunks_exact_mut(d)
                        .zip(normed_rows.chunks_exact_mut(d))
                        .zip(rows)
                    {
                        g.copy_from_slice(&x[r * d..(r + 1) * d]);
                        nr.copy_from_slice(&normed[r * d..(r + 1) * d]);
                    }
                    linear(queries, d, &normed_rows, mq, &w.q, query);
                    query_positions = rows.iter().map(|&r| positions[r]).collect();
                    (gathered, &*queries, d, &query_positions[..], mq)
                }
            };
        let (heads, causal) = (shape.heads, shape.causal);
        let input = AttentionInput::with_qkv(q, q_ld, qkv, heads, d / heads, positions, causal);
        let context = sized(&mut self.context, mq * d);
        attend(&input, segments, context);
        let branch = sized(&mut self.branch, mq * d);
        linear(branch, d, context, mq, &w.out, bf16.map(|p| &p.out));
        add_assign(residual, branch);
        let h = sized(&mut self.h, mq * d);
        kernels::layer_norm_forward(residual, w.norm2.weight, w.norm2.bias, shape.eps, h, None);
        let z = sized(&mut self.z, mq * inner);
        linear(z, inner, h, mq, &w.fc1, bf16.map(|p| &p.fc1));
        let act = sized(&mut self.act, mq * inner);
        match shape.act {
            Activation::QuickGelu => kernels::quick_gelu_forward(z, act),
            _ => kernels::gelu_forward(z, act),
        }
        linear(branch, d, act, mq, &w.fc2, bf16.map(|p| &p.fc2));
        add_assign(residual, branch);
        residual
    }
}

/// `rows` [r, d] through a LayerNorm and a bias-free projection [e, d]: [r, e].
pub(crate) fn norm_and_project(
    rows: &[f32],
    norm: &NormParams<Tensor>,
    eps: f32,
    projection: &Tensor,
) -> Result<Tensor> {
    let (gw, gb, gp) = (
        norm.weight.storage_and_layout(),
        norm.bias.storage_and_layout(),
        projection.storage_and_layout(),
    );
    let (weight, bias, proj) = (
        host_slice(&gw.0, gw.1)?,
        host_slice(&gb.0, gb.1)?,
        host_slice(&gp.0, gp.1)?,
    );
    let d = weight.len();
    let r = rows.len() / d.max(1);
    let e = proj.len() / d.max(1);
    let mut normed = vec![0f32; r * d];
    kernels::layer_norm_forward(rows, weight, bias, eps, &mut normed, None);
    let mut out = vec![0f32; r * e];
    matmul(
        &mut out,
        e,
        MatRef::new(&normed, r, d),
        MatRef::new(proj, e, d).t(),
        false,
        true,
    );
    Tensor::from_vec(out, (r, e), &Device::Cpu)
}

/// Pixels [b, C, S, S] as patches [b·P, C·p·p] in the convolution weight's order
/// (channel, row, column), P = (S/p)² patches a picture, row by row.
pub(crate) fn patches(
    pixels: &[f32],
    b: usize,
    channels: usize,
    size: usize,
    p: usize,
) -> Vec<f32> {
    let g = size / p;
    let k = channels * p * p;
    let mut out = vec![0f32; b * g * g * k];
    for (patch, row) in out.chunks_mut(k).enumerate() {
        let (img, at) = (patch / (g * g), patch % (g * g));
        let (py, px) = (at / g, at % g);
        for c in 0..channels {
            for ky in 0..p {
                let src = ((img * channels + c) * size + py * p + ky) * size + px * p;
                let dst = (c * p + ky) * p;
                row[dst..dst + p].copy_from_slice(&pixels[src..src + p]);
            }
        }
    }
    out
}
