//! Helpers shared by the integration tests (each test file that needs them says `mod common;`)
//! and the benchmarks (`#[path = "../tests/common/mod.rs"] mod common;`): fixture paths, scratch
//! directories, running the binary, the tiny training configuration, a COCO-sized vocabulary,
//! the one float comparison and the Python interpreter of the interop tests.
#![allow(dead_code)] // every test file uses a different subset

use safetensors::{Dtype, SafeTensors};
use sg2im::io::safetensors_io::RawTensor;
use sg2im::io::torch::{PyValue, TorchTensor};
use sg2im::vocab::Vocab;
use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

// ---------------------------------------------------------------------------------------------
// Fixtures and scratch space

/// `../shared/fixtures/<set>/<name>` (the fixture sets: `torch_parity`, `vg_preprocess`,
/// `coco_loader`, `metrics`).
pub fn fixture(set: &str, name: &str) -> PathBuf {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../shared/fixtures"))
        .join(set)
        .join(name)
}

pub fn torch_fixture(name: &str) -> PathBuf {
    fixture("torch_parity", name)
}

pub fn vg_fixture(name: &str) -> PathBuf {
    fixture("vg_preprocess", name)
}

/// `preprocess-vg` on the VG fixture's raw files as its README ran the original: defaults
/// except the three vocabulary thresholds; outputs into `out`.
pub fn vg_fixture_config(out: &Path) -> sg2im::data::preprocess_vg::PreprocessVgConfig {
    sg2im::data::preprocess_vg::PreprocessVgConfig {
        splits_json: vg_fixture("raw/vg_splits_subset.json"),
        images_json: vg_fixture("raw/image_data.json"),
        objects_json: vg_fixture("raw/objects.json"),
        attributes_json: vg_fixture("raw/attributes.json"),
        object_aliases: vg_fixture("raw/object_alias.txt"),
        relationship_aliases: vg_fixture("raw/relationship_alias.txt"),
        relationships_json: vg_fixture("raw/relationships.json"),
        min_object_instances: 10,
        min_attribute_instances: 10,
        min_relationship_instances: 5,
        output_vocab_json: out.join("vocab.json"),
        output_h5_dir: out.to_path_buf(),
        ..Default::default()
    }
}

/// An empty directory under the system temp dir, unique to this test binary (its crate name),
/// this process and `tag`; whatever a previous run left there is removed first.
pub fn scratch(tag: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "sg2im-{}-{tag}-{}",
        env!("CARGO_CRATE_NAME"),
        std::process::id()
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// A path as a flag value (every test path is UTF-8).
pub fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

// ---------------------------------------------------------------------------------------------
// The binary

/// The `sg2im` binary built for this test run.
pub fn sg2im_cmd() -> Command {
    Command::new(env!("CARGO_BIN_EXE_sg2im"))
}

/// Runs `sg2im ARGS…` to completion, capturing its output.
pub fn sg2im(args: &[impl AsRef<OsStr>]) -> Output {
    sg2im_cmd().args(args).output().unwrap()
}

/// `out`, after asserting the command succeeded (both streams in the failure message).
#[track_caller]
pub fn ok(out: Output) -> Output {
    assert!(
        out.status.success(),
        "status {}\nstdout: {}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// The project's bad-input contract: exit code 2 and exactly one line on stderr, which
/// contains every needle.
#[track_caller]
pub fn assert_one_line_error(out: &Output, needles: &[&str]) {
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        out.status.code(),
        Some(2),
        "stdout: {}\nstderr: {err}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert_eq!(
        err.trim_end().lines().count(),
        1,
        "one line expected: {err}"
    );
    for n in needles {
        assert!(err.contains(n), "{n:?} not in {err:?}");
    }
}

// ---------------------------------------------------------------------------------------------
// Tiny training runs

/// The network shape every tiny training run of the tests shares: 16×16 images, batches of 4,
/// networks of a few thousand parameters (a training iteration takes milliseconds). Each test
/// adds what it is about (dataset, iterations, checkpoints, masks) through [`tiny_flags`].
pub const TINY_FLAGS: [&str; 10] = [
    "--image_size=16,16",
    "--batch_size=4",
    "--embedding_dim=8",
    "--gconv_dim=8",
    "--gconv_hidden_dim=16",
    "--refinement_network_dims=16,8",
    "--d_obj_arch=C3-8-2,C3-16-2",
    "--d_img_arch=C3-8-2,C3-16-2",
    "--crop_size=8",
    "--progress=0",
];

/// [`TINY_FLAGS`], then `extra`, then `--output_dir=<out>`.
pub fn tiny_flags(out: &Path, extra: &[&str]) -> Vec<String> {
    TINY_FLAGS
        .iter()
        .chain(extra)
        .map(|f| f.to_string())
        .chain([format!("--output_dir={}", out.display())])
        .collect()
}

/// A tiny model on the built-in `shapes` data: 4×4 masks, 8 training and 8 validation scenes,
/// two iterations, checkpoint at the last.
pub const TINY_SHAPES: [&str; 9] = [
    "--dataset=shapes",
    "--shapes_num_train=8",
    "--shapes_num_val=8",
    "--num_val_samples=8",
    "--mask_size=4",
    "--gconv_num_layers=2",
    "--layout_noise_dim=4",
    "--num_iterations=2",
    "--checkpoint_every=2",
];

/// Trains [`TINY_FLAGS`] + [`TINY_SHAPES`] + `extra` (later flags win) into a scratch folder
/// `tag` and returns its `checkpoint_with_model.safetensors`. Test files keep the result in a
/// `OnceLock`, so each binary trains once.
pub fn train_tiny_shapes(tag: &str, extra: &[&str]) -> PathBuf {
    let out = scratch(tag).join("run");
    let flags: Vec<&str> = TINY_SHAPES.iter().chain(extra).copied().collect();
    let mut args = vec!["train".to_string()];
    args.extend(tiny_flags(&out, &flags));
    ok(sg2im(&args));
    out.join("checkpoint_with_model.safetensors")
}

// ---------------------------------------------------------------------------------------------
// Vocabularies

/// A COCO-Stuff-like vocabulary: `num_objs` object entries (`__image__` first, then `obj1`…),
/// COCO's 7 predicates (`__in_image__` first).
pub fn coco_like_vocab(num_objs: usize) -> Vocab {
    let mut names: Vec<String> = (0..num_objs).map(|i| format!("obj{i}")).collect();
    names[0] = "__image__".into();
    let preds: Vec<String> = [
        "__in_image__",
        "left of",
        "right of",
        "above",
        "below",
        "inside",
        "surrounding",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let index = |v: &[String]| {
        v.iter()
            .enumerate()
            .map(|(i, n)| (n.clone(), i as i64))
            .collect()
    };
    Vocab {
        object_name_to_idx: index(&names),
        object_idx_to_name: names,
        attribute_name_to_idx: None,
        attribute_idx_to_name: None,
        pred_name_to_idx: index(&preds),
        pred_idx_to_name: preds,
    }
}

// ---------------------------------------------------------------------------------------------
// A small checkpoint-like value

/// A dict like a checkpoint's: `model_kwargs` with a tuple, a negative float, an int beyond
/// 32 bits, None, a bool and a list; `model_state` with a float32 `(2, 3)` tensor
/// `[1, -2.5, 3, 4, 5, 6]` and an int64 scalar tensor `1000`.
pub fn small_torch_value() -> PyValue {
    let s = |x: &str| PyValue::Str(x.to_string());
    PyValue::Dict(vec![
        (
            s("model_kwargs"),
            PyValue::Dict(vec![
                (
                    s("image_size"),
                    PyValue::Tuple(vec![PyValue::Int(64), PyValue::Int(64)]),
                ),
                (s("lr"), PyValue::Float(-1.5e-4)),
                (s("big"), PyValue::Int(-5_000_000_000)),
                (s("none"), PyValue::None),
                (s("flag"), PyValue::Bool(true)),
                (s("names"), PyValue::List(vec![s("a"), s("b")])),
            ]),
        ),
        (
            s("model_state"),
            PyValue::Dict(vec![
                (
                    s("w"),
                    PyValue::Tensor(TorchTensor::from_f32(
                        vec![2, 3],
                        &[1.0, -2.5, 3.0, 4.0, 5.0, 6.0],
                    )),
                ),
                (
                    s("n"),
                    PyValue::Tensor(TorchTensor::from_i64(vec![], &[1000])),
                ),
            ]),
        ),
    ])
}

// ---------------------------------------------------------------------------------------------
// Comparing floats

/// Numbers for [`assert_close`]: the values (widened to f64, exactly) and, when the source has
/// one, the shape.
pub trait Compared {
    fn shape(&self) -> Option<Vec<usize>>;
    fn values(&self) -> Vec<f64>;
}

impl<T: Compared + ?Sized> Compared for &T {
    fn shape(&self) -> Option<Vec<usize>> {
        (**self).shape()
    }
    fn values(&self) -> Vec<f64> {
        (**self).values()
    }
}

impl Compared for [f32] {
    fn shape(&self) -> Option<Vec<usize>> {
        None
    }
    fn values(&self) -> Vec<f64> {
        self.iter().map(|&x| f64::from(x)).collect()
    }
}

impl Compared for [f64] {
    fn shape(&self) -> Option<Vec<usize>> {
        None
    }
    fn values(&self) -> Vec<f64> {
        self.to_vec()
    }
}

impl<T> Compared for Vec<T>
where
    [T]: Compared,
{
    fn shape(&self) -> Option<Vec<usize>> {
        None
    }
    fn values(&self) -> Vec<f64> {
        self.as_slice().values()
    }
}

impl<const N: usize> Compared for [f32; N] {
    fn shape(&self) -> Option<Vec<usize>> {
        None
    }
    fn values(&self) -> Vec<f64> {
        self.as_slice().values()
    }
}

impl Compared for RawTensor {
    fn shape(&self) -> Option<Vec<usize>> {
        Some(self.shape.clone())
    }
    fn values(&self) -> Vec<f64> {
        // F64 data stays F64 (`to_f32` would round it); everything else as `to_f32` reads it.
        match self.dtype {
            Dtype::F64 => self
                .bytes
                .chunks_exact(8)
                .map(|c| f64::from_le_bytes(c.try_into().unwrap()))
                .collect(),
            _ => self.to_f32().values(),
        }
    }
}

impl<const D: usize> Compared for burn::tensor::Tensor<D> {
    fn shape(&self) -> Option<Vec<usize>> {
        Some(self.dims().to_vec())
    }
    fn values(&self) -> Vec<f64> {
        self.to_data()
            .convert::<f32>()
            .try_to_vec::<f32>()
            .unwrap()
            .values()
    }
}

/// Flat values with a known shape (e.g. a naive reference implementation's output).
pub struct Shaped<'a, T>(pub &'a [usize], pub &'a [T]);

impl<T> Compared for Shaped<'_, T>
where
    [T]: Compared,
{
    fn shape(&self) -> Option<Vec<usize>> {
        Some(self.0.to_vec())
    }
    fn values(&self) -> Vec<f64> {
        self.1.values()
    }
}

/// Asserts `|got − want| ≤ atol + rtol·|want|` element by element, after asserting equal shapes
/// (when both sides have one) and equal lengths. A non-finite value on either side fails, so
/// a NaN output can never pass (`f32::max` and `>` comparisons silently skip NaN).
#[track_caller]
pub fn assert_close<G, W>(what: &str, got: &G, want: &W, atol: f64, rtol: f64)
where
    G: Compared + ?Sized,
    W: Compared + ?Sized,
{
    if let (Some(g), Some(w)) = (got.shape(), want.shape()) {
        assert_eq!(g, w, "{what}: shape");
    }
    let (got, want) = (got.values(), want.values());
    assert_eq!(got.len(), want.len(), "{what}: number of elements");
    let mut bad = 0usize;
    let mut first = None;
    for (i, (&g, &w)) in got.iter().zip(&want).enumerate() {
        let fine = g.is_finite() && w.is_finite() && (g - w).abs() <= atol + rtol * w.abs();
        if !fine {
            bad += 1;
            first.get_or_insert(i);
        }
    }
    if let Some(i) = first {
        panic!(
            "{what}: {bad} of {} elements differ; first at {i}: got {}, want {} (atol {atol}, rtol {rtol})",
            got.len(),
            got[i],
            want[i]
        );
    }
}

// ---------------------------------------------------------------------------------------------
// Safetensors values

/// The little-endian values of tensor `key`, after checking it has the expected dtype (the
/// fixtures' dtypes are part of what is compared).
fn values<const B: usize, T>(
    st: &SafeTensors,
    key: &str,
    dtype: Dtype,
    from: fn([u8; B]) -> T,
) -> Vec<T> {
    let t = st.tensor(key).unwrap();
    assert_eq!(t.dtype(), dtype, "{key}");
    t.data()
        .chunks_exact(B)
        .map(|c| from(c.try_into().unwrap()))
        .collect()
}

pub fn i64s(st: &SafeTensors, key: &str) -> Vec<i64> {
    values(st, key, Dtype::I64, i64::from_le_bytes)
}

pub fn f32s(st: &SafeTensors, key: &str) -> Vec<f32> {
    values(st, key, Dtype::F32, f32::from_le_bytes)
}

pub fn f64s(st: &SafeTensors, key: &str) -> Vec<f64> {
    values(st, key, Dtype::F64, f64::from_le_bytes)
}

// ---------------------------------------------------------------------------------------------
// Python, for checking our files with the real tools

/// The command that creates the interpreter the interop tests use (`.ci/run` runs it).
pub const PYENV_SETUP: &str =
    "python3 -m venv target/pyenv && target/pyenv/bin/pip install h5py==3.16.0 numpy==2.4.6";

/// A Python interpreter that can `import h5py, numpy`: `target/pyenv/bin/python` (made by
/// `.ci/run`), else `$SG2IM_TEST_PYTHON`. Panics, naming the setup command, when neither works:
/// the interop tests must not pass by not running.
pub fn python() -> PathBuf {
    let venv = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/pyenv/bin/python");
    let candidates: Vec<PathBuf> = [
        Some(venv),
        std::env::var_os("SG2IM_TEST_PYTHON").map(PathBuf::from),
    ]
    .into_iter()
    .flatten()
    .collect();
    for py in &candidates {
        let works = Command::new(py)
            .args(["-c", "import h5py, numpy"])
            .output()
            .is_ok_and(|o| o.status.success());
        if works {
            return py.clone();
        }
    }
    panic!(
        "no Python with h5py and numpy (tried {candidates:?}); create it with `{PYENV_SETUP}` \
         in the repository root (what .ci/run does), or set SG2IM_TEST_PYTHON to one"
    );
}

/// Runs `script` with [`python`] and the given arguments; asserts it succeeded and returns its
/// stdout.
#[track_caller]
pub fn run_python(script: &str, args: &[impl AsRef<OsStr>]) -> String {
    let out = Command::new(python())
        .arg("-c")
        .arg(script)
        .args(args)
        .output()
        .unwrap();
    String::from_utf8(ok(out).stdout).unwrap()
}
