//! Choosing where the model runs, `--device auto|cpu|cuda`, and in what precision,
//! `--precision fp32|bf16`. CUDA needs a build with the `cuda` cargo feature (off by
//! default; it needs the CUDA toolkit to build).

use candle_core::Device;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum DeviceChoice {
    /// The first CUDA GPU when this build has CUDA and one is present, else the CPU.
    #[default]
    Auto,
    Cpu,
    Cuda,
}

/// The number format of inference's matrix products on the CPU.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Precision {
    /// fp32 throughout: the results of training and the reference for every test.
    #[default]
    Fp32,
    /// The encoders' products with bf16 weights and activations, summed in fp32, where
    /// the CPU has AVX512_BF16; everything else (and every product elsewhere) in fp32.
    Bf16,
}

impl Precision {
    /// The precision that runs here for a request: bf16 needs AVX512_BF16 on the CPU.
    pub fn effective(self, device: &Device) -> Self {
        match self {
            Self::Bf16 if device.is_cpu() && crate::kernels::packed::bf16_supported() => Self::Bf16,
            _ => Self::Fp32,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Self::Fp32 => "fp32",
            Self::Bf16 => "bf16",
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum DeviceError {
    #[error("--device cuda needs a build with CUDA: cargo build --release --features cuda")]
    NotCompiled,
    #[error("cannot open CUDA device 0: {0}")]
    Cuda(String),
}

/// The device for a choice.
pub fn select(choice: DeviceChoice) -> Result<Device, DeviceError> {
    match choice {
        DeviceChoice::Cpu => Ok(Device::Cpu),
        DeviceChoice::Cuda => cuda(),
        DeviceChoice::Auto if cfg!(feature = "cuda") && candle_core::utils::cuda_is_available() => {
            cuda()
        }
        DeviceChoice::Auto => Ok(Device::Cpu),
    }
}

#[cfg(feature = "cuda")]
fn cuda() -> Result<Device, DeviceError> {
    Device::new_cuda(0).map_err(|e| DeviceError::Cuda(e.to_string()))
}

#[cfg(not(feature = "cuda"))]
fn cuda() -> Result<Device, DeviceError> {
    Err(DeviceError::NotCompiled)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_and_auto_work_everywhere() {
        assert!(select(DeviceChoice::Cpu).unwrap().is_cpu());
        assert!(select(DeviceChoice::Auto).is_ok());
        if !cfg!(feature = "cuda") {
            assert!(matches!(
                select(DeviceChoice::Cuda),
                Err(DeviceError::NotCompiled)
            ));
        }
    }
}
