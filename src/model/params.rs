//! Host-readable views of the layers every architecture shares (linear, LayerNorm): the
//! CPU paths read a layer's tensors by name through these.

use candle_core::{Result, Tensor};
use candle_nn::Linear;

use crate::kernels::packed::PackedBf16;
use crate::model::ops::LayerNorm;

/// A linear layer's parameters: weight `[out, in]` and bias `[out]`.
#[derive(Debug, Clone, Default)]
pub struct LinearParams<T> {
    pub weight: T,
    pub bias: T,
}

/// A LayerNorm's parameters: scale and shift `[d]`.
#[derive(Debug, Clone, Default)]
pub struct NormParams<T> {
    pub weight: T,
    pub bias: T,
}

impl<T> LinearParams<T> {
    pub(crate) fn try_map<'a, U, E>(
        &'a self,
        f: &mut impl FnMut(&'a T) -> std::result::Result<U, E>,
    ) -> std::result::Result<LinearParams<U>, E> {
        Ok(LinearParams {
            weight: f(&self.weight)?,
            bias: f(&self.bias)?,
        })
    }
}

impl<T> NormParams<T> {
    pub(crate) fn try_map<'a, U, E>(
        &'a self,
        f: &mut impl FnMut(&'a T) -> std::result::Result<U, E>,
    ) -> std::result::Result<NormParams<U>, E> {
        Ok(NormParams {
            weight: f(&self.weight)?,
            bias: f(&self.bias)?,
        })
    }
}

impl LinearParams<&[f32]> {
    /// The weight in bf16, packed for the bf16 products (`--precision bf16`).
    pub(crate) fn pack_bf16(&self) -> PackedBf16 {
        PackedBf16::pack(self.weight, self.bias.len())
    }
}

impl LinearParams<Tensor> {
    /// The tensors of a linear layer with a bias (the CPU paths read them by name).
    pub(crate) fn of(linear: &Linear) -> Result<Self> {
        let bias = linear
            .bias()
            .ok_or_else(|| candle_core::Error::Msg("a linear layer without bias".into()))?;
        Ok(LinearParams {
            weight: linear.weight().clone(),
            bias: bias.clone(),
        })
    }
}

impl NormParams<Tensor> {
    pub(crate) fn of(norm: &LayerNorm) -> Self {
        let (weight, bias) = norm.tensors();
        NormParams { weight, bias }
    }
}
