//! Our files read by the real tools, not by our own readers: `preprocess-vg`'s HDF5 output
//! through h5py, and our legacy `torch.save` writer's output through Python's `pickle` with a
//! minimal persistent-load shim (what `torch.load` does for that format, without the 3 GB
//! torch). The interpreter is `target/pyenv/bin/python` (made by `.ci/run`) or
//! `$SG2IM_TEST_PYTHON`; without one the tests fail and say how to make it.

mod common;

use common::{run_python, scratch, torch_fixture, vg_fixture};
use serde_json::{Value, json};
use sg2im::data::preprocess_vg::preprocess_vg;
use sg2im::io::torch::{self, PyValue};
use sha2::{Digest, Sha256};
use std::path::Path;

/// Every dataset of each HDF5 file named on the command line as h5py reads it:
/// `{name: [dtype, shape, flat values]}` (strings decoded with their declared encoding).
const H5_DUMP: &str = r#"
import sys, json, h5py
def dump(path):
    out = {}
    with h5py.File(path, "r") as f:
        for name in f.keys():
            ds = f[name]
            enc = h5py.check_string_dtype(ds.dtype)
            if enc is not None:
                out[name] = ["str:" + enc.encoding, list(ds.shape), list(ds.asstr()[()])]
            else:
                out[name] = [ds.dtype.str, list(ds.shape), ds[()].ravel().tolist()]
    return out
print(json.dumps([dump(p) for p in sys.argv[1:]]))
"#;

/// A legacy `torch.save` stream read the way `torch.load` reads it: magic, protocol, sys_info,
/// the object pickle (tensors through `_rebuild_tensor_v2`, storages as persistent ids), the
/// storage keys, then per storage an int64 element count and the raw little-endian data.
/// Printed as JSON: dicts as `{"dict": [[k, v], ...]}` (order kept), tuples as
/// `{"tuple": [...]}`, tensors as `{"tensor": dtype, "shape", "sha256", "values" (≤ 16)}`.
const PT_DUMP: &str = r#"
import sys, json, pickle, struct, hashlib, collections
import numpy as np
DTYPES = {"FloatStorage": "<f4", "DoubleStorage": "<f8", "HalfStorage": "<f2",
          "LongStorage": "<i8", "IntStorage": "<i4", "ShortStorage": "<i2",
          "CharStorage": "i1", "ByteStorage": "u1", "BoolStorage": "?"}
class Tensor:
    def __init__(self, key, offset, size, stride):
        self.key, self.offset, self.size, self.stride = key, offset, tuple(size), tuple(stride)
def rebuild_tensor_v2(storage, offset, size, stride, requires_grad, hooks):
    assert requires_grad is False and len(hooks) == 0
    return Tensor(storage, offset, size, stride)
storages = {}
class Unpickler(pickle.Unpickler):
    def find_class(self, module, name):
        if (module, name) == ("torch._utils", "_rebuild_tensor_v2"):
            return rebuild_tensor_v2
        if module == "torch" and name in DTYPES:
            return DTYPES[name]
        return super().find_class(module, name)
    def persistent_load(self, pid):
        kind, dtype, key, location, numel = pid[:5]
        assert kind == "storage" and location == "cpu", pid
        storages[key] = (dtype, numel)
        return key
f = open(sys.argv[1], "rb")
assert pickle.load(f) == 0x1950a86a20f9469cfc6c
assert pickle.load(f) == 1001
assert pickle.load(f)["little_endian"] is True
obj = Unpickler(f).load()
data = {}
for key in pickle.load(f):
    (n,) = struct.unpack("<q", f.read(8))
    dtype, numel = storages[key]
    assert n == numel, (key, n, numel)
    raw = f.read(n * np.dtype(dtype).itemsize)
    assert len(raw) == n * np.dtype(dtype).itemsize, key
    data[key] = np.frombuffer(raw, dtype=dtype)
assert f.read() == b"", "bytes after the last storage"
def conv(v):
    if isinstance(v, Tensor):
        base = data[v.key]
        arr = np.lib.stride_tricks.as_strided(
            base[v.offset:], shape=v.size, strides=[s * base.itemsize for s in v.stride])
        arr = np.ascontiguousarray(arr)
        return {"tensor": arr.dtype.str, "shape": list(v.size),
                "sha256": hashlib.sha256(arr.tobytes()).hexdigest(),
                "values": arr.ravel().tolist() if arr.size <= 16 else None}
    if isinstance(v, dict):
        return {"dict": [[conv(k), conv(x)] for k, x in v.items()]}
    if isinstance(v, tuple):
        return {"tuple": [conv(x) for x in v]}
    if isinstance(v, list):
        return [conv(x) for x in v]
    if v is None or isinstance(v, (bool, int, float, str)):
        return v
    return {"object": type(v).__module__ + "." + type(v).__name__}
print(json.dumps(conv(obj)))
"#;

const SPLITS: [&str; 3] = ["train", "val", "test"];

#[test]
fn h5py_reads_our_preprocessed_files_as_the_originals() {
    let out = scratch("h5py");
    let cfg = common::vg_fixture_config(&out);
    preprocess_vg(&cfg, &mut Vec::new()).unwrap();
    for split in SPLITS {
        let ours = out.join(format!("{split}.h5"));
        let theirs = vg_fixture(&format!("expected/{split}.h5"));
        let dumped: Value = serde_json::from_str(&run_python(H5_DUMP, &[&ours, &theirs])).unwrap();
        let (ours, theirs) = (&dumped[0], &dumped[1]);
        let names: Vec<&str> = ours
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        assert_eq!(
            names,
            [
                "attributes_per_object",
                "image_ids",
                "image_paths",
                "object_attributes",
                "object_boxes",
                "object_ids",
                "object_names",
                "objects_per_image",
                "relationship_ids",
                "relationship_objects",
                "relationship_predicates",
                "relationship_subjects",
                "relationships_per_image",
            ],
            "{split}"
        );
        // The per-image arrays are int32 and the strings UTF-8, as the original writes them.
        assert_eq!(ours["object_names"][0], "<i4", "{split}");
        assert_eq!(ours["image_paths"][0], "str:utf-8", "{split}");
        let images = ours["image_ids"][1][0].as_u64().unwrap();
        assert!(images > 0, "{split}: no images");
        assert_eq!(
            ours["image_paths"][2].as_array().unwrap().len() as u64,
            images
        );
        for name in names {
            assert_eq!(
                ours[name], theirs[name],
                "{split}: {name} (dtype, shape, values)"
            );
        }
    }
    std::fs::remove_dir_all(&out).unwrap();
}

fn sha256(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Our legacy writer's output for `value`, read back by the Python shim.
fn unpickled(value: &PyValue, dir: &Path, name: &str) -> Value {
    let path = dir.join(name);
    torch::save_legacy(&path, value).unwrap();
    serde_json::from_str(&run_python(PT_DUMP, &[&path])).unwrap()
}

#[test]
fn pickle_reads_our_legacy_torch_files() {
    let dir = scratch("pickle");
    let value = common::small_torch_value();
    let w = [1.0f32, -2.5, 3.0, 4.0, 5.0, 6.0];
    let w_bytes: Vec<u8> = w.iter().flat_map(|x| x.to_le_bytes()).collect();
    let want = json!({"dict": [
        ["model_kwargs", {"dict": [
            ["image_size", {"tuple": [64, 64]}],
            ["lr", -1.5e-4],
            ["big", -5_000_000_000i64],
            ["none", null],
            ["flag", true],
            ["names", ["a", "b"]],
        ]}],
        ["model_state", {"dict": [
            ["w", {"tensor": "<f4", "shape": [2, 3], "sha256": sha256(&w_bytes),
                   "values": [1.0, -2.5, 3.0, 4.0, 5.0, 6.0]}],
            ["n", {"tensor": "<i8", "shape": [], "sha256": sha256(&1000i64.to_le_bytes()),
                   "values": [1000]}],
        ]}],
    ]});
    assert_eq!(unpickled(&value, &dir, "small.pt"), want);

    // The real checkpoint, re-written by us: every weight as torch wrote it (the fixture's
    // ref_small.safetensors was exported by the original from the same model).
    let real = torch::load(&torch_fixture("ref_small_full_legacy.pt")).unwrap();
    let got = unpickled(&real, &dir, "real.pt");
    let top = got["dict"].as_array().unwrap();
    let state = top
        .iter()
        .find(|kv| kv[0] == "model_state")
        .expect("model_state")[1]["dict"]
        .as_array()
        .unwrap();
    let bytes = std::fs::read(torch_fixture("ref_small.safetensors")).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let mut names: Vec<String> = st.names().into_iter().map(str::to_string).collect();
    names.sort();
    let mut pickled: Vec<String> = state
        .iter()
        .map(|kv| kv[0].as_str().unwrap().to_string())
        .collect();
    pickled.sort();
    assert_eq!(pickled, names);
    for kv in state {
        let name = kv[0].as_str().unwrap();
        let t = st.tensor(name).unwrap();
        let dtype = match t.dtype() {
            safetensors::Dtype::F32 => "<f4",
            safetensors::Dtype::I64 => "<i8",
            other => panic!("{name}: unexpected dtype {other:?}"),
        };
        assert_eq!(kv[1]["tensor"], dtype, "{name}");
        assert_eq!(kv[1]["shape"], json!(t.shape()), "{name}");
        assert_eq!(kv[1]["sha256"], sha256(t.data()), "{name}");
    }
    std::fs::remove_dir_all(&dir).unwrap();
}
