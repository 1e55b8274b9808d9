//! A small, dependency-free HDF5 reader and writer covering what the Visual Genome pipeline
//! exchanges with the original (§17.4, §21.7): flat files whose root group holds contiguous,
//! uncompressed numeric datasets and one variable-length UTF-8 string dataset.
//!
//! Why not a crate: the maintained bindings (`hdf5`, `hdf5-metno`) need the C library, and the
//! pure-Rust crates found were very large (≈100k lines), young and released at a pace that makes
//! their on-disk output a moving target, while the subset needed here fits in two files.
//!
//! * [`write_file`] writes what h5py 3 / libhdf5 1.8+ (and 1.6) read: superblock version 0, a
//!   symbol-table root group (v1 B-tree + local heap + one symbol node), version-1 object headers,
//!   contiguous layout (message version 3), little-endian integers and floats, and vlen strings
//!   in global heap collections — the same structures h5py writes by default (`libver="earliest"`).
//! * [`H5Reader`] reads those files and the files h5py writes by default: superblocks 0–3,
//!   object headers 1 and 2 (with continuation blocks), symbol-table groups (multi-level v1
//!   B-trees) and compact link-message groups, contiguous and compact layouts, fixed-point,
//!   floating-point, fixed-length and vlen string types. Chunked/filtered datasets, dense link
//!   storage (fractal heaps) and nested groups are rejected with an error naming the feature.

mod read;
mod write;

pub use read::H5Reader;
pub use write::{WriteData, write_file};

/// Element type of a dataset as stored in the file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dtype {
    /// Fixed-point integer of `bytes` bytes.
    Int {
        bytes: u8,
        signed: bool,
        big_endian: bool,
    },
    /// IEEE float of 4 or 8 bytes.
    Float { bytes: u8, big_endian: bool },
    /// Variable-length string (h5py `string_dtype()`), stored in the global heap.
    VlenString { utf8: bool },
    /// Fixed-length string of `len` bytes (NUL- or space-padded).
    FixedString { len: usize },
}

impl Dtype {
    /// numpy-style name (`int32`, `float64`, `vlen-str`), for messages and reports.
    pub fn name(&self) -> String {
        match *self {
            Dtype::Int { bytes, signed, .. } => {
                format!("{}int{}", if signed { "" } else { "u" }, bytes as u32 * 8)
            }
            Dtype::Float { bytes, .. } => format!("float{}", bytes as u32 * 8),
            Dtype::VlenString { .. } => "vlen-str".to_string(),
            Dtype::FixedString { len } => format!("S{len}"),
        }
    }
}

/// Name, shape and element type of one dataset.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DatasetInfo {
    pub name: String,
    pub shape: Vec<usize>,
    pub dtype: Dtype,
}

/// A dense row-major array read from a dataset.
#[derive(Debug, Clone, PartialEq)]
pub struct Array<T> {
    pub shape: Vec<usize>,
    pub data: Vec<T>,
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A fresh directory per test (tests run in parallel), removed when dropped.
    struct TempDir(std::path::PathBuf);

    impl TempDir {
        fn new(test: &str) -> Self {
            let dir = std::env::temp_dir().join(format!("sg2im-h5-{test}-{}", std::process::id()));
            let _ = std::fs::remove_dir_all(&dir);
            std::fs::create_dir_all(&dir).unwrap();
            TempDir(dir)
        }
        fn file(&self, name: &str) -> std::path::PathBuf {
            self.0.join(name)
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    #[test]
    fn round_trip_every_supported_kind() {
        let dir = TempDir::new("rt");
        let path = dir.file("rt.h5");
        let a: Vec<i32> = (0..24).map(|v| v * 7 - 50).collect();
        let b = vec![i32::MIN, -1, 0, i32::MAX];
        let strings: Vec<String> = vec![
            "VG_100K/1.jpg".into(),
            "".into(),
            "ünïcode/ß.jpg".into(),
            "x".repeat(100),
        ];
        let empty: Vec<f64> = vec![];
        write_file(
            &path,
            &[
                (
                    "b",
                    WriteData::I32 {
                        shape: &[4],
                        data: &b,
                    },
                ),
                (
                    "a",
                    WriteData::I32 {
                        shape: &[2, 3, 4],
                        data: &a,
                    },
                ),
                ("paths", WriteData::VlenStr(&strings)),
                (
                    "empty",
                    WriteData::F64 {
                        shape: &[0],
                        data: &empty,
                    },
                ),
            ],
        )
        .unwrap();
        let r = H5Reader::open(&path).unwrap();
        assert_eq!(r.dataset_names(), vec!["a", "b", "empty", "paths"]);
        let got = r.read_i32("a").unwrap();
        assert_eq!(got.shape, vec![2, 3, 4]);
        assert_eq!(got.data, a);
        assert_eq!(r.read_i32("b").unwrap().data, b);
        assert_eq!(r.read_strings("paths").unwrap(), strings);
        let e = r.info("empty").unwrap();
        assert_eq!(e.shape, vec![0]);
        assert_eq!(
            e.dtype,
            Dtype::Float {
                bytes: 8,
                big_endian: false
            }
        );
        assert!(r.read_f64("empty").unwrap().data.is_empty());
        let err = r.read_i32("paths").unwrap_err().to_string();
        assert!(err.contains("paths") && err.contains("vlen-str"), "{err}");
        let err = r.info("nope").unwrap_err().to_string();
        assert!(err.contains("no dataset \"nope\""), "{err}");
    }

    #[test]
    fn many_strings_span_several_heap_collections() {
        let dir = TempDir::new("many");
        let path = dir.file("many.h5");
        let strings: Vec<String> = (0..70_000).map(|i| format!("VG_100K_2/{i}.jpg")).collect();
        write_file(&path, &[("image_paths", WriteData::VlenStr(&strings))]).unwrap();
        let r = H5Reader::open(&path).unwrap();
        assert_eq!(r.read_strings("image_paths").unwrap(), strings);
    }

    #[test]
    fn rejects_bad_names_and_shapes() {
        let dir = TempDir::new("bad");
        let path = dir.file("bad.h5");
        let d = [1i32, 2, 3];
        let err = write_file(
            &path,
            &[(
                "x",
                WriteData::I32 {
                    shape: &[2],
                    data: &d,
                },
            )],
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("shape [2] holds 2 elements but 3 were given"),
            "{err}"
        );
        let err = write_file(
            &path,
            &[(
                "a/b",
                WriteData::I32 {
                    shape: &[3],
                    data: &d,
                },
            )],
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("invalid dataset name"), "{err}");
    }

    #[test]
    fn truncated_file_is_an_error_not_a_panic() {
        let dir = TempDir::new("trunc");
        let path = dir.file("trunc.h5");
        let d: Vec<i32> = (0..1000).collect();
        write_file(
            &path,
            &[(
                "x",
                WriteData::I32 {
                    shape: &[1000],
                    data: &d,
                },
            )],
        )
        .unwrap();
        let bytes = std::fs::read(&path).unwrap();
        for cut in [0, 7, 50, 100, 700, bytes.len() - 10] {
            let p = dir.file("trunc-cut.h5");
            std::fs::write(&p, &bytes[..cut]).unwrap();
            let res = H5Reader::open(&p).and_then(|r| r.read_i32("x"));
            let err = res.unwrap_err().to_string();
            assert!(err.contains("trunc-cut.h5"), "cut {cut}: {err}");
        }
    }
}
