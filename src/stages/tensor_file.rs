//! The caches' entry format: safetensors with one f32 tensor, and in the header's
//! metadata the entry's format, its content key and what else names its shape, so that
//! a file is checked against what the reader expects before a value is trusted.

use std::collections::HashMap;
use std::path::Path;

use safetensors::{Dtype, SafeTensors, tensor::TensorView};

/// The header metadata an entry is written with and must be read back with.
pub(crate) type Metadata = HashMap<String, String>;

/// Writes `values` as tensor `name` of `shape` with `metadata` (atomically).
pub(crate) fn write_f32(
    path: &Path,
    name: &str,
    shape: &[usize],
    values: &[f32],
    metadata: Metadata,
) -> std::io::Result<()> {
    let bytes: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
    let view =
        TensorView::new(Dtype::F32, shape.to_vec(), &bytes).map_err(std::io::Error::other)?;
    let file =
        safetensors::serialize([(name, view)], Some(metadata)).map_err(std::io::Error::other)?;
    crate::util::write_atomic(path, &file)
}

/// Tensor `name` of `path` when the file's metadata is `metadata` and the tensor is
/// f32 of `shape` with finite values; otherwise why not (read as a cache miss).
pub(crate) fn read_f32(
    path: &Path,
    name: &str,
    shape: &[usize],
    metadata: &Metadata,
) -> Result<Vec<f32>, String> {
    let bytes = std::fs::read(path).map_err(|e| e.to_string())?;
    let (_, header) = SafeTensors::read_metadata(&bytes).map_err(|e| e.to_string())?;
    if header.metadata().as_ref() != Some(metadata) {
        return Err("written for another model, split or format".into());
    }
    let tensors = SafeTensors::deserialize(&bytes).map_err(|e| e.to_string())?;
    let tensor = tensors.tensor(name).map_err(|e| e.to_string())?;
    if tensor.dtype() != Dtype::F32 || tensor.shape() != shape {
        return Err(format!(
            "{:?} {:?}, expected F32 {shape:?}",
            tensor.dtype(),
            tensor.shape()
        ));
    }
    let values: Vec<f32> = tensor
        .data()
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect();
    match values.iter().position(|v| !v.is_finite()) {
        Some(bad) => Err(format!("value {bad} is not finite")),
        None => Ok(values),
    }
}
