//! Small helpers around the `safetensors` format: collect named tensors, write them atomically
//! with string metadata, read them back.

use crate::io::atomic::write_bytes_atomic;
use crate::{Error, Result};
use burn::tensor::{DType, TensorData};
use indexmap::IndexMap;
use safetensors::tensor::{Dtype, SafeTensors, TensorView};
use std::collections::HashMap;
use std::path::Path;

/// A tensor as raw little-endian bytes.
#[derive(Debug, Clone, PartialEq)]
pub struct RawTensor {
    pub dtype: Dtype,
    pub shape: Vec<usize>,
    pub bytes: Vec<u8>,
}

impl RawTensor {
    pub fn f32(shape: Vec<usize>, v: &[f32]) -> Self {
        Self {
            dtype: Dtype::F32,
            shape,
            bytes: v.iter().flat_map(|x| x.to_le_bytes()).collect(),
        }
    }
    pub fn i64(shape: Vec<usize>, v: &[i64]) -> Self {
        Self {
            dtype: Dtype::I64,
            shape,
            bytes: v.iter().flat_map(|x| x.to_le_bytes()).collect(),
        }
    }
    pub fn u8(shape: Vec<usize>, v: &[u8]) -> Self {
        Self {
            dtype: Dtype::U8,
            shape,
            bytes: v.to_vec(),
        }
    }

    /// From a Burn tensor's data (float32, int64 or bool/u8 kept as they are).
    pub fn from_data(data: &TensorData) -> Self {
        let shape = data.shape().to_vec();
        match data.dtype() {
            DType::I64 => Self::i64(shape, &data.try_to_vec::<i64>().unwrap_or_default()),
            DType::I32 => Self::i64(
                shape,
                &data
                    .try_to_vec::<i32>()
                    .unwrap_or_default()
                    .iter()
                    .map(|&x| x as i64)
                    .collect::<Vec<_>>(),
            ),
            _ => Self::f32(
                shape,
                &data
                    .clone()
                    .convert::<f32>()
                    .try_to_vec::<f32>()
                    .unwrap_or_default(),
            ),
        }
    }

    /// Values as f32 (from F32, F64, F16, BF16 or integer data).
    pub fn to_f32(&self) -> Vec<f32> {
        let b = &self.bytes;
        match self.dtype {
            Dtype::F32 => b
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                .collect(),
            Dtype::F64 => b
                .chunks_exact(8)
                .map(|c| f64::from_le_bytes(c.try_into().expect("8 bytes")) as f32)
                .collect(),
            Dtype::F16 => b
                .chunks_exact(2)
                .map(|c| half::f16::from_le_bytes([c[0], c[1]]).to_f32())
                .collect(),
            Dtype::BF16 => b
                .chunks_exact(2)
                .map(|c| half::bf16::from_le_bytes([c[0], c[1]]).to_f32())
                .collect(),
            _ => self.to_i64().into_iter().map(|x| x as f32).collect(),
        }
    }

    /// Values as i64 (from any integer or boolean data; floats are truncated).
    pub fn to_i64(&self) -> Vec<i64> {
        let b = &self.bytes;
        match self.dtype {
            Dtype::I64 => b
                .chunks_exact(8)
                .map(|c| i64::from_le_bytes(c.try_into().expect("8 bytes")))
                .collect(),
            Dtype::I32 => b
                .chunks_exact(4)
                .map(|c| i32::from_le_bytes([c[0], c[1], c[2], c[3]]) as i64)
                .collect(),
            Dtype::I16 => b
                .chunks_exact(2)
                .map(|c| i16::from_le_bytes([c[0], c[1]]) as i64)
                .collect(),
            Dtype::I8 => b.iter().map(|&x| x as i8 as i64).collect(),
            Dtype::U8 | Dtype::BOOL => b.iter().map(|&x| x as i64).collect(),
            _ => self.to_f32().into_iter().map(|x| x as i64).collect(),
        }
    }

    /// As a float32 Burn tensor data (integer buffers converted).
    pub fn to_data_f32(&self) -> TensorData {
        TensorData::new(self.to_f32(), self.shape.clone())
    }
}

/// Serialises tensors and metadata and writes the file atomically.
pub fn write_safetensors(
    path: impl AsRef<Path>,
    tensors: &IndexMap<String, RawTensor>,
    metadata: Option<HashMap<String, String>>,
) -> Result<()> {
    let path = path.as_ref();
    let views = tensors
        .iter()
        .map(|(k, t)| {
            TensorView::new(t.dtype, t.shape.clone(), &t.bytes)
                .map(|v| (k.clone(), v))
                .map_err(|e| Error::invalid(format!("{}: tensor {k:?}: {e}", path.display())))
        })
        .collect::<Result<Vec<_>>>()?;
    let bytes = safetensors::serialize(views, metadata)
        .map_err(|e| Error::invalid(format!("{}: {e}", path.display())))?;
    write_bytes_atomic(path, &bytes)
}

/// Reads every tensor (in file order) and the metadata of a safetensors file.
pub fn read_safetensors(
    path: impl AsRef<Path>,
) -> Result<(IndexMap<String, RawTensor>, HashMap<String, String>)> {
    let path = path.as_ref();
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    parse_safetensors(&bytes, &path.display().to_string())
}

/// The first tensor of the header whose `data_offsets` span differs from the size its dtype
/// and shape need, described in one phrase.
fn tensor_size_mismatch(bytes: &[u8]) -> Option<String> {
    let n = usize::try_from(u64::from_le_bytes(bytes.get(..8)?.try_into().ok()?)).ok()?;
    let header: serde_json::Value =
        serde_json::from_slice(bytes.get(8..8usize.checked_add(n)?)?).ok()?;
    for (name, info) in header.as_object()? {
        if name == "__metadata__" {
            continue;
        }
        let dtype = info["dtype"].as_str()?;
        let item: u64 = match dtype {
            "F64" | "I64" | "U64" => 8,
            "F32" | "I32" | "U32" => 4,
            "F16" | "BF16" | "I16" | "U16" => 2,
            "I8" | "U8" | "BOOL" | "F8_E4M3" | "F8_E5M2" => 1,
            _ => continue,
        };
        let shape: Vec<u64> = serde_json::from_value(info["shape"].clone()).ok()?;
        let offsets: [u64; 2] = serde_json::from_value(info["data_offsets"].clone()).ok()?;
        let need = shape.iter().try_fold(item, |acc, &d| acc.checked_mul(d));
        let span = offsets[1].checked_sub(offsets[0]);
        if need != span || need.is_none() {
            let need = need.map_or("more than 2^64".to_string(), |b| b.to_string());
            let span = span.map_or("a negative number of".to_string(), |b| b.to_string());
            return Some(format!(
                "tensor {name:?}: shape {shape:?} of {dtype} needs {need} bytes, its data_offsets \
                 {offsets:?} span {span} bytes"
            ));
        }
    }
    None
}

/// Parses safetensors bytes; `what` names the source in errors.
pub fn parse_safetensors(
    bytes: &[u8],
    what: &str,
) -> Result<(IndexMap<String, RawTensor>, HashMap<String, String>)> {
    let bad = |e: safetensors::SafeTensorError| {
        // The crate does not say which tensor has a size that does not fit; find it.
        if matches!(e, safetensors::SafeTensorError::TensorInvalidInfo)
            && let Some(msg) = tensor_size_mismatch(bytes)
        {
            return Error::invalid(format!("{what}: not a valid safetensors file: {msg}"));
        }
        Error::invalid(format!("{what}: not a valid safetensors file: {e}"))
    };
    let (_, meta) = SafeTensors::read_metadata(bytes).map_err(bad)?;
    let st = SafeTensors::deserialize(bytes).map_err(bad)?;
    let mut names: Vec<(usize, String)> = meta
        .tensors()
        .iter()
        .map(|(name, info)| (info.data_offsets.0, name.clone()))
        .collect();
    names.sort();
    let mut out = IndexMap::new();
    for (_, name) in names {
        let v = st.tensor(&name).map_err(bad)?;
        out.insert(
            name,
            RawTensor {
                dtype: v.dtype(),
                shape: v.shape().to_vec(),
                bytes: v.data().to_vec(),
            },
        );
    }
    Ok((out, meta.metadata().clone().unwrap_or_default()))
}
