//! Checks on what was downloaded and on where it goes: digests, free disk space, and the
//! one-line message for a full disk.

use super::Checksum;
use crate::{Error, Result};
use md5::Md5;
use sha2::{Digest, Sha256};
use std::fs::File;
use std::io::{self, Read};
use std::path::Path;

/// Checks `path` against `expected`; on a mismatch deletes it (a retry then fetches it anew)
/// and says so.
pub(super) fn check_digest(
    path: &Path,
    expected: &Checksum,
    url: &str,
    progress: bool,
) -> Result<()> {
    let (kind, want) = match expected {
        Checksum::Md5(h) => ("MD5", h.as_str()),
        Checksum::Sha256(h) | Checksum::Sha256Prefix(h) => ("SHA-256", h.as_str()),
    };
    let got = match expected {
        Checksum::Md5(_) => hash_file::<Md5>(path, progress),
        Checksum::Sha256(_) | Checksum::Sha256Prefix(_) => hash_file::<Sha256>(path, progress),
    }
    .map_err(|e| Error::io(path, e))?;
    let ok = match expected {
        Checksum::Sha256Prefix(_) => {
            got.len() >= want.len() && got[..want.len()].eq_ignore_ascii_case(want)
        }
        _ => got.eq_ignore_ascii_case(want),
    };
    if ok {
        return Ok(());
    }
    let _ = std::fs::remove_file(path);
    Err(Error::invalid(format!(
        "{}: {kind} mismatch for {url}: expected {want}, got {got}; the download was deleted, \
         run the same command again to fetch it anew (or pass --no_checksum if the server's \
         file has legitimately changed)",
        path.display()
    )))
}

fn hash_file<D: Digest>(path: &Path, progress: bool) -> io::Result<String> {
    let mut file = File::open(path)?;
    let len = file.metadata()?.len();
    let bar = super::http::bar(progress, len, "verifying");
    let mut hasher = D::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        bar.inc(n as u64);
    }
    bar.finish_and_clear();
    Ok(hasher
        .finalize()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect())
}

/// Fails up front when the file system holding `dir` has less than `needed` bytes free.
/// Best effort: a file system that cannot report its free space is not checked.
pub(super) fn ensure_free_space(dir: &Path, needed: u64, what: &str) -> Result<()> {
    let Ok(available) = fs4::available_space(dir) else {
        return Ok(());
    };
    if available < needed {
        return Err(Error::invalid(format!(
            "{}: not enough free disk space for {what}: need {}, only {} free; free some space \
             or choose another --output_dir",
            dir.display(),
            human_bytes(needed),
            human_bytes(available)
        )));
    }
    Ok(())
}

/// The error for a failed write: a full disk gets its own message (what is already written
/// stays, so running again after freeing space resumes).
pub(super) fn write_error(path: &Path, e: io::Error) -> Error {
    if is_disk_full(&e) {
        return Error::invalid(format!(
            "{}: disk full; free some space and run the same command again (finished parts \
             are kept and the transfer resumes)",
            path.display()
        ));
    }
    Error::io(path, e)
}

pub(super) fn is_disk_full(e: &io::Error) -> bool {
    // ENOSPC (28) / EDQUOT (122 on Linux) where the kind is not mapped.
    e.kind() == io::ErrorKind::StorageFull
        || e.kind() == io::ErrorKind::QuotaExceeded
        || matches!(e.raw_os_error(), Some(28))
}

pub fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 7] = ["B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"];
    let mut value = n as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{n} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn full_disk_is_named() {
        let e = write_error(
            Path::new("x/train2017.zip.part"),
            io::Error::from(io::ErrorKind::StorageFull),
        );
        assert!(
            e.to_string()
                .starts_with("x/train2017.zip.part: disk full; free some space"),
            "{e}"
        );
        assert!(is_disk_full(&io::Error::from_raw_os_error(28)));
        assert!(!is_disk_full(&io::Error::from(io::ErrorKind::NotFound)));
    }

    #[test]
    fn sizes_read_well() {
        assert_eq!(human_bytes(12), "12 B");
        assert_eq!(human_bytes(18 * 1024 * 1024 * 1024 + 1), "18.0 GiB");
    }

    #[test]
    fn too_little_space_is_refused_up_front() {
        let err = ensure_free_space(Path::new("."), u64::MAX, "train2017.zip")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("not enough free disk space for train2017.zip"),
            "{err}"
        );
    }
}
