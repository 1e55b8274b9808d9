//! HDF5 writer: one root group of contiguous datasets, laid out as
//!
//! ```text
//! superblock v0 | root object header | group B-tree node | local heap (names) | symbol node
//! | dataset object headers | global heap collections (vlen strings) | raw data
//! ```
//!
//! Everything before the raw data is built in memory (a few kilobytes plus the strings); raw
//! data is streamed from the caller's slices. Addresses are absolute (base address 0).

use crate::{Error, Result};
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::Path;

/// Data of one dataset to write.
#[derive(Debug, Clone, Copy)]
pub enum WriteData<'a> {
    /// Little-endian int32, row-major with `shape`.
    I32 { shape: &'a [u64], data: &'a [i32] },
    /// Little-endian float64, row-major with `shape` (what numpy gives an empty list).
    F64 { shape: &'a [u64], data: &'a [f64] },
    /// A 1-D variable-length UTF-8 string dataset (h5py `special_dtype(vlen=str)`).
    VlenStr(&'a [String]),
}

impl WriteData<'_> {
    fn shape(&self) -> Vec<u64> {
        match self {
            WriteData::I32 { shape, .. } | WriteData::F64 { shape, .. } => shape.to_vec(),
            WriteData::VlenStr(s) => vec![s.len() as u64],
        }
    }

    fn len(&self) -> usize {
        match self {
            WriteData::I32 { data, .. } => data.len(),
            WriteData::F64 { data, .. } => data.len(),
            WriteData::VlenStr(s) => s.len(),
        }
    }

    fn element_size(&self) -> u64 {
        match self {
            WriteData::I32 { .. } => 4,
            WriteData::F64 { .. } => 8,
            WriteData::VlenStr(_) => VLEN_ELEMENT_SIZE,
        }
    }
}

const UNDEF: u64 = u64::MAX;
const SUPERBLOCK_SIZE: u64 = 96;
/// Group internal node K (libhdf5 default); the root B-tree has a single leaf child anyway.
const GROUP_INTERNAL_K: u64 = 16;
/// Size of one symbol table entry with 8-byte offsets.
const SYMBOL_ENTRY_SIZE: u64 = 40;
/// On-disk vlen element: u32 length + global heap id (u64 collection address + u32 index).
const VLEN_ELEMENT_SIZE: u64 = 16;
/// libhdf5 never makes a collection smaller than this.
const GCOL_MIN_SIZE: u64 = 4096;
/// Collections are cut at this size so no single one grows huge; libhdf5 reads any size.
const GCOL_TARGET_SIZE: u64 = 1 << 16;
/// Heap object indices are 16-bit and 0 is the free-space object.
const GCOL_MAX_OBJECTS: usize = 65_535;
/// libhdf5's marker for "no free block" in a local heap (not the undefined address).
const LOCAL_HEAP_FREE_NULL: u64 = 1;

fn pad8(n: u64) -> u64 {
    n.div_ceil(8) * 8
}

/// Writes `datasets` into a new HDF5 file at `path` (overwriting it). Callers that need
/// atomicity write to a temporary path and publish it (see [`crate::io::atomic::publish`]).
pub fn write_file(path: &Path, datasets: &[(&str, WriteData<'_>)]) -> Result<()> {
    let invalid = |msg: String| Error::invalid(format!("{}: {msg}", path.display()));
    for (name, data) in datasets {
        if name.is_empty() || name.contains('/') || name.contains('\0') || *name == "." {
            return Err(invalid(format!("invalid dataset name {name:?}")));
        }
        let shape = data.shape();
        let n: u64 = shape.iter().product();
        if n != data.len() as u64 {
            return Err(invalid(format!(
                "dataset {name:?}: shape {shape:?} holds {n} elements but {} were given",
                data.len()
            )));
        }
        if shape.is_empty() || shape.len() > 32 {
            return Err(invalid(format!(
                "dataset {name:?}: rank {} is not supported (1 to 32)",
                shape.len()
            )));
        }
    }
    // Symbol nodes must list their entries in strcmp order (lookups binary-search them).
    let mut order: Vec<usize> = (0..datasets.len()).collect();
    order.sort_by(|&a, &b| datasets[a].0.as_bytes().cmp(datasets[b].0.as_bytes()));
    for w in order.windows(2) {
        if datasets[w[0]].0 == datasets[w[1]].0 {
            return Err(invalid(format!(
                "dataset {:?} given twice",
                datasets[w[0]].0
            )));
        }
    }

    let layout = plan(datasets, &order);
    let file = File::create(path).map_err(|e| Error::io(path, e))?;
    let mut w = BufWriter::with_capacity(1 << 20, file);
    emit(&mut w, datasets, &order, &layout).map_err(|e| Error::io(path, e))?;
    let file = w
        .into_inner()
        .map_err(|e| Error::io(path, e.into_error()))?;
    file.sync_all().map_err(|e| Error::io(path, e))?;
    Ok(())
}

/// File addresses decided before anything is written.
struct Layout {
    leaf_k: u64,
    root_header: u64,
    btree: u64,
    heap: u64,
    heap_data: u64,
    heap_data_size: u64,
    /// Heap offset of each dataset's name (in `order`).
    name_offsets: Vec<u64>,
    snod: u64,
    snod_end: u64,
    /// Object header address of each dataset (input order).
    headers: Vec<u64>,
    /// Raw data address of each dataset (input order); `UNDEF` when empty.
    data: Vec<u64>,
    /// Global heap collections: (address, size, first string index, string count).
    collections: Vec<(u64, u64, usize, usize)>,
    /// Collection number of each dataset's strings start (input order), for vlen datasets.
    first_collection: Vec<usize>,
    eof: u64,
}

fn header_size(data: &WriteData<'_>) -> u64 {
    let rank = data.shape().len() as u64;
    let dataspace = 8 + 16 * rank;
    let datatype = match data {
        WriteData::I32 { .. } => 16,
        WriteData::F64 { .. } | WriteData::VlenStr(_) => 24,
    };
    let fill = 8;
    let layout = 24;
    16 + [dataspace, datatype, fill, layout]
        .iter()
        .map(|s| 8 + s)
        .sum::<u64>()
}

fn plan(datasets: &[(&str, WriteData<'_>)], order: &[usize]) -> Layout {
    let n = datasets.len() as u64;
    let leaf_k = n.div_ceil(2).max(4);
    let root_header = SUPERBLOCK_SIZE;
    let btree = root_header + 16 + 8 + 16;
    let btree_size = 24 + (2 * GROUP_INTERNAL_K + 1) * 8 + 2 * GROUP_INTERNAL_K * 8;
    let heap = btree + btree_size;
    let heap_data = heap + 32;
    // Offset 0 holds the empty string (the root's own link name).
    let mut name_offsets = Vec::with_capacity(order.len());
    let mut off = 8;
    for &i in order {
        name_offsets.push(off);
        off += pad8(datasets[i].0.len() as u64 + 1);
    }
    let heap_data_size = off;
    let snod = heap_data + heap_data_size;
    let snod_end = snod + 8 + 2 * leaf_k * SYMBOL_ENTRY_SIZE;
    let mut pos = snod_end;
    let mut headers = Vec::with_capacity(datasets.len());
    for (_, d) in datasets {
        headers.push(pos);
        pos += header_size(d);
    }
    let mut collections = Vec::new();
    let mut first_collection = vec![0; datasets.len()];
    for (k, (_, d)) in datasets.iter().enumerate() {
        if let WriteData::VlenStr(strings) = d {
            first_collection[k] = collections.len();
            let mut start = 0;
            while start < strings.len() {
                let mut size = 16;
                let mut count = 0;
                while start + count < strings.len() && count < GCOL_MAX_OBJECTS {
                    let obj = 16 + pad8(strings[start + count].len() as u64);
                    // Leave room for the trailing free-space object header.
                    if count > 0 && size + obj + 16 > GCOL_TARGET_SIZE {
                        break;
                    }
                    size += obj;
                    count += 1;
                }
                let total = (size + 16).max(GCOL_MIN_SIZE);
                collections.push((pos, total, start, count));
                pos += total;
                start += count;
            }
        }
    }
    let mut data = Vec::with_capacity(datasets.len());
    for (_, d) in datasets {
        if d.len() == 0 {
            data.push(UNDEF);
        } else {
            data.push(pos);
            pos += pad8(d.len() as u64 * d.element_size());
        }
    }
    Layout {
        leaf_k,
        root_header,
        btree,
        heap,
        heap_data,
        heap_data_size,
        name_offsets,
        snod,
        snod_end,
        headers,
        data,
        collections,
        first_collection,
        eof: pos,
    }
}

struct Buf(Vec<u8>);

impl Buf {
    fn u8(&mut self, v: u8) {
        self.0.push(v);
    }
    fn u16(&mut self, v: u16) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }
    fn u32(&mut self, v: u32) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }
    fn u64(&mut self, v: u64) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }
    fn bytes(&mut self, b: &[u8]) {
        self.0.extend_from_slice(b);
    }
    fn zeros(&mut self, n: u64) {
        self.0.resize(self.0.len() + n as usize, 0);
    }
    fn pad_to(&mut self, len: u64) {
        debug_assert!(self.0.len() as u64 <= len);
        self.0.resize(len as usize, 0);
    }
    /// A version-1 object header message; `body` is padded to a multiple of 8.
    fn message(&mut self, kind: u16, flags: u8, body: &[u8]) {
        let size = pad8(body.len() as u64);
        self.u16(kind);
        self.u16(size as u16);
        self.u8(flags);
        self.zeros(3);
        self.bytes(body);
        self.zeros(size - body.len() as u64);
    }
    /// Prefix of a version-1 object header holding `messages` messages of `size` bytes in all.
    fn object_header_prefix(&mut self, messages: u16, size: u32) {
        self.u8(1);
        self.u8(0);
        self.u16(messages);
        self.u32(1); // reference count
        self.u32(size);
        self.zeros(4); // v1 headers align their messages to 8 bytes
    }
}

fn metadata(datasets: &[(&str, WriteData<'_>)], order: &[usize], l: &Layout) -> Vec<u8> {
    let mut b = Buf(Vec::with_capacity(l.snod_end as usize + 1024));
    // Superblock version 0.
    b.bytes(b"\x89HDF\r\n\x1a\n");
    b.bytes(&[0, 0, 0, 0, 0, 8, 8, 0]);
    b.u16(l.leaf_k as u16);
    b.u16(GROUP_INTERNAL_K as u16);
    b.u32(0); // consistency flags
    b.u64(0); // base address
    b.u64(UNDEF); // free-space info
    b.u64(l.eof);
    b.u64(UNDEF); // driver info
    // Root group symbol table entry, caching the B-tree and heap addresses.
    b.u64(0);
    b.u64(l.root_header);
    b.u32(1);
    b.u32(0);
    b.u64(l.btree);
    b.u64(l.heap);
    debug_assert_eq!(b.0.len() as u64, SUPERBLOCK_SIZE);

    // Root object header: a symbol table message.
    b.object_header_prefix(1, 24);
    let mut stab = Buf(Vec::new());
    stab.u64(l.btree);
    stab.u64(l.heap);
    b.message(0x11, 0, &stab.0);
    debug_assert_eq!(b.0.len() as u64, l.btree);

    // Group B-tree: one leaf-level node pointing at the single symbol node. Keys are heap
    // offsets: the empty string, then the largest name in the child.
    b.bytes(b"TREE");
    b.u8(0); // group node
    b.u8(0); // level
    b.u16(1);
    b.u64(UNDEF);
    b.u64(UNDEF);
    b.u64(0);
    b.u64(l.snod);
    b.u64(l.name_offsets.last().copied().unwrap_or(0));
    b.pad_to(l.heap);

    // Local heap with the link names; exactly full, so no free block.
    b.bytes(b"HEAP");
    b.zeros(4);
    b.u64(l.heap_data_size);
    b.u64(LOCAL_HEAP_FREE_NULL);
    b.u64(l.heap_data);
    b.zeros(8);
    for &i in order {
        let name = datasets[i].0.as_bytes();
        b.bytes(name);
        b.zeros(pad8(name.len() as u64 + 1) - name.len() as u64);
    }
    debug_assert_eq!(b.0.len() as u64, l.snod);

    // Symbol table node.
    b.bytes(b"SNOD");
    b.u8(1);
    b.u8(0);
    b.u16(order.len() as u16);
    for (k, &i) in order.iter().enumerate() {
        b.u64(l.name_offsets[k]);
        b.u64(l.headers[i]);
        b.u32(0);
        b.u32(0);
        b.zeros(16);
    }
    b.pad_to(l.snod_end);

    // Dataset object headers: dataspace, datatype, fill value, layout (what h5py writes).
    for (k, (_, d)) in datasets.iter().enumerate() {
        let shape = d.shape();
        let size = header_size(d) - 16;
        b.object_header_prefix(4, size as u32);
        let mut space = Buf(Vec::new());
        space.u8(1);
        space.u8(shape.len() as u8);
        space.u8(1); // maximum dimensions present
        space.zeros(5);
        for &s in &shape {
            space.u64(s);
        }
        for &s in &shape {
            space.u64(s);
        }
        b.message(0x01, 0, &space.0);
        let mut ty = Buf(Vec::new());
        let fill: [u8; 8] = match d {
            WriteData::I32 { .. } => {
                ty.bytes(&[0x10, 0x08, 0, 0]); // fixed-point v1, LE, signed
                ty.u32(4);
                ty.u16(0);
                ty.u16(32);
                [2, 2, 2, 1, 0, 0, 0, 0]
            }
            WriteData::F64 { .. } => {
                ty.bytes(&[0x11, 0x20, 63, 0]); // float v1, LE, implied mantissa bit, sign at 63
                ty.u32(8);
                ty.u16(0);
                ty.u16(64);
                ty.bytes(&[52, 11, 0, 52]);
                ty.u32(1023);
                [2, 2, 2, 1, 0, 0, 0, 0]
            }
            WriteData::VlenStr(_) => {
                ty.bytes(&[0x19, 0x01, 0x01, 0]); // vlen v1: string, NUL-term pad, UTF-8
                ty.u32(VLEN_ELEMENT_SIZE as u32);
                ty.bytes(&[0x10, 0, 0, 0]); // base type: unsigned 8-bit integer
                ty.u32(1);
                ty.u16(0);
                ty.u16(8);
                [2, 2, 0, 1, 0, 0, 0, 0]
            }
        };
        b.message(0x03, 1, &ty.0);
        b.message(0x05, 1, &fill);
        let mut layout = Buf(Vec::new());
        layout.u8(3);
        layout.u8(1); // contiguous
        layout.u64(l.data[k]);
        layout.u64(d.len() as u64 * d.element_size());
        b.message(0x08, 0, &layout.0);
    }

    // Global heap collections with the strings (object indices start at 1).
    for (k, (_, d)) in datasets.iter().enumerate() {
        let WriteData::VlenStr(strings) = d else {
            continue;
        };
        let mut c = l.first_collection[k];
        let mut done = 0;
        while done < strings.len() {
            let (addr, size, start, count) = l.collections[c];
            debug_assert_eq!(b.0.len() as u64, addr);
            b.bytes(b"GCOL");
            b.u8(1);
            b.zeros(3);
            b.u64(size);
            for (j, s) in strings[start..start + count].iter().enumerate() {
                b.u16(j as u16 + 1);
                b.u16(0);
                b.u32(0);
                b.u64(s.len() as u64);
                b.bytes(s.as_bytes());
                b.zeros(pad8(s.len() as u64) - s.len() as u64);
            }
            let free = addr + size - b.0.len() as u64;
            b.u16(0);
            b.u16(0);
            b.u32(0);
            b.u64(free);
            b.pad_to(addr + size);
            done += count;
            c += 1;
        }
    }
    b.0
}

fn emit<W: Write>(
    w: &mut W,
    datasets: &[(&str, WriteData<'_>)],
    order: &[usize],
    l: &Layout,
) -> std::io::Result<()> {
    w.write_all(&metadata(datasets, order, l))?;
    let mut chunk: Vec<u8> = Vec::with_capacity(1 << 16);
    for (k, (_, d)) in datasets.iter().enumerate() {
        if l.data[k] == UNDEF {
            continue;
        }
        let bytes = d.len() as u64 * d.element_size();
        match d {
            WriteData::I32 { data, .. } => {
                for part in data.chunks(1 << 14) {
                    chunk.clear();
                    part.iter()
                        .for_each(|v| chunk.extend_from_slice(&v.to_le_bytes()));
                    w.write_all(&chunk)?;
                }
            }
            WriteData::F64 { data, .. } => {
                for part in data.chunks(1 << 13) {
                    chunk.clear();
                    part.iter()
                        .for_each(|v| chunk.extend_from_slice(&v.to_le_bytes()));
                    w.write_all(&chunk)?;
                }
            }
            WriteData::VlenStr(strings) => {
                // Each element points at (collection, index) of its string.
                let mut c = l.first_collection[k];
                let mut index_in = 0;
                for s in strings.iter() {
                    while index_in >= l.collections[c].3 {
                        c += 1;
                        index_in = 0;
                    }
                    let mut e = [0u8; 16];
                    e[..4].copy_from_slice(&(s.len() as u32).to_le_bytes());
                    e[4..12].copy_from_slice(&l.collections[c].0.to_le_bytes());
                    e[12..].copy_from_slice(&(index_in as u32 + 1).to_le_bytes());
                    w.write_all(&e)?;
                    index_in += 1;
                }
            }
        }
        w.write_all(&vec![0u8; (pad8(bytes) - bytes) as usize])?;
    }
    Ok(())
}
