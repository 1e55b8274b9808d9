//! Reading PyTorch `torch.save` files without Python: the original's checkpoints (legacy
//! stream format, as written by torch 0.4) and current ones (zip format).
//!
//! [`load`] returns the pickled object as a [`PyValue`] tree; tensors come out contiguous and
//! little-endian. [`state_dict`] turns one of its entries into named tensors. The file formats
//! are described in the spec, §20.2, and in `torch/serialization.py`.
//!
//! ```no_run
//! # fn main() -> sg2im::Result<()> {
//! use sg2im::io::torch;
//! let ckpt = torch::load(std::path::Path::new("sg2im-models/coco64.pt"))?;
//! let kwargs = ckpt.get("model_kwargs");
//! let weights = torch::state_dict(ckpt.get("model_state").unwrap(), "coco64.pt: model_state")?;
//! # Ok(()) }
//! ```

mod pickle;
mod write;

use std::borrow::Cow;
use std::collections::HashMap;
use std::io::Read;
use std::path::Path;

use indexmap::IndexMap;

use crate::{Error, Result};
use pickle::{Parsed, Resolver};

/// A Python value from a pickle.
#[derive(Clone, Debug, PartialEq)]
pub enum PyValue {
    None,
    Bool(bool),
    Int(i64),
    /// An int outside i64 (e.g. the legacy magic number), little-endian two's complement.
    BigInt(Vec<u8>),
    Float(f64),
    Str(String),
    Bytes(Vec<u8>),
    List(Vec<PyValue>),
    Tuple(Vec<PyValue>),
    /// `set` or `frozenset`, in pickle order.
    Set(Vec<PyValue>),
    /// `dict`, `OrderedDict` or `defaultdict`, in insertion order.
    Dict(Vec<(PyValue, PyValue)>),
    Tensor(TorchTensor),
    /// A class or function that was referenced but not called, as `module.name`.
    Global(String),
    /// An instance of a class this reader does not interpret (e.g. `argparse.Namespace`),
    /// kept opaque: the constructor arguments, the `__setstate__` state, and any items
    /// appended or set on it.
    Object {
        class: String,
        args: Vec<PyValue>,
        state: Option<Box<PyValue>>,
        list_items: Vec<PyValue>,
        dict_items: Vec<(PyValue, PyValue)>,
    },
}

/// Element types of torch storages.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum TorchDType {
    F32,
    F64,
    F16,
    BF16,
    I64,
    I32,
    I16,
    I8,
    U8,
    Bool,
}

impl TorchDType {
    /// Bytes per element.
    pub fn size(self) -> usize {
        match self {
            TorchDType::F64 | TorchDType::I64 => 8,
            TorchDType::F32 | TorchDType::I32 => 4,
            TorchDType::F16 | TorchDType::BF16 | TorchDType::I16 => 2,
            TorchDType::I8 | TorchDType::U8 | TorchDType::Bool => 1,
        }
    }

    /// The torch name (`float32`, `int64`, ...).
    pub fn name(self) -> &'static str {
        match self {
            TorchDType::F32 => "float32",
            TorchDType::F64 => "float64",
            TorchDType::F16 => "float16",
            TorchDType::BF16 => "bfloat16",
            TorchDType::I64 => "int64",
            TorchDType::I32 => "int32",
            TorchDType::I16 => "int16",
            TorchDType::I8 => "int8",
            TorchDType::U8 => "uint8",
            TorchDType::Bool => "bool",
        }
    }

    /// The dtype of a storage class global (`torch.FloatStorage`, `torch.cuda.LongStorage`,
    /// `torch.UntypedStorage` = bytes).
    fn from_storage_class(class: &str) -> Option<Self> {
        let name = class
            .strip_prefix("torch.cuda.")
            .or_else(|| class.strip_prefix("torch.storage."))
            .or_else(|| class.strip_prefix("torch."))?;
        Some(match name {
            "FloatStorage" => TorchDType::F32,
            "DoubleStorage" => TorchDType::F64,
            "HalfStorage" => TorchDType::F16,
            "BFloat16Storage" => TorchDType::BF16,
            "LongStorage" => TorchDType::I64,
            "IntStorage" => TorchDType::I32,
            "ShortStorage" => TorchDType::I16,
            "CharStorage" => TorchDType::I8,
            "ByteStorage" | "UntypedStorage" => TorchDType::U8,
            "BoolStorage" => TorchDType::Bool,
            _ => return None,
        })
    }

    /// The dtype named by a `torch.float32`-style global.
    fn from_torch_name(global: &str) -> Option<Self> {
        Some(match global.strip_prefix("torch.")? {
            "float32" | "float" => TorchDType::F32,
            "float64" | "double" => TorchDType::F64,
            "float16" | "half" => TorchDType::F16,
            "bfloat16" => TorchDType::BF16,
            "int64" | "long" => TorchDType::I64,
            "int32" | "int" => TorchDType::I32,
            "int16" | "short" => TorchDType::I16,
            "int8" => TorchDType::I8,
            "uint8" => TorchDType::U8,
            "bool" => TorchDType::Bool,
            _ => return None,
        })
    }
}

/// A tensor with its data copied out of the checkpoint: contiguous (row-major), little-endian.
#[derive(Clone, Debug, PartialEq)]
pub struct TorchTensor {
    pub dtype: TorchDType,
    /// Empty for a scalar (e.g. `num_batches_tracked`).
    pub shape: Vec<usize>,
    pub data: Vec<u8>,
}

impl TorchTensor {
    pub fn numel(&self) -> usize {
        self.shape.iter().product()
    }

    /// A float32 tensor (for tests and writers).
    pub fn from_f32(shape: Vec<usize>, values: &[f32]) -> Self {
        TorchTensor {
            dtype: TorchDType::F32,
            shape,
            data: values.iter().flat_map(|v| v.to_le_bytes()).collect(),
        }
    }

    /// An int64 tensor (for tests and writers).
    pub fn from_i64(shape: Vec<usize>, values: &[i64]) -> Self {
        TorchTensor {
            dtype: TorchDType::I64,
            shape,
            data: values.iter().flat_map(|v| v.to_le_bytes()).collect(),
        }
    }

    fn chunks<const N: usize>(&self) -> impl Iterator<Item = [u8; N]> + '_ {
        self.data.chunks_exact(N).map(|c| {
            let mut a = [0u8; N];
            a.copy_from_slice(c);
            a
        })
    }

    /// The values as f32, converting from any dtype (as `tensor.float()` does; int64 and
    /// float64 may round).
    pub fn to_f32(&self) -> Vec<f32> {
        match self.dtype {
            TorchDType::F32 => self.chunks::<4>().map(f32::from_le_bytes).collect(),
            TorchDType::F64 => self
                .chunks::<8>()
                .map(|b| f64::from_le_bytes(b) as f32)
                .collect(),
            TorchDType::F16 => self
                .chunks::<2>()
                .map(|b| half::f16::from_le_bytes(b).to_f32())
                .collect(),
            TorchDType::BF16 => self
                .chunks::<2>()
                .map(|b| half::bf16::from_le_bytes(b).to_f32())
                .collect(),
            _ => self.to_i64().into_iter().map(|v| v as f32).collect(),
        }
    }

    /// The values as i64, converting from any dtype (floats truncate toward zero, as
    /// `tensor.long()` does).
    pub fn to_i64(&self) -> Vec<i64> {
        match self.dtype {
            TorchDType::I64 => self.chunks::<8>().map(i64::from_le_bytes).collect(),
            TorchDType::I32 => self
                .chunks::<4>()
                .map(|b| i32::from_le_bytes(b) as i64)
                .collect(),
            TorchDType::I16 => self
                .chunks::<2>()
                .map(|b| i16::from_le_bytes(b) as i64)
                .collect(),
            TorchDType::I8 => self.data.iter().map(|&b| b as i8 as i64).collect(),
            TorchDType::U8 => self.data.iter().map(|&b| b as i64).collect(),
            TorchDType::Bool => self.data.iter().map(|&b| (b != 0) as i64).collect(),
            TorchDType::F64 => self
                .chunks::<8>()
                .map(|b| f64::from_le_bytes(b) as i64)
                .collect(),
            _ => self.to_f32().into_iter().map(|v| v as i64).collect(),
        }
    }
}

impl PyValue {
    /// A short name of the value's type, for error messages.
    pub fn kind(&self) -> &'static str {
        match self {
            PyValue::None => "None",
            PyValue::Bool(_) => "bool",
            PyValue::Int(_) | PyValue::BigInt(_) => "int",
            PyValue::Float(_) => "float",
            PyValue::Str(_) => "str",
            PyValue::Bytes(_) => "bytes",
            PyValue::List(_) => "list",
            PyValue::Tuple(_) => "tuple",
            PyValue::Set(_) => "set",
            PyValue::Dict(_) => "dict",
            PyValue::Tensor(_) => "tensor",
            PyValue::Global(_) => "global",
            PyValue::Object { .. } => "object",
        }
    }

    /// The value under a string key of a dict, or the attribute of an opaque object whose
    /// state is a dict (e.g. an `argparse.Namespace`).
    pub fn get(&self, key: &str) -> Option<&PyValue> {
        match self {
            PyValue::Dict(items) => items
                .iter()
                .find(|(k, _)| matches!(k, PyValue::Str(s) if s == key))
                .map(|(_, v)| v),
            PyValue::Object {
                state: Some(state), ..
            } => state.get(key),
            _ => None,
        }
    }

    pub fn as_str(&self) -> Option<&str> {
        match self {
            PyValue::Str(s) => Some(s),
            _ => None,
        }
    }

    /// An int (bools count, as in Python).
    pub fn as_i64(&self) -> Option<i64> {
        match self {
            PyValue::Int(i) => Some(*i),
            PyValue::Bool(b) => Some(*b as i64),
            _ => None,
        }
    }

    /// A float or an int.
    pub fn as_f64(&self) -> Option<f64> {
        match self {
            PyValue::Float(f) => Some(*f),
            PyValue::Int(i) => Some(*i as f64),
            _ => None,
        }
    }

    pub fn as_bool(&self) -> Option<bool> {
        match self {
            PyValue::Bool(b) => Some(*b),
            _ => None,
        }
    }

    /// The items of a list or a tuple.
    pub fn as_list(&self) -> Option<&[PyValue]> {
        match self {
            PyValue::List(v) | PyValue::Tuple(v) => Some(v),
            _ => None,
        }
    }

    pub fn as_dict(&self) -> Option<&[(PyValue, PyValue)]> {
        match self {
            PyValue::Dict(d) => Some(d),
            _ => None,
        }
    }

    pub fn as_tensor(&self) -> Option<&TorchTensor> {
        match self {
            PyValue::Tensor(t) => Some(t),
            _ => None,
        }
    }

    /// A JSON rendering for inspection and for reading kwargs with serde: tuples and sets
    /// become arrays, tensors `{"tensor": dtype, "shape": [...]}`, non-string dict keys their
    /// JSON text, opaque objects `{"object": class, "args": [...], "state": ...}`, non-finite
    /// floats the strings `"nan"`, `"inf"`, `"-inf"`.
    pub fn to_json(&self) -> serde_json::Value {
        use serde_json::{Value, json};
        match self {
            PyValue::None => Value::Null,
            PyValue::Bool(b) => Value::Bool(*b),
            PyValue::Int(i) => json!(i),
            PyValue::BigInt(b) => json!({ "bigint_le_hex": hex(b) }),
            PyValue::Float(f) if f.is_finite() => json!(f),
            PyValue::Float(f) if f.is_nan() => json!("nan"),
            PyValue::Float(f) => json!(if *f > 0.0 { "inf" } else { "-inf" }),
            PyValue::Str(s) => json!(s),
            PyValue::Bytes(b) => json!({ "bytes_hex": hex(b) }),
            PyValue::List(v) | PyValue::Tuple(v) | PyValue::Set(v) => {
                Value::Array(v.iter().map(PyValue::to_json).collect())
            }
            PyValue::Dict(d) => Value::Object(dict_to_json(d)),
            PyValue::Tensor(t) => json!({ "tensor": t.dtype.name(), "shape": t.shape }),
            PyValue::Global(g) => json!({ "global": g }),
            PyValue::Object {
                class,
                args,
                state,
                list_items,
                dict_items,
            } => {
                let mut m = serde_json::Map::new();
                m.insert("object".into(), json!(class));
                m.insert(
                    "args".into(),
                    Value::Array(args.iter().map(PyValue::to_json).collect()),
                );
                if let Some(s) = state {
                    m.insert("state".into(), s.to_json());
                }
                if !list_items.is_empty() {
                    m.insert(
                        "items".into(),
                        Value::Array(list_items.iter().map(PyValue::to_json).collect()),
                    );
                }
                if !dict_items.is_empty() {
                    m.insert("dict_items".into(), Value::Object(dict_to_json(dict_items)));
                }
                Value::Object(m)
            }
        }
    }
}

/// "an int", "a list": a type name with its article, for messages.
fn a(kind: &str) -> String {
    if kind.starts_with(['a', 'e', 'i', 'o', 'u']) {
        format!("an {kind}")
    } else {
        format!("a {kind}")
    }
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn dict_to_json(d: &[(PyValue, PyValue)]) -> serde_json::Map<String, serde_json::Value> {
    d.iter()
        .map(|(k, v)| {
            let key = match k {
                PyValue::Str(s) => s.clone(),
                other => other.to_json().to_string(),
            };
            (key, v.to_json())
        })
        .collect()
}

/// Reads a `torch.save` file of either format.
pub fn load(path: &Path) -> Result<PyValue> {
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    load_bytes(&bytes, &path.display().to_string())
}

/// Reads a `torch.save` file from memory; `what` names it in error messages.
pub fn load_bytes(bytes: &[u8], what: &str) -> Result<PyValue> {
    let fail = |msg: String| Error::invalid(format!("{what}: {msg}"));
    if bytes.starts_with(b"PK\x03\x04") || bytes.starts_with(b"PK\x05\x06") {
        load_zip(bytes).map_err(fail)
    } else if bytes.first() == Some(&0x80) {
        load_legacy(bytes).map_err(fail)
    } else if bytes.get(257..262) == Some(b"ustar") {
        Err(fail(
            "tar-format torch checkpoint (PyTorch < 0.1.10) is not supported".into(),
        ))
    } else {
        Err(fail(NOT_A_CHECKPOINT.into()))
    }
}

const NOT_A_CHECKPOINT: &str =
    "not a PyTorch checkpoint (expected a zip archive with data.pkl or a legacy torch.save stream)";

/// `0x1950a86a20f9469cfc6c`, little-endian: the first pickle of a legacy stream.
const LEGACY_MAGIC: [u8; 10] = [0x6c, 0xfc, 0x9c, 0x46, 0xf9, 0x20, 0x6a, 0xa8, 0x50, 0x19];

/// Resolves the object pickle once every storage's bytes are known.
fn finish(
    parsed: &Parsed,
    storages: &HashMap<String, Cow<'_, [u8]>>,
    file_len: usize,
) -> Result<PyValue, String> {
    let len = file_len as u64;
    let mut r = Resolver {
        memo: &parsed.memo,
        storages,
        nodes_left: len.saturating_mul(16).saturating_add(1_000_000),
        bytes_left: len.saturating_mul(4).saturating_add(256 << 20),
    };
    r.resolve(&parsed.root, 0)
}

/// Legacy stream: magic, protocol version, sys_info, object, storage keys, then per key an
/// int64 element count and the raw little-endian elements.
fn load_legacy(bytes: &[u8]) -> Result<PyValue, String> {
    let small = |start: usize, what: &str| -> Result<(PyValue, usize), String> {
        let p = pickle::run(bytes, start).map_err(|e| format!("legacy {what}: {e}"))?;
        let empty = HashMap::new();
        let v = finish(&p, &empty, bytes.len()).map_err(|e| format!("legacy {what}: {e}"))?;
        Ok((v, p.end))
    };
    let (magic, pos) = match small(0, "header") {
        Ok(x) => x,
        Err(_) => {
            // A cut-off copy of a real checkpoint deserves a better word than "not one".
            let header = [&[0x80, 2, 0x8a, 10][..], &LEGACY_MAGIC[..], b"."].concat();
            return Err(if bytes.len() < header.len() && header.starts_with(bytes) {
                format!("truncated legacy checkpoint: only {} bytes", bytes.len())
            } else {
                NOT_A_CHECKPOINT.into()
            });
        }
    };
    let is_magic = match &magic {
        PyValue::BigInt(b) => b.as_slice() == LEGACY_MAGIC,
        _ => false,
    };
    if !is_magic {
        return Err(format!(
            "{NOT_A_CHECKPOINT}: a pickle whose first value is not the torch.save magic number"
        ));
    }
    let (version, pos) = small(pos, "protocol version")?;
    if version != PyValue::Int(1001) {
        return Err(format!(
            "unsupported legacy torch.save protocol version {} (expected 1001)",
            version.to_json()
        ));
    }
    let (sys_info, pos) = small(pos, "sys_info")?;
    match sys_info.get("little_endian") {
        Some(PyValue::Bool(true)) => {}
        Some(PyValue::Bool(false)) => {
            return Err("big-endian checkpoint: only little-endian files are supported".into());
        }
        _ => return Err("legacy sys_info has no little_endian flag".into()),
    }
    let obj = pickle::run(bytes, pos).map_err(|e| format!("legacy object pickle: {e}"))?;
    let (keys, mut pos) = small(obj.end, "storage key list")?;
    let keys = match keys.as_list() {
        Some(k) => k,
        None => return Err(format!("legacy storage key list is a {}", keys.kind())),
    };
    let mut storages: HashMap<String, Cow<'_, [u8]>> = HashMap::new();
    for key in keys {
        let key = match key {
            PyValue::Str(s) => s.clone(),
            PyValue::Int(i) => i.to_string(),
            other => return Err(format!("legacy storage key is a {}", other.kind())),
        };
        let (dtype, _) = obj.storages.get(&key).ok_or_else(|| {
            format!("storage '{key}' is listed but no tensor in the object uses it")
        })?;
        let count_bytes = bytes.get(pos..pos + 8).ok_or_else(|| {
            format!(
                "truncated legacy checkpoint: storage '{key}' needs an 8-byte size, {} bytes left",
                bytes.len().saturating_sub(pos)
            )
        })?;
        let count = u64::from_le_bytes(count_bytes.try_into().map_err(|_| "size field")?);
        pos += 8;
        let left = bytes.len() - pos;
        let need = count
            .checked_mul(dtype.size() as u64)
            .filter(|&n| n <= left as u64)
            .ok_or_else(|| {
                format!(
                    "truncated legacy checkpoint: storage '{key}' needs {} bytes, {left} left",
                    count as u128 * dtype.size() as u128
                )
            })? as usize;
        storages.insert(key, Cow::Borrowed(&bytes[pos..pos + need]));
        pos += need;
    }
    if pos != bytes.len() {
        return Err(format!(
            "{} unexpected bytes after the last storage (offset {pos})",
            bytes.len() - pos
        ));
    }
    finish(&obj, &storages, bytes.len())
}

/// Zip format: `<prefix>/data.pkl`, `<prefix>/data/<key>` per storage, `<prefix>/byteorder`.
fn load_zip(bytes: &[u8]) -> Result<PyValue, String> {
    let mut zip = zip::ZipArchive::new(std::io::Cursor::new(bytes))
        .map_err(|e| format!("unreadable zip archive (truncated or corrupt?): {e}"))?;
    let names: Vec<Vec<u8>> = zip.file_names_raw().map(<[u8]>::to_vec).collect();
    let pkls: Vec<&Vec<u8>> = names
        .iter()
        .filter(|n| {
            n.strip_suffix(b"/data.pkl")
                .is_some_and(|p| !p.is_empty() && !p.contains(&b'/'))
        })
        .collect();
    let prefix = match pkls.as_slice() {
        [one] => String::from_utf8(one[..one.len() - "data.pkl".len()].to_vec())
            .map_err(|_| "zip folder name is not UTF-8".to_string())?,
        [] => {
            return Err(format!(
                "{NOT_A_CHECKPOINT}: zip archive without <folder>/data.pkl"
            ));
        }
        _ => return Err(format!("zip archive has {} data.pkl entries", pkls.len())),
    };
    let mut read = |name: &str, limit: u64| -> Result<Option<Cow<'_, [u8]>>, String> {
        let Some(index) = zip.index_for_name_raw(name.as_bytes()) else {
            return Ok(None);
        };
        // `by_index` (not `by_index_raw`): decompresses and checks the member's CRC-32 once
        // it is read to the end, so a flipped byte in a tensor's data is an error.
        let mut f = zip
            .by_index(index)
            .map_err(|e| format!("zip entry {name}: {e}"))?;
        let size = f.size();
        if size > limit {
            return Err(format!(
                "zip entry {name} claims {size} bytes, more than the archive can hold"
            ));
        }
        // The central directory says where the member's local header is; that header must
        // name the same member, or the entry points at another member's data.
        let local = usize::try_from(f.header_start())
            .ok()
            .and_then(|at| local_header_name(bytes, at));
        if local != Some(name.as_bytes()) {
            return Err(format!(
                "zip entry {name}: its local header {} (corrupt central directory)",
                match local {
                    Some(other) => format!("names {:?}", String::from_utf8_lossy(other)),
                    None => "is missing".to_string(),
                }
            ));
        }
        // `torch.save` stores its members uncompressed: those are read in place (one copy
        // of a 100 MB weights file less, and its page faults), their CRC-32 checked here.
        let stored = f.compression() == zip::CompressionMethod::Stored && !f.encrypted();
        let in_place = f
            .data_start()
            .and_then(|at| usize::try_from(at).ok())
            .and_then(|at| bytes.get(at..at.checked_add(usize::try_from(size).ok()?)?));
        if let (true, Some(data)) = (stored, in_place) {
            if crc32fast::hash(data) != f.crc32() {
                return Err(format!(
                    "zip entry {name}: CRC-32 mismatch (the file is corrupt)"
                ));
            }
            return Ok(Some(Cow::Borrowed(data)));
        }
        let mut out = Vec::with_capacity(size as usize);
        f.read_to_end(&mut out).map_err(|e| {
            // The zip crate's wording for a CRC-32 mismatch is "Invalid checksum".
            if e.to_string().contains("checksum") {
                format!("zip entry {name}: CRC-32 mismatch (the file is corrupt)")
            } else {
                format!("zip entry {name}: {e}")
            }
        })?;
        Ok(Some(Cow::Owned(out)))
    };
    // Stored entries cannot exceed the archive; deflated ones are capped generously.
    let limit = (bytes.len() as u64).saturating_mul(64).max(1 << 20);
    if let Some(order) = read(&format!("{prefix}byteorder"), limit)? {
        match order.trim_ascii() {
            b"little" => {}
            b"big" => {
                return Err("big-endian checkpoint: only little-endian files are supported".into());
            }
            other => {
                return Err(format!(
                    "byteorder entry is {:?}, expected \"little\"",
                    String::from_utf8_lossy(other)
                ));
            }
        }
    }
    let pkl = read(&format!("{prefix}data.pkl"), limit)?
        .ok_or_else(|| format!("zip entry {prefix}data.pkl is unreadable"))?;
    let parsed = pickle::run(&pkl, 0).map_err(|e| format!("{prefix}data.pkl: {e}"))?;
    let mut storages: HashMap<String, Cow<'_, [u8]>> = HashMap::new();
    for key in parsed.storages.keys() {
        let name = format!("{prefix}data/{key}");
        let data = read(&name, limit)?
            .ok_or_else(|| format!("storage '{key}' is missing: no zip entry {name}"))?;
        storages.insert(key.clone(), data);
    }
    finish(&parsed, &storages, bytes.len()).map_err(|e| format!("{prefix}data.pkl: {e}"))
}

/// The file name in the zip local file header at `at` (signature `PK\x03\x04`, name length at
/// offset 26, the name from offset 30), if there is one.
fn local_header_name(bytes: &[u8], at: usize) -> Option<&[u8]> {
    let header = bytes.get(at..at.checked_add(30)?)?;
    if header[..4] != *b"PK\x03\x04" {
        return None;
    }
    let len = u16::from_le_bytes([header[26], header[27]]) as usize;
    bytes.get(at + 30..at + 30 + len)
}

/// Serialises `value` as a legacy `torch.save` stream (see [`save_legacy`]).
pub fn to_legacy_bytes(value: &PyValue) -> Result<Vec<u8>> {
    write::legacy_bytes(value).map_err(|e| Error::invalid(format!("torch.save writer: {e}")))
}

/// Writes `value` (atomically) in the legacy `torch.save` format, which every PyTorch version
/// loads. Dicts become plain dicts, tensors contiguous CPU tensors with their own storages.
pub fn save_legacy(path: &Path, value: &PyValue) -> Result<()> {
    let bytes = write::legacy_bytes(value)
        .map_err(|e| Error::invalid(format!("{}: {e}", path.display())))?;
    crate::io::atomic::write_bytes_atomic(path, &bytes)
}

/// The tensors of a state dict, in order, with a leading `module.` (left by
/// `nn.DataParallel`) stripped from each key. `what` names the dict in error messages,
/// e.g. `"coco64.pt: model_state"`.
pub fn state_dict(v: &PyValue, what: &str) -> Result<IndexMap<String, TorchTensor>> {
    let items = v.as_dict().ok_or_else(|| {
        Error::invalid(format!(
            "{what}: expected a dict of tensors, found {}",
            a(v.kind())
        ))
    })?;
    let mut out = IndexMap::with_capacity(items.len());
    for (k, t) in items {
        let key = k.as_str().ok_or_else(|| {
            Error::invalid(format!(
                "{what}: key {} is {}, expected a string",
                k.to_json(),
                a(k.kind())
            ))
        })?;
        let tensor = t.as_tensor().ok_or_else(|| {
            Error::invalid(format!(
                "{what}: '{key}' holds {}, expected a tensor",
                a(t.kind())
            ))
        })?;
        let name = key.strip_prefix("module.").unwrap_or(key);
        if out.insert(name.to_string(), tensor.clone()).is_some() {
            return Err(Error::invalid(format!(
                "{what}: key '{name}' appears twice (with and without 'module.')"
            )));
        }
    }
    Ok(out)
}
