//! HDF5 reader for flat files: datasets directly under the root group.

use super::{Array, DatasetInfo, Dtype};
use crate::{Error, Result};
use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

const SIGNATURE: &[u8; 8] = b"\x89HDF\r\n\x1a\n";
/// Guards against nonsense sizes in corrupt files before anything is allocated.
const MAX_METADATA_BLOCK: u64 = 1 << 30;

/// An open HDF5 file whose root group holds datasets.
pub struct H5Reader {
    path: PathBuf,
    file: Mutex<File>,
    file_len: u64,
    base: u64,
    offset_size: usize,
    length_size: usize,
    /// Root group members: link name → object header address (relative to `base`).
    members: BTreeMap<String, u64>,
    /// Global heap collections already parsed: address → object index → (offset, length).
    heaps: Mutex<HashMap<u64, HeapObjects>>,
}

/// Objects of one global heap collection: index → (absolute file position, size).
type HeapObjects = HashMap<u16, (u64, u64)>;

/// Storage of a dataset's raw data.
#[derive(Debug, Clone)]
enum Storage {
    Contiguous { addr: Option<u64>, size: u64 },
    Compact(Vec<u8>),
}

#[derive(Debug, Clone)]
struct Dataset {
    info: DatasetInfo,
    element_size: usize,
    storage: Storage,
}

/// A cursor over bytes already read, with bounds-checked little-endian reads.
struct Cur<'a> {
    b: &'a [u8],
    p: usize,
}

impl<'a> Cur<'a> {
    fn new(b: &'a [u8]) -> Self {
        Cur { b, p: 0 }
    }
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let end = self.p.checked_add(n)?;
        let s = self.b.get(self.p..end)?;
        self.p = end;
        Some(s)
    }
    fn skip(&mut self, n: usize) -> Option<()> {
        self.take(n).map(|_| ())
    }
    fn u8(&mut self) -> Option<u8> {
        self.take(1).map(|s| s[0])
    }
    fn u16(&mut self) -> Option<u16> {
        self.take(2).map(|s| u16::from_le_bytes([s[0], s[1]]))
    }
    fn u32(&mut self) -> Option<u32> {
        self.take(4)
            .map(|s| u32::from_le_bytes([s[0], s[1], s[2], s[3]]))
    }
    /// Little-endian unsigned integer of `n` ≤ 8 bytes.
    fn uint(&mut self, n: usize) -> Option<u64> {
        let s = self.take(n)?;
        Some(s.iter().rev().fold(0u64, |acc, &x| (acc << 8) | x as u64))
    }
    fn remaining(&self) -> usize {
        self.b.len() - self.p
    }
}

/// `Some(addr)` unless `v` is the undefined address (all bits set) of an `n`-byte offset.
fn defined(v: u64, n: usize) -> Option<u64> {
    let undef = if n >= 8 {
        u64::MAX
    } else {
        (1u64 << (8 * n)) - 1
    };
    (v != undef).then_some(v)
}

impl H5Reader {
    /// Opens `path` and reads its root group's member list.
    pub fn open(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref().to_path_buf();
        let file = File::open(&path).map_err(|e| Error::io(&path, e))?;
        let file_len = file.metadata().map_err(|e| Error::io(&path, e))?.len();
        let mut r = H5Reader {
            path,
            file: Mutex::new(file),
            file_len,
            base: 0,
            offset_size: 8,
            length_size: 8,
            members: BTreeMap::new(),
            heaps: Mutex::new(HashMap::new()),
        };
        let root = r.read_superblock()?;
        r.members = r.read_group(root)?;
        Ok(r)
    }

    /// The file this reader reads.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Names of the root group's members, sorted.
    pub fn dataset_names(&self) -> Vec<&str> {
        self.members.keys().map(String::as_str).collect()
    }

    /// Whether the root group has a member `name`.
    pub fn contains(&self, name: &str) -> bool {
        self.members.contains_key(name)
    }

    /// Shape and type of dataset `name`.
    pub fn info(&self, name: &str) -> Result<DatasetInfo> {
        Ok(self.dataset(name)?.info)
    }

    /// Reads an integer dataset as int32 (any stored integer width; values must fit).
    pub fn read_i32(&self, name: &str) -> Result<Array<i32>> {
        let ds = self.dataset(name)?;
        let Dtype::Int {
            bytes,
            signed,
            big_endian,
        } = ds.info.dtype
        else {
            return Err(self.err(format!(
                "dataset {name:?} has type {}, expected an integer type",
                ds.info.dtype.name()
            )));
        };
        let raw = self.raw(&ds)?;
        let n = bytes as usize;
        let mut data = Vec::with_capacity(raw.len() / n.max(1));
        for (i, el) in raw.chunks_exact(n).enumerate() {
            let mut buf = [0u8; 8];
            if big_endian {
                el.iter().rev().enumerate().for_each(|(k, &b)| buf[k] = b);
            } else {
                buf[..n].copy_from_slice(el);
            }
            let u = u64::from_le_bytes(buf);
            let v: i64 = if signed && n < 8 {
                let shift = 64 - 8 * n as u32;
                ((u << shift) as i64) >> shift
            } else {
                u as i64
            };
            let fits = if signed || n < 8 {
                i32::try_from(v).ok()
            } else {
                i32::try_from(u).ok()
            };
            data.push(fits.ok_or_else(|| {
                self.err(format!(
                    "dataset {name:?}: element {i} ({}) does not fit in int32",
                    if signed { v.to_string() } else { u.to_string() }
                ))
            })?);
        }
        Ok(Array {
            shape: ds.info.shape,
            data,
        })
    }

    /// Reads a floating-point dataset as float64.
    pub fn read_f64(&self, name: &str) -> Result<Array<f64>> {
        let ds = self.dataset(name)?;
        let Dtype::Float { bytes, big_endian } = ds.info.dtype else {
            return Err(self.err(format!(
                "dataset {name:?} has type {}, expected a float type",
                ds.info.dtype.name()
            )));
        };
        let raw = self.raw(&ds)?;
        let data = raw
            .chunks_exact(bytes as usize)
            .map(|el| match (bytes, big_endian) {
                (4, false) => f32::from_le_bytes(el.try_into().unwrap_or([0; 4])) as f64,
                (4, true) => f32::from_be_bytes(el.try_into().unwrap_or([0; 4])) as f64,
                (_, false) => f64::from_le_bytes(el.try_into().unwrap_or([0; 8])),
                (_, true) => f64::from_be_bytes(el.try_into().unwrap_or([0; 8])),
            })
            .collect();
        Ok(Array {
            shape: ds.info.shape,
            data,
        })
    }

    /// Reads a string dataset (variable- or fixed-length), flattened in row-major order.
    /// Bytes that are not UTF-8 are an error naming the element.
    pub fn read_strings(&self, name: &str) -> Result<Vec<String>> {
        let ds = self.dataset(name)?;
        let raw = self.raw(&ds)?;
        let to_string = |i: usize, bytes: Vec<u8>| {
            String::from_utf8(bytes)
                .map_err(|_| self.err(format!("dataset {name:?}: element {i} is not valid UTF-8")))
        };
        match ds.info.dtype {
            Dtype::VlenString { .. } => {
                let mut out = Vec::with_capacity(raw.len() / 16);
                let el = 4 + self.offset_size + 4;
                for (i, e) in raw.chunks_exact(el).enumerate() {
                    let mut c = Cur::new(e);
                    let corrupt = || self.err(format!("dataset {name:?}: element {i} is corrupt"));
                    let len = c.u32().ok_or_else(corrupt)? as u64;
                    let addr = c.uint(self.offset_size).ok_or_else(corrupt)?;
                    let index = c.u32().ok_or_else(corrupt)?;
                    if len == 0 {
                        out.push(String::new());
                        continue;
                    }
                    let bytes = self
                        .global_heap_object(addr, index, len)
                        .map_err(|e| self.err(format!("dataset {name:?}: element {i}: {e}")))?;
                    out.push(to_string(i, bytes)?);
                }
                Ok(out)
            }
            Dtype::FixedString { len } => raw
                .chunks_exact(len.max(1))
                .enumerate()
                .map(|(i, e)| {
                    let end = e.iter().position(|&b| b == 0).unwrap_or(e.len());
                    to_string(i, e[..end].to_vec())
                })
                .collect(),
            other => Err(self.err(format!(
                "dataset {name:?} has type {}, expected a string type",
                other.name()
            ))),
        }
    }

    fn err(&self, msg: impl std::fmt::Display) -> Error {
        Error::invalid(format!("{}: {msg}", self.path.display()))
    }

    fn corrupt(&self, what: &str) -> Error {
        self.err(format!(
            "not a readable HDF5 file (truncated or corrupt {what})"
        ))
    }

    /// Reads `len` bytes at absolute file position `pos`.
    fn read_abs(&self, pos: u64, len: u64, what: &str) -> Result<Vec<u8>> {
        let end = pos.checked_add(len).ok_or_else(|| self.corrupt(what))?;
        if end > self.file_len {
            return Err(self.err(format!(
                "{what} at byte {pos} (+{len}) lies past the end of the file ({} bytes): truncated?",
                self.file_len
            )));
        }
        let mut buf = vec![0u8; len as usize];
        let mut f = self
            .file
            .lock()
            .map_err(|_| self.err("file lock poisoned"))?;
        f.seek(SeekFrom::Start(pos))
            .and_then(|_| f.read_exact(&mut buf))
            .map_err(|e| Error::io(&self.path, e))?;
        Ok(buf)
    }

    /// Reads metadata at relative address `addr`, at most `len` bytes (fewer near the end of
    /// the file, for structures whose size is only known after parsing them).
    fn read_meta(&self, addr: u64, len: u64, what: &str) -> Result<Vec<u8>> {
        let pos = self
            .base
            .checked_add(addr)
            .ok_or_else(|| self.corrupt(what))?;
        if pos >= self.file_len {
            return Err(self.err(format!(
                "{what} at byte {pos} lies past the end of the file ({} bytes): truncated?",
                self.file_len
            )));
        }
        self.read_abs(pos, len.min(self.file_len - pos), what)
    }

    /// Finds the signature, parses the superblock and returns the root object header address.
    fn read_superblock(&mut self) -> Result<u64> {
        let mut at = 0u64;
        loop {
            if at + 8 > self.file_len {
                return Err(self.err("not an HDF5 file (no HDF5 signature found)"));
            }
            if self.read_abs(at, 8, "signature")? == SIGNATURE {
                break;
            }
            at = if at == 0 { 512 } else { at * 2 };
        }
        let sb = self.read_abs(at, (self.file_len - at).min(256), "superblock")?;
        let bad = self.corrupt("superblock");
        let parsed = (|| -> Option<std::result::Result<(usize, usize, u64, u64), u8>> {
            let mut c = Cur::new(sb.get(8..)?);
            let version = c.u8()?;
            let (o, l) = match version {
                0 | 1 => {
                    c.skip(4)?;
                    let (o, l) = (c.u8()? as usize, c.u8()? as usize);
                    c.skip(1 + 2 + 2 + 4)?;
                    if version == 1 {
                        c.skip(4)?;
                    }
                    (o, l)
                }
                2 | 3 => {
                    let (o, l) = (c.u8()? as usize, c.u8()? as usize);
                    c.skip(1)?;
                    (o, l)
                }
                v => return Some(Err(v)),
            };
            if ![2, 4, 8].contains(&o) || ![2, 4, 8].contains(&l) {
                return None;
            }
            let base = c.uint(o)?;
            // v0/1: free-space, end-of-file and driver addresses, then the root symbol table
            // entry (link name offset first); v2/3: extension and end-of-file addresses.
            c.skip(if version < 2 { 4 * o } else { 2 * o })?;
            let root = c.uint(o)?;
            Some(Ok((o, l, base, root)))
        })();
        match parsed {
            None => Err(bad),
            Some(Err(v)) => Err(self.err(format!("unsupported HDF5 superblock version {v}"))),
            Some(Ok((o, l, base, root))) => {
                self.offset_size = o;
                self.length_size = l;
                // Addresses are relative to the base address, which is where the superblock
                // sits unless the file says otherwise.
                self.base = base.max(at);
                Ok(root)
            }
        }
    }

    /// The messages (type, flags, body) of the object header at `addr`, continuations followed.
    fn messages(&self, addr: u64) -> Result<Vec<(u16, Vec<u8>)>> {
        let first = self.read_meta(addr, 16, "object header")?;
        if first.starts_with(b"OHDR") {
            return self.messages_v2(addr);
        }
        let mut c = Cur::new(&first);
        let bad = || self.corrupt("object header");
        let version = c.u8().ok_or_else(bad)?;
        if version != 1 {
            return Err(self.err(format!(
                "unsupported object header version {version} at address {addr}"
            )));
        }
        c.skip(1).ok_or_else(bad)?;
        let count = c.u16().ok_or_else(bad)? as usize;
        c.skip(4).ok_or_else(bad)?;
        let size = c.u32().ok_or_else(bad)? as u64;
        let mut blocks = vec![(addr + 16, size)];
        let mut out = Vec::new();
        let mut b = 0;
        while b < blocks.len() && out.len() < count {
            let (start, len) = blocks[b];
            b += 1;
            if len > MAX_METADATA_BLOCK || blocks.len() > 10_000 {
                return Err(bad());
            }
            let chunk = self.read_meta(start, len, "object header")?;
            if (chunk.len() as u64) < len {
                return Err(bad());
            }
            let mut c = Cur::new(&chunk);
            while c.remaining() >= 8 && out.len() < count {
                let kind = c.u16().ok_or_else(bad)?;
                let size = c.u16().ok_or_else(bad)? as usize;
                c.skip(4).ok_or_else(bad)?;
                let body = c.take(size).ok_or_else(bad)?.to_vec();
                if kind == 0x10 {
                    let mut m = Cur::new(&body);
                    let a = m.uint(self.offset_size).ok_or_else(bad)?;
                    let l = m.uint(self.length_size).ok_or_else(bad)?;
                    blocks.push((a, l));
                }
                out.push((kind, body));
            }
        }
        Ok(out)
    }

    fn messages_v2(&self, addr: u64) -> Result<Vec<(u16, Vec<u8>)>> {
        let bad = || self.corrupt("object header");
        let head = self.read_meta(addr, 64, "object header")?;
        let mut c = Cur::new(&head);
        c.skip(4).ok_or_else(bad)?;
        let version = c.u8().ok_or_else(bad)?;
        if version != 2 {
            return Err(self.err(format!(
                "unsupported object header version {version} at address {addr}"
            )));
        }
        let flags = c.u8().ok_or_else(bad)?;
        if flags & 0x20 != 0 {
            c.skip(16).ok_or_else(bad)?;
        }
        if flags & 0x10 != 0 {
            c.skip(4).ok_or_else(bad)?;
        }
        let size0 = c.uint(1 << (flags & 3)).ok_or_else(bad)?;
        let creation_order = flags & 0x04 != 0;
        // (start of messages, length of messages) per chunk; the checksum follows each.
        let mut blocks = vec![(addr + c.p as u64, size0)];
        let mut out = Vec::new();
        let mut b = 0;
        while b < blocks.len() {
            let (start, len) = blocks[b];
            b += 1;
            if len > MAX_METADATA_BLOCK || blocks.len() > 10_000 {
                return Err(bad());
            }
            let chunk = self.read_meta(start, len, "object header")?;
            if (chunk.len() as u64) < len {
                return Err(bad());
            }
            let mut c = Cur::new(&chunk);
            let header = if creation_order { 6 } else { 4 };
            while c.remaining() >= header {
                let kind = c.u8().ok_or_else(bad)? as u16;
                let size = c.u16().ok_or_else(bad)? as usize;
                c.skip(header - 3).ok_or_else(bad)?;
                let body = c.take(size).ok_or_else(bad)?.to_vec();
                if kind == 0x10 {
                    let mut m = Cur::new(&body);
                    let a = m.uint(self.offset_size).ok_or_else(bad)?;
                    let l = m.uint(self.length_size).ok_or_else(bad)?;
                    // "OCHK" signature before, checksum after the messages.
                    if l < 8 {
                        return Err(bad());
                    }
                    blocks.push((a + 4, l - 8));
                }
                out.push((kind, body));
            }
        }
        Ok(out)
    }

    /// Link name → object header address for the group whose object header is at `addr`.
    fn read_group(&self, addr: u64) -> Result<BTreeMap<String, u64>> {
        let messages = self.messages(addr)?;
        let bad = || self.corrupt("group");
        let mut members = BTreeMap::new();
        let o = self.offset_size;
        for (kind, body) in &messages {
            match kind {
                0x11 => {
                    let mut c = Cur::new(body);
                    let btree = c.uint(o).ok_or_else(bad)?;
                    let heap = c.uint(o).ok_or_else(bad)?;
                    let names = self.local_heap(heap)?;
                    self.walk_group_btree(btree, &names, &mut members, 0)?;
                }
                0x02 => {
                    let mut c = Cur::new(body);
                    c.skip(1).ok_or_else(bad)?;
                    let flags = c.u8().ok_or_else(bad)?;
                    if flags & 1 != 0 {
                        c.skip(8).ok_or_else(bad)?;
                    }
                    let heap = c.uint(o).ok_or_else(bad)?;
                    if defined(heap, o).is_some() {
                        return Err(self.err(
                            "groups with dense link storage (fractal heap) are not supported; \
                             write the file with h5py's default libver=\"earliest\"",
                        ));
                    }
                }
                0x06 => {
                    if let Some((name, target)) = self.link_message(body)? {
                        members.insert(name, target);
                    }
                }
                _ => {}
            }
        }
        Ok(members)
    }

    /// A link message's (name, object address) if it is a hard link.
    fn link_message(&self, body: &[u8]) -> Result<Option<(String, u64)>> {
        let bad = || self.corrupt("link message");
        let mut c = Cur::new(body);
        c.skip(1).ok_or_else(bad)?;
        let flags = c.u8().ok_or_else(bad)?;
        let kind = if flags & 0x08 != 0 {
            c.u8().ok_or_else(bad)?
        } else {
            0
        };
        if flags & 0x04 != 0 {
            c.skip(8).ok_or_else(bad)?;
        }
        if flags & 0x10 != 0 {
            c.skip(1).ok_or_else(bad)?;
        }
        let len = c.uint(1 << (flags & 3)).ok_or_else(bad)? as usize;
        let name = String::from_utf8_lossy(c.take(len).ok_or_else(bad)?).into_owned();
        if kind != 0 {
            return Ok(None);
        }
        let target = c.uint(self.offset_size).ok_or_else(bad)?;
        Ok(Some((name, target)))
    }

    /// The data segment of the local heap at `addr`.
    fn local_heap(&self, addr: u64) -> Result<Vec<u8>> {
        let bad = || self.corrupt("local heap");
        let head = self.read_meta(addr, 8 + 2 * 8 + 8, "local heap")?;
        if !head.starts_with(b"HEAP") {
            return Err(bad());
        }
        let mut c = Cur::new(&head[8..]);
        let size = c.uint(self.length_size).ok_or_else(bad)?;
        c.skip(self.length_size).ok_or_else(bad)?;
        let data = c.uint(self.offset_size).ok_or_else(bad)?;
        if size > MAX_METADATA_BLOCK {
            return Err(bad());
        }
        let seg = self.read_meta(data, size, "local heap")?;
        if (seg.len() as u64) < size {
            return Err(bad());
        }
        Ok(seg)
    }

    fn walk_group_btree(
        &self,
        addr: u64,
        names: &[u8],
        members: &mut BTreeMap<String, u64>,
        depth: usize,
    ) -> Result<()> {
        let bad = || self.corrupt("group B-tree");
        if depth > 64 {
            return Err(bad());
        }
        let (o, l) = (self.offset_size, self.length_size);
        let head = self.read_meta(addr, 8 + 2 * o as u64, "group B-tree")?;
        if !head.starts_with(b"TREE") || head.len() < 8 {
            return Err(bad());
        }
        let (kind, level) = (head[4], head[5]);
        let used = u16::from_le_bytes([head[6], head[7]]) as u64;
        if kind != 0 {
            return Err(bad());
        }
        let body_len = 8 + 2 * o as u64 + (used + 1) * l as u64 + used * o as u64;
        let node = self.read_meta(addr, body_len, "group B-tree")?;
        let mut c = Cur::new(&node);
        c.skip(8 + 2 * o).ok_or_else(bad)?;
        for _ in 0..used {
            c.skip(l).ok_or_else(bad)?;
            let child = c.uint(o).ok_or_else(bad)?;
            if level > 0 {
                self.walk_group_btree(child, names, members, depth + 1)?;
            } else {
                self.read_symbol_node(child, names, members)?;
            }
        }
        Ok(())
    }

    fn read_symbol_node(
        &self,
        addr: u64,
        names: &[u8],
        members: &mut BTreeMap<String, u64>,
    ) -> Result<()> {
        let bad = || self.corrupt("symbol table node");
        let o = self.offset_size;
        let head = self.read_meta(addr, 8, "symbol table node")?;
        if !head.starts_with(b"SNOD") || head.len() < 8 {
            return Err(bad());
        }
        let count = u16::from_le_bytes([head[6], head[7]]) as u64;
        let entry = 2 * o as u64 + 8 + 16;
        let node = self.read_meta(addr + 8, count * entry, "symbol table node")?;
        let mut c = Cur::new(&node);
        for _ in 0..count {
            let name_off = c.uint(o).ok_or_else(bad)? as usize;
            let header = c.uint(o).ok_or_else(bad)?;
            c.skip(8 + 16).ok_or_else(bad)?;
            let rest = names.get(name_off..).ok_or_else(bad)?;
            let end = rest.iter().position(|&b| b == 0).ok_or_else(bad)?;
            let name = String::from_utf8_lossy(&rest[..end]).into_owned();
            members.insert(name, header);
        }
        Ok(())
    }

    fn dataset(&self, name: &str) -> Result<Dataset> {
        let &addr = self.members.get(name).ok_or_else(|| {
            self.err(format!(
                "no dataset {name:?} (the file has: {})",
                self.dataset_names().join(", ")
            ))
        })?;
        let messages = self.messages(addr)?;
        let what = |m: &str| self.err(format!("dataset {name:?}: {m}"));
        let mut shape = None;
        let mut dtype = None;
        let mut storage = None;
        for (kind, body) in &messages {
            match kind {
                0x01 => shape = Some(self.dataspace(body).map_err(|m| what(&m))?),
                0x03 => dtype = Some(parse_datatype(body).map_err(|m| what(&m))?),
                0x08 => storage = Some(self.layout(body).map_err(|m| what(&m))?),
                0x11 | 0x02 | 0x06 => return Err(what("is a group, not a dataset")),
                _ => {}
            }
        }
        let shape = shape.ok_or_else(|| what("has no dataspace message"))?;
        let (dtype, element_size) = dtype.ok_or_else(|| what("has no datatype message"))?;
        let storage = storage.ok_or_else(|| what("has no layout message"))?;
        Ok(Dataset {
            info: DatasetInfo {
                name: name.to_string(),
                shape,
                dtype,
            },
            element_size,
            storage,
        })
    }

    fn dataspace(&self, body: &[u8]) -> std::result::Result<Vec<usize>, String> {
        let bad = || "corrupt dataspace message".to_string();
        let mut c = Cur::new(body);
        let version = c.u8().ok_or_else(bad)?;
        let rank = c.u8().ok_or_else(bad)? as usize;
        let _flags = c.u8().ok_or_else(bad)?;
        match version {
            1 => c.skip(5).ok_or_else(bad)?,
            2 => {
                if c.u8().ok_or_else(bad)? == 2 {
                    return Ok(vec![0]); // null dataspace: no elements
                }
            }
            v => return Err(format!("unsupported dataspace version {v}")),
        }
        (0..rank)
            .map(|_| {
                c.uint(self.length_size)
                    .ok_or_else(bad)
                    .and_then(|d| usize::try_from(d).map_err(|_| bad()))
            })
            .collect()
    }

    fn layout(&self, body: &[u8]) -> std::result::Result<Storage, String> {
        let bad = || "corrupt layout message".to_string();
        let (o, l) = (self.offset_size, self.length_size);
        let mut c = Cur::new(body);
        let version = c.u8().ok_or_else(bad)?;
        match version {
            1 | 2 => {
                let dims = c.u8().ok_or_else(bad)? as usize;
                let class = c.u8().ok_or_else(bad)?;
                c.skip(5).ok_or_else(bad)?;
                let addr = if class != 0 {
                    Some(c.uint(o).ok_or_else(bad)?)
                } else {
                    None
                };
                let mut size = 1u64;
                for _ in 0..dims {
                    size = size.saturating_mul(c.u32().ok_or_else(bad)? as u64);
                }
                match class {
                    0 => {
                        let n = c.u32().ok_or_else(bad)? as usize;
                        Ok(Storage::Compact(c.take(n).ok_or_else(bad)?.to_vec()))
                    }
                    1 => Ok(Storage::Contiguous {
                        addr: addr.and_then(|a| defined(a, o)),
                        size,
                    }),
                    _ => Err("chunked storage is not supported (write contiguous datasets)".into()),
                }
            }
            3 | 4 => {
                let class = c.u8().ok_or_else(bad)?;
                match class {
                    0 => {
                        let n = c.u16().ok_or_else(bad)? as usize;
                        Ok(Storage::Compact(c.take(n).ok_or_else(bad)?.to_vec()))
                    }
                    1 => {
                        let addr = c.uint(o).ok_or_else(bad)?;
                        let size = c.uint(l).ok_or_else(bad)?;
                        Ok(Storage::Contiguous {
                            addr: defined(addr, o),
                            size,
                        })
                    }
                    2 => Err(
                        "chunked (possibly compressed) storage is not supported (write contiguous datasets)"
                            .into(),
                    ),
                    3 => Err("virtual datasets are not supported".into()),
                    k => Err(format!("unknown layout class {k}")),
                }
            }
            v => Err(format!("unsupported layout message version {v}")),
        }
    }

    /// The raw bytes of a dataset: exactly `elements × element size`.
    fn raw(&self, ds: &Dataset) -> Result<Vec<u8>> {
        let n: u64 = ds.info.shape.iter().map(|&d| d as u64).product();
        let want = n
            .checked_mul(ds.element_size as u64)
            .ok_or_else(|| self.corrupt("dataspace"))?;
        let what = format!("data of dataset {:?}", ds.info.name);
        let bytes = match &ds.storage {
            Storage::Compact(b) => b.clone(),
            Storage::Contiguous { addr: None, .. } => vec![0; want as usize],
            Storage::Contiguous {
                addr: Some(addr),
                size,
            } => {
                if *size < want {
                    return Err(self.err(format!(
                        "{what}: storage holds {size} bytes, shape needs {want}"
                    )));
                }
                let pos = self
                    .base
                    .checked_add(*addr)
                    .ok_or_else(|| self.corrupt(&what))?;
                self.read_abs(pos, want, &what)?
            }
        };
        if (bytes.len() as u64) < want {
            return Err(self.err(format!(
                "{what}: {} bytes stored, shape needs {want}",
                bytes.len()
            )));
        }
        Ok(bytes[..want as usize].to_vec())
    }

    /// Object `index` of the global heap collection at `addr`, checked to be `len` bytes.
    fn global_heap_object(&self, addr: u64, index: u32, len: u64) -> Result<Vec<u8>> {
        let mut heaps = self
            .heaps
            .lock()
            .map_err(|_| self.err("heap cache poisoned"))?;
        if let std::collections::hash_map::Entry::Vacant(e) = heaps.entry(addr) {
            e.insert(self.parse_collection(addr)?);
        }
        let objects = &heaps[&addr];
        let &(pos, size) = u16::try_from(index)
            .ok()
            .and_then(|i| objects.get(&i))
            .ok_or_else(|| {
                self.err(format!(
                    "global heap collection at {addr} has no object {index}"
                ))
            })?;
        drop(heaps);
        if size < len {
            return Err(self.err(format!(
                "global heap object {index} at {addr} holds {size} bytes, expected {len}"
            )));
        }
        self.read_abs(pos, len, "global heap object")
    }

    fn parse_collection(&self, addr: u64) -> Result<HeapObjects> {
        let bad = || self.corrupt("global heap collection");
        let head = self.read_meta(addr, 8 + self.length_size as u64, "global heap collection")?;
        if !head.starts_with(b"GCOL") {
            return Err(bad());
        }
        let size = Cur::new(&head[8..])
            .uint(self.length_size)
            .ok_or_else(bad)?;
        if size > MAX_METADATA_BLOCK * 4 {
            return Err(bad());
        }
        let col = self.read_meta(addr, size, "global heap collection")?;
        if (col.len() as u64) < size {
            return Err(bad());
        }
        let mut c = Cur::new(&col);
        c.skip(8 + self.length_size).ok_or_else(bad)?;
        let mut objects = HashMap::new();
        let header = 8 + self.length_size;
        while c.remaining() >= header {
            let index = c.u16().ok_or_else(bad)?;
            c.skip(6).ok_or_else(bad)?;
            let obj_size = c.uint(self.length_size).ok_or_else(bad)?;
            if index == 0 {
                break; // free space runs to the end of the collection
            }
            let start = self.base + addr + c.p as u64;
            let padded = obj_size.div_ceil(8) * 8;
            c.skip(usize::try_from(padded).map_err(|_| bad())?)
                .ok_or_else(bad)?;
            objects.insert(index, (start, obj_size));
        }
        Ok(objects)
    }
}

/// (type, element size) from a datatype message.
fn parse_datatype(body: &[u8]) -> std::result::Result<(Dtype, usize), String> {
    let bad = || "corrupt datatype message".to_string();
    let mut c = Cur::new(body);
    let cv = c.u8().ok_or_else(bad)?;
    let bits = c.take(3).ok_or_else(bad)?;
    let size = c.u32().ok_or_else(bad)? as usize;
    let class = cv & 0x0f;
    let dtype = match class {
        0 => {
            if ![1, 2, 4, 8].contains(&size) {
                return Err(format!("unsupported integer size {size}"));
            }
            Dtype::Int {
                bytes: size as u8,
                signed: bits[0] & 0x08 != 0,
                big_endian: bits[0] & 0x01 != 0,
            }
        }
        1 => {
            if ![4, 8].contains(&size) || bits[0] & 0x40 != 0 {
                return Err(format!("unsupported float type (size {size})"));
            }
            Dtype::Float {
                bytes: size as u8,
                big_endian: bits[0] & 0x01 != 0,
            }
        }
        3 => Dtype::FixedString { len: size },
        9 => {
            if bits[0] & 0x0f != 1 {
                return Err(
                    "variable-length sequences other than strings are not supported".into(),
                );
            }
            Dtype::VlenString {
                utf8: bits[1] & 0x0f == 1,
            }
        }
        k => return Err(format!("unsupported datatype class {k}")),
    };
    Ok((dtype, size))
}
