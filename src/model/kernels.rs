//! CPU kernels with a backward pass for training: LayerNorm and softmax over the last
//! dimension. candle's fused versions record no backward, and its differentiable
//! composites build about a dozen tensor ops each way; these run one pass over host
//! memory forward and one backward, rows in parallel.

use candle_core::{CpuStorage, CustomOp1, CustomOp3, Layout, Result, Shape, Tensor};
use rayon::prelude::*;

fn f32_slice<'a>(storage: &'a CpuStorage, layout: &Layout) -> Result<&'a [f32]> {
    let all = match storage {
        CpuStorage::F32(values) => values.as_slice(),
        _ => candle_core::bail!("expected f32"),
    };
    match layout.contiguous_offsets() {
        Some((start, end)) => Ok(&all[start..end]),
        None => candle_core::bail!("expected a contiguous tensor"),
    }
}

fn host(t: &Tensor) -> Result<Vec<f32>> {
    t.flatten_all()?.to_vec1::<f32>()
}

/// Whether the kernels apply (f32 on the CPU); elsewhere the composites are used.
pub fn applies(t: &Tensor) -> bool {
    t.device().is_cpu() && t.dtype() == candle_core::DType::F32
}

/// `(x − mean) / sqrt(var + eps) · α + β` over the last dimension.
pub struct LayerNormOp {
    pub eps: f32,
}

impl CustomOp3 for LayerNormOp {
    fn name(&self) -> &'static str {
        "layer-norm-with-backward"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
        s3: &CpuStorage,
        l3: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let x = f32_slice(s1, l1)?;
        let (alpha, beta) = (f32_slice(s2, l2)?, f32_slice(s3, l3)?);
        let d = alpha.len();
        let mut out = vec![0f32; x.len()];
        out.par_chunks_mut(d)
            .zip(x.par_chunks(d))
            .for_each(|(o, row)| {
                let mean = row.iter().sum::<f32>() / d as f32;
                let var = row.iter().map(|v| (v - mean) * (v - mean)).sum::<f32>() / d as f32;
                let inv = 1.0 / (var + self.eps).sqrt();
                for i in 0..d {
                    o[i] = (row[i] - mean) * inv * alpha[i] + beta[i];
                }
            });
        Ok((CpuStorage::F32(out), l1.shape().clone()))
    }

    fn bwd(
        &self,
        x: &Tensor,
        alpha: &Tensor,
        _beta: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let (xs, a, g) = (host(x)?, host(alpha)?, host(grad)?);
        let d = a.len();
        let mut dx = vec![0f32; xs.len()];
        // Per row: dx = inv · (ĝ − mean(ĝ) − x̂ · mean(ĝ x̂)) with ĝ = g·α; dα, dβ per row.
        let partial: Vec<(Vec<f32>, Vec<f32>)> = dx
            .par_chunks_mut(d)
            .zip(xs.par_chunks(d).zip(g.par_chunks(d)))
            .map(|(dxr, (row, gr))| {
                let mean = row.iter().sum::<f32>() / d as f32;
                let var = row.iter().map(|v| (v - mean) * (v - mean)).sum::<f32>() / d as f32;
                let inv = 1.0 / (var + self.eps).sqrt();
                let (mut sum_g, mut sum_gx) = (0f32, 0f32);
                let mut da = vec![0f32; d];
                let mut db = vec![0f32; d];
                for i in 0..d {
                    let xhat = (row[i] - mean) * inv;
                    let gh = gr[i] * a[i];
                    sum_g += gh;
                    sum_gx += gh * xhat;
                    da[i] = gr[i] * xhat;
                    db[i] = gr[i];
                }
                let (mg, mgx) = (sum_g / d as f32, sum_gx / d as f32);
                for i in 0..d {
                    let xhat = (row[i] - mean) * inv;
                    dxr[i] = inv * (gr[i] * a[i] - mg - xhat * mgx);
                }
                (da, db)
            })
            .collect();
        let mut da = vec![0f32; d];
        let mut db = vec![0f32; d];
        for (pa, pb) in partial {
            for i in 0..d {
                da[i] += pa[i];
                db[i] += pb[i];
            }
        }
        let device = x.device();
        Ok((
            Some(Tensor::from_vec(dx, x.shape(), device)?),
            Some(Tensor::from_vec(da, d, device)?),
            Some(Tensor::from_vec(db, d, device)?),
        ))
    }
}

/// Softmax over the last dimension.
pub struct SoftmaxOp;

impl CustomOp1 for SoftmaxOp {
    fn name(&self) -> &'static str {
        "softmax-with-backward"
    }

    fn cpu_fwd(&self, storage: &CpuStorage, layout: &Layout) -> Result<(CpuStorage, Shape)> {
        let x = f32_slice(storage, layout)?;
        let d = *layout.dims().last().unwrap_or(&1);
        let mut out = vec![0f32; x.len()];
        out.par_chunks_mut(d.max(1))
            .zip(x.par_chunks(d.max(1)))
            .for_each(|(o, row)| {
                let max = row.iter().fold(f32::NEG_INFINITY, |m, v| m.max(*v));
                let mut sum = 0f32;
                for (o, v) in o.iter_mut().zip(row) {
                    *o = (v - max).exp();
                    sum += *o;
                }
                for o in o.iter_mut() {
                    *o /= sum;
                }
            });
        Ok((CpuStorage::F32(out), layout.shape().clone()))
    }

    fn bwd(&self, arg: &Tensor, res: &Tensor, grad: &Tensor) -> Result<Option<Tensor>> {
        let (y, g) = (host(res)?, host(grad)?);
        let d = *arg.dims().last().unwrap_or(&1);
        let mut dx = vec![0f32; y.len()];
        dx.par_chunks_mut(d.max(1))
            .zip(y.par_chunks(d.max(1)).zip(g.par_chunks(d.max(1))))
            .for_each(|(dxr, (yr, gr))| {
                let dot: f32 = yr.iter().zip(gr).map(|(a, b)| a * b).sum();
                for i in 0..dxr.len() {
                    dxr[i] = yr[i] * (gr[i] - dot);
                }
            });
        Ok(Some(Tensor::from_vec(dx, arg.shape(), arg.device())?))
    }
}

/// erfc with a Chebyshev fit (Numerical Recipes `erfcc`): fractional error below 1.2e-7,
/// several times faster than libm's `erff`, which candle calls one value at a time.
#[allow(clippy::excessive_precision)] // the published coefficients, as published
fn erfc(x: f32) -> f32 {
    let z = x.abs();
    let t = 1.0 / (1.0 + 0.5 * z);
    let poly = -z * z - 1.26551223
        + t * (1.00002368
            + t * (0.37409196
                + t * (0.09678418
                    + t * (-0.18628806
                        + t * (0.27886807
                            + t * (-1.13520398
                                + t * (1.48851587 + t * (-0.82215223 + t * 0.17087277))))))));
    let r = t * poly.exp();
    if x >= 0.0 { r } else { 2.0 - r }
}

/// Elements per parallel chunk of the element-wise kernels.
const CHUNK: usize = 1 << 14;

/// GELU with the exact (erf) form BERT uses: x · Φ(x).
pub struct GeluOp;

impl CustomOp1 for GeluOp {
    fn name(&self) -> &'static str {
        "gelu-erf-with-backward"
    }

    fn cpu_fwd(&self, storage: &CpuStorage, layout: &Layout) -> Result<(CpuStorage, Shape)> {
        let x = f32_slice(storage, layout)?;
        let mut out = vec![0f32; x.len()];
        out.par_chunks_mut(CHUNK)
            .zip(x.par_chunks(CHUNK))
            .for_each(|(o, xs)| {
                for (o, &v) in o.iter_mut().zip(xs) {
                    *o = v - 0.5 * v * erfc(v * std::f32::consts::FRAC_1_SQRT_2);
                }
            });
        Ok((CpuStorage::F32(out), layout.shape().clone()))
    }

    fn bwd(&self, arg: &Tensor, _res: &Tensor, grad: &Tensor) -> Result<Option<Tensor>> {
        let (x, g) = (host(arg)?, host(grad)?);
        let mut dx = vec![0f32; x.len()];
        // d/dx x·Φ(x) = Φ(x) + x·φ(x).
        let inv_sqrt_2pi = 0.5 * std::f32::consts::FRAC_2_SQRT_PI * std::f32::consts::FRAC_1_SQRT_2;
        dx.par_chunks_mut(CHUNK)
            .zip(x.par_chunks(CHUNK).zip(g.par_chunks(CHUNK)))
            .for_each(|(d, (xs, gs))| {
                for ((d, &v), &gv) in d.iter_mut().zip(xs).zip(gs) {
                    let cdf = 1.0 - 0.5 * erfc(v * std::f32::consts::FRAC_1_SQRT_2);
                    *d = gv * (cdf + v * inv_sqrt_2pi * (-0.5 * v * v).exp());
                }
            });
        Ok(Some(Tensor::from_vec(dx, arg.shape(), arg.device())?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{D, Device, Var};

    use crate::model::testing::max_abs_diff as max_diff;

    #[test]
    fn layer_norm_kernel_matches_the_composite_with_gradients() {
        let dev = Device::Cpu;
        let x = Var::from_tensor(&Tensor::randn(0.5f32, 2., (3, 5, 16), &dev).unwrap()).unwrap();
        let a = Var::from_tensor(&Tensor::randn(1f32, 0.3, 16, &dev).unwrap()).unwrap();
        let b = Var::from_tensor(&Tensor::randn(0f32, 0.3, 16, &dev).unwrap()).unwrap();
        let w = Tensor::randn(0f32, 1., (3, 5, 16), &dev).unwrap();
        let ours = x.apply_op3(&a, &b, LayerNormOp { eps: 1e-5 }).unwrap();
        let slow = candle_nn::ops::layer_norm_slow(&x, &a, &b, 1e-5).unwrap();
        assert!(max_diff(&ours, &slow) < 1e-5);
        let g1 = (&ours * &w).unwrap().sum_all().unwrap().backward().unwrap();
        let g2 = (&slow * &w).unwrap().sum_all().unwrap().backward().unwrap();
        for v in [&x, &a, &b] {
            let d = max_diff(g1.get(v).unwrap(), g2.get(v).unwrap());
            assert!(d < 1e-4, "{d}");
        }
    }

    #[test]
    fn gelu_kernel_matches_candles_erf_gelu_with_gradients() {
        let dev = Device::Cpu;
        let x = Var::from_tensor(&Tensor::randn(0f32, 3., (4, 5000), &dev).unwrap()).unwrap();
        let ours = x.apply_op1(GeluOp).unwrap();
        let reference = x.gelu_erf().unwrap();
        assert!(max_diff(&ours, &reference) < 2e-6);
        let g1 = ours.sum_all().unwrap().backward().unwrap();
        let g2 = reference.sum_all().unwrap().backward().unwrap();
        assert!(max_diff(g1.get(&x).unwrap(), g2.get(&x).unwrap()) < 2e-5);
    }

    #[test]
    fn softmax_kernel_matches_the_composite_with_gradients() {
        let dev = Device::Cpu;
        let x = Var::from_tensor(&Tensor::randn(0f32, 3., (2, 4, 7), &dev).unwrap()).unwrap();
        let w = Tensor::randn(0f32, 1., (2, 4, 7), &dev).unwrap();
        let ours = x.apply_op1(SoftmaxOp).unwrap();
        let slow = candle_nn::ops::softmax(&x, D::Minus1).unwrap();
        assert!(max_diff(&ours, &slow) < 1e-6);
        let g1 = (&ours * &w).unwrap().sum_all().unwrap().backward().unwrap();
        let g2 = (&slow * &w).unwrap().sum_all().unwrap().backward().unwrap();
        assert!(max_diff(g1.get(&x).unwrap(), g2.get(&x).unwrap()) < 1e-5);
    }
}
