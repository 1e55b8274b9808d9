//! Writing large JSON files element by element, atomically.

use crate::io::atomic::{publish, temp_path_for};
use crate::{Error, Result};
use serde::Serialize;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

/// A file written to a temporary path beside its destination and renamed over it by
/// [`StreamFile::finish`]; dropped unfinished, the temporary file is removed.
pub struct StreamFile {
    path: PathBuf,
    tmp: PathBuf,
    writer: Option<BufWriter<File>>,
}

impl StreamFile {
    pub fn create(path: &Path) -> Result<Self> {
        let tmp = temp_path_for(path);
        let file = File::create(&tmp).map_err(|e| Error::io(&tmp, e))?;
        Ok(StreamFile {
            path: path.to_path_buf(),
            tmp,
            writer: Some(BufWriter::with_capacity(1 << 20, file)),
        })
    }

    pub fn write_raw(&mut self, bytes: &[u8]) -> Result<()> {
        let w = self.writer.as_mut().expect("not finished");
        w.write_all(bytes).map_err(|e| Error::io(&self.path, e))
    }

    pub fn write_json<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<()> {
        let w = self.writer.as_mut().expect("not finished");
        serde_json::to_writer(w, value).map_err(|e| Error::io(&self.path, std::io::Error::other(e)))
    }

    /// Flushes, syncs and renames the file into place.
    pub fn finish(mut self) -> Result<()> {
        let w = self.writer.take().expect("not finished");
        let file = w
            .into_inner()
            .map_err(|e| Error::io(&self.path, e.into_error()))?;
        drop(file);
        publish(&self.tmp, &self.path)
    }
}

impl Drop for StreamFile {
    fn drop(&mut self) {
        if self.writer.take().is_some() {
            let _ = std::fs::remove_file(&self.tmp);
        }
    }
}

/// A JSON array written one element at a time, as the value of a key or as the whole file.
pub struct ArrayWriter {
    first: bool,
}

impl ArrayWriter {
    pub fn open(file: &mut StreamFile) -> Result<Self> {
        file.write_raw(b"[")?;
        Ok(ArrayWriter { first: true })
    }

    pub fn push<T: Serialize + ?Sized>(&mut self, file: &mut StreamFile, value: &T) -> Result<()> {
        if !self.first {
            file.write_raw(b",")?;
        }
        self.first = false;
        file.write_json(value)
    }

    pub fn close(self, file: &mut StreamFile) -> Result<()> {
        file.write_raw(b"]")
    }
}
