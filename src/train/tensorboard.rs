//! TensorBoard event files written directly: TFRecord framing around hand-encoded `Event`
//! protocol buffers, so no TensorFlow or protobuf dependency is needed.
//!
//! Record framing (TFRecord): `u64 length (LE) | u32 masked CRC32C(length) | data |
//! u32 masked CRC32C(data)`, masked as `((crc >> 15) | (crc << 17)) + 0xa282ead8`.
//! Messages (tensorflow/core/util/event.proto, summary.proto), only the fields we write:
//! `Event { double wall_time = 1; int64 step = 2; string file_version = 3; Summary summary = 5; }`,
//! `Summary { repeated Value value = 1; }`,
//! `Value { string tag = 1; float simple_value = 2; Image image = 4; }`,
//! `Image { int32 height = 1; int32 width = 2; int32 colorspace = 3; bytes encoded_image_string = 4; }`.

use crate::{Error, Result};
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

/// CRC-32C (Castagnoli, reflected polynomial 0x82F63B78), table-driven.
pub fn crc32c(data: &[u8]) -> u32 {
    static TABLE: std::sync::OnceLock<[u32; 256]> = std::sync::OnceLock::new();
    let table = TABLE.get_or_init(|| {
        let mut t = [0u32; 256];
        for (i, slot) in t.iter_mut().enumerate() {
            let mut c = i as u32;
            for _ in 0..8 {
                c = if c & 1 != 0 {
                    (c >> 1) ^ 0x82f6_3b78
                } else {
                    c >> 1
                };
            }
            *slot = c;
        }
        t
    });
    let mut crc = !0u32;
    for &b in data {
        crc = table[((crc ^ b as u32) & 0xff) as usize] ^ (crc >> 8);
    }
    !crc
}

fn masked_crc(data: &[u8]) -> u32 {
    let crc = crc32c(data);
    crc.rotate_right(15).wrapping_add(0xa282_ead8)
}

/// One TFRecord around `data`.
pub fn frame_record(data: &[u8]) -> Vec<u8> {
    let len = (data.len() as u64).to_le_bytes();
    let mut out = Vec::with_capacity(data.len() + 16);
    out.extend_from_slice(&len);
    out.extend_from_slice(&masked_crc(&len).to_le_bytes());
    out.extend_from_slice(data);
    out.extend_from_slice(&masked_crc(data).to_le_bytes());
    out
}

/// Minimal protobuf writer: varints, length-delimited fields, fixed32/64.
#[derive(Default)]
struct Proto(Vec<u8>);

impl Proto {
    fn varint(&mut self, mut v: u64) {
        while v >= 0x80 {
            self.0.push((v as u8) | 0x80);
            v >>= 7;
        }
        self.0.push(v as u8);
    }
    fn key(&mut self, field: u32, wire: u8) {
        self.varint(((field as u64) << 3) | wire as u64);
    }
    fn int(&mut self, field: u32, v: i64) {
        self.key(field, 0);
        self.varint(v as u64);
    }
    fn double(&mut self, field: u32, v: f64) {
        self.key(field, 1);
        self.0.extend_from_slice(&v.to_le_bytes());
    }
    fn float(&mut self, field: u32, v: f32) {
        self.key(field, 5);
        self.0.extend_from_slice(&v.to_le_bytes());
    }
    fn bytes(&mut self, field: u32, v: &[u8]) {
        self.key(field, 2);
        self.varint(v.len() as u64);
        self.0.extend_from_slice(v);
    }
}

/// A summary value to log.
pub enum SummaryValue<'a> {
    Scalar(f32),
    /// A PNG image of `height × width` with `channels` (3 = RGB).
    Png {
        height: u32,
        width: u32,
        channels: u32,
        png: &'a [u8],
    },
}

/// Encodes an `Event` carrying a summary with the given tagged values.
pub fn encode_summary_event(
    wall_time: f64,
    step: i64,
    values: &[(&str, SummaryValue<'_>)],
) -> Vec<u8> {
    let mut summary = Proto::default();
    for (tag, value) in values {
        let mut v = Proto::default();
        v.bytes(1, tag.as_bytes());
        match value {
            SummaryValue::Scalar(x) => v.float(2, *x),
            SummaryValue::Png {
                height,
                width,
                channels,
                png,
            } => {
                let mut img = Proto::default();
                img.int(1, *height as i64);
                img.int(2, *width as i64);
                img.int(3, *channels as i64);
                img.bytes(4, png);
                v.bytes(4, &img.0);
            }
        }
        summary.bytes(1, &v.0);
    }
    let mut event = Proto::default();
    event.double(1, wall_time);
    event.int(2, step);
    event.bytes(5, &summary.0);
    event.0
}

fn encode_file_version_event(wall_time: f64) -> Vec<u8> {
    let mut event = Proto::default();
    event.double(1, wall_time);
    event.bytes(3, b"brain.Event:2");
    event.0
}

fn now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

/// Appends events to `<dir>/events.out.tfevents.<unix time>.<host>.sg2im`, flushing after each
/// write so TensorBoard sees progress live. A new file per run (TensorBoard reads them all).
pub struct EventWriter {
    path: PathBuf,
    out: BufWriter<File>,
}

impl EventWriter {
    pub fn create(dir: &Path) -> Result<Self> {
        std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
        let host = std::env::var("HOSTNAME").unwrap_or_else(|_| "localhost".to_string());
        let t = now();
        let mut n = 0;
        let path = loop {
            let p = dir.join(format!(
                "events.out.tfevents.{}.{host}.sg2im{}",
                t as u64, n
            ));
            if !p.exists() {
                break p;
            }
            n += 1;
        };
        let file = File::create(&path).map_err(|e| Error::io(&path, e))?;
        let mut w = Self {
            path,
            out: BufWriter::new(file),
        };
        w.write_event(&encode_file_version_event(t))?;
        Ok(w)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn write_event(&mut self, event: &[u8]) -> Result<()> {
        self.out
            .write_all(&frame_record(event))
            .and_then(|_| self.out.flush())
            .map_err(|e| Error::io(&self.path, e))
    }

    /// Scalars `(tag, value)` at `step`.
    pub fn scalars(&mut self, step: u64, values: &[(String, f32)]) -> Result<()> {
        if values.is_empty() {
            return Ok(());
        }
        let vals: Vec<(&str, SummaryValue<'_>)> = values
            .iter()
            .map(|(t, v)| (t.as_str(), SummaryValue::Scalar(*v)))
            .collect();
        self.write_event(&encode_summary_event(now(), step as i64, &vals))
    }

    /// An RGB image (`height × width × 3` bytes) under `tag` at `step`.
    pub fn image_rgb(
        &mut self,
        step: u64,
        tag: &str,
        rgb: &[u8],
        height: usize,
        width: usize,
    ) -> Result<()> {
        let png = encode_png_rgb(rgb, height, width)?;
        let value = SummaryValue::Png {
            height: height as u32,
            width: width as u32,
            channels: 3,
            png: &png,
        };
        self.write_event(&encode_summary_event(now(), step as i64, &[(tag, value)]))
    }
}

/// PNG bytes of an RGB image held in memory.
pub fn encode_png_rgb(rgb: &[u8], height: usize, width: usize) -> Result<Vec<u8>> {
    let mut buf = Vec::new();
    {
        let mut enc = png::Encoder::new(&mut buf, width as u32, height as u32);
        enc.set_color(png::ColorType::Rgb);
        enc.set_depth(png::BitDepth::Eight);
        let mut w = enc
            .write_header()
            .map_err(|e| Error::invalid(format!("PNG encoding: {e}")))?;
        w.write_image_data(rgb)
            .map_err(|e| Error::invalid(format!("PNG encoding: {e}")))?;
    }
    Ok(buf)
}

/// Reads back the records of an event file, checking both CRCs (for tests and tools).
pub fn read_records(path: &Path) -> Result<Vec<Vec<u8>>> {
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    let mut out = Vec::new();
    let mut pos = 0;
    while pos < bytes.len() {
        let bad = || Error::invalid(format!("{}: corrupt record at byte {pos}", path.display()));
        let header = bytes.get(pos..pos + 12).ok_or_else(bad)?;
        let len_bytes = &header[..8];
        let len = u64::from_le_bytes(len_bytes.try_into().map_err(|_| bad())?) as usize;
        let len_crc = u32::from_le_bytes(header[8..12].try_into().map_err(|_| bad())?);
        if len_crc != masked_crc(len_bytes) {
            return Err(bad());
        }
        let data = bytes.get(pos + 12..pos + 12 + len).ok_or_else(bad)?;
        let crc_bytes = bytes.get(pos + 12 + len..pos + 16 + len).ok_or_else(bad)?;
        if u32::from_le_bytes(crc_bytes.try_into().map_err(|_| bad())?) != masked_crc(data) {
            return Err(bad());
        }
        out.push(data.to_vec());
        pos += 16 + len;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc32c_check_value() {
        // The standard check value of CRC-32C.
        assert_eq!(crc32c(b"123456789"), 0xe306_9283);
        assert_eq!(crc32c(b""), 0);
    }

    #[test]
    fn record_framing_matches_tensorflow() {
        // An empty record as TensorFlow's RecordWriter writes it: length 0, masked CRC of
        // eight zero bytes, no data, masked CRC of nothing.
        let rec = frame_record(b"");
        assert_eq!(rec.len(), 16);
        assert_eq!(&rec[..8], &[0u8; 8]);
        assert_eq!(
            u32::from_le_bytes(rec[12..16].try_into().unwrap()),
            0xa282_ead8
        );
    }

    #[test]
    fn scalar_event_encoding() {
        let ev = encode_summary_event(1.5, 3, &[("loss", SummaryValue::Scalar(0.25))]);
        let mut expected = vec![0x09];
        expected.extend_from_slice(&1.5f64.to_le_bytes());
        expected.extend_from_slice(&[0x10, 3, 0x2a, 13, 0x0a, 11, 0x0a, 4]);
        expected.extend_from_slice(b"loss");
        expected.push(0x15);
        expected.extend_from_slice(&0.25f32.to_le_bytes());
        assert_eq!(ev, expected);
    }

    #[test]
    fn writer_output_reads_back() {
        let dir = std::env::temp_dir().join(format!("sg2im-tb-{}", std::process::id()));
        let mut w = EventWriter::create(&dir).unwrap();
        w.scalars(1, &[("a".into(), 1.0), ("b".into(), 2.0)])
            .unwrap();
        w.image_rgb(1, "img", &[255, 0, 0, 0, 255, 0], 1, 2)
            .unwrap();
        let path = w.path().to_path_buf();
        drop(w);
        let recs = read_records(&path).unwrap();
        assert_eq!(recs.len(), 3);
        assert!(recs[0].windows(13).any(|w| w == b"brain.Event:2"));
        assert!(recs[2].windows(4).any(|w| w == b"\x89PNG"));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
