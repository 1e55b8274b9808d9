//! A pickle virtual machine for what `torch.save` writes (protocols 0–5, as produced by Python 2
//! and 3), and the resolution of its result into [`PyValue`]s.
//!
//! Nothing is executed: globals are only names. Calls (`REDUCE`, `NEWOBJ`, ...) on the globals
//! torch checkpoints use (`OrderedDict`, `defaultdict`, `_rebuild_tensor_v2`, ...) are interpreted;
//! every other call becomes an opaque [`PyValue::Object`].
//!
//! Python's memo shares objects by reference and the pickler mutates a container *after*
//! memoising it (`EMPTY_DICT`, `BINPUT 0`, `MARK ... SETITEMS`). The VM therefore moves a value
//! into the memo on `PUT` and leaves a [`Val::MemoRef`] on the stack; mutations follow the
//! reference, and references are only replaced by copies in [`Resolver`] at the very end. Tensors
//! stay as [`TensorRef`]s (no data) until then, so these copies are cheap.
//!
//! Hostile input cannot crash the process: every read is bounds-checked, nesting is limited
//! during resolution, the number of values produced is budgeted (memo references can otherwise
//! expand exponentially), and [`Val`] drops iteratively so a deeply nested pickle cannot
//! overflow the stack.

use std::borrow::Cow;
use std::collections::HashMap;

use indexmap::IndexMap;

use super::{PyValue, TorchDType, TorchTensor};

/// Deepest nesting accepted in the resolved value tree (real checkpoints nest < 20 deep).
const MAX_DEPTH: u32 = 200;

/// The storage behind a tensor, as named by a persistent id.
#[derive(Clone, Debug, PartialEq)]
pub(super) struct StorageRef {
    pub key: String,
    pub dtype: TorchDType,
    /// Legacy storage views `(offset, numel)` into the root storage, in elements.
    pub view: Option<(u64, u64)>,
}

/// A tensor whose data is still in a storage: `_rebuild_tensor_v2(storage, offset, size, stride)`.
#[derive(Clone, Debug)]
pub(super) struct TensorRef {
    pub storage: StorageRef,
    /// Element type of the tensor; differs from the storage's only for untyped storages.
    pub dtype: TorchDType,
    pub offset: u64,
    pub size: Vec<u64>,
    pub stride: Vec<u64>,
}

pub(super) struct Obj {
    pub class: String,
    pub args: Vec<Val>,
    pub state: Option<Val>,
    pub list_items: Vec<Val>,
    pub dict_items: Vec<(Val, Val)>,
}

/// A value on the VM's stack or in its memo.
pub(super) enum Val {
    None,
    Bool(bool),
    Int(i64),
    /// An int beyond i64, little-endian two's complement.
    BigInt(Vec<u8>),
    Float(f64),
    Str(String),
    Bytes(Vec<u8>),
    List(Vec<Val>),
    Tuple(Vec<Val>),
    Set(Vec<Val>),
    Dict(Vec<(Val, Val)>),
    /// `module.name` of a `GLOBAL`/`STACK_GLOBAL`, not yet called.
    Global(String),
    Object(Box<Obj>),
    Storage(Box<StorageRef>),
    Tensor(Box<TensorRef>),
    MemoRef(u32),
}

impl Val {
    fn has_children(&self) -> bool {
        match self {
            Val::List(v) | Val::Tuple(v) | Val::Set(v) => !v.is_empty(),
            Val::Dict(d) => !d.is_empty(),
            Val::Object(_) => true,
            _ => false,
        }
    }

    fn drain_children(&mut self, out: &mut Vec<Val>) {
        match self {
            Val::List(v) | Val::Tuple(v) | Val::Set(v) => out.append(v),
            Val::Dict(d) => {
                for (k, x) in d.drain(..) {
                    out.push(k);
                    out.push(x);
                }
            }
            Val::Object(o) => {
                out.append(&mut o.args);
                if let Some(s) = o.state.take() {
                    out.push(s);
                }
                out.append(&mut o.list_items);
                for (k, x) in o.dict_items.drain(..) {
                    out.push(k);
                    out.push(x);
                }
            }
            _ => {}
        }
    }

    fn kind(&self) -> &'static str {
        match self {
            Val::None => "None",
            Val::Bool(_) => "bool",
            Val::Int(_) | Val::BigInt(_) => "int",
            Val::Float(_) => "float",
            Val::Str(_) => "str",
            Val::Bytes(_) => "bytes",
            Val::List(_) => "list",
            Val::Tuple(_) => "tuple",
            Val::Set(_) => "set",
            Val::Dict(_) => "dict",
            Val::Global(_) => "global",
            Val::Object(_) => "object",
            Val::Storage(_) => "storage",
            Val::Tensor(_) => "tensor",
            Val::MemoRef(_) => "memo reference",
        }
    }

    fn take(&mut self) -> Val {
        std::mem::replace(self, Val::None)
    }
}

// Dropping a deeply nested value recursively would overflow the stack on hostile input, so
// children are moved to a work list and dropped one level at a time.
impl Drop for Val {
    fn drop(&mut self) {
        if !self.has_children() {
            return;
        }
        let mut pending = Vec::new();
        self.drain_children(&mut pending);
        while let Some(mut v) = pending.pop() {
            v.drain_children(&mut pending);
        }
    }
}

/// The outcome of running one pickle.
pub(super) struct Parsed {
    pub root: Val,
    pub memo: HashMap<u32, Val>,
    /// Storages named by persistent ids: key → (dtype, declared root numel).
    pub storages: IndexMap<String, (TorchDType, u64)>,
    /// Offset just past the `STOP` opcode.
    pub end: usize,
}

/// Runs the pickle starting at `data[start]` up to its `STOP`. Errors are bare messages
/// (with file offsets); the caller prefixes the file name.
pub(super) fn run(data: &[u8], start: usize) -> Result<Parsed, String> {
    let mut vm = Vm {
        data,
        pos: start,
        stack: Vec::new(),
        marks: Vec::new(),
        memo: HashMap::new(),
        storages: IndexMap::new(),
    };
    let root = vm.run()?;
    Ok(Parsed {
        root,
        memo: std::mem::take(&mut vm.memo),
        storages: std::mem::take(&mut vm.storages),
        end: vm.pos,
    })
}

struct Vm<'a> {
    data: &'a [u8],
    pos: usize,
    stack: Vec<Val>,
    /// Stack heights at each pending `MARK`.
    marks: Vec<usize>,
    memo: HashMap<u32, Val>,
    storages: IndexMap<String, (TorchDType, u64)>,
}

fn opcode_name(op: u8) -> &'static str {
    match op {
        b'(' => "MARK",
        b'.' => "STOP",
        b'0' => "POP",
        b'1' => "POP_MARK",
        b'2' => "DUP",
        b'F' => "FLOAT",
        b'I' => "INT",
        b'J' => "BININT",
        b'K' => "BININT1",
        b'L' => "LONG",
        b'M' => "BININT2",
        b'N' => "NONE",
        b'P' => "PERSID",
        b'Q' => "BINPERSID",
        b'R' => "REDUCE",
        b'S' => "STRING",
        b'T' => "BINSTRING",
        b'U' => "SHORT_BINSTRING",
        b'V' => "UNICODE",
        b'X' => "BINUNICODE",
        b'a' => "APPEND",
        b'b' => "BUILD",
        b'c' => "GLOBAL",
        b'd' => "DICT",
        b'}' => "EMPTY_DICT",
        b'e' => "APPENDS",
        b'g' => "GET",
        b'h' => "BINGET",
        b'i' => "INST",
        b'j' => "LONG_BINGET",
        b'l' => "LIST",
        b']' => "EMPTY_LIST",
        b'o' => "OBJ",
        b'p' => "PUT",
        b'q' => "BINPUT",
        b'r' => "LONG_BINPUT",
        b's' => "SETITEM",
        b't' => "TUPLE",
        b')' => "EMPTY_TUPLE",
        b'u' => "SETITEMS",
        b'G' => "BINFLOAT",
        0x80 => "PROTO",
        0x81 => "NEWOBJ",
        0x82 => "EXT1",
        0x83 => "EXT2",
        0x84 => "EXT4",
        0x85 => "TUPLE1",
        0x86 => "TUPLE2",
        0x87 => "TUPLE3",
        0x88 => "NEWTRUE",
        0x89 => "NEWFALSE",
        0x8a => "LONG1",
        0x8b => "LONG4",
        b'B' => "BINBYTES",
        b'C' => "SHORT_BINBYTES",
        0x8c => "SHORT_BINUNICODE",
        0x8d => "BINUNICODE8",
        0x8e => "BINBYTES8",
        0x8f => "EMPTY_SET",
        0x90 => "ADDITEMS",
        0x91 => "FROZENSET",
        0x92 => "NEWOBJ_EX",
        0x93 => "STACK_GLOBAL",
        0x94 => "MEMOIZE",
        0x95 => "FRAME",
        0x96 => "BYTEARRAY8",
        0x97 => "NEXT_BUFFER",
        0x98 => "READONLY_BUFFER",
        _ => "unknown opcode",
    }
}

impl<'a> Vm<'a> {
    fn run(&mut self) -> Result<Val, String> {
        loop {
            let op_pos = self.pos;
            let op = self.read_u8()?;
            if opcode_name(op) == "unknown opcode" {
                return Err(format!("unknown pickle opcode 0x{op:02x} at byte {op_pos}"));
            }
            let done = self.step(op).map_err(|e| {
                format!(
                    "pickle opcode {} (0x{op:02x}) at byte {op_pos}: {e}",
                    opcode_name(op)
                )
            })?;
            if done {
                return self
                    .stack
                    .pop()
                    .ok_or_else(|| format!("pickle STOP at byte {op_pos} with an empty stack"));
            }
        }
    }

    // ---- reading -------------------------------------------------------------------------

    fn read_n(&mut self, n: usize) -> Result<&'a [u8], String> {
        let data: &'a [u8] = self.data;
        let end = self.pos.checked_add(n).filter(|&e| e <= data.len());
        match end {
            Some(end) => {
                let s = &data[self.pos..end];
                self.pos = end;
                Ok(s)
            }
            None => Err(format!(
                "truncated pickle: needs {n} more bytes at byte {}, {} left",
                self.pos,
                data.len().saturating_sub(self.pos)
            )),
        }
    }

    fn read_u8(&mut self) -> Result<u8, String> {
        Ok(self.read_n(1)?[0])
    }

    fn read_array<const N: usize>(&mut self) -> Result<[u8; N], String> {
        let s = self.read_n(N)?;
        let mut a = [0u8; N];
        a.copy_from_slice(s);
        Ok(a)
    }

    fn read_u32(&mut self) -> Result<u32, String> {
        Ok(u32::from_le_bytes(self.read_array()?))
    }

    fn read_u64(&mut self) -> Result<u64, String> {
        Ok(u64::from_le_bytes(self.read_array()?))
    }

    fn read_len_u64(&mut self) -> Result<usize, String> {
        let n = self.read_u64()?;
        usize::try_from(n).map_err(|_| format!("length {n} is too large"))
    }

    /// A `\n`-terminated line (without the newline; a trailing `\r` is kept as Python does).
    fn read_line(&mut self) -> Result<&'a [u8], String> {
        let data: &'a [u8] = self.data;
        let rest = data.get(self.pos..).unwrap_or(&[]);
        match rest.iter().position(|&b| b == b'\n') {
            Some(i) => {
                let line = &rest[..i];
                self.pos += i + 1;
                Ok(line)
            }
            None => Err(format!(
                "truncated pickle: unterminated text argument at byte {}",
                self.pos
            )),
        }
    }

    fn read_line_str(&mut self) -> Result<&'a str, String> {
        let line = self.read_line()?;
        std::str::from_utf8(line).map_err(|_| "text argument is not valid UTF-8".to_string())
    }

    // ---- stack ---------------------------------------------------------------------------

    fn floor(&self) -> usize {
        self.marks.last().copied().unwrap_or(0)
    }

    fn pop(&mut self) -> Result<Val, String> {
        if self.stack.len() <= self.floor() {
            return Err("stack underflow".into());
        }
        self.stack.pop().ok_or_else(|| "stack underflow".into())
    }

    fn push(&mut self, v: Val) {
        self.stack.push(v);
    }

    fn pop_mark(&mut self) -> Result<Vec<Val>, String> {
        let mark = self.marks.pop().ok_or("no MARK on the stack")?;
        if mark > self.stack.len() {
            return Err("MARK above the top of the stack".into());
        }
        Ok(self.stack.split_off(mark))
    }

    fn top_index(&self) -> Result<usize, String> {
        if self.stack.len() <= self.floor() {
            return Err("stack underflow".into());
        }
        Ok(self.stack.len() - 1)
    }

    /// Follows a chain of memo references to the value they name.
    fn deref<'v>(&'v self, mut v: &'v Val) -> Result<&'v Val, String> {
        for _ in 0..64 {
            match v {
                Val::MemoRef(i) => {
                    v = self
                        .memo
                        .get(i)
                        .ok_or_else(|| format!("memo key {i} is not defined"))?
                }
                _ => return Ok(v),
            }
        }
        Err("memo references form a cycle".into())
    }

    /// The value the stack slot `idx` stands for, through memo references, for mutation.
    fn target_mut(&mut self, idx: usize) -> Result<&mut Val, String> {
        let mut key = match self.stack.get(idx) {
            Some(Val::MemoRef(i)) => *i,
            Some(_) => return Ok(&mut self.stack[idx]),
            None => return Err("stack underflow".into()),
        };
        for _ in 0..64 {
            match self.memo.get(&key) {
                Some(Val::MemoRef(j)) => key = *j,
                Some(_) => {
                    return self
                        .memo
                        .get_mut(&key)
                        .ok_or_else(|| format!("memo key {key} is not defined"));
                }
                None => return Err(format!("memo key {key} is not defined")),
            }
        }
        Err("memo references form a cycle".into())
    }

    /// A shallow-enough copy of `v` for building new values from call arguments: containers
    /// are copied, memo references are kept as references (resolved at the end).
    fn copy(&self, v: &Val, depth: u32) -> Result<Val, String> {
        if depth > MAX_DEPTH {
            return Err(format!("values nested deeper than {MAX_DEPTH} levels"));
        }
        let seq = |items: &Vec<Val>| -> Result<Vec<Val>, String> {
            items.iter().map(|x| self.copy(x, depth + 1)).collect()
        };
        Ok(match v {
            Val::None => Val::None,
            Val::Bool(b) => Val::Bool(*b),
            Val::Int(i) => Val::Int(*i),
            Val::BigInt(b) => Val::BigInt(b.clone()),
            Val::Float(f) => Val::Float(*f),
            Val::Str(s) => Val::Str(s.clone()),
            Val::Bytes(b) => Val::Bytes(b.clone()),
            Val::List(items) => Val::List(seq(items)?),
            Val::Tuple(items) => Val::Tuple(seq(items)?),
            Val::Set(items) => Val::Set(seq(items)?),
            Val::Dict(d) => Val::Dict(
                d.iter()
                    .map(|(k, x)| Ok((self.copy(k, depth + 1)?, self.copy(x, depth + 1)?)))
                    .collect::<Result<_, String>>()?,
            ),
            Val::Global(g) => Val::Global(g.clone()),
            Val::Object(o) => Val::Object(Box::new(Obj {
                class: o.class.clone(),
                args: seq(&o.args)?,
                state: match &o.state {
                    Some(s) => Some(self.copy(s, depth + 1)?),
                    None => None,
                },
                list_items: seq(&o.list_items)?,
                dict_items: o
                    .dict_items
                    .iter()
                    .map(|(k, x)| Ok((self.copy(k, depth + 1)?, self.copy(x, depth + 1)?)))
                    .collect::<Result<_, String>>()?,
            })),
            Val::Storage(s) => Val::Storage(s.clone()),
            Val::Tensor(t) => Val::Tensor(t.clone()),
            Val::MemoRef(i) => Val::MemoRef(*i),
        })
    }

    /// `PUT`: the value moves into the memo and the stack keeps a reference to it, so later
    /// mutations (`SETITEMS` after `EMPTY_DICT, BINPUT`) reach every copy.
    fn memo_put(&mut self, key: u32) -> Result<(), String> {
        let idx = self.top_index()?;
        let v = match &self.stack[idx] {
            Val::MemoRef(i) if *i == key => return Ok(()),
            // Aliasing: the new key names the same object as the old one.
            Val::MemoRef(i) => Val::MemoRef(*i),
            _ => {
                let v = self.stack[idx].take();
                self.stack[idx] = Val::MemoRef(key);
                v
            }
        };
        // Python's pickler never reuses a key; if a hostile pickle does, earlier references
        // now see the new object, which is wrong but harmless.
        self.memo.insert(key, v);
        Ok(())
    }

    // ---- opcodes -------------------------------------------------------------------------

    /// Executes one opcode; returns true at `STOP`.
    fn step(&mut self, op: u8) -> Result<bool, String> {
        match op {
            0x80 => {
                let proto = self.read_u8()?;
                if proto > 5 {
                    return Err(format!("unsupported pickle protocol {proto}"));
                }
            }
            0x95 => {
                // FRAME: a length hint only.
                self.read_u64()?;
            }
            b'.' => return Ok(true),
            b'(' => self.marks.push(self.stack.len()),
            b'0' => {
                self.pop()?;
            }
            b'1' => {
                self.pop_mark()?;
            }
            b'2' => {
                let idx = self.top_index()?;
                let v = match &self.stack[idx] {
                    Val::MemoRef(i) => Val::MemoRef(*i),
                    other => self.copy(other, 0)?,
                };
                self.push(v);
            }
            b'N' => self.push(Val::None),
            0x88 => self.push(Val::Bool(true)),
            0x89 => self.push(Val::Bool(false)),
            b'I' => {
                let line = self.read_line_str()?.trim();
                let v = match line {
                    "01" => Val::Bool(true),
                    "00" => Val::Bool(false),
                    _ => parse_decimal_int(line)?,
                };
                self.push(v);
            }
            b'J' => {
                let v = i32::from_le_bytes(self.read_array()?);
                self.push(Val::Int(v as i64));
            }
            b'K' => {
                let v = self.read_u8()?;
                self.push(Val::Int(v as i64));
            }
            b'M' => {
                let v = u16::from_le_bytes(self.read_array()?);
                self.push(Val::Int(v as i64));
            }
            b'L' => {
                let line = self.read_line_str()?.trim();
                let line = line.strip_suffix('L').unwrap_or(line);
                let v = parse_decimal_int(line)?;
                self.push(v);
            }
            0x8a => {
                let n = self.read_u8()? as usize;
                let bytes = self.read_n(n)?;
                self.push(long_from_le(bytes));
            }
            0x8b => {
                let n = self.read_u32()? as usize;
                let bytes = self.read_n(n)?;
                self.push(long_from_le(bytes));
            }
            b'F' => {
                let line = self.read_line_str()?.trim();
                let v: f64 = line
                    .parse()
                    .map_err(|_| format!("bad float literal {line:?}"))?;
                self.push(Val::Float(v));
            }
            b'G' => {
                let v = f64::from_be_bytes(self.read_array()?);
                self.push(Val::Float(v));
            }
            b'S' => {
                let line = self.read_line()?;
                let bytes = unquote_py2_string(line)?;
                self.push(py2_str(bytes));
            }
            b'T' => {
                let n = i32::from_le_bytes(self.read_array()?);
                let n = usize::try_from(n).map_err(|_| format!("negative length {n}"))?;
                let bytes = self.read_n(n)?.to_vec();
                self.push(py2_str(bytes));
            }
            b'U' => {
                let n = self.read_u8()? as usize;
                let bytes = self.read_n(n)?.to_vec();
                self.push(py2_str(bytes));
            }
            b'V' => {
                let line = self.read_line()?;
                let s = decode_raw_unicode_escape(line)?;
                self.push(Val::Str(s));
            }
            b'X' => {
                let n = self.read_u32()? as usize;
                let s = utf8(self.read_n(n)?)?;
                self.push(Val::Str(s));
            }
            0x8c => {
                let n = self.read_u8()? as usize;
                let s = utf8(self.read_n(n)?)?;
                self.push(Val::Str(s));
            }
            0x8d => {
                let n = self.read_len_u64()?;
                let s = utf8(self.read_n(n)?)?;
                self.push(Val::Str(s));
            }
            b'B' => {
                let n = self.read_u32()? as usize;
                let b = self.read_n(n)?.to_vec();
                self.push(Val::Bytes(b));
            }
            b'C' => {
                let n = self.read_u8()? as usize;
                let b = self.read_n(n)?.to_vec();
                self.push(Val::Bytes(b));
            }
            0x8e | 0x96 => {
                let n = self.read_len_u64()?;
                let b = self.read_n(n)?.to_vec();
                self.push(Val::Bytes(b));
            }
            b')' => self.push(Val::Tuple(Vec::new())),
            b't' => {
                let items = self.pop_mark()?;
                self.push(Val::Tuple(items));
            }
            0x85..=0x87 => {
                let n = (op - 0x84) as usize;
                let mut items = Vec::with_capacity(n);
                for _ in 0..n {
                    items.push(self.pop()?);
                }
                items.reverse();
                self.push(Val::Tuple(items));
            }
            b']' => self.push(Val::List(Vec::new())),
            b'l' => {
                let items = self.pop_mark()?;
                self.push(Val::List(items));
            }
            b'a' => {
                let v = self.pop()?;
                let idx = self.top_index()?;
                self.append(idx, vec![v])?;
            }
            b'e' => {
                let items = self.pop_mark()?;
                let idx = self.top_index()?;
                self.append(idx, items)?;
            }
            b'}' => self.push(Val::Dict(Vec::new())),
            b'd' => {
                let items = self.pop_mark()?;
                let pairs = pairs_from(items)?;
                self.push(Val::Dict(pairs));
            }
            b's' => {
                let v = self.pop()?;
                let k = self.pop()?;
                let idx = self.top_index()?;
                self.set_items(idx, vec![(k, v)])?;
            }
            b'u' => {
                let items = self.pop_mark()?;
                let pairs = pairs_from(items)?;
                let idx = self.top_index()?;
                self.set_items(idx, pairs)?;
            }
            0x8f => self.push(Val::Set(Vec::new())),
            0x90 => {
                let items = self.pop_mark()?;
                let idx = self.top_index()?;
                match self.target_mut(idx)? {
                    Val::Set(s) => s.extend(items),
                    Val::Object(o) => o.list_items.extend(items),
                    other => return Err(format!("ADDITEMS on a {}", other.kind())),
                }
            }
            0x91 => {
                let items = self.pop_mark()?;
                self.push(Val::Set(items));
            }
            b'g' => {
                let line = self.read_line_str()?.trim();
                let key: u32 = line.parse().map_err(|_| format!("bad memo key {line:?}"))?;
                self.get(key)?;
            }
            b'h' => {
                let key = self.read_u8()? as u32;
                self.get(key)?;
            }
            b'j' => {
                let key = self.read_u32()?;
                self.get(key)?;
            }
            b'p' => {
                let line = self.read_line_str()?.trim();
                let key: u32 = line.parse().map_err(|_| format!("bad memo key {line:?}"))?;
                self.memo_put(key)?;
            }
            b'q' => {
                let key = self.read_u8()? as u32;
                self.memo_put(key)?;
            }
            b'r' => {
                let key = self.read_u32()?;
                self.memo_put(key)?;
            }
            0x94 => {
                let key = u32::try_from(self.memo.len()).map_err(|_| "memo is full")?;
                self.memo_put(key)?;
            }
            b'c' => {
                let module = self.read_line_str()?.trim_end_matches('\r').to_string();
                let name = self.read_line_str()?.trim_end_matches('\r').to_string();
                self.push(Val::Global(global_name(&module, &name)));
            }
            0x93 => {
                let name = self.pop()?;
                let module = self.pop()?;
                let (module, name) = match (self.deref(&module)?, self.deref(&name)?) {
                    (Val::Str(m), Val::Str(n)) => (m.clone(), n.clone()),
                    (m, n) => {
                        return Err(format!(
                            "STACK_GLOBAL needs two strings, got {} and {}",
                            m.kind(),
                            n.kind()
                        ));
                    }
                };
                self.push(Val::Global(global_name(&module, &name)));
            }
            b'R' => {
                let args = self.pop()?;
                let callable = self.pop()?;
                let args = self.tuple_items(&args, "REDUCE arguments")?;
                let v = self.call(&callable, args, 0)?;
                self.push(v);
            }
            0x81 => {
                let args = self.pop()?;
                let cls = self.pop()?;
                let args = self.tuple_items(&args, "NEWOBJ arguments")?;
                let v = self.call(&cls, args, 0)?;
                self.push(v);
            }
            0x92 => {
                let kwargs = self.pop()?;
                let args = self.pop()?;
                let cls = self.pop()?;
                let args = self.tuple_items(&args, "NEWOBJ_EX arguments")?;
                let mut v = self.call(&cls, args, 0)?;
                let kwargs = self.copy(&kwargs, 0)?;
                if let Val::Object(o) = &mut v {
                    o.args.push(kwargs);
                }
                self.push(v);
            }
            b'i' => {
                let module = self.read_line_str()?.trim_end_matches('\r').to_string();
                let name = self.read_line_str()?.trim_end_matches('\r').to_string();
                let args = self.pop_mark()?;
                let cls = Val::Global(global_name(&module, &name));
                let v = self.call(&cls, args, 0)?;
                self.push(v);
            }
            b'o' => {
                let mut items = self.pop_mark()?;
                if items.is_empty() {
                    return Err("OBJ without a class".into());
                }
                let cls = items.remove(0);
                let v = self.call(&cls, items, 0)?;
                self.push(v);
            }
            b'b' => {
                let state = self.pop()?;
                let idx = self.top_index()?;
                self.build(idx, state)?;
            }
            b'P' => {
                let pid = self.read_line_str()?.to_string();
                let v = self.persistent_load(&Val::Str(pid))?;
                self.push(v);
            }
            b'Q' => {
                let pid = self.pop()?;
                let v = self.persistent_load(&pid)?;
                self.push(v);
            }
            _ => return Err("not supported in torch checkpoints".to_string()),
        }
        Ok(false)
    }

    fn get(&mut self, key: u32) -> Result<(), String> {
        if !self.memo.contains_key(&key) {
            return Err(format!("memo key {key} is not defined"));
        }
        self.push(Val::MemoRef(key));
        Ok(())
    }

    fn append(&mut self, idx: usize, items: Vec<Val>) -> Result<(), String> {
        match self.target_mut(idx)? {
            Val::List(l) => l.extend(items),
            Val::Set(s) => s.extend(items),
            Val::Object(o) => o.list_items.extend(items),
            other => return Err(format!("APPEND to a {}", other.kind())),
        }
        Ok(())
    }

    fn set_items(&mut self, idx: usize, pairs: Vec<(Val, Val)>) -> Result<(), String> {
        match self.target_mut(idx)? {
            Val::Dict(d) => d.extend(pairs),
            Val::Object(o) => o.dict_items.extend(pairs),
            other => return Err(format!("SETITEM on a {}", other.kind())),
        }
        Ok(())
    }

    fn build(&mut self, idx: usize, mut state: Val) -> Result<(), String> {
        match self.target_mut(idx)? {
            // OrderedDict `_metadata` and tensor-subclass state carry nothing we use.
            Val::Dict(_) | Val::Tensor(_) => Ok(()),
            Val::Object(o) => {
                match (&mut o.state, &mut state) {
                    (Some(Val::Dict(old)), Val::Dict(new)) => old.append(new),
                    (slot, state) => *slot = Some(state.take()),
                }
                Ok(())
            }
            other => Err(format!("BUILD on a {}", other.kind())),
        }
    }

    fn tuple_items(&self, v: &Val, what: &str) -> Result<Vec<Val>, String> {
        match self.deref(v)? {
            Val::Tuple(items) | Val::List(items) => items
                .iter()
                .map(|x| self.copy(x, 1))
                .collect::<Result<_, _>>(),
            other => Err(format!("{what} are a {}, expected a tuple", other.kind())),
        }
    }

    fn int_arg(&self, v: &Val, what: &str) -> Result<i64, String> {
        match self.deref(v)? {
            Val::Int(i) => Ok(*i),
            Val::Bool(b) => Ok(*b as i64),
            other => Err(format!("{what} is a {}, expected an int", other.kind())),
        }
    }

    fn uint_arg(&self, v: &Val, what: &str) -> Result<u64, String> {
        let i = self.int_arg(v, what)?;
        u64::try_from(i).map_err(|_| format!("{what} is negative ({i})"))
    }

    fn uints_arg(&self, v: &Val, what: &str) -> Result<Vec<u64>, String> {
        match self.deref(v)? {
            Val::Tuple(items) | Val::List(items) => {
                items.iter().map(|x| self.uint_arg(x, what)).collect()
            }
            other => Err(format!(
                "{what} is a {}, expected a tuple of ints",
                other.kind()
            )),
        }
    }

    /// Interprets a call of `callable` (a class or function global) on `args`.
    fn call(&self, callable: &Val, mut args: Vec<Val>, depth: u32) -> Result<Val, String> {
        if depth > 8 {
            return Err("nested rebuild calls".into());
        }
        let name = match self.deref(callable)? {
            Val::Global(g) => g.clone(),
            other => {
                // A call of something computed: keep it opaque.
                let mut all = vec![self.copy(other, 1)?];
                all.append(&mut args);
                return Ok(object("<call>", all));
            }
        };
        match name.as_str() {
            "collections.OrderedDict" | "builtins.dict" | "collections.defaultdict" => {
                // defaultdict(factory[, items]): the factory only matters for missing keys.
                let items = if name == "collections.defaultdict" {
                    args.get(1)
                } else {
                    args.first()
                };
                match items {
                    None => Ok(Val::Dict(Vec::new())),
                    Some(items) => Ok(Val::Dict(self.pairs_of(items)?)),
                }
            }
            "builtins.set" | "builtins.frozenset" => match args.first() {
                None => Ok(Val::Set(Vec::new())),
                Some(items) => Ok(Val::Set(self.seq_of(items, "set items")?)),
            },
            "builtins.list" => match args.first() {
                None => Ok(Val::List(Vec::new())),
                Some(items) => Ok(Val::List(self.seq_of(items, "list items")?)),
            },
            "builtins.tuple" | "torch.Size" => match args.first() {
                None => Ok(Val::Tuple(Vec::new())),
                Some(items) => Ok(Val::Tuple(self.seq_of(items, "tuple items")?)),
            },
            // Python 3 pickles `bytes` at protocol 2 as `_codecs.encode(latin1 text, 'latin1')`.
            "_codecs.encode" => {
                let bytes = match args.as_slice() {
                    [s, enc] => match (self.deref(s)?, self.deref(enc)?) {
                        (Val::Str(s), Val::Str(enc)) if enc == "latin1" || enc == "latin-1" => {
                            s.chars().map(|c| u8::try_from(c as u32).ok()).collect()
                        }
                        _ => None,
                    },
                    _ => None,
                };
                Ok(match bytes {
                    Some(b) => Val::Bytes(b),
                    None => object(&name, args),
                })
            }
            "torch._utils._rebuild_tensor_v2" | "torch._utils._rebuild_tensor" => {
                self.rebuild_tensor(&name, &args, None)
            }
            "torch._utils._rebuild_tensor_v3" => {
                // (storage, offset, size, stride, requires_grad, hooks, dtype[, metadata])
                let dtype = match args.get(6).map(|d| self.deref(d)).transpose()? {
                    Some(Val::Global(g)) => TorchDType::from_torch_name(g)
                        .ok_or_else(|| format!("{name}: unsupported dtype {g}"))?,
                    _ => return Err(format!("{name}: argument 7 is not a dtype")),
                };
                self.rebuild_tensor(&name, &args, Some(dtype))
            }
            "torch._utils._rebuild_parameter" | "torch._utils._rebuild_parameter_with_state" => {
                match args.first() {
                    Some(t) => self.copy(self.deref(t)?, 1),
                    None => Err(format!("{name} without arguments")),
                }
            }
            "torch._tensor._rebuild_from_type_v2" | "torch._utils._rebuild_from_type_v2" => {
                // (func, new_type, args, state): the subclass type and state are dropped.
                match args.as_slice() {
                    [func, _, inner, ..] => {
                        let inner = self.tuple_items(inner, "rebuild arguments")?;
                        self.call(func, inner, depth + 1)
                    }
                    _ => Err(format!("{name} needs 4 arguments")),
                }
            }
            "copyreg._reconstructor" => {
                // Protocol 0/1 object pickling: _reconstructor(cls, base, state).
                let class = match args.first().map(|c| self.deref(c)).transpose()? {
                    Some(Val::Global(g)) => g.clone(),
                    _ => name.clone(),
                };
                let rest = if args.is_empty() {
                    Vec::new()
                } else {
                    args.split_off(1)
                };
                Ok(object(&class, rest))
            }
            _ => Ok(object(&name, args)),
        }
    }

    fn seq_of(&self, v: &Val, what: &str) -> Result<Vec<Val>, String> {
        match self.deref(v)? {
            Val::List(items) | Val::Tuple(items) | Val::Set(items) => {
                items.iter().map(|x| self.copy(x, 1)).collect()
            }
            other => Err(format!(
                "{what} are a {}, expected a sequence",
                other.kind()
            )),
        }
    }

    /// Dict items from a dict or a sequence of `(key, value)` pairs (Python 2 `OrderedDict`
    /// pickles `[[k, v], ...]`).
    fn pairs_of(&self, v: &Val) -> Result<Vec<(Val, Val)>, String> {
        match self.deref(v)? {
            Val::Dict(d) => d
                .iter()
                .map(|(k, x)| Ok((self.copy(k, 1)?, self.copy(x, 1)?)))
                .collect(),
            Val::List(items) | Val::Tuple(items) => items
                .iter()
                .map(|p| match self.deref(p)? {
                    Val::List(kv) | Val::Tuple(kv) if kv.len() == 2 => {
                        Ok((self.copy(&kv[0], 1)?, self.copy(&kv[1], 1)?))
                    }
                    other => Err(format!("dict item is a {}, expected a pair", other.kind())),
                })
                .collect(),
            other => Err(format!("dict items are a {}", other.kind())),
        }
    }

    fn rebuild_tensor(
        &self,
        name: &str,
        args: &[Val],
        dtype: Option<TorchDType>,
    ) -> Result<Val, String> {
        if args.len() < 4 {
            return Err(format!(
                "{name} needs at least 4 arguments, got {}",
                args.len()
            ));
        }
        let storage = match self.deref(&args[0])? {
            Val::Storage(s) => (**s).clone(),
            other => {
                return Err(format!(
                    "{name}: argument 1 is a {}, expected a storage",
                    other.kind()
                ));
            }
        };
        let offset = self.uint_arg(&args[1], "storage offset")?;
        let size = self.uints_arg(&args[2], "tensor size")?;
        let stride = self.uints_arg(&args[3], "tensor stride")?;
        if size.len() != stride.len() {
            return Err(format!(
                "{name}: size has {} dimensions but stride has {}",
                size.len(),
                stride.len()
            ));
        }
        let dtype = dtype.unwrap_or(storage.dtype);
        Ok(Val::Tensor(Box::new(TensorRef {
            storage,
            dtype,
            offset,
            size,
            stride,
        })))
    }

    fn persistent_load(&mut self, pid: &Val) -> Result<Val, String> {
        let items: Vec<&Val> = match self.deref(pid)? {
            Val::Tuple(items) | Val::List(items) => items
                .iter()
                .map(|x| self.deref(x))
                .collect::<Result<_, _>>()?,
            other => {
                return Ok(object("<persistent id>", vec![self.copy(other, 1)?]));
            }
        };
        match items.first() {
            Some(Val::Str(t)) if t == "storage" => {}
            _ => {
                let args = items
                    .iter()
                    .map(|x| self.copy(x, 1))
                    .collect::<Result<_, _>>()?;
                return Ok(object("<persistent id>", args));
            }
        }
        if items.len() < 5 {
            return Err(format!(
                "storage persistent id has {} fields, expected 5 or 6",
                items.len()
            ));
        }
        let dtype = match items[1] {
            Val::Global(g) => TorchDType::from_storage_class(g)
                .ok_or_else(|| format!("unsupported storage type {g}"))?,
            other => {
                return Err(format!(
                    "storage type is a {}, expected a class",
                    other.kind()
                ));
            }
        };
        let key = match items[2] {
            Val::Str(s) => s.clone(),
            Val::Int(i) => i.to_string(),
            other => {
                return Err(format!(
                    "storage key is a {}, expected a string",
                    other.kind()
                ));
            }
        };
        let numel = self.uint_arg(items[4], "storage size")?;
        // Legacy view metadata: (view_key, offset, view_size) or None.
        let view = match items.get(5) {
            None | Some(Val::None) => None,
            Some(Val::Tuple(v)) | Some(Val::List(v)) if v.len() == 3 => Some((
                self.uint_arg(&v[1], "storage view offset")?,
                self.uint_arg(&v[2], "storage view size")?,
            )),
            Some(other) => {
                return Err(format!("storage view metadata is a {}", other.kind()));
            }
        };
        match self.storages.get(&key) {
            Some((d, _)) if *d != dtype => {
                return Err(format!(
                    "storage '{key}' is used as both {} and {}",
                    d.name(),
                    dtype.name()
                ));
            }
            Some(_) => {}
            None => {
                self.storages.insert(key.clone(), (dtype, numel));
            }
        }
        Ok(Val::Storage(Box::new(StorageRef { key, dtype, view })))
    }
}

fn object(class: &str, args: Vec<Val>) -> Val {
    Val::Object(Box::new(Obj {
        class: class.to_string(),
        args,
        state: None,
        list_items: Vec::new(),
        dict_items: Vec::new(),
    }))
}

/// `module.name`, with the Python 2 module names Python 3's unpickler maps (`fix_imports`).
fn global_name(module: &str, name: &str) -> String {
    let module = match module {
        "__builtin__" => "builtins",
        "copy_reg" => "copyreg",
        m => m,
    };
    format!("{module}.{name}")
}

fn pairs_from(items: Vec<Val>) -> Result<Vec<(Val, Val)>, String> {
    if !items.len().is_multiple_of(2) {
        return Err("odd number of items for a dict".into());
    }
    let mut pairs = Vec::with_capacity(items.len() / 2);
    let mut it = items.into_iter();
    while let (Some(k), Some(v)) = (it.next(), it.next()) {
        pairs.push((k, v));
    }
    Ok(pairs)
}

fn utf8(bytes: &[u8]) -> Result<String, String> {
    String::from_utf8(bytes.to_vec()).map_err(|_| "string is not valid UTF-8".to_string())
}

/// A Python 2 `str`: torch.load decodes it as UTF-8; keep raw bytes when that fails.
fn py2_str(bytes: Vec<u8>) -> Val {
    match String::from_utf8(bytes) {
        Ok(s) => Val::Str(s),
        Err(e) => Val::Bytes(e.into_bytes()),
    }
}

fn parse_decimal_int(s: &str) -> Result<Val, String> {
    if let Ok(i) = s.parse::<i64>() {
        return Ok(Val::Int(i));
    }
    let i: i128 = s
        .parse()
        .map_err(|_| format!("bad or too large integer literal {s:?}"))?;
    Ok(Val::BigInt(trim_le(i.to_le_bytes().to_vec())))
}

/// LONG1/LONG4 payload: little-endian two's complement.
fn long_from_le(bytes: &[u8]) -> Val {
    let trimmed = trim_le(bytes.to_vec());
    if trimmed.len() <= 8 {
        let neg = trimmed.last().is_some_and(|&b| b & 0x80 != 0);
        let mut buf = [if neg { 0xff } else { 0 }; 8];
        buf[..trimmed.len()].copy_from_slice(&trimmed);
        Val::Int(i64::from_le_bytes(buf))
    } else {
        Val::BigInt(trimmed)
    }
}

/// Drops redundant sign-extension bytes.
pub(super) fn trim_le(mut b: Vec<u8>) -> Vec<u8> {
    while b.len() > 1 {
        let last = b[b.len() - 1];
        let prev_sign = b[b.len() - 2] & 0x80;
        if (last == 0 && prev_sign == 0) || (last == 0xff && prev_sign != 0) {
            b.pop();
        } else {
            break;
        }
    }
    b
}

/// Protocol 0 `STRING` argument: a quoted Python 2 repr with backslash escapes.
fn unquote_py2_string(line: &[u8]) -> Result<Vec<u8>, String> {
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    let inner = match line {
        [q, inner @ .., q2] if (*q == b'\'' || *q == b'"') && q == q2 => inner,
        _ => return Err("STRING argument is not quoted".into()),
    };
    let mut out = Vec::with_capacity(inner.len());
    let mut i = 0;
    while i < inner.len() {
        let c = inner[i];
        i += 1;
        if c != b'\\' {
            out.push(c);
            continue;
        }
        let Some(&e) = inner.get(i) else {
            return Err("STRING ends with a backslash".into());
        };
        i += 1;
        match e {
            b'n' => out.push(b'\n'),
            b't' => out.push(b'\t'),
            b'r' => out.push(b'\r'),
            b'a' => out.push(7),
            b'b' => out.push(8),
            b'f' => out.push(12),
            b'v' => out.push(11),
            b'x' => {
                let hex = inner.get(i..i + 2).ok_or("truncated \\x escape")?;
                let s = std::str::from_utf8(hex).map_err(|_| "bad \\x escape")?;
                out.push(u8::from_str_radix(s, 16).map_err(|_| "bad \\x escape")?);
                i += 2;
            }
            b'0'..=b'7' => {
                let mut v = (e - b'0') as u32;
                for _ in 0..2 {
                    match inner.get(i) {
                        Some(&d @ b'0'..=b'7') => {
                            v = v * 8 + (d - b'0') as u32;
                            i += 1;
                        }
                        _ => break,
                    }
                }
                out.push((v & 0xff) as u8);
            }
            b'\n' => {}
            other => out.push(other),
        }
    }
    Ok(out)
}

/// Protocol 0 `UNICODE` argument: latin-1 text with `\uXXXX` / `\UXXXXXXXX` escapes.
fn decode_raw_unicode_escape(line: &[u8]) -> Result<String, String> {
    let mut out = String::with_capacity(line.len());
    let mut i = 0;
    while i < line.len() {
        let c = line[i];
        if c == b'\\' && matches!(line.get(i + 1), Some(b'u') | Some(b'U')) {
            let n = if line[i + 1] == b'u' { 4 } else { 8 };
            let hex = line
                .get(i + 2..i + 2 + n)
                .ok_or("truncated \\u escape in UNICODE")?;
            let s = std::str::from_utf8(hex).map_err(|_| "bad \\u escape")?;
            let cp = u32::from_str_radix(s, 16).map_err(|_| "bad \\u escape")?;
            out.push(char::from_u32(cp).ok_or("bad code point in \\u escape")?);
            i += 2 + n;
        } else {
            out.push(c as char);
            i += 1;
        }
    }
    Ok(out)
}

// ---- resolution ------------------------------------------------------------------------------

/// Turns the VM's values into [`PyValue`]s: memo references become copies, tensors get their
/// data from `storages` (key → the root storage's bytes).
pub(super) struct Resolver<'m, 's> {
    pub memo: &'m HashMap<u32, Val>,
    pub storages: &'m HashMap<String, Cow<'s, [u8]>>,
    /// Values still allowed to be produced; memo references can otherwise expand a small
    /// pickle exponentially.
    pub nodes_left: u64,
    /// Tensor bytes still allowed to be produced (stride-0 views can be huge).
    pub bytes_left: u64,
}

impl<'m, 's> Resolver<'m, 's> {
    pub fn resolve(&mut self, v: &Val, depth: u32) -> Result<PyValue, String> {
        if depth > MAX_DEPTH {
            return Err(format!(
                "values nested deeper than {MAX_DEPTH} levels (or a self-referencing container)"
            ));
        }
        if self.nodes_left == 0 {
            return Err("too many values (memo references expand beyond the budget)".into());
        }
        self.nodes_left -= 1;
        Ok(match v {
            Val::None => PyValue::None,
            Val::Bool(b) => PyValue::Bool(*b),
            Val::Int(i) => PyValue::Int(*i),
            Val::BigInt(b) => PyValue::BigInt(b.clone()),
            Val::Float(f) => PyValue::Float(*f),
            Val::Str(s) => PyValue::Str(s.clone()),
            Val::Bytes(b) => PyValue::Bytes(b.clone()),
            Val::List(items) => PyValue::List(self.resolve_seq(depth, items)?),
            Val::Tuple(items) => PyValue::Tuple(self.resolve_seq(depth, items)?),
            Val::Set(items) => PyValue::Set(self.resolve_seq(depth, items)?),
            Val::Dict(d) => PyValue::Dict(self.resolve_pairs(d, depth)?),
            Val::Global(g) => PyValue::Global(g.clone()),
            Val::Object(o) => PyValue::Object {
                class: o.class.clone(),
                args: self.resolve_seq(depth, &o.args)?,
                state: match &o.state {
                    Some(s) => Some(Box::new(self.resolve(s, depth + 1)?)),
                    None => None,
                },
                list_items: self.resolve_seq(depth, &o.list_items)?,
                dict_items: self.resolve_pairs(&o.dict_items, depth)?,
            },
            Val::Storage(s) => {
                // A bare storage: expose it as a flat tensor of all its elements.
                let bytes = self.storage_bytes(s)?;
                let numel = (bytes.len() / s.dtype.size()) as u64;
                let t = TensorRef {
                    storage: (**s).clone(),
                    dtype: s.dtype,
                    offset: 0,
                    size: vec![numel],
                    stride: vec![1],
                };
                PyValue::Tensor(self.materialize(&t)?)
            }
            Val::Tensor(t) => PyValue::Tensor(self.materialize(t)?),
            Val::MemoRef(i) => {
                let target = self
                    .memo
                    .get(i)
                    .ok_or_else(|| format!("memo key {i} is not defined"))?;
                self.resolve(target, depth + 1)?
            }
        })
    }

    fn resolve_seq(&mut self, depth: u32, items: &[Val]) -> Result<Vec<PyValue>, String> {
        items.iter().map(|x| self.resolve(x, depth + 1)).collect()
    }

    fn resolve_pairs(
        &mut self,
        d: &[(Val, Val)],
        depth: u32,
    ) -> Result<Vec<(PyValue, PyValue)>, String> {
        d.iter()
            .map(|(k, x)| Ok((self.resolve(k, depth + 1)?, self.resolve(x, depth + 1)?)))
            .collect()
    }

    /// The bytes of a (possibly view) storage.
    fn storage_bytes(&self, s: &StorageRef) -> Result<&'m [u8], String> {
        let storages: &'m HashMap<String, Cow<'s, [u8]>> = self.storages;
        let root: &'m [u8] = storages
            .get(&s.key)
            .ok_or_else(|| format!("storage '{}' has no data in the file", s.key))?;
        match s.view {
            None => Ok(root),
            Some((off, n)) => {
                let el = s.dtype.size() as u64;
                let range = off
                    .checked_mul(el)
                    .zip(off.checked_add(n).and_then(|e| e.checked_mul(el)))
                    .filter(|&(_, e)| e <= root.len() as u64);
                match range {
                    Some((a, b)) => Ok(&root[a as usize..b as usize]),
                    None => Err(format!(
                        "view [{off}, {off}+{n}) of storage '{}' lies outside its {} bytes",
                        s.key,
                        root.len()
                    )),
                }
            }
        }
    }

    fn materialize(&mut self, t: &TensorRef) -> Result<TorchTensor, String> {
        let bytes = self.storage_bytes(&t.storage)?;
        let el = t.dtype.size();
        let avail = (bytes.len() / el) as u64;
        let key = &t.storage.key;
        let numel = t
            .size
            .iter()
            .try_fold(1u64, |a, &s| a.checked_mul(s))
            .ok_or("tensor size overflows")?;
        let shape: Vec<usize> = t
            .size
            .iter()
            .map(|&s| usize::try_from(s).map_err(|_| "tensor size overflows".to_string()))
            .collect::<Result<_, _>>()?;
        let nbytes = numel
            .checked_mul(el as u64)
            .ok_or("tensor size overflows")?;
        if nbytes > self.bytes_left {
            return Err(format!(
                "tensor of shape {:?} ({nbytes} bytes) exceeds what the file can hold",
                t.size
            ));
        }
        self.bytes_left -= nbytes;
        if numel == 0 {
            return Ok(TorchTensor {
                dtype: t.dtype,
                shape,
                data: Vec::new(),
            });
        }
        let last = t
            .size
            .iter()
            .zip(&t.stride)
            .try_fold(t.offset, |a, (&s, &st)| {
                (s - 1).checked_mul(st).and_then(|x| x.checked_add(a))
            })
            .ok_or("tensor strides overflow")?;
        if last >= avail {
            return Err(format!(
                "tensor of shape {:?} (offset {}, stride {:?}) needs {} elements of storage '{key}', which has {avail}",
                t.size,
                t.offset,
                t.stride,
                last + 1
            ));
        }
        // All indices are now < avail, so the casts and slices below are in bounds.
        let mut data = Vec::with_capacity(nbytes as usize);
        let contiguous = {
            let mut expect = 1u64;
            let mut ok = true;
            for (&s, &st) in t.size.iter().zip(&t.stride).rev() {
                if s != 1 && st != expect {
                    ok = false;
                    break;
                }
                expect *= s;
            }
            ok
        };
        if contiguous {
            let a = t.offset as usize * el;
            data.extend_from_slice(&bytes[a..a + nbytes as usize]);
        } else {
            // Copy runs along the last dimension, stepping an index over the others.
            let nd = t.size.len();
            let (inner_n, inner_st) = (t.size[nd - 1] as usize, t.stride[nd - 1] as usize);
            let outer = &t.size[..nd - 1];
            let mut idx = vec![0u64; outer.len()];
            loop {
                let base = t.offset
                    + idx
                        .iter()
                        .zip(&t.stride)
                        .map(|(&i, &st)| i * st)
                        .sum::<u64>();
                let base = base as usize;
                if inner_st == 1 {
                    data.extend_from_slice(&bytes[base * el..(base + inner_n) * el]);
                } else {
                    for j in 0..inner_n {
                        let e = base + j * inner_st;
                        data.extend_from_slice(&bytes[e * el..(e + 1) * el]);
                    }
                }
                // Odometer increment over the outer dimensions.
                let mut d = outer.len();
                loop {
                    if d == 0 {
                        return Ok(TorchTensor {
                            dtype: t.dtype,
                            shape,
                            data,
                        });
                    }
                    d -= 1;
                    idx[d] += 1;
                    if idx[d] < outer[d] {
                        break;
                    }
                    idx[d] = 0;
                }
            }
        }
        Ok(TorchTensor {
            dtype: t.dtype,
            shape,
            data,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs a pickle and resolves it against `storages`.
    fn eval_with(bytes: &[u8], storages: &[(&str, Vec<u8>)]) -> Result<PyValue, String> {
        let p = run(bytes, 0)?;
        assert_eq!(p.end, bytes.len(), "STOP must end the pickle");
        let storages: HashMap<String, Cow<'_, [u8]>> = storages
            .iter()
            .map(|(k, v)| (k.to_string(), Cow::Borrowed(v.as_slice())))
            .collect();
        let mut r = Resolver {
            memo: &p.memo,
            storages: &storages,
            nodes_left: 100_000,
            bytes_left: 1 << 20,
        };
        r.resolve(&p.root, 0)
    }

    fn eval(bytes: &[u8]) -> Result<PyValue, String> {
        eval_with(bytes, &[])
    }

    fn s(x: &str) -> PyValue {
        PyValue::Str(x.to_string())
    }

    fn i(x: i64) -> PyValue {
        PyValue::Int(x)
    }

    // The byte strings below are `pickle.dumps(...)` output of CPython 3.11.

    #[test]
    fn defaultdict_becomes_an_ordered_dict() {
        // d = defaultdict(list); d['a'].extend([1, 2]); d['b']; pickle.dumps(d, 2)
        let b = b"\x80\x02ccollections\ndefaultdict\nq\x00c__builtin__\nlist\nq\x01\x85q\x02Rq\x03(X\x01\x00\x00\x00aq\x04]q\x05(K\x01K\x02eX\x01\x00\x00\x00bq\x06]q\x07u.";
        assert_eq!(
            eval(b).unwrap(),
            PyValue::Dict(vec![
                (s("a"), PyValue::List(vec![i(1), i(2)])),
                (s("b"), PyValue::List(vec![])),
            ])
        );
    }

    #[test]
    fn python2_ordered_dict_from_pairs() {
        // OrderedDict.__reduce__ of Python 2: (OrderedDict, ([[k, v], ...],))
        let b = b"\x80\x02ccollections\nOrderedDict\nq\x00]q\x01(]q\x02(X\x01\x00\x00\x00kq\x03K\x05e]q\x04(X\x01\x00\x00\x00jq\x05K\x06ee\x85q\x06Rq\x07.";
        assert_eq!(
            eval(b).unwrap(),
            PyValue::Dict(vec![(s("k"), i(5)), (s("j"), i(6))])
        );
    }

    #[test]
    fn memo_shares_containers_filled_after_put() {
        // d = {'x': 1}; pickle.dumps([d, d, (d,)], 2): the dict is memoised empty, then filled.
        let b = b"\x80\x02]q\x00(}q\x01X\x01\x00\x00\x00xq\x02K\x01sh\x01h\x01\x85q\x03e.";
        let d = PyValue::Dict(vec![(s("x"), i(1))]);
        assert_eq!(
            eval(b).unwrap(),
            PyValue::List(vec![d.clone(), d.clone(), PyValue::Tuple(vec![d])])
        );
    }

    #[test]
    fn tuples_of_every_size() {
        // pickle.dumps(((), (1,), (1, 2), (1, 2, 3), (1, 2, 3, 4)), 2)
        let b = b"\x80\x02()K\x01\x85q\x00K\x01K\x02\x86q\x01K\x01K\x02K\x03\x87q\x02(K\x01K\x02K\x03K\x04tq\x03tq\x04.";
        let t = |n: i64| PyValue::Tuple((1..=n).map(i).collect());
        assert_eq!(
            eval(b).unwrap(),
            PyValue::Tuple(vec![t(0), t(1), t(2), t(3), t(4)])
        );
    }

    #[test]
    fn protocol_4_opcodes() {
        // {'s': {1, 2}, 'f': frozenset([3]), 'b': b'xy', 'big': 2**70, 'neg': -3,
        //  'nbig': -2**40, 'fl': 1.5, 'n': None, 't': True, 'sl': slice(1, 2)}, protocol 4
        let b = b"\x80\x04\x95\x89\x00\x00\x00\x00\x00\x00\x00}\x94(\x8c\x01s\x94\x8f\x94(K\x01K\x02\x90\x8c\x01f\x94(K\x03\x91\x94\x8c\x01b\x94C\x02xy\x94\x8c\x03big\x94\x8a\x09\x00\x00\x00\x00\x00\x00\x00\x00@\x8c\x03neg\x94J\xfd\xff\xff\xff\x8c\x04nbig\x94\x8a\x06\x00\x00\x00\x00\x00\xff\x8c\x02fl\x94G?\xf8\x00\x00\x00\x00\x00\x00\x8c\x01n\x94N\x8c\x01t\x94\x88\x8c\x02sl\x94\x8c\x08builtins\x94\x8c\x05slice\x94\x93\x94K\x01K\x02N\x87\x94R\x94u.";
        let v = eval(b).unwrap();
        assert_eq!(v.get("s"), Some(&PyValue::Set(vec![i(1), i(2)])));
        assert_eq!(v.get("f"), Some(&PyValue::Set(vec![i(3)])));
        assert_eq!(v.get("b"), Some(&PyValue::Bytes(b"xy".to_vec())));
        let mut big = vec![0u8; 9];
        big[8] = 0x40;
        assert_eq!(v.get("big"), Some(&PyValue::BigInt(big)));
        assert_eq!(v.get("neg"), Some(&i(-3)));
        assert_eq!(v.get("nbig"), Some(&i(-(1 << 40))));
        assert_eq!(v.get("fl"), Some(&PyValue::Float(1.5)));
        assert_eq!(v.get("n"), Some(&PyValue::None));
        assert_eq!(v.get("t"), Some(&PyValue::Bool(true)));
        match v.get("sl") {
            Some(PyValue::Object { class, args, .. }) => {
                assert_eq!(class, "builtins.slice");
                assert_eq!(args, &[i(1), i(2), PyValue::None]);
            }
            other => panic!("slice: {other:?}"),
        }
    }

    #[test]
    fn protocol_0_text_opcodes() {
        // pickle.dumps({'a': [1, 2.5, 'x\u00e9', None, True, 10**20, -7]}, 0)
        let b = b"(dp0\nVa\np1\n(lp2\nI1\naF2.5\naVx\xe9\np3\naNaI01\naL100000000000000000000L\naI-7\nas.";
        let big = (100_000_000_000_000_000_000i128).to_le_bytes();
        assert_eq!(
            eval(b).unwrap(),
            PyValue::Dict(vec![(
                s("a"),
                PyValue::List(vec![
                    i(1),
                    PyValue::Float(2.5),
                    s("x\u{e9}"),
                    PyValue::None,
                    PyValue::Bool(true),
                    PyValue::BigInt(trim_le(big.to_vec())),
                    i(-7),
                ])
            )])
        );
    }

    #[test]
    fn python3_bytes_at_protocol_2() {
        // pickle.dumps(b'ab\xff', 2) goes through _codecs.encode(..., 'latin1')
        let b = b"\x80\x02c_codecs\nencode\nq\x00X\x04\x00\x00\x00ab\xc3\xbfq\x01X\x06\x00\x00\x00latin1q\x02\x86q\x03Rq\x04.";
        assert_eq!(eval(b).unwrap(), PyValue::Bytes(b"ab\xff".to_vec()));
    }

    #[test]
    fn unknown_classes_stay_opaque() {
        // pickle.dumps(argparse.Namespace(a=1, b='z'), 2): NEWOBJ + BUILD
        let b = b"\x80\x02cargparse\nNamespace\nq\x00)\x81q\x01}q\x02(X\x01\x00\x00\x00aq\x03K\x01X\x01\x00\x00\x00bq\x04X\x01\x00\x00\x00zq\x05ub.";
        let v = eval(b).unwrap();
        assert!(matches!(&v, PyValue::Object { class, .. } if class == "argparse.Namespace"));
        assert_eq!(v.get("a"), Some(&i(1)));
        assert_eq!(v.get("b"), Some(&s("z")));
        // Protocol 0: copy_reg._reconstructor(Namespace, object, None) + BUILD
        let b = b"ccopy_reg\n_reconstructor\np0\n(cargparse\nNamespace\np1\nc__builtin__\nobject\np2\nNtp3\nRp4\n(dp5\nVa\np6\nI1\nsb.";
        let v = eval(b).unwrap();
        assert!(matches!(&v, PyValue::Object { class, .. } if class == "argparse.Namespace"));
        assert_eq!(v.get("a"), Some(&i(1)));
    }

    /// `SHORT_BINUNICODE` for short strings in hand-built pickles.
    fn su(x: &str) -> Vec<u8> {
        let mut v = vec![0x8c, x.len() as u8];
        v.extend_from_slice(x.as_bytes());
        v
    }

    /// `_rebuild_tensor_v2(('storage', FloatStorage, '0', 'cpu', 6), offset, size, stride, ...)`
    fn tensor_pickle(offset: u8, size: &[u8], stride: &[u8]) -> Vec<u8> {
        let mut b = vec![0x80, 2];
        b.extend_from_slice(b"ctorch._utils\n_rebuild_tensor_v2\n(");
        b.push(b'(');
        b.extend(su("storage"));
        b.extend_from_slice(b"ctorch\nFloatStorage\n");
        b.extend(su("0"));
        b.extend(su("cpu"));
        b.extend_from_slice(b"K\x06tQ");
        b.extend_from_slice(&[b'K', offset, b'(']);
        for &s in size {
            b.extend_from_slice(&[b'K', s]);
        }
        b.extend_from_slice(b"t(");
        for &s in stride {
            b.extend_from_slice(&[b'K', s]);
        }
        b.extend_from_slice(b"t\x89ccollections\nOrderedDict\n)RtR.");
        b
    }

    fn storage_0_to_5() -> Vec<(&'static str, Vec<u8>)> {
        let data = (0..6).flat_map(|x| (x as f32).to_le_bytes()).collect();
        vec![("0", data)]
    }

    #[test]
    fn strided_views_come_out_contiguous() {
        let st = storage_0_to_5();
        // Transposed 2x2 view at offset 1: t[r][c] = storage[1 + r + 2c].
        let v = eval_with(&tensor_pickle(1, &[2, 2], &[1, 2]), &st).unwrap();
        let t = v.as_tensor().unwrap();
        assert_eq!(t.shape, [2, 2]);
        assert_eq!(t.to_f32(), [1., 3., 2., 4.]);
        // Every other element, innermost stride 2.
        let v = eval_with(&tensor_pickle(0, &[3], &[2]), &st).unwrap();
        assert_eq!(v.as_tensor().unwrap().to_f32(), [0., 2., 4.]);
        // Contiguous 2x3 and a broadcast (stride 0) row.
        let v = eval_with(&tensor_pickle(0, &[2, 3], &[3, 1]), &st).unwrap();
        assert_eq!(v.as_tensor().unwrap().to_f32(), [0., 1., 2., 3., 4., 5.]);
        let v = eval_with(&tensor_pickle(4, &[2, 2], &[0, 1]), &st).unwrap();
        assert_eq!(v.as_tensor().unwrap().to_f32(), [4., 5., 4., 5.]);
        // Scalar at offset 5, and an empty tensor.
        let v = eval_with(&tensor_pickle(5, &[], &[]), &st).unwrap();
        let t = v.as_tensor().unwrap();
        assert!(t.shape.is_empty());
        assert_eq!(t.to_f32(), [5.]);
        let v = eval_with(&tensor_pickle(0, &[0, 3], &[3, 1]), &st).unwrap();
        assert_eq!(v.as_tensor().unwrap().numel(), 0);
    }

    #[test]
    fn cuda_parameters_on_legacy_storage_views() {
        // _rebuild_parameter(_rebuild_tensor_v2(view, 1, (2,), (1,), ...), True, OrderedDict())
        // with the view ('storage', FloatStorage, '0', 'cuda:0', 6, ('1', 2, 3)):
        // elements 2..5 of storage '0', so the tensor is [3, 4].
        let mut b = vec![0x80, 2];
        b.extend_from_slice(b"ctorch._utils\n_rebuild_parameter\n(");
        b.extend_from_slice(b"ctorch._utils\n_rebuild_tensor_v2\n((");
        b.extend(su("storage"));
        b.extend_from_slice(b"ctorch\nFloatStorage\n");
        b.extend(su("0"));
        b.extend(su("cuda:0"));
        b.extend_from_slice(b"K\x06(");
        b.extend(su("1"));
        b.extend_from_slice(b"K\x02K\x03ttQK\x01(K\x02t(K\x01t\x89ccollections\nOrderedDict\n)RtR");
        b.extend_from_slice(b"\x88ccollections\nOrderedDict\n)RtR.");
        let v = eval_with(&b, &storage_0_to_5()).unwrap();
        let t = v.as_tensor().unwrap();
        assert_eq!((t.dtype, t.shape.as_slice()), (TorchDType::F32, &[2][..]));
        assert_eq!(t.to_f32(), [3., 4.]);
        let p = run(&b, 0).unwrap();
        assert_eq!(p.storages.get("0"), Some(&(TorchDType::F32, 6)));
    }

    #[test]
    fn views_outside_the_storage_are_errors() {
        let st = storage_0_to_5();
        let e = eval_with(&tensor_pickle(1, &[2, 3], &[3, 1]), &st).unwrap_err();
        assert_eq!(
            e,
            "tensor of shape [2, 3] (offset 1, stride [3, 1]) needs 7 elements of storage '0', which has 6"
        );
        let e = eval_with(&tensor_pickle(0, &[2], &[1]), &[]).unwrap_err();
        assert_eq!(e, "storage '0' has no data in the file");
    }

    #[test]
    fn bad_opcodes_are_named_with_their_offset() {
        assert_eq!(
            eval(b"\x80\x02]\xff").unwrap_err(),
            "unknown pickle opcode 0xff at byte 3"
        );
        assert_eq!(
            eval(b"\x80\x02\x82\x01.").unwrap_err(),
            "pickle opcode EXT1 (0x82) at byte 2: not supported in torch checkpoints"
        );
        assert_eq!(
            eval(b"\x80\x02X\x05\x00\x00\x00ab").unwrap_err(),
            "pickle opcode BINUNICODE (0x58) at byte 2: truncated pickle: needs 5 more bytes at byte 7, 2 left"
        );
        assert_eq!(
            eval(b"\x80\x02h\x07.").unwrap_err(),
            "pickle opcode BINGET (0x68) at byte 2: memo key 7 is not defined"
        );
        assert_eq!(
            eval(b"\x80\x02(0.").unwrap_err(),
            "pickle opcode POP (0x30) at byte 3: stack underflow"
        );
    }

    #[test]
    fn hostile_nesting_and_expansion_fail_cleanly() {
        // 100k nested lists: built without recursion, refused at resolution, dropped
        // without overflowing the stack.
        let n = 100_000;
        let mut b = vec![0x80, 2];
        b.extend(std::iter::repeat_n(b']', n));
        b.extend(std::iter::repeat_n(b'a', n - 1));
        b.push(b'.');
        let e = eval(&b).unwrap_err();
        assert!(e.starts_with("values nested deeper than"), "{e}");
        // A list containing itself.
        let e = eval(b"\x80\x02]q\x00h\x00a.").unwrap_err();
        assert!(e.starts_with("values nested deeper than"), "{e}");
        // Each level holds the previous one twice: 2^40 values from 200 bytes.
        let mut b = vec![0x80, 2, b']', b'q', 0];
        for k in 1..40u8 {
            b.extend_from_slice(&[b'h', k - 1, b'h', k - 1, 0x86, b'q', k, b'0']);
        }
        b.extend_from_slice(&[b'h', 39, b'.']);
        let e = eval(&b).unwrap_err();
        assert!(e.starts_with("too many values"), "{e}");
    }
}
