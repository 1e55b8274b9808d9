//! Model files: our own self-describing format and the original's checkpoints.
//!
//! Our format is one safetensors file. Tensors are the state dicts under their PyTorch keys,
//! prefixed `model.` (generator), `d_obj.` and `d_img.` (discriminators, optional). The
//! safetensors metadata holds `format` = [`FORMAT`], `model_kwargs` (JSON, the original's dict
//! including the vocabulary), and optionally `d_obj_kwargs`, `d_img_kwargs`, `args` (JSON).
//! [`load_any`] also reads an original `.pt` checkpoint (zip or legacy `torch.save` format).

use crate::io::safetensors_io::{RawTensor, parse_safetensors, write_safetensors};
use crate::io::torch;
use crate::{Error, Result};
use burn::tensor::TensorData;
use indexmap::IndexMap;
use serde_json::Value;
use std::collections::HashMap;
use std::path::Path;

/// Value of the `format` metadata key.
pub const FORMAT: &str = "sg2im-rs/model/1";

/// A network's constructor kwargs and state dict.
#[derive(Debug, Clone)]
pub struct NetState {
    pub kwargs: Value,
    pub state: IndexMap<String, TensorData>,
}

/// Everything needed to rebuild the generator (and, if present, the discriminators).
#[derive(Debug, Clone)]
pub struct ModelBundle {
    pub generator: NetState,
    pub d_obj: Option<NetState>,
    pub d_img: Option<NetState>,
    /// Training arguments (`checkpoint["args"]`), when known.
    pub args: Option<Value>,
}

/// Writes a bundle as our model file, atomically.
pub fn save_model_file(path: impl AsRef<Path>, bundle: &ModelBundle) -> Result<()> {
    let path = path.as_ref();
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    }
    let mut tensors = IndexMap::new();
    let mut meta = HashMap::new();
    meta.insert("format".to_string(), FORMAT.to_string());
    let mut add = |prefix: &str, net: &NetState, kw_key: &str| {
        for (k, v) in &net.state {
            tensors.insert(format!("{prefix}.{k}"), RawTensor::from_data(v));
        }
        meta.insert(kw_key.to_string(), net.kwargs.to_string());
    };
    add("model", &bundle.generator, "model_kwargs");
    if let Some(d) = &bundle.d_obj {
        add("d_obj", d, "d_obj_kwargs");
    }
    if let Some(d) = &bundle.d_img {
        add("d_img", d, "d_img_kwargs");
    }
    if let Some(a) = &bundle.args {
        meta.insert("args".to_string(), a.to_string());
    }
    write_safetensors(path, &tensors, Some(meta))
}

/// Reads a model file written by [`save_model_file`].
pub fn load_model_file(path: impl AsRef<Path>) -> Result<ModelBundle> {
    let path = path.as_ref();
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    parse_model_file(&bytes, &path.display().to_string())
}

fn parse_model_file(bytes: &[u8], what: &str) -> Result<ModelBundle> {
    let (tensors, meta) = parse_safetensors(bytes, what)?;
    if meta.get("format").map(String::as_str) != Some(FORMAT) {
        return Err(Error::invalid(format!(
            "{what}: a safetensors file but not an sg2im-rs model file (metadata \"format\" should be {FORMAT:?})"
        )));
    }
    let json = |key: &str| -> Result<Option<Value>> {
        meta.get(key)
            .map(|s| {
                serde_json::from_str(s)
                    .map_err(|e| Error::invalid(format!("{what}: metadata {key:?}: {e}")))
            })
            .transpose()
    };
    let net = |prefix: &str, kw_key: &str| -> Result<Option<NetState>> {
        let Some(kwargs) = json(kw_key)? else {
            return Ok(None);
        };
        let p = format!("{prefix}.");
        let state = tensors
            .iter()
            .filter_map(|(k, t)| {
                k.strip_prefix(&p)
                    .map(|rest| (rest.to_string(), raw_to_data(t)))
            })
            .collect();
        Ok(Some(NetState { kwargs, state }))
    };
    let generator = net("model", "model_kwargs")?
        .ok_or_else(|| Error::invalid(format!("{what}: metadata \"model_kwargs\" missing")))?;
    Ok(ModelBundle {
        generator,
        d_obj: net("d_obj", "d_obj_kwargs")?,
        d_img: net("d_img", "d_img_kwargs")?,
        args: json("args")?,
    })
}

fn raw_to_data(t: &RawTensor) -> TensorData {
    match t.dtype {
        safetensors::Dtype::I64 | safetensors::Dtype::I32 => {
            TensorData::new(t.to_i64(), t.shape.clone())
        }
        _ => t.to_data_f32(),
    }
}

fn torch_to_data(t: &torch::TorchTensor) -> TensorData {
    match t.dtype {
        torch::TorchDType::I64
        | torch::TorchDType::I32
        | torch::TorchDType::I16
        | torch::TorchDType::I8 => TensorData::new(t.to_i64(), t.shape.clone()),
        _ => TensorData::new(t.to_f32(), t.shape.clone()),
    }
}

/// Reads an original checkpoint (`torch.save`, zip or legacy): `model_kwargs` + `model_state`,
/// and the discriminators and `args` when present (released models, train.py checkpoints).
pub fn load_torch_checkpoint(path: impl AsRef<Path>) -> Result<ModelBundle> {
    let path = path.as_ref();
    let what = path.display().to_string();
    let root = torch::load(path)?;
    if root.as_dict().is_none() {
        return Err(Error::invalid(format!(
            "{what}: a PyTorch file, but not an sg2im checkpoint (expected a dict with \"model_kwargs\" and \"model_state\")"
        )));
    }
    let net = |kw_key: &str, state_key: &str| -> Result<Option<NetState>> {
        let (Some(kw), Some(st)) = (root.get(kw_key), root.get(state_key)) else {
            return Ok(None);
        };
        if matches!(st, torch::PyValue::None) {
            return Ok(None);
        }
        let state = torch::state_dict(st, &format!("{what}: {state_key}"))?
            .iter()
            .map(|(k, t)| (k.clone(), torch_to_data(t)))
            .collect();
        Ok(Some(NetState {
            kwargs: kw.to_json(),
            state,
        }))
    };
    let generator = net("model_kwargs", "model_state")?.ok_or_else(|| {
        Error::invalid(format!(
            "{what}: not an sg2im checkpoint: expected keys \"model_kwargs\" and \"model_state\""
        ))
    })?;
    let nonempty =
        |n: Option<NetState>| n.filter(|n| n.kwargs.as_object().is_some_and(|o| !o.is_empty()));
    Ok(ModelBundle {
        generator,
        d_obj: nonempty(net("d_obj_kwargs", "d_obj_state")?),
        d_img: nonempty(net("d_img_kwargs", "d_img_state")?),
        args: root.get("args").map(torch::PyValue::to_json),
    })
}

/// Reads either our model file or an original `.pt` checkpoint, deciding by content.
pub fn load_any(path: impl AsRef<Path>) -> Result<ModelBundle> {
    let path = path.as_ref();
    let mut head = [0u8; 9];
    let n = {
        use std::io::Read;
        let mut f = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
        f.read(&mut head).map_err(|e| Error::io(path, e))?
    };
    // safetensors: 8-byte little-endian header length, then '{'.
    if n == 9 && head[8] == b'{' {
        return load_model_file(path);
    }
    load_torch_checkpoint(path)
}
