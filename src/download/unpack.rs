//! Unpacking a downloaded zip without ever leaving half of it where the data is expected.
//!
//! Every member is written into a staging directory beside its destination (same file system,
//! so moving it is a rename) and its CRC-32 checked as it is read; only when the whole archive
//! has been read without error are the top-level entries moved into place and a stamp file
//! `.<archive>.unpacked` written, listing them. The stamp is what marks the archive done.

use super::verify::{ensure_free_space, write_error};
use crate::{Error, Result};
use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::path::{Component, Path, PathBuf};

pub(super) enum UnpackError {
    /// The archive itself is bad: not a zip, truncated, a CRC mismatch, an unsafe path.
    Corrupt(String),
    /// Anything else (writing the output, the free-space check).
    Other(Error),
}

impl UnpackError {
    pub(super) fn into_error(self, archive: &Path, name: &str) -> Error {
        match self {
            UnpackError::Corrupt(why) => Error::invalid(format!(
                "{}: corrupt archive {name} ({why}); it was deleted and nothing was unpacked, \
                 run the same command again to download it anew",
                archive.display()
            )),
            UnpackError::Other(e) => e,
        }
    }
}

/// An archive fully unpacked into its staging directory, not yet moved into place.
pub(super) struct Staged {
    staging: PathBuf,
    dest: PathBuf,
    stamp: PathBuf,
    entries: Vec<String>,
}

fn stamp_path(dest: &Path, name: &str) -> PathBuf {
    let base = Path::new(name)
        .file_name()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| name.to_string());
    dest.join(format!(".{base}.unpacked"))
}

fn staging_prefix(name: &str) -> String {
    let base = Path::new(name)
        .file_name()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| name.to_string());
    format!(".{base}.unpacking-")
}

/// True when `name` was unpacked into `dest` and everything it put there is still there.
pub(super) fn is_unpacked(dest: &Path, name: &str) -> bool {
    let Ok(listing) = fs::read_to_string(stamp_path(dest, name)) else {
        return false;
    };
    listing
        .lines()
        .filter(|l| !l.is_empty())
        .all(|entry| dest.join(entry).exists())
}

/// Unpacks `archive` into a fresh staging directory inside `dest`, checking every member.
pub(super) fn extract_to_staging(
    archive: &Path,
    name: &str,
    dest: &Path,
    progress: bool,
) -> std::result::Result<Staged, UnpackError> {
    let other = UnpackError::Other;
    fs::create_dir_all(dest).map_err(|e| other(Error::io(dest, e)))?;
    remove_stale_staging(dest, name);
    let staging = dest.join(format!("{}{}", staging_prefix(name), std::process::id()));
    fs::create_dir(&staging).map_err(|e| other(write_error(&staging, e)))?;
    match extract(archive, name, &staging, progress) {
        Ok(entries) => Ok(Staged {
            staging,
            dest: dest.to_path_buf(),
            stamp: stamp_path(dest, name),
            entries,
        }),
        Err(e) => {
            let _ = fs::remove_dir_all(&staging);
            Err(e)
        }
    }
}

/// Staging directories left by a run that was killed mid-unpack.
fn remove_stale_staging(dest: &Path, name: &str) {
    let prefix = staging_prefix(name);
    if let Ok(entries) = fs::read_dir(dest) {
        for entry in entries.flatten() {
            if entry.file_name().to_string_lossy().starts_with(&prefix) {
                let _ = fs::remove_dir_all(entry.path());
            }
        }
    }
}

fn extract(
    archive: &Path,
    name: &str,
    staging: &Path,
    progress: bool,
) -> std::result::Result<Vec<String>, UnpackError> {
    let corrupt = |e: &dyn std::fmt::Display| UnpackError::Corrupt(e.to_string());
    let file = File::open(archive).map_err(|e| UnpackError::Other(Error::io(archive, e)))?;
    let mut zip = zip::ZipArchive::new(io::BufReader::new(file)).map_err(|e| corrupt(&e))?;

    let mut total = 0u64;
    for i in 0..zip.len() {
        total = total.saturating_add(zip.by_index_raw(i).map_err(|e| corrupt(&e))?.size());
    }
    ensure_free_space(staging, total, &format!("unpacking {name}")).map_err(UnpackError::Other)?;

    let bar = super::http::bar(progress, total, &format!("unpacking {name}"));
    let mut top_level: Vec<String> = Vec::new();
    let mut buf = vec![0u8; 256 * 1024];
    for i in 0..zip.len() {
        let mut member = zip.by_index(i).map_err(|e| corrupt(&e))?;
        let member_name = member.name().map(|n| n.into_owned()).unwrap_or_default();
        let Some(rel) = member.enclosed_name() else {
            return Err(UnpackError::Corrupt(format!(
                "member {member_name:?} would be written outside the target directory"
            )));
        };
        let Some(Component::Normal(first)) = rel.components().next() else {
            continue; // "./" and the like: nothing to write
        };
        let first = first.to_string_lossy().into_owned();
        if !top_level.contains(&first) {
            top_level.push(first);
        }
        let out = staging.join(&rel);
        if member.is_dir() {
            fs::create_dir_all(&out).map_err(|e| UnpackError::Other(write_error(&out, e)))?;
            continue;
        }
        if member.is_symlink() {
            return Err(UnpackError::Corrupt(format!(
                "member {member_name:?} is a symbolic link, which a dataset archive never holds"
            )));
        }
        if let Some(parent) = out.parent() {
            fs::create_dir_all(parent).map_err(|e| UnpackError::Other(write_error(parent, e)))?;
        }
        let mut file = File::create(&out).map_err(|e| UnpackError::Other(write_error(&out, e)))?;
        loop {
            // The zip reader checks the member's CRC-32 when it reaches its end.
            let n = match member.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    return Err(UnpackError::Corrupt(format!("member {member_name:?}: {e}")));
                }
            };
            file.write_all(&buf[..n])
                .map_err(|e| UnpackError::Other(write_error(&out, e)))?;
            bar.inc(n as u64);
        }
    }
    bar.finish_and_clear();
    Ok(top_level)
}

impl Staged {
    /// Moves the unpacked entries into place (merging into directories that already exist,
    /// as `unzip -d` does: the two COCO annotation zips both fill `annotations/`) and writes
    /// the stamp.
    pub(super) fn publish(self) -> Result<()> {
        for entry in &self.entries {
            let src = self.staging.join(entry);
            let dst = self.dest.join(entry);
            move_into(&src, &dst).map_err(|e| write_error(&dst, e))?;
        }
        let _ = fs::remove_dir_all(&self.staging);
        let mut listing = self.entries.join("\n");
        listing.push('\n');
        crate::io::atomic::write_bytes_atomic(&self.stamp, listing.as_bytes())
    }

    pub(super) fn discard(self) {
        let _ = fs::remove_dir_all(&self.staging);
    }
}

/// Renames `src` to `dst`; where both are directories, moves `src`'s children in one by one.
fn move_into(src: &Path, dst: &Path) -> io::Result<()> {
    match fs::symlink_metadata(dst) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => fs::rename(src, dst),
        Err(e) => Err(e),
        Ok(meta) if meta.is_dir() && src.is_dir() => {
            for child in fs::read_dir(src)? {
                let child = child?;
                move_into(&child.path(), &dst.join(child.file_name()))?;
            }
            fs::remove_dir(src)
        }
        Ok(meta) => {
            if meta.is_dir() {
                fs::remove_dir_all(dst)?;
            } else if src.is_dir() {
                fs::remove_file(dst)?;
            }
            fs::rename(src, dst)
        }
    }
}
