//! The `torch.save` reader against checkpoints written by PyTorch 2.15 from the original
//! model (fixtures/torch_parity, see its README "Checkpoint formats"). Tensors must match
//! `ref_small.safetensors` bit for bit: loading is a copy, so there is no tolerance.

use std::path::Path;

mod common;

use common::torch_fixture as fixture;
use sg2im::io::torch::{self, PyValue, TorchDType, TorchTensor};

fn read(name: &str) -> Vec<u8> {
    std::fs::read(fixture(name)).unwrap()
}

/// `key<TAB>[d0, d1]<TAB>dtype` lines of a keys file.
fn keys_file(name: &str) -> Vec<(String, Vec<usize>, String)> {
    let text = String::from_utf8(read(name)).unwrap();
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .map(|l| {
            let f: Vec<&str> = l.split('\t').collect();
            assert_eq!(f.len(), 3, "{l}");
            let dims = f[1].trim_matches(|c| c == '[' || c == ']');
            let shape = dims
                .split(',')
                .filter(|d| !d.trim().is_empty())
                .map(|d| d.trim().parse().unwrap())
                .collect();
            (f[0].to_string(), shape, f[2].to_string())
        })
        .collect()
}

fn check_against_keys(
    sd: &indexmap::IndexMap<String, TorchTensor>,
    expected: &[(String, Vec<usize>, String)],
) {
    let got: Vec<(String, Vec<usize>, String)> = sd
        .iter()
        .map(|(k, t)| (k.clone(), t.shape.clone(), t.dtype.name().to_string()))
        .collect();
    assert_eq!(got, expected);
}

fn check_model_state(v: &PyValue, what: &str) {
    let sd = torch::state_dict(v.get("model_state").expect("model_state"), what).unwrap();
    check_against_keys(&sd, &keys_file("state_dict_keys_small.txt"));
    let st_bytes = read("ref_small.safetensors");
    let st = safetensors::SafeTensors::deserialize(&st_bytes).unwrap();
    assert_eq!(st.len(), sd.len());
    for (k, t) in &sd {
        let r = st.tensor(k).unwrap();
        assert_eq!(r.shape(), t.shape.as_slice(), "{k}");
        let dtype = match r.dtype() {
            safetensors::Dtype::F32 => TorchDType::F32,
            safetensors::Dtype::I64 => TorchDType::I64,
            d => panic!("{k}: unexpected dtype {d:?}"),
        };
        assert_eq!(dtype, t.dtype, "{k}");
        assert!(r.data() == t.data.as_slice(), "{k}: data differs");
    }
    // BatchNorm counters: int64 scalars, 1000 after the README's setup.
    let nbt: Vec<_> = sd
        .iter()
        .filter(|(k, _)| k.ends_with("num_batches_tracked"))
        .collect();
    assert!(!nbt.is_empty());
    for (k, t) in nbt {
        assert_eq!(t.dtype, TorchDType::I64, "{k}");
        assert!(t.shape.is_empty(), "{k}");
        assert_eq!(t.to_i64(), vec![1000], "{k}");
    }
}

fn check_model_kwargs(v: &PyValue) {
    let kwargs = v.get("model_kwargs").expect("model_kwargs");
    let mut json = kwargs.to_json();
    let vocab = json.as_object_mut().unwrap().remove("vocab").unwrap();
    let mut expected: serde_json::Value =
        serde_json::from_slice(&read("model_kwargs.json")).unwrap();
    expected.as_object_mut().unwrap().remove("vocab");
    assert_eq!(json, expected);
    let expected_vocab: serde_json::Value = serde_json::from_slice(&read("vocab.json")).unwrap();
    assert_eq!(vocab, expected_vocab);
    // Tuples stay tuples.
    assert!(matches!(kwargs.get("image_size"), Some(PyValue::Tuple(t)) if t.len() == 2));
    assert_eq!(kwargs.get("mask_size").and_then(PyValue::as_i64), Some(8));
}

#[test]
fn zip_checkpoint_matches_safetensors() {
    let v = torch::load(&fixture("ref_small.pt")).unwrap();
    let keys: Vec<&str> = v
        .as_dict()
        .unwrap()
        .iter()
        .map(|(k, _)| k.as_str().unwrap())
        .collect();
    assert_eq!(keys, ["model_kwargs", "model_state"]);
    check_model_state(&v, "ref_small.pt: model_state");
    check_model_kwargs(&v);
}

#[test]
fn legacy_checkpoint_matches_safetensors() {
    let v = torch::load(&fixture("ref_small_legacy.pt")).unwrap();
    check_model_state(&v, "ref_small_legacy.pt: model_state");
    check_model_kwargs(&v);
    // Both formats hold the same object.
    assert_eq!(v, torch::load(&fixture("ref_small.pt")).unwrap());
}

#[test]
fn full_legacy_checkpoint() {
    let v = torch::load(&fixture("ref_small_full_legacy.pt")).unwrap();
    let keys: Vec<&str> = v
        .as_dict()
        .unwrap()
        .iter()
        .map(|(k, _)| k.as_str().unwrap())
        .collect();
    assert_eq!(
        keys,
        [
            "args",
            "model_kwargs",
            "model_state",
            "d_obj_kwargs",
            "d_obj_state",
            "d_img_kwargs",
            "d_img_state"
        ]
    );
    check_model_state(&v, "ref_small_full_legacy.pt: model_state");
    check_model_kwargs(&v);

    let args = v.get("args").unwrap();
    assert_eq!(args.as_dict().unwrap().len(), 63);
    assert_eq!(args.get("dataset").and_then(PyValue::as_str), Some("coco"));
    assert_eq!(args.get("batch_size").and_then(PyValue::as_i64), Some(3));
    assert_eq!(
        args.get("num_iterations").and_then(PyValue::as_i64),
        Some(1_000_000)
    );
    assert_eq!(
        args.get("learning_rate").and_then(PyValue::as_f64),
        Some(1e-4)
    );
    assert_eq!(args.get("num_train_samples"), Some(&PyValue::None));
    assert_eq!(
        args.get("shuffle_val").and_then(PyValue::as_bool),
        Some(true)
    );
    assert_eq!(args.get("timing").and_then(PyValue::as_bool), Some(false));
    assert_eq!(
        args.get("refinement_network_dims"),
        Some(&PyValue::Tuple(vec![
            PyValue::Int(32),
            PyValue::Int(16),
            PyValue::Int(8)
        ]))
    );
    assert_eq!(
        args.get("min_object_size").and_then(PyValue::as_f64),
        Some(0.02)
    );
    assert_eq!(
        args.get("d_obj_arch").and_then(PyValue::as_str),
        Some("C4-64-2,C4-128-2,C4-256-2")
    );
    assert_eq!(
        args.get("output_dir").and_then(PyValue::as_str),
        Some("/tmp/ref")
    );

    let expected_vocab: serde_json::Value = serde_json::from_slice(&read("vocab.json")).unwrap();
    let mut d_obj = v.get("d_obj_kwargs").unwrap().to_json();
    assert_eq!(
        d_obj.as_object_mut().unwrap().remove("vocab"),
        Some(expected_vocab)
    );
    assert_eq!(
        d_obj,
        serde_json::json!({"arch": "C4-64-2,C4-128-2,C4-256-2", "normalization": "batch",
            "activation": "leakyrelu-0.2", "padding": "valid", "object_size": 32})
    );
    assert_eq!(
        v.get("d_img_kwargs").unwrap().to_json(),
        serde_json::json!({"arch": "C4-64-2,C4-128-2,C4-256-2", "normalization": "batch",
            "activation": "leakyrelu-0.2", "padding": "valid"})
    );

    let expected = keys_file("state_dict_keys_small_discriminators.txt");
    let mut got = Vec::new();
    for (name, prefix) in [("d_obj_state", "d_obj."), ("d_img_state", "d_img.")] {
        let sd = torch::state_dict(v.get(name).unwrap(), name).unwrap();
        assert!(!sd.is_empty());
        for (k, t) in sd {
            assert_eq!(t.data.len(), t.numel() * t.dtype.size());
            got.push((
                format!("{prefix}{k}"),
                t.shape.clone(),
                t.dtype.name().to_string(),
            ));
        }
    }
    assert_eq!(got, expected);
}

#[test]
fn not_a_checkpoint_is_one_clear_line() {
    let expect = "x.pt: not a PyTorch checkpoint (expected a zip archive with data.pkl or a legacy torch.save stream)";
    for bytes in [
        &b"hello world\n"[..],
        &b""[..],
        &[0u8; 100][..],
        &b"{\"model_state\": {}}"[..],
    ] {
        let e = torch::load_bytes(bytes, "x.pt").unwrap_err().to_string();
        assert_eq!(e, expect);
    }
    // A pickle that is not a torch.save stream.
    let e = torch::load_bytes(b"\x80\x02}q\x00.", "x.pt")
        .unwrap_err()
        .to_string();
    assert_eq!(
        e,
        format!("{expect}: a pickle whose first value is not the torch.save magic number")
    );
    // A zip archive without data.pkl.
    let zip = zip_with(&[("archive/other.txt", b"hi")]);
    let e = torch::load_bytes(&zip, "x.pt").unwrap_err().to_string();
    assert_eq!(
        e,
        format!("{expect}: zip archive without <folder>/data.pkl")
    );
    // A missing file names the file.
    let e = torch::load(Path::new("/nonexistent/x.pt"))
        .unwrap_err()
        .to_string();
    assert!(e.starts_with("/nonexistent/x.pt: "), "{e}");
}

fn zip_with(entries: &[(&str, &[u8])]) -> Vec<u8> {
    use std::io::Write;
    let mut w = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    let opts =
        zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Stored);
    for (name, data) in entries {
        w.start_file(*name, opts).unwrap();
        w.write_all(data).unwrap();
    }
    w.finish().unwrap().into_inner()
}

#[test]
fn zip_entries_are_checked() {
    let full = read("ref_small.pt");
    let mut z = zip::ZipArchive::new(std::io::Cursor::new(&full[..])).unwrap();
    let pkl = {
        use std::io::Read;
        let mut s = Vec::new();
        z.by_name("ref_small/data.pkl")
            .unwrap()
            .read_to_end(&mut s)
            .unwrap();
        s
    };
    // A storage entry missing.
    let e = torch::load_bytes(&zip_with(&[("ref_small/data.pkl", &pkl)]), "x.pt")
        .unwrap_err()
        .to_string();
    assert_eq!(
        e,
        "x.pt: storage '0' is missing: no zip entry ref_small/data/0"
    );
    // Big-endian files are refused.
    let e = torch::load_bytes(
        &zip_with(&[("a/data.pkl", &pkl), ("a/byteorder", b"big")]),
        "x.pt",
    )
    .unwrap_err()
    .to_string();
    assert_eq!(
        e,
        "x.pt: big-endian checkpoint: only little-endian files are supported"
    );
}

#[test]
fn legacy_big_endian_is_refused() {
    // Same stream with sys_info's `little_endian` True (0x88) flipped to False (0x89).
    let mut bytes = read("ref_small_legacy.pt");
    let pat = b"little_endianq\x02\x88";
    let at = bytes
        .windows(pat.len())
        .position(|w| w == pat)
        .expect("sys_info layout");
    bytes[at + pat.len() - 1] = 0x89;
    let e = torch::load_bytes(&bytes, "x.pt").unwrap_err().to_string();
    assert_eq!(
        e,
        "x.pt: big-endian checkpoint: only little-endian files are supported"
    );
}

#[test]
fn truncated_legacy_file_names_the_storage() {
    let bytes = read("ref_small_legacy.pt");
    let cut = &bytes[..bytes.len() - 100];
    let e = torch::load_bytes(cut, "x.pt").unwrap_err().to_string();
    assert!(
        e.starts_with("x.pt: truncated legacy checkpoint: storage '"),
        "{e}"
    );
    assert!(e.contains(" needs ") && e.ends_with(" left"), "{e}");
    let e = torch::load_bytes(&bytes[..7], "x.pt")
        .unwrap_err()
        .to_string();
    assert_eq!(e, "x.pt: truncated legacy checkpoint: only 7 bytes");
    let zip = read("ref_small.pt");
    let e = torch::load_bytes(&zip[..zip.len() / 2], "x.pt")
        .unwrap_err()
        .to_string();
    assert!(
        e.starts_with("x.pt: unreadable zip archive (truncated or corrupt?): "),
        "{e}"
    );
    // One extra byte is reported too.
    let mut long = bytes.clone();
    long.push(0);
    let e = torch::load_bytes(&long, "x.pt").unwrap_err().to_string();
    assert_eq!(
        e,
        format!(
            "x.pt: 1 unexpected bytes after the last storage (offset {})",
            bytes.len()
        )
    );
}

/// A small legacy file written by our writer: every strict prefix must be rejected.
#[test]
fn every_truncation_of_a_small_file_is_an_error() {
    let value = common::small_torch_value();
    let bytes = torch::to_legacy_bytes(&value).unwrap();
    assert_eq!(torch::load_bytes(&bytes, "x.pt").unwrap(), value);
    for n in 0..bytes.len() {
        assert!(
            torch::load_bytes(&bytes[..n], "x.pt").is_err(),
            "prefix of {n} bytes loaded"
        );
    }
}

/// Prefixes of the real files (sampled: every byte of the pickle part, strided after it).
#[test]
fn truncated_real_files_are_errors() {
    for name in ["ref_small_legacy.pt", "ref_small.pt"] {
        let bytes = read(name);
        let mut n = 0;
        while n < bytes.len() {
            assert!(
                torch::load_bytes(&bytes[..n], name).is_err(),
                "{name}: prefix of {n} bytes loaded"
            );
            n += if n < 4096 { 1 } else { 997 };
        }
    }
}

/// Garbage and corrupted files must give errors or values, never panics.
#[test]
fn garbage_never_panics() {
    let mut seed = 0x2545_f491_4f6c_dd1du64;
    let mut next = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    for len in [1usize, 2, 3, 10, 100, 1000, 10_000] {
        for prefix in [&b""[..], b"\x80\x02", b"PK\x03\x04"] {
            let mut b = prefix.to_vec();
            b.extend((0..len).map(|_| next() as u8));
            assert!(torch::load_bytes(&b, "g.pt").is_err());
        }
    }
    // Random byte flips in a small valid file and in the pickle of a real one.
    let small = torch::to_legacy_bytes(&common::small_torch_value()).unwrap();
    let real = read("ref_small_legacy.pt");
    for (bytes, span) in [(&small, small.len()), (&real, 4000)] {
        for _ in 0..3000 {
            let mut b = bytes.clone();
            for _ in 0..1 + next() % 3 {
                let at = (next() as usize) % span;
                b[at] = next() as u8;
            }
            let _ = torch::load_bytes(&b, "f.pt");
        }
    }
}

#[test]
fn writer_round_trips_the_real_checkpoint() {
    let v = torch::load(&fixture("ref_small_full_legacy.pt")).unwrap();
    let bytes = torch::to_legacy_bytes(&v).unwrap();
    assert_eq!(torch::load_bytes(&bytes, "rt.pt").unwrap(), v);
    let dir = common::scratch("writer");
    let path = dir.join("small.pt");
    torch::save_legacy(&path, &common::small_torch_value()).unwrap();
    assert_eq!(torch::load(&path).unwrap(), common::small_torch_value());
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn state_dict_errors_name_the_key() {
    let s = |x: &str| PyValue::Str(x.to_string());
    let t = PyValue::Tensor(TorchTensor::from_f32(vec![1], &[0.5]));
    let sd = torch::state_dict(
        &PyValue::Dict(vec![(s("module.a.weight"), t.clone()), (s("b"), t.clone())]),
        "m",
    )
    .unwrap();
    assert_eq!(sd.keys().collect::<Vec<_>>(), ["a.weight", "b"]);
    let e = torch::state_dict(
        &PyValue::Dict(vec![(s("a"), t.clone()), (s("b.bias"), PyValue::Int(3))]),
        "x.pt: model_state",
    )
    .unwrap_err()
    .to_string();
    assert_eq!(
        e,
        "x.pt: model_state: 'b.bias' holds an int, expected a tensor"
    );
    let e = torch::state_dict(&PyValue::List(vec![]), "x.pt: model_state")
        .unwrap_err()
        .to_string();
    assert_eq!(
        e,
        "x.pt: model_state: expected a dict of tensors, found a list"
    );
    let e = torch::state_dict(
        &PyValue::Dict(vec![(s("module.a"), t.clone()), (s("a"), t)]),
        "m",
    )
    .unwrap_err()
    .to_string();
    assert_eq!(e, "m: key 'a' appears twice (with and without 'module.')");
}

/// Central-directory entries of a zip file: (name, offset of the entry). Offsets from the
/// end-of-central-directory record (the fixtures need no zip64 values).
fn central_directory(zip: &[u8]) -> Vec<(String, usize)> {
    let u16_at = |at: usize| u16::from_le_bytes([zip[at], zip[at + 1]]) as usize;
    let u32_at = |at: usize| u32::from_le_bytes(zip[at..at + 4].try_into().unwrap()) as usize;
    let eocd = zip
        .windows(4)
        .rposition(|w| w == b"PK\x05\x06")
        .expect("end of central directory");
    let (count, mut at) = (u16_at(eocd + 10), u32_at(eocd + 16));
    let mut out = Vec::with_capacity(count);
    for _ in 0..count {
        assert_eq!(&zip[at..at + 4], b"PK\x01\x02");
        let name_len = u16_at(at + 28);
        let name = String::from_utf8(zip[at + 46..at + 46 + name_len].to_vec()).unwrap();
        out.push((name, at));
        at += 46 + name_len + u16_at(at + 30) + u16_at(at + 32);
    }
    out
}

fn entry(cd: &[(String, usize)], name: &str) -> usize {
    cd.iter().find(|(n, _)| n == name).unwrap().1
}

#[test]
fn a_flipped_byte_in_a_tensor_fails_the_crc_check() {
    let mut bytes = read("ref_small.pt");
    assert!(torch::load_bytes(&bytes, "ok.pt").is_ok());
    let cd = central_directory(&bytes);
    let at = entry(&cd, "ref_small/data/1");
    let header = u32::from_le_bytes(bytes[at + 42..at + 46].try_into().unwrap()) as usize;
    let data = header
        + 30
        + u16::from_le_bytes([bytes[header + 26], bytes[header + 27]]) as usize
        + u16::from_le_bytes([bytes[header + 28], bytes[header + 29]]) as usize;
    // A byte in the middle of the stored tensor data (1,600 bytes): still a valid float.
    bytes[data + 800] ^= 0x01;
    let e = torch::load_bytes(&bytes, "flip.pt")
        .unwrap_err()
        .to_string();
    assert_eq!(
        e,
        "flip.pt: zip entry ref_small/data/1: CRC-32 mismatch (the file is corrupt)"
    );
}

#[test]
fn a_central_directory_entry_pointing_at_another_member_is_refused() {
    let mut bytes = read("ref_small.pt");
    let cd = central_directory(&bytes);
    // data/0 and data/6 are both 4,096 bytes: without the name check the redirected entry
    // loads data/6's weights as storage 0, silently.
    let (a, b) = (
        entry(&cd, "ref_small/data/0"),
        entry(&cd, "ref_small/data/6"),
    );
    // Entry data/0 takes data/6's CRC, sizes (offsets 16..28) and local header offset (42..46):
    // consistent in every field but the member's name.
    let fields: Vec<u8> = bytes[b + 16..b + 28].to_vec();
    bytes[a + 16..a + 28].copy_from_slice(&fields);
    let offset: Vec<u8> = bytes[b + 42..b + 46].to_vec();
    bytes[a + 42..a + 46].copy_from_slice(&offset);
    let e = torch::load_bytes(&bytes, "cd.pt").unwrap_err().to_string();
    assert_eq!(
        e,
        "cd.pt: zip entry ref_small/data/0: its local header names \"ref_small/data/6\" \
         (corrupt central directory)"
    );
    // Through the binary: exit code 2 and that one line, no model written.
    let dir = common::scratch("cd");
    std::fs::write(dir.join("cd.pt"), &bytes).unwrap();
    let out = common::sg2im(&[
        "import-torch",
        "--input",
        common::s(&dir.join("cd.pt")),
        "--output",
        common::s(&dir.join("m.safetensors")),
    ]);
    common::assert_one_line_error(&out, &["cd.pt", "local header names"]);
    assert!(!dir.join("m.safetensors").exists());
    std::fs::remove_dir_all(&dir).unwrap();
}
