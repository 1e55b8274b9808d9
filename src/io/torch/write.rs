//! Writing [`PyValue`]s as legacy `torch.save` streams (the format torch 0.4 wrote), so
//! weights can go back to PyTorch: `torch.load` of any version reads them.
//!
//! Dicts are written as plain dicts (insertion-ordered since Python 3.7, which
//! `load_state_dict` accepts), every tensor gets its own contiguous storage, and nothing is
//! memoised, so shared objects are written once per use.

use super::{LEGACY_MAGIC, PyValue, TorchDType, TorchTensor};

/// Serialises `value` into the legacy stream format.
pub(super) fn legacy_bytes(value: &PyValue) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    // magic, protocol version, sys_info: three small pickles.
    let mut w = Writer::default();
    w.out
        .extend_from_slice(&[0x80, 2, 0x8a, LEGACY_MAGIC.len() as u8]);
    w.out.extend_from_slice(&LEGACY_MAGIC);
    w.out.push(b'.');
    out.append(&mut w.out);
    let mut w = Writer::default();
    w.pickle(&PyValue::Int(1001))?;
    out.append(&mut w.out);
    let s = |x: &str| PyValue::Str(x.to_string());
    let sys_info = PyValue::Dict(vec![
        (s("protocol_version"), PyValue::Int(1001)),
        (s("little_endian"), PyValue::Bool(true)),
        (
            s("type_sizes"),
            PyValue::Dict(vec![
                (s("short"), PyValue::Int(2)),
                (s("int"), PyValue::Int(4)),
                (s("long"), PyValue::Int(4)),
            ]),
        ),
    ]);
    let mut w = Writer::default();
    w.pickle(&sys_info)?;
    out.append(&mut w.out);
    // The object; tensors are collected as storages "0", "1", ... in order of appearance.
    let mut w = Writer::default();
    w.pickle(value)?;
    out.append(&mut w.out);
    let keys = PyValue::List((0..w.tensors.len()).map(|i| s(&i.to_string())).collect());
    let mut kw = Writer::default();
    kw.pickle(&keys)?;
    out.append(&mut kw.out);
    for t in &w.tensors {
        out.extend_from_slice(&(t.numel() as u64).to_le_bytes());
        out.extend_from_slice(&t.data);
    }
    Ok(out)
}

#[derive(Default)]
struct Writer<'a> {
    out: Vec<u8>,
    tensors: Vec<&'a TorchTensor>,
}

fn storage_class(d: TorchDType) -> &'static str {
    match d {
        TorchDType::F32 => "FloatStorage",
        TorchDType::F64 => "DoubleStorage",
        TorchDType::F16 => "HalfStorage",
        TorchDType::BF16 => "BFloat16Storage",
        TorchDType::I64 => "LongStorage",
        TorchDType::I32 => "IntStorage",
        TorchDType::I16 => "ShortStorage",
        TorchDType::I8 => "CharStorage",
        TorchDType::U8 => "ByteStorage",
        TorchDType::Bool => "BoolStorage",
    }
}

impl<'a> Writer<'a> {
    fn pickle(&mut self, v: &'a PyValue) -> Result<(), String> {
        self.out.extend_from_slice(&[0x80, 2]);
        self.value(v, 0)?;
        self.out.push(b'.');
        Ok(())
    }

    fn global(&mut self, module: &str, name: &str) {
        self.out.push(b'c');
        self.out.extend_from_slice(module.as_bytes());
        self.out.push(b'\n');
        self.out.extend_from_slice(name.as_bytes());
        self.out.push(b'\n');
    }

    fn int(&mut self, i: i64) {
        match i {
            0..=0xff => self.out.extend_from_slice(&[b'K', i as u8]),
            0x100..=0xffff => {
                self.out.push(b'M');
                self.out.extend_from_slice(&(i as u16).to_le_bytes());
            }
            _ if i32::try_from(i).is_ok() => {
                self.out.push(b'J');
                self.out.extend_from_slice(&(i as i32).to_le_bytes());
            }
            _ => self.long(&i.to_le_bytes()),
        }
    }

    fn long(&mut self, le: &[u8]) {
        let b = super::pickle::trim_le(le.to_vec());
        self.out.extend_from_slice(&[0x8a, b.len() as u8]);
        self.out.extend_from_slice(&b);
    }

    fn str(&mut self, s: &str) {
        self.out.push(b'X');
        self.out.extend_from_slice(&(s.len() as u32).to_le_bytes());
        self.out.extend_from_slice(s.as_bytes());
    }

    fn seq(&mut self, items: &'a [PyValue], depth: u32) -> Result<(), String> {
        for x in items {
            self.value(x, depth + 1)?;
        }
        Ok(())
    }

    fn pairs(&mut self, items: &'a [(PyValue, PyValue)], depth: u32) -> Result<(), String> {
        if items.is_empty() {
            return Ok(());
        }
        self.out.push(b'(');
        for (k, x) in items {
            self.value(k, depth + 1)?;
            self.value(x, depth + 1)?;
        }
        self.out.push(b'u');
        Ok(())
    }

    fn value(&mut self, v: &'a PyValue, depth: u32) -> Result<(), String> {
        if depth > 200 {
            return Err("value nested deeper than 200 levels".into());
        }
        match v {
            PyValue::None => self.out.push(b'N'),
            PyValue::Bool(b) => self.out.push(if *b { 0x88 } else { 0x89 }),
            PyValue::Int(i) => self.int(*i),
            PyValue::BigInt(b) => {
                if b.len() > 255 {
                    return Err("integer too large to write".into());
                }
                self.long(b)
            }
            PyValue::Float(f) => {
                self.out.push(b'G');
                self.out.extend_from_slice(&f.to_be_bytes());
            }
            PyValue::Str(s) => self.str(s),
            PyValue::Bytes(b) => {
                // BINBYTES is protocol 3, but every Python 3 unpickler accepts it.
                self.out.push(b'B');
                let n = u32::try_from(b.len()).map_err(|_| "bytes value too large")?;
                self.out.extend_from_slice(&n.to_le_bytes());
                self.out.extend_from_slice(b);
            }
            PyValue::List(items) => {
                self.out.push(b']');
                if !items.is_empty() {
                    self.out.push(b'(');
                    self.seq(items, depth)?;
                    self.out.push(b'e');
                }
            }
            PyValue::Tuple(items) => {
                self.out.push(b'(');
                self.seq(items, depth)?;
                self.out.push(b't');
            }
            PyValue::Set(items) => {
                self.global("__builtin__", "set");
                self.out.push(b']');
                if !items.is_empty() {
                    self.out.push(b'(');
                    self.seq(items, depth)?;
                    self.out.push(b'e');
                }
                self.out.extend_from_slice(&[0x85, b'R']);
            }
            PyValue::Dict(items) => {
                self.out.push(b'}');
                self.pairs(items, depth)?;
            }
            PyValue::Tensor(t) => self.tensor(t)?,
            PyValue::Global(g) => {
                let (m, n) = g
                    .rsplit_once('.')
                    .ok_or_else(|| format!("global {g:?} has no module"))?;
                self.global(m, n);
            }
            PyValue::Object {
                class,
                args,
                state,
                list_items,
                dict_items,
            } => {
                let (m, n) = class
                    .rsplit_once('.')
                    .ok_or_else(|| format!("cannot write an object of class {class:?}"))?;
                self.global(m, n);
                self.out.push(b'(');
                self.seq(args, depth)?;
                self.out.extend_from_slice(b"tR");
                if let Some(s) = state {
                    self.value(s, depth + 1)?;
                    self.out.push(b'b');
                }
                if !list_items.is_empty() {
                    self.out.push(b'(');
                    self.seq(list_items, depth)?;
                    self.out.push(b'e');
                }
                self.pairs(dict_items, depth)?;
            }
        }
        Ok(())
    }

    /// `_rebuild_tensor_v2(storage, 0, size, contiguous stride, False, OrderedDict())`.
    fn tensor(&mut self, t: &'a TorchTensor) -> Result<(), String> {
        let numel = t.numel();
        if t.data.len() != numel * t.dtype.size() {
            return Err(format!(
                "tensor of shape {:?} has {} bytes of data, expected {}",
                t.shape,
                t.data.len(),
                numel * t.dtype.size()
            ));
        }
        let key = self.tensors.len().to_string();
        self.tensors.push(t);
        self.global("torch._utils", "_rebuild_tensor_v2");
        self.out.push(b'(');
        // Persistent id ('storage', torch.XStorage, key, 'cpu', numel, None).
        self.out.push(b'(');
        self.str("storage");
        self.global("torch", storage_class(t.dtype));
        self.str(&key);
        self.str("cpu");
        self.int(numel as i64);
        self.out.extend_from_slice(b"NtQ");
        self.int(0);
        self.out.push(b'(');
        for &s in &t.shape {
            self.int(s as i64);
        }
        self.out.push(b't');
        self.out.push(b'(');
        let mut stride = vec![1i64; t.shape.len()];
        for d in (0..t.shape.len().saturating_sub(1)).rev() {
            stride[d] = stride[d + 1] * t.shape[d + 1].max(1) as i64;
        }
        for s in stride {
            self.int(s);
        }
        self.out.push(b't');
        self.out.push(0x89);
        self.global("collections", "OrderedDict");
        self.out.extend_from_slice(b")R");
        self.out.extend_from_slice(b"tR");
        Ok(())
    }
}
