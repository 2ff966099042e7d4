//! Building blocks shared by the model's components: forward modes, LayerNorm with a
//! backward pass, softmax, dropout with a seeded generator, activations.

use std::cell::RefCell;

use candle_core::{D, DType, Result, Tensor};
use candle_nn::VarBuilder;
use rand::RngExt;
use rand_chacha::ChaCha8Rng;

/// How a forward pass runs.
///
/// candle's fused LayerNorm and softmax record no backward pass (CANDLE_NOTES traps 1
/// and the same for `softmax_last_dim`), so they are used only where no gradient is
/// needed; dropout draws from the caller's seeded generator so training is repeatable.
#[derive(Clone, Copy)]
pub enum Mode<'a> {
    /// Inference: fused kernels, no dropout.
    Eval,
    /// Differentiable kernels, no dropout (a frozen tower that gradients pass through).
    Grad,
    /// Training: differentiable kernels and dropout.
    Train(&'a RefCell<ChaCha8Rng>),
}

impl Mode<'_> {
    pub fn differentiable(&self) -> bool {
        !matches!(self, Mode::Eval)
    }
}

/// LayerNorm over the last dimension.
#[derive(Debug, Clone)]
pub struct LayerNorm {
    weight: Tensor,
    bias: Tensor,
    eps: f64,
}

impl LayerNorm {
    /// Loads `weight`/`bias` (or the `gamma`/`beta` of old BERT checkpoints).
    pub fn load(vb: VarBuilder, size: usize, eps: f64) -> Result<Self> {
        let (weight, bias) = if vb.contains_tensor("gamma") && !vb.contains_tensor("weight") {
            (vb.get(size, "gamma")?, vb.get(size, "beta")?)
        } else {
            (
                vb.get_with_hints(size, "weight", candle_nn::Init::Const(1.0))?,
                vb.get_with_hints(size, "bias", candle_nn::Init::Const(0.0))?,
            )
        };
        Ok(Self { weight, bias, eps })
    }

    pub fn eps(&self) -> f64 {
        self.eps
    }

    /// Weight and bias.
    pub fn tensors(&self) -> (Tensor, Tensor) {
        (self.weight.clone(), self.bias.clone())
    }

    pub fn forward(&self, xs: &Tensor, mode: Mode) -> Result<Tensor> {
        if mode.differentiable() && crate::kernels::candle_ops::applies(xs) {
            xs.contiguous()?.apply_op3(
                &self.weight,
                &self.bias,
                crate::kernels::candle_ops::LayerNormOp {
                    eps: self.eps as f32,
                },
            )
        } else if mode.differentiable() {
            candle_nn::ops::layer_norm_slow(xs, &self.weight, &self.bias, self.eps as f32)
        } else {
            candle_nn::ops::layer_norm(&xs.contiguous()?, &self.weight, &self.bias, self.eps as f32)
        }
    }
}

/// Softmax over the last dimension.
pub fn softmax(xs: &Tensor, mode: Mode) -> Result<Tensor> {
    if mode.differentiable() && crate::kernels::candle_ops::applies(xs) {
        xs.contiguous()?
            .apply_op1(crate::kernels::candle_ops::SoftmaxOp)
    } else if mode.differentiable() {
        candle_nn::ops::softmax(xs, D::Minus1)
    } else {
        candle_nn::ops::softmax_last_dim(&xs.contiguous()?)
    }
}

/// Inverted dropout with probability `p`, only in training.
pub fn dropout(xs: &Tensor, p: f32, mode: Mode) -> Result<Tensor> {
    let Mode::Train(rng) = mode else {
        return Ok(xs.clone());
    };
    if p <= 0.0 {
        return Ok(xs.clone());
    }
    let keep = 1.0 - p;
    let mask: Vec<f32> = {
        let mut rng = rng.borrow_mut();
        (0..xs.elem_count())
            .map(|_| {
                if rng.random::<f32>() < keep {
                    1.0 / keep
                } else {
                    0.0
                }
            })
            .collect()
    };
    let mask = Tensor::from_vec(mask, xs.shape(), xs.device())?.to_dtype(xs.dtype())?;
    xs.mul(&mask)
}

/// Re-draws the variables whose names start with `prefix` from a seeded generator, so
/// that a seed fixes a model's initial weights (candle's own initialisers are unseeded
/// on the CPU): weight matrices ~ N(0, 1/fan_in) (LeCun), embeddings and continuous
/// prompts ~ N(0, 0.02²), biases 0, norm weights 1. Normal draws are sums of uniforms,
/// which give the same numbers on every machine.
// Each `expect` here states an invariant that holds by construction.
#[allow(clippy::expect_used)]
pub fn reinitialize(varmap: &candle_nn::VarMap, prefix: &str, seed: u64) -> Result<()> {
    use rand::SeedableRng;
    let data = varmap
        .data()
        .lock()
        .expect("the varmap lock is not poisoned");
    let mut names: Vec<&String> = data.keys().filter(|n| n.starts_with(prefix)).collect();
    names.sort();
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    for name in names {
        let var = &data[name];
        let is_norm = name.contains("norm") || name.contains("LayerNorm");
        let embedding = name.contains("embedding") || name.ends_with("continuous");
        let std = if embedding || var.rank() < 2 {
            0.02
        } else {
            let fan_in: usize = var.dims()[1..].iter().product();
            1.0 / (fan_in.max(1) as f32).sqrt()
        };
        let values: Vec<f32> = if name == "logit_scale" {
            // CLIP's initial temperature, ln(1 / 0.07).
            vec![2.6592; var.elem_count()]
        } else if var.rank() <= 1 && name.ends_with("weight") && is_norm {
            vec![1.0; var.elem_count()]
        } else if var.rank() <= 1 && !embedding {
            vec![0.0; var.elem_count()]
        } else {
            // Irwin–Hall: the sum of 12 uniforms minus 6 has unit variance.
            (0..var.elem_count())
                .map(|_| ((0..12).map(|_| rng.random::<f32>()).sum::<f32>() - 6.0) * std)
                .collect()
        };
        var.set(&Tensor::from_vec(values, var.shape(), var.device())?.to_dtype(var.dtype())?)?;
    }
    Ok(())
}

/// Activations named by HF configs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Activation {
    /// BERT's exact (erf) GELU.
    Gelu,
    /// GELU's tanh approximation.
    GeluNew,
    /// CLIP's `x · sigmoid(1.702 x)`.
    QuickGelu,
    Relu,
}

impl Activation {
    pub fn forward(&self, xs: &Tensor) -> Result<Tensor> {
        match self {
            Activation::Gelu if crate::kernels::candle_ops::applies(xs) => xs
                .contiguous()?
                .apply_op1(crate::kernels::candle_ops::GeluOp),
            Activation::Gelu => xs.gelu_erf(),
            Activation::GeluNew => xs.gelu(),
            Activation::QuickGelu => xs.mul(&candle_nn::ops::sigmoid(&(xs * 1.702)?)?),
            Activation::Relu => xs.relu(),
        }
    }
}

/// Additive mask value for positions that must get no attention.
pub fn mask_value(dtype: DType) -> f64 {
    match dtype {
        DType::F16 | DType::BF16 => -65504.0,
        _ => f32::MIN as f64 / 2.0,
    }
}

/// Multi-head split: [b, n, h·d] → [b, h, n, d].
pub fn split_heads(xs: &Tensor, heads: usize) -> Result<Tensor> {
    let (b, n, width) = xs.dims3()?;
    xs.reshape((b, n, heads, width / heads))?
        .transpose(1, 2)?
        .contiguous()
}

/// Inverse of [`split_heads`].
pub fn merge_heads(xs: &Tensor) -> Result<Tensor> {
    let (b, h, n, d) = xs.dims4()?;
    xs.transpose(1, 2)?.contiguous()?.reshape((b, n, h * d))
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;
    use rand::SeedableRng;

    #[test]
    fn layer_norm_paths_agree_and_the_slow_one_has_gradients() {
        let dev = Device::Cpu;
        let varmap = candle_nn::VarMap::new();
        let vb = VarBuilder::from_varmap(&varmap, DType::F32, &dev);
        let ln = LayerNorm::load(vb.pp("ln"), 8, 1e-5).unwrap();
        let x =
            candle_core::Var::from_tensor(&Tensor::randn(0f32, 1., (3, 8), &dev).unwrap()).unwrap();
        let fused = ln.forward(&x, Mode::Eval).unwrap();
        let slow = ln.forward(&x, Mode::Grad).unwrap();
        let diff = crate::model::testing::max_abs_diff(&fused, &slow);
        assert!(diff < 1e-5, "{diff}");
        let loss = slow.sqr().unwrap().sum_all().unwrap();
        let grads = loss.backward().unwrap();
        assert!(grads.get(&x).is_some());
        for var in varmap.all_vars() {
            assert!(grads.get(&var).is_some());
        }
    }

    #[test]
    fn dropout_is_seeded_and_only_in_training() {
        let dev = Device::Cpu;
        let x = Tensor::ones((4, 64), DType::F32, &dev).unwrap();
        assert_eq!(
            dropout(&x, 0.5, Mode::Eval)
                .unwrap()
                .to_vec2::<f32>()
                .unwrap(),
            x.to_vec2::<f32>().unwrap()
        );
        let draw = || {
            let rng = RefCell::new(ChaCha8Rng::seed_from_u64(3));
            dropout(&x, 0.5, Mode::Train(&rng))
                .unwrap()
                .to_vec2::<f32>()
                .unwrap()
        };
        let a = draw();
        assert_eq!(a, draw());
        let zeros = a.iter().flatten().filter(|v| **v == 0.0).count();
        assert!((64..192).contains(&zeros), "{zeros}");
        assert!(a.iter().flatten().all(|v| *v == 0.0 || *v == 2.0));
    }
}
