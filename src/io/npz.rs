//! numpy `.npz` archives of float arrays: a zip of `.npy` files (format 1.0/2.0/3.0), as written
//! by `np.savez` (stored) and `np.savez_compressed` (deflate). Enough for FID reference
//! statistics (`mu`, `sigma` as pytorch-fid and TTUR save them).

use crate::{Error, Result};
use std::io::{Cursor, Read, Write};
use std::path::Path;

/// A float64 array read from or written to an `.npz`, row-major.
#[derive(Clone, Debug, PartialEq)]
pub struct NpyArray {
    pub shape: Vec<usize>,
    pub data: Vec<f64>,
}

/// The bytes of one `.npy` file (format 1.0, little-endian float64, C order).
pub fn npy_bytes(a: &NpyArray) -> Vec<u8> {
    let shape = match a.shape.len() {
        1 => format!("({},)", a.shape[0]),
        _ => format!(
            "({})",
            a.shape
                .iter()
                .map(|d| d.to_string())
                .collect::<Vec<_>>()
                .join(", ")
        ),
    };
    let mut header = format!("{{'descr': '<f8', 'fortran_order': False, 'shape': {shape}, }}");
    // numpy pads the header with spaces and a newline so the data starts 64-byte aligned.
    let total = 10 + header.len() + 1;
    header.push_str(&" ".repeat(total.next_multiple_of(64) - total));
    header.push('\n');
    let mut out = Vec::with_capacity(10 + header.len() + 8 * a.data.len());
    out.extend_from_slice(b"\x93NUMPY\x01\x00");
    out.extend_from_slice(&(header.len() as u16).to_le_bytes());
    out.extend_from_slice(header.as_bytes());
    for v in &a.data {
        out.extend_from_slice(&v.to_le_bytes());
    }
    out
}

/// Writes `arrays` as `name.npy` entries of an uncompressed `.npz` (what `np.savez` writes),
/// atomically.
pub fn write_npz(path: &Path, arrays: &[(&str, &NpyArray)]) -> Result<()> {
    let mut zip = zip::ZipWriter::new(Cursor::new(Vec::new()));
    let opts = zip::write::SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Stored)
        .large_file(true);
    let fail = |e: String| Error::invalid(format!("{}: cannot write npz: {e}", path.display()));
    for (name, a) in arrays {
        zip.start_file(format!("{name}.npy"), opts)
            .map_err(|e| fail(e.to_string()))?;
        zip.write_all(&npy_bytes(a))
            .map_err(|e| fail(e.to_string()))?;
    }
    let bytes = zip.finish().map_err(|e| fail(e.to_string()))?.into_inner();
    crate::io::atomic::write_bytes_atomic(path, &bytes)
}

/// Reads array `name` (entry `name.npy`) of an `.npz` file as float64 (float32 is widened).
pub fn read_npz_array(path: &Path, name: &str) -> Result<NpyArray> {
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    let what = path.display();
    let mut zip = zip::ZipArchive::new(Cursor::new(&bytes[..]))
        .map_err(|e| Error::invalid(format!("{what}: not an .npz (zip) file: {e}")))?;
    let mut entry = zip.by_name(&format!("{name}.npy")).map_err(|_| {
        Error::invalid(format!(
            "{what}: no array '{name}' (expected entry {name}.npy)"
        ))
    })?;
    let mut npy = Vec::new();
    entry
        .read_to_end(&mut npy)
        .map_err(|e| Error::invalid(format!("{what}: array '{name}': {e}")))?;
    parse_npy(&npy).map_err(|e| Error::invalid(format!("{what}: array '{name}': {e}")))
}

/// Parses one `.npy` file of little-endian float32/float64 values (C or Fortran order).
pub fn parse_npy(b: &[u8]) -> std::result::Result<NpyArray, String> {
    if !b.starts_with(b"\x93NUMPY") || b.len() < 10 {
        return Err("not an .npy array (bad magic)".into());
    }
    let (hlen, start) = match b[6] {
        1 => (usize::from(u16::from_le_bytes([b[8], b[9]])), 10),
        2 | 3 if b.len() >= 12 => (u32::from_le_bytes([b[8], b[9], b[10], b[11]]) as usize, 12),
        v => return Err(format!("unsupported .npy version {v}")),
    };
    let header = b
        .get(start..start + hlen)
        .and_then(|h| std::str::from_utf8(h).ok())
        .ok_or("truncated .npy header")?;
    let field = |key: &str| -> Option<&str> {
        let i = header.find(&format!("'{key}'"))? + key.len() + 2;
        let rest = header[i..].trim_start().strip_prefix(':')?.trim_start();
        Some(rest)
    };
    let descr = field("descr").ok_or("no 'descr' in .npy header")?;
    let size = if descr.starts_with("'<f8'") {
        8
    } else if descr.starts_with("'<f4'") {
        4
    } else {
        let d: String = descr.chars().take_while(|&c| c != ',').collect();
        return Err(format!("dtype {d}, expected float64 ('<f8') or float32"));
    };
    let fortran = field("fortran_order")
        .ok_or("no 'fortran_order' in .npy header")?
        .starts_with("True");
    let shape_s = field("shape").ok_or("no 'shape' in .npy header")?;
    let inner = shape_s
        .strip_prefix('(')
        .and_then(|s| s.split(')').next())
        .ok_or("malformed shape in .npy header")?;
    let shape: Vec<usize> = inner
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| {
            s.parse::<usize>()
                .map_err(|_| format!("bad shape entry '{s}'"))
        })
        .collect::<std::result::Result<_, _>>()?;
    let n: usize = shape.iter().product();
    let data = b
        .get(start + hlen..start + hlen + n * size)
        .ok_or_else(|| format!("truncated data: shape {shape:?} needs {} bytes", n * size))?;
    let mut values: Vec<f64> = if size == 8 {
        data.chunks_exact(8)
            .map(|c| f64::from_le_bytes(c.try_into().unwrap_or([0; 8])))
            .collect()
    } else {
        data.chunks_exact(4)
            .map(|c| f64::from(f32::from_le_bytes(c.try_into().unwrap_or([0; 4]))))
            .collect()
    };
    if fortran && shape.len() == 2 {
        let (r, c) = (shape[0], shape[1]);
        let mut t = vec![0.0; n];
        for i in 0..r {
            for j in 0..c {
                t[i * c + j] = values[j * r + i];
            }
        }
        values = t;
    } else if fortran && shape.len() > 2 {
        return Err("Fortran-order arrays of more than 2 dimensions are not supported".into());
    }
    Ok(NpyArray {
        shape,
        data: values,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn npy_round_trip_and_alignment() {
        let a = NpyArray {
            shape: vec![2, 3],
            data: vec![1.0, -2.5, 3.0, 4.0, 5.0, f64::MIN_POSITIVE],
        };
        let b = npy_bytes(&a);
        let hlen = usize::from(u16::from_le_bytes([b[8], b[9]]));
        assert_eq!((10 + hlen) % 64, 0);
        assert_eq!(parse_npy(&b).unwrap(), a);
        let v = NpyArray {
            shape: vec![4],
            data: vec![0.5; 4],
        };
        assert_eq!(parse_npy(&npy_bytes(&v)).unwrap(), v);
    }

    #[test]
    fn reads_numpy_written_header_variants() {
        // Fortran order and float32, as numpy writes them.
        let header = "{'descr': '<f4', 'fortran_order': True, 'shape': (2, 2), }";
        let mut b = b"\x93NUMPY\x01\x00".to_vec();
        b.extend_from_slice(&(header.len() as u16).to_le_bytes());
        b.extend_from_slice(header.as_bytes());
        for v in [1.0f32, 2.0, 3.0, 4.0] {
            b.extend_from_slice(&v.to_le_bytes());
        }
        let a = parse_npy(&b).unwrap();
        assert_eq!(a.data, [1.0, 3.0, 2.0, 4.0]);
        assert!(parse_npy(b"\x93NUMPX\x01\x00\x00\x00").is_err());
        let i8h = header.replace("<f4", "|i1");
        let mut c = b"\x93NUMPY\x01\x00".to_vec();
        c.extend_from_slice(&(i8h.len() as u16).to_le_bytes());
        c.extend_from_slice(i8h.as_bytes());
        assert!(parse_npy(&c).unwrap_err().contains("dtype"));
    }
}
