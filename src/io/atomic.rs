//! Atomic file writes: write to a temporary file in the destination's directory, flush and
//! fsync it, then rename it over the destination. A crash or an error part-way leaves the
//! previous file (if any) untouched and removes the temporary file.

use crate::{Error, Result};
use std::fs::{self, File};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

/// Writes `path` atomically with the bytes produced by `write`.
pub fn write_atomic<F>(path: impl AsRef<Path>, write: F) -> Result<()>
where
    F: FnOnce(&mut BufWriter<File>) -> std::io::Result<()>,
{
    let path = path.as_ref();
    let tmp = temp_path_for(path);
    let result = (|| -> std::io::Result<()> {
        let file = File::create(&tmp)?;
        let mut writer = BufWriter::new(file);
        write(&mut writer)?;
        writer.flush()?;
        let file = writer.into_inner().map_err(|e| e.into_error())?;
        file.sync_all()?;
        fs::rename(&tmp, path)?;
        sync_parent_dir(path);
        Ok(())
    })();
    if let Err(source) = result {
        let _ = fs::remove_file(&tmp);
        return Err(Error::io(path, source));
    }
    Ok(())
}

/// Writes `bytes` to `path` atomically.
pub fn write_bytes_atomic(path: impl AsRef<Path>, bytes: &[u8]) -> Result<()> {
    write_atomic(path, |w| w.write_all(bytes))
}

/// Publishes a file that was already written completely at `tmp` as `path`.
/// Use this when a library writes the file itself (HDF5, zip) given only a path.
pub fn publish(tmp: impl AsRef<Path>, path: impl AsRef<Path>) -> Result<()> {
    let (tmp, path) = (tmp.as_ref(), path.as_ref());
    let result = File::open(tmp)
        .and_then(|f| f.sync_all())
        .and_then(|_| fs::rename(tmp, path));
    if let Err(source) = result {
        let _ = fs::remove_file(tmp);
        return Err(Error::io(path, source));
    }
    sync_parent_dir(path);
    Ok(())
}

/// A temporary path beside `path` (same directory, so the final rename stays on one file
/// system), unique per process and call.
pub fn temp_path_for(path: &Path) -> PathBuf {
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let name = path
        .file_name()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "out".to_string());
    path.with_file_name(format!(".{name}.tmp-{}-{n}", std::process::id()))
}

fn sync_parent_dir(path: &Path) {
    // Makes the rename itself durable; best effort (not every platform can open directories).
    if let Some(dir) = path.parent() {
        let dir = if dir.as_os_str().is_empty() {
            Path::new(".")
        } else {
            dir
        };
        if let Ok(d) = File::open(dir) {
            let _ = d.sync_all();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failed_write_keeps_previous_file_and_leaves_no_temp() {
        let dir = std::env::temp_dir().join(format!("sg2im-atomic-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        let path = dir.join("out.bin");
        write_bytes_atomic(&path, b"old").unwrap();
        let err = write_atomic(&path, |w| {
            w.write_all(b"partial")?;
            Err(std::io::Error::other("simulated crash"))
        })
        .unwrap_err();
        assert!(err.to_string().contains("simulated crash"), "{err}");
        assert_eq!(fs::read(&path).unwrap(), b"old");
        let leftovers: Vec<_> = fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .filter(|n| n.to_string_lossy().contains(".tmp-"))
            .collect();
        assert!(leftovers.is_empty(), "{leftovers:?}");
        fs::remove_dir_all(&dir).unwrap();
    }
}
