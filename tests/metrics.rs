//! `sg2im metrics` against torch-fidelity 0.4.0 on `../shared/fixtures/metrics` (a random-weight
//! Inception in the real weights file's layout, 80 + 80 PNGs; see its README for how the
//! expected values were produced).
//!
//! The network runs on the 160 fixture images once per test binary for the library-level
//! checks (shared through a `OnceLock`) and once through the binary end to end.

use safetensors::SafeTensors;
use sg2im::io::torch::{PyValue, TorchTensor, save_legacy};
use sg2im::metrics::fidelity::{self, FidStats, KidOptions};
use sg2im::metrics::inception::{Features, InceptionV3};
use sg2im::metrics::{self, resize};
use sg2im::rng::RandomState;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

fn fixture(p: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../shared/fixtures/metrics")
        .join(p)
}

fn expected_json() -> serde_json::Value {
    let s = std::fs::read_to_string(fixture("expected.json")).unwrap();
    serde_json::from_str(&s).unwrap()
}

fn expected_tensor(name: &str) -> (Vec<usize>, Vec<f32>) {
    let bytes = std::fs::read(fixture("expected.safetensors")).unwrap();
    let st = SafeTensors::deserialize(&bytes).unwrap();
    let t = st.tensor(name).unwrap();
    let v = t
        .data()
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect();
    (t.shape().to_vec(), v)
}

/// Features of images_a and images_b from our network (computed once).
fn features() -> &'static (Features, Features) {
    static F: OnceLock<(Features, Features)> = OnceLock::new();
    F.get_or_init(|| {
        let net = InceptionV3::load(&fixture("inception_random.pth")).unwrap();
        let run = |dir: &str| {
            let paths = metrics::list_images(&fixture(dir)).unwrap();
            metrics::extract_features(&net, &paths, 32, &mut |_| {}).unwrap()
        };
        (run("images_a"), run("images_b"))
    })
}

fn scratch(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("sg2im-metrics-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn sg2im(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_sg2im"))
        .arg("metrics")
        .args(args)
        .output()
        .unwrap()
}

fn path_str(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// Relative closeness with a stated tolerance; non-finite values fail.
fn assert_rel(name: &str, got: f64, want: f64, rel: f64) {
    assert!(got.is_finite(), "{name}: {got} is not finite");
    let err = (got - want).abs() / want.abs().max(1e-12);
    eprintln!("{name}: relative difference {err:.2e} (tolerance {rel:.0e})");
    assert!(
        err <= rel,
        "{name}: {got} vs {want} (relative {err:e} > {rel:e})"
    );
}

#[test]
fn resized_input_matches_tensorflow1_bilinear() {
    let (shape, want) = expected_tensor("a0.resized_299");
    assert_eq!(shape, [1, 3, 299, 299]);
    let (rgb, w, h) = sg2im::data::image::load_rgb(fixture("images_a/a000.png")).unwrap();
    let mut got = vec![0.0f32; 3 * 299 * 299];
    resize::resize_normalize(&rgb, h, w, 299, &mut got);
    // The same float32 operations in the same order as torch-fidelity: bit-exact expected;
    // allow one ulp at 1.0 in case the compiler contracts a multiply-add.
    let max = got
        .iter()
        .zip(&want)
        .map(|(a, b)| (a - b).abs())
        .fold(0.0f32, f32::max);
    eprintln!("a0.resized_299: max |diff| {max:e}");
    assert!(max <= 2.4e-7, "max |diff| {max}");
}

#[test]
fn every_feature_layer_matches_torch_fidelity() {
    let (a, b) = features();
    for (set, f) in [("a", a), ("b", b)] {
        for (layer, got, d) in [
            ("64", &f.f64, 64),
            ("192", &f.f192, 192),
            ("768", &f.f768, 768),
            ("2048", &f.f2048, 2048),
            ("logits_unbiased", &f.logits_unbiased, 1008),
        ] {
            let (shape, want) = expected_tensor(&format!("{set}.features_{layer}"));
            assert_eq!(shape, [80, d], "{set}.{layer}");
            assert_eq!(got.len(), want.len(), "{set}.{layer}");
            assert!(got.iter().all(|v| v.is_finite()), "{set}.{layer}");
            // float32 through up to ~100 layers with a different summation order (GEMM
            // blocking, BatchNorm folded into the weights, Winograd transforms for the
            // stride-1 convolutions): relative to the layer's largest value, measured 2e-7..4e-7
            // (64, 192), 7e-6..9e-6 (768), 1.8e-5..2.8e-5 (logits) and 3.2e-5..6.3e-5 (2048) (with
            // direct im2col convolutions: 3e-6..5e-6, 7e-6..1.6e-5, 1.4e-5..3.7e-5); 2e-4
            // leaves room for other CPUs' GEMM kernels. A real
            // defect is far above it (averaging the padded zeros in the pooling branch, say,
            // gives 0.14 on features_768).
            let scale = want.iter().fold(0.0f32, |m, v| m.max(v.abs()));
            let max = got
                .iter()
                .zip(&want)
                .map(|(x, y)| (x - y).abs())
                .fold(0.0f32, f32::max);
            eprintln!(
                "{set}.features_{layer}: max |diff| / max |value| = {:.2e}",
                max / scale
            );
            assert!(
                max <= 2e-4 * scale,
                "{set}.features_{layer}: max |diff| {max} vs scale {scale}"
            );
        }
    }
    let (_, mu) = expected_tensor("a.mu");
    let stats = FidStats::from_features(&a.f2048, 2048).unwrap();
    for (m, w) in stats.mu.iter().zip(&mu) {
        assert!((m - f64::from(*w)).abs() <= 1e-4 * f64::from(w.abs()).max(1e-2));
    }
}

#[test]
fn fid_on_64_features_and_unshuffled_inception_score() {
    let (a, b) = features();
    let e = expected_json();
    // 64-d, 80 samples: full-rank covariances, so the only differences are the features'
    // float32 rounding (above) propagated through FID: 1e-4 relative (measured 4e-8).
    let s1 = FidStats::from_features(&a.f64, 64).unwrap();
    let s2 = FidStats::from_features(&b.f64, 64).unwrap();
    let fid = fidelity::frechet_distance(&s1, &s2).unwrap();
    assert_rel(
        "fid_a_b_on_64_features",
        fid,
        e["fid_a_b_on_64_features"].as_f64().unwrap(),
        1e-4,
    );
    let want = &e["inception_score_a_splits4_noshuffle"];
    let (m, s) = fidelity::inception_score(&a.logits_unbiased, 1008, 4, None).unwrap();
    // IS in f64 from logits that agree to ≤ 1.6e-5 of their scale: 1e-5 relative on the mean
    // (measured 2e-8); the std, a spread of 4 scores, 1e-3 (measured 1.3e-6).
    assert_rel(
        "IS mean",
        m,
        want["inception_score_mean"].as_f64().unwrap(),
        1e-5,
    );
    assert_rel(
        "IS std",
        s,
        want["inception_score_std"].as_f64().unwrap(),
        1e-3,
    );
}

#[test]
fn formulas_on_torch_fidelitys_own_features() {
    // The expected features themselves through our IS/FID/KID: isolates the formulas and the
    // RNG from the network. torch-fidelity's KID kernels are float32 (numpy on float32
    // features), ours f64: 1e-5 relative. IS is f64 on both sides: 1e-9.
    let e = expected_json();
    let r = &e["torch_fidelity_calculate_metrics"]["results"];
    let (_, la) = expected_tensor("a.features_logits_unbiased");
    let (m, s) = fidelity::inception_score(&la, 1008, 10, Some(2020)).unwrap();
    assert_rel(
        "IS mean",
        m,
        r["inception_score_mean"].as_f64().unwrap(),
        1e-9,
    );
    assert_rel(
        "IS std",
        s,
        r["inception_score_std"].as_f64().unwrap(),
        1e-7,
    );
    let (_, fa) = expected_tensor("a.features_2048");
    let (_, fb) = expected_tensor("b.features_2048");
    let (km, ks) = fidelity::kernel_inception_distance(
        &fa,
        &fb,
        2048,
        KidOptions {
            subsets: 5,
            subset_size: 40,
            seed: 2020,
        },
    )
    .unwrap();
    assert_rel(
        "KID mean",
        km,
        r["kernel_inception_distance_mean"].as_f64().unwrap(),
        1e-5,
    );
    assert_rel(
        "KID std",
        ks,
        r["kernel_inception_distance_std"].as_f64().unwrap(),
        1e-4,
    );
    // FID: 80 samples in 2048 dimensions, covariances of rank 79. torch-fidelity sums the
    // square roots of np.linalg.eigvals of the non-symmetric Σ₁Σ₂, whose ~1970 zero eigenvalues
    // come out as rounding noise; we drop them (see fidelity.rs): 1e-3 relative (the fixture
    // README's figure; measured 9e-7); the 64-d case is the tight check.
    let s1 = FidStats::from_features(&fa, 2048).unwrap();
    let s2 = FidStats::from_features(&fb, 2048).unwrap();
    let fid = fidelity::frechet_distance(&s1, &s2).unwrap();
    assert_rel("FID", fid, e["fid_a_b"].as_f64().unwrap(), 1e-3);
    let (_, a64) = expected_tensor("a.features_64");
    let (_, b64) = expected_tensor("b.features_64");
    let fid64 = fidelity::frechet_distance(
        &FidStats::from_features(&a64, 64).unwrap(),
        &FidStats::from_features(&b64, 64).unwrap(),
    )
    .unwrap();
    // Same features, full rank: only torch-fidelity's float32 mean (np.mean of float32) differs
    // (measured 6e-8).
    assert_rel(
        "FID 64",
        fid64,
        e["fid_a_b_on_64_features"].as_f64().unwrap(),
        1e-6,
    );
}

#[test]
fn numpy_random_state_sequences_torch_fidelity_draws() {
    // Recorded with numpy 2.4.6 (`r = np.random.RandomState(2020); r.permutation(80)`, and
    // on a fresh RandomState(2020): `r.choice(80, 40, replace=False)` twice) — the IS shuffle
    // and the first KID subset pair of the fixture's call.
    let perm = RandomState::new(2020).permutation(80);
    assert_eq!(
        perm,
        [
            47, 45, 42, 46, 13, 31, 7, 35, 70, 17, 25, 64, 68, 23, 12, 40, 50, 74, 0, 75, 54, 41,
            37, 44, 66, 77, 63, 30, 14, 27, 61, 43, 16, 33, 2, 39, 18, 19, 53, 57, 59, 76, 34, 36,
            49, 4, 52, 22, 60, 6, 26, 73, 21, 69, 10, 5, 15, 58, 1, 65, 38, 79, 20, 28, 72, 62, 55,
            11, 51, 9, 24, 32, 48, 29, 56, 71, 3, 78, 67, 8
        ]
    );
    let mut r = RandomState::new(2020);
    let c1 = r.choice_without_replacement(80, 40).unwrap();
    let c2 = r.choice_without_replacement(80, 40).unwrap();
    // Structural: choice without replacement is the permutation's prefix, distinct indices.
    assert_eq!(c1, perm[..40]);
    assert_eq!(
        c2,
        [
            64, 74, 26, 5, 63, 77, 23, 60, 48, 68, 1, 2, 8, 31, 22, 43, 28, 66, 11, 49, 42, 54, 72,
            40, 71, 75, 76, 78, 70, 4, 46, 61, 38, 69, 51, 45, 41, 29, 25, 53
        ]
    );
    let mut sorted = c2.clone();
    sorted.sort_unstable();
    sorted.dedup();
    assert_eq!(sorted.len(), 40);
}

#[test]
fn command_end_to_end_matches_calculate_metrics_and_npz_round_trip() {
    let dir = scratch("e2e");
    let (json, npz) = (dir.join("out.json"), dir.join("stats_a.npz"));
    let out = sg2im(&[
        "--input1",
        path_str(&fixture("images_a")),
        "--input2",
        path_str(&fixture("images_b")),
        "--isc",
        "--fid",
        "--kid",
        "--kid_subsets",
        "5",
        "--kid_subset_size",
        "40",
        "--inception_weights",
        path_str(&fixture("inception_random.pth")),
        "--json",
        path_str(&json),
        "--save_stats",
        path_str(&npz),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let got: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    let e = expected_json();
    let want = &e["torch_fidelity_calculate_metrics"]["results"];
    // Tolerances (measured in parentheses): features agree to ≤ 5e-5 of their scale (see
    // every_feature_layer_…); IS mean 1e-5 (4.4e-8), its std — a spread of 10 scores, more
    // sensitive — 1e-4 (1.4e-6); KID (float32 kernels in torch-fidelity) 1e-4 (1e-7) and its
    // std 1e-3 (2.8e-6); FID on rank-deficient 2048-d covariances 1e-4 (1.5e-6; the fixture
    // README warns of up to ~1e-3 from numpy's eigvals noise, see formulas_on_…).
    for (key, rel) in [
        ("inception_score_mean", 1e-5),
        ("inception_score_std", 1e-4),
        ("frechet_inception_distance", 1e-4),
        ("kernel_inception_distance_mean", 1e-4),
        ("kernel_inception_distance_std", 1e-3),
    ] {
        let g = got[key].as_f64().unwrap_or(f64::NAN);
        assert_rel(key, g, want[key].as_f64().unwrap(), rel);
        // Printed one per line with torch-fidelity's names.
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(stdout.contains(&format!("{key}: ")), "{stdout}");
    }
    assert_eq!(got.as_object().unwrap().len(), 5);
    // The statistics file: pytorch-fid's layout, float64, the features' mean.
    let mu = sg2im::io::npz::read_npz_array(&npz, "mu").unwrap();
    let sigma = sg2im::io::npz::read_npz_array(&npz, "sigma").unwrap();
    assert_eq!(
        (mu.shape.clone(), sigma.shape.clone()),
        (vec![2048], vec![2048, 2048])
    );
    // FID is symmetric: input1 = B against A's saved statistics gives the same value
    // (through the N×N path with a full Σ₂ instead of the features of both): 1e-9 relative.
    let out2 = sg2im(&[
        "--input1",
        path_str(&fixture("images_b")),
        "--input2",
        path_str(&npz),
        "--fid",
        "--inception_weights",
        path_str(&fixture("inception_random.pth")),
    ]);
    assert!(
        out2.status.success(),
        "{}",
        String::from_utf8_lossy(&out2.stderr)
    );
    let line = String::from_utf8_lossy(&out2.stdout).to_string();
    let fid2: f64 = line
        .trim()
        .strip_prefix("frechet_inception_distance: ")
        .and_then(|v| v.parse().ok())
        .unwrap_or(f64::NAN);
    assert_rel(
        "FID via .npz",
        fid2,
        got["frechet_inception_distance"].as_f64().unwrap(),
        1e-9,
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// Runs the binary, expects exit code 2 and one stderr line containing `needle`.
fn expect_bad(args: &[&str], needle: &str) {
    let out = sg2im(args);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
    let lines: Vec<&str> = err.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 1, "{args:?}: {err}");
    assert!(
        lines[0].contains(needle),
        "{args:?}: {err} lacks {needle:?}"
    );
}

fn write_pth(path: &Path, tensors: Vec<(&str, TorchTensor)>) {
    let dict = PyValue::Dict(
        tensors
            .into_iter()
            .map(|(k, t)| (PyValue::Str(k.into()), PyValue::Tensor(t)))
            .collect(),
    );
    save_legacy(path, &dict).unwrap();
}

#[test]
fn bad_inputs_get_one_line_and_exit_code_2() {
    let dir = scratch("bad");
    let w = fixture("inception_random.pth");
    let (a, b) = (fixture("images_a"), fixture("images_b"));
    let empty = dir.join("empty");
    std::fs::create_dir_all(&empty).unwrap();
    std::fs::write(empty.join("notes.txt"), "not an image").unwrap();
    expect_bad(
        &[
            "--input1",
            path_str(&empty),
            "--isc",
            "--inception_weights",
            path_str(&w),
        ],
        "no images",
    );
    // An unreadable image is named.
    let broken = dir.join("broken");
    std::fs::create_dir_all(&broken).unwrap();
    for i in 0..3 {
        std::fs::copy(
            a.join(format!("a00{i}.png")),
            broken.join(format!("x{i}.png")),
        )
        .unwrap();
    }
    std::fs::write(broken.join("x1.png"), b"\x89PNG\r\n\x1a\ntruncated").unwrap();
    expect_bad(
        &[
            "--input1",
            path_str(&broken),
            "--isc",
            "--isc_splits",
            "1",
            "--inception_weights",
            path_str(&w),
        ],
        "x1.png",
    );
    // Weights: a missing key and a wrong shape are named.
    let missing = dir.join("missing.pth");
    write_pth(
        &missing,
        vec![(
            "Conv2d_1a_3x3.conv.weight",
            TorchTensor::from_f32(vec![32, 3, 3, 3], &[0.0; 864]),
        )],
    );
    expect_bad(
        &[
            "--input1",
            path_str(&a),
            "--isc",
            "--inception_weights",
            path_str(&missing),
        ],
        "missing key 'Conv2d_1a_3x3.bn.weight'",
    );
    let shape = dir.join("shape.pth");
    write_pth(
        &shape,
        vec![(
            "Conv2d_1a_3x3.conv.weight",
            TorchTensor::from_f32(vec![32, 3, 5, 5], &[0.0; 2400]),
        )],
    );
    expect_bad(
        &[
            "--input1",
            path_str(&a),
            "--isc",
            "--inception_weights",
            path_str(&shape),
        ],
        "'Conv2d_1a_3x3.conv.weight' has shape [32, 3, 5, 5], expected [32, 3, 3, 3]",
    );
    // Too few images for the KID subset size (checked before the network runs).
    expect_bad(
        &[
            "--input1",
            path_str(&a),
            "--input2",
            path_str(&b),
            "--kid",
            "--inception_weights",
            path_str(&w),
        ],
        "KID subset size 1000",
    );
    // --fid without a second input.
    expect_bad(
        &[
            "--input1",
            path_str(&a),
            "--fid",
            "--inception_weights",
            path_str(&w),
        ],
        "--input2",
    );
    // An .npz without 'sigma' is named with the array.
    let npz = dir.join("mu_only.npz");
    sg2im::io::npz::write_npz(
        &npz,
        &[(
            "mu",
            &sg2im::io::npz::NpyArray {
                shape: vec![2048],
                data: vec![0.0; 2048],
            },
        )],
    )
    .unwrap();
    expect_bad(
        &[
            "--input1",
            path_str(&a),
            "--input2",
            path_str(&npz),
            "--fid",
            "--inception_weights",
            path_str(&w),
        ],
        "no array 'sigma'",
    );
    let _ = std::fs::remove_dir_all(&dir);
}
