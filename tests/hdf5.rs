//! The HDF5 reader and writer against files written by h5py 3.16 / libhdf5 (the fixture's
//! `expected/*.h5`, produced by the original preprocess_vg.py) and their safetensors copies.
//! Integer data, so every comparison is exact.

mod common;

use common::vg_fixture as fixture;
use sg2im::io::hdf5::{Dtype, H5Reader, WriteData, write_file};

const SPLITS: [&str; 3] = ["train", "test", "val"];

/// (name, shape, values) of every tensor of `expected/<split>_h5.safetensors`.
fn safetensors_arrays(split: &str) -> Vec<(String, Vec<usize>, Vec<i32>)> {
    let bytes = std::fs::read(fixture(&format!("expected/{split}_h5.safetensors"))).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let mut out: Vec<_> = st
        .tensors()
        .into_iter()
        .map(|(name, t)| {
            assert_eq!(t.dtype(), safetensors::Dtype::I32, "{name}");
            let v = t
                .data()
                .chunks_exact(4)
                .map(|c| i32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                .collect();
            (name, t.shape().to_vec(), v)
        })
        .collect();
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

fn image_paths(split: &str) -> Vec<String> {
    let v: serde_json::Value =
        serde_json::from_slice(&std::fs::read(fixture("expected/image_paths.json")).unwrap())
            .unwrap();
    serde_json::from_value(v[split].clone()).unwrap()
}

const INT32: Dtype = Dtype::Int {
    bytes: 4,
    signed: true,
    big_endian: false,
};

#[test]
fn h5py_files_read_exactly() {
    for split in SPLITS {
        let r = H5Reader::open(fixture(&format!("expected/{split}.h5"))).unwrap();
        let arrays = safetensors_arrays(split);
        assert_eq!(arrays.len(), 12);
        let mut names: Vec<&str> = arrays.iter().map(|a| a.0.as_str()).collect();
        names.push("image_paths");
        names.sort();
        assert_eq!(r.dataset_names(), names);
        for (name, shape, values) in &arrays {
            assert_eq!(r.info(name).unwrap().dtype, INT32, "{split}/{name}");
            let a = r.read_i32(name).unwrap();
            assert_eq!(&a.shape, shape, "{split}/{name}");
            assert_eq!(&a.data, values, "{split}/{name}");
        }
        let info = r.info("image_paths").unwrap();
        assert_eq!(info.dtype, Dtype::VlenString { utf8: true });
        assert_eq!(r.read_strings("image_paths").unwrap(), image_paths(split));
    }
}

#[test]
fn written_files_hold_the_fixture_datasets_exactly() {
    let dir = common::scratch("written");
    for split in SPLITS {
        let arrays = safetensors_arrays(split);
        let paths = image_paths(split);
        let shapes: Vec<Vec<u64>> = arrays
            .iter()
            .map(|a| a.1.iter().map(|&d| d as u64).collect())
            .collect();
        let mut datasets: Vec<(&str, WriteData)> = arrays
            .iter()
            .zip(&shapes)
            .map(|(a, shape)| (a.0.as_str(), WriteData::I32 { shape, data: &a.2 }))
            .collect();
        datasets.push(("image_paths", WriteData::VlenStr(&paths)));
        let path = dir.join(format!("{split}.h5"));
        write_file(&path, &datasets).unwrap();

        let r = H5Reader::open(&path).unwrap();
        for (name, shape, values) in &arrays {
            assert_eq!(r.info(name).unwrap().dtype, INT32);
            let a = r.read_i32(name).unwrap();
            assert_eq!((&a.shape, &a.data), (shape, values), "{split}/{name}");
        }
        assert_eq!(r.read_strings("image_paths").unwrap(), paths);

        // Superblock version 0 with 8-byte offsets and the end-of-file address equal to the
        // file size, as libhdf5 checks when it opens a file.
        let bytes = std::fs::read(&path).unwrap();
        assert_eq!(&bytes[..8], b"\x89HDF\r\n\x1a\n");
        assert_eq!(bytes[8], 0);
        assert_eq!((bytes[13], bytes[14]), (8, 8));
        let eof = u64::from_le_bytes(bytes[40..48].try_into().unwrap());
        assert_eq!(eof, bytes.len() as u64);
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn damaged_files_give_one_clear_error() {
    let dir = common::scratch("damaged");
    let good = std::fs::read(fixture("expected/val.h5")).unwrap();

    let p = dir.join("not.h5");
    std::fs::write(&p, b"plain text, not HDF5").unwrap();
    let err = H5Reader::open(&p).err().unwrap().to_string();
    assert_eq!(
        err,
        format!(
            "{}: not an HDF5 file (no HDF5 signature found)",
            p.display()
        )
    );

    // Cut inside the raw data of the last dataset: metadata reads, the data does not.
    let p = dir.join("cut.h5");
    std::fs::write(&p, &good[..good.len() - 100]).unwrap();
    let r = H5Reader::open(&p).unwrap();
    let errs: Vec<String> = r
        .dataset_names()
        .iter()
        .filter_map(|n| {
            let info = r.info(n).ok()?;
            match info.dtype {
                Dtype::VlenString { .. } => r.read_strings(n).err(),
                _ => r.read_i32(n).err(),
            }
            .map(|e| e.to_string())
        })
        .collect();
    assert!(!errs.is_empty());
    for e in &errs {
        assert!(
            e.starts_with(&p.display().to_string()) && e.contains("truncated"),
            "{e}"
        );
    }
    std::fs::remove_dir_all(&dir).unwrap();
}
