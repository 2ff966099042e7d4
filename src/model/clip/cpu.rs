//! CLIP's towers on the CPU for inference: the same kernels and attention as the text
//! encoder's CPU forward ([`crate::model::bert::cpu`]), laid out as CLIP's pre-LayerNorm
//! layers (causal attention in the text tower). Equal to the candle towers within
//! float rounding (tested); used for `Mode::Eval` on f32 CPU weights.

use candle_core::{DType, Device, Result, Tensor};

use crate::kernels::{self, MatRef, matmul};
use crate::model::bert::cpu::{
    AttentionShape, add_assign, attention_forward, host_slice, linear, sized,
};
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

/// Runs pre-LayerNorm layers over `x` [b·n, d] in place.
pub(crate) fn layers_forward(
    x: &mut [f32],
    layers: &[ClipLayerParams<Tensor>],
    b: usize,
    n: usize,
    shape: TowerShape,
) -> Result<()> {
    let m = b * n;
    let d = x.len() / m.max(1);
    let (mut h, mut qkv, mut probs, mut context, mut z, mut act, mut branch) = Default::default();
    let lengths = vec![n; b];
    for layer in layers {
        let guards = layer.try_map(|t| Ok(t.storage_and_layout()))?;
        let w = guards.try_map(|(storage, layout)| host_slice(storage, layout))?;
        let inner = w.fc1.bias.len();
        let h = sized(&mut h, m * d);
        kernels::layer_norm_forward(x, w.norm1.weight, w.norm1.bias, shape.eps, h, None);
        let qkv = sized(&mut qkv, m * 3 * d);
        for (lin, off) in [(&w.q, 0), (&w.k, d), (&w.v, 2 * d)] {
            linear(&mut qkv[off..], 3 * d, h, m, lin);
        }
        let probs = sized(&mut probs, b * shape.heads * n * n);
        let context = sized(&mut context, m * d);
        attention_forward(
            qkv,
            probs,
            context,
            &lengths,
            AttentionShape {
                n,
                d,
                heads: shape.heads,
                causal: shape.causal,
            },
            None,
        );
        let branch = sized(&mut branch, m * d);
        linear(branch, d, context, m, &w.out);
        add_assign(x, branch);
        kernels::layer_norm_forward(x, w.norm2.weight, w.norm2.bias, shape.eps, h, None);
        let z = sized(&mut z, m * inner);
        linear(z, inner, h, m, &w.fc1);
        let act = sized(&mut act, m * inner);
        match shape.act {
            Activation::QuickGelu => kernels::quick_gelu_forward(z, act),
            _ => kernels::gelu_forward(z, act),
        }
        linear(branch, d, act, m, &w.fc2);
        add_assign(x, branch);
    }
    Ok(())
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
