//! candle ops with a backward pass for training on the CPU: LayerNorm and softmax over the last
//! dimension. candle's fused versions record no backward, and its differentiable
//! composites build about a dozen tensor ops each way; these run one pass over host
//! memory forward and one backward, rows in parallel.

use candle_core::{CpuStorage, CustomOp1, CustomOp3, Layout, Result, Shape, Tensor};

use crate::kernels;

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
pub(crate) fn applies(t: &Tensor) -> bool {
    t.device().is_cpu() && t.dtype() == candle_core::DType::F32
}

/// `(x − mean) / sqrt(var + eps) · α + β` over the last dimension.
pub(crate) struct LayerNormOp {
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
        let mut out = vec![0f32; x.len()];
        kernels::layer_norm_forward(x, alpha, beta, self.eps, &mut out, None);
        Ok((CpuStorage::F32(out), l1.shape().clone()))
    }

    fn bwd(
        &self,
        x: &Tensor,
        alpha: &Tensor,
        beta: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let (xs, a, b, g) = (host(x)?, host(alpha)?, host(beta)?, host(grad)?);
        let d = a.len();
        let rows = xs.len() / d.max(1);
        let (mut out, mut xhat, mut rstd) =
            (vec![0f32; xs.len()], vec![0f32; xs.len()], vec![0f32; rows]);
        kernels::layer_norm_forward(
            &xs,
            &a,
            &b,
            self.eps,
            &mut out,
            Some((&mut xhat, &mut rstd)),
        );
        let mut dx = vec![0f32; xs.len()];
        let (mut da, mut db) = (vec![0f32; d], vec![0f32; d]);
        kernels::layer_norm_backward(&xhat, &rstd, &a, &g, &mut dx, false, &mut da, &mut db);
        let device = x.device();
        Ok((
            Some(Tensor::from_vec(dx, x.shape(), device)?),
            Some(Tensor::from_vec(da, d, device)?),
            Some(Tensor::from_vec(db, d, device)?),
        ))
    }
}

/// Softmax over the last dimension.
pub(crate) struct SoftmaxOp;

impl CustomOp1 for SoftmaxOp {
    fn name(&self) -> &'static str {
        "softmax-with-backward"
    }

    fn cpu_fwd(&self, storage: &CpuStorage, layout: &Layout) -> Result<(CpuStorage, Shape)> {
        let x = f32_slice(storage, layout)?;
        let d = *layout.dims().last().unwrap_or(&1);
        let mut out = vec![0f32; x.len()];
        kernels::softmax_forward(x, &mut out, d);
        Ok((CpuStorage::F32(out), layout.shape().clone()))
    }

    fn bwd(&self, arg: &Tensor, res: &Tensor, grad: &Tensor) -> Result<Option<Tensor>> {
        let (y, g) = (host(res)?, host(grad)?);
        let d = *arg.dims().last().unwrap_or(&1);
        let mut dx = vec![0f32; y.len()];
        kernels::softmax_backward(&y, &g, &mut dx, d);
        Ok(Some(Tensor::from_vec(dx, arg.shape(), arg.device())?))
    }
}

/// GELU with the exact (erf) form BERT uses: x · Φ(x).
pub(crate) struct GeluOp;

impl CustomOp1 for GeluOp {
    fn name(&self) -> &'static str {
        "gelu-erf-with-backward"
    }

    fn cpu_fwd(&self, storage: &CpuStorage, layout: &Layout) -> Result<(CpuStorage, Shape)> {
        let x = f32_slice(storage, layout)?;
        let mut out = vec![0f32; x.len()];
        kernels::gelu_forward(x, &mut out);
        Ok((CpuStorage::F32(out), layout.shape().clone()))
    }

    fn bwd(&self, arg: &Tensor, _res: &Tensor, grad: &Tensor) -> Result<Option<Tensor>> {
        let (x, g) = (host(arg)?, host(grad)?);
        let mut dx = vec![0f32; x.len()];
        kernels::gelu_backward(&x, &g, &mut dx);
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
