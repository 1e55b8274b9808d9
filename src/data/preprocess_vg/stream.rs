//! Streaming a top-level JSON array element by element, so a 700 MB `relationships.json` never
//! sits in memory as a tree, with progress on stderr.

use crate::{Error, Result};
use serde::de::{DeserializeOwned, SeqAccess, Visitor};
use std::fs::File;
use std::io::{BufReader, IsTerminal, Read, Write};
use std::path::Path;
use std::time::{Duration, Instant};

/// Counts bytes as they are read and prints `label: 42% (…)` to stderr now and then.
struct Progress<R> {
    inner: R,
    label: String,
    total: u64,
    done: u64,
    enabled: bool,
    terminal: bool,
    last: Instant,
}

impl<R: Read> Read for Progress<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.done += n as u64;
        let every = Duration::from_secs(if self.terminal { 1 } else { 10 });
        if self.enabled && self.last.elapsed() >= every {
            self.last = Instant::now();
            self.report(false);
        }
        Ok(n)
    }
}

impl<R> Progress<R> {
    fn report(&self, last: bool) {
        report(&self.label, self.done, self.total, self.terminal, last);
    }
}

fn report(label: &str, done: u64, total: u64, terminal: bool, last: bool) {
    let pct = if total == 0 {
        100.0
    } else {
        100.0 * done as f64 / total as f64
    };
    let line = format!(
        "  {label}: {pct:5.1}% ({:.1} of {:.1} MB)",
        done as f64 / 1e6,
        total as f64 / 1e6
    );
    let mut err = std::io::stderr().lock();
    let _ = if terminal {
        write!(err, "\r{line}{}", if last { "\n" } else { "" })
    } else {
        writeln!(err, "{line}")
    };
}

/// Calls `f` on each element of the JSON array in `path`, in file order. Malformed or truncated
/// JSON (and elements of the wrong shape) are reported with the file, line and column.
pub fn for_each_element<T, F>(path: &Path, progress: bool, mut f: F) -> Result<()>
where
    T: DeserializeOwned,
    F: FnMut(T) -> Result<()>,
{
    let file = File::open(path).map_err(|e| Error::io(path, e))?;
    let total = file.metadata().map(|m| m.len()).unwrap_or(0);
    let label = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let terminal = std::io::stderr().is_terminal();
    let counted = Progress {
        inner: file,
        label: label.clone(),
        total,
        done: 0,
        enabled: progress,
        terminal,
        last: Instant::now(),
    };
    let mut de = serde_json::Deserializer::from_reader(BufReader::with_capacity(1 << 20, counted));
    let mut failure: Option<Error> = None;
    let visitor = ElementVisitor {
        f: &mut f,
        failure: &mut failure,
        _t: std::marker::PhantomData,
    };
    let parsed = serde::Deserializer::deserialize_seq(&mut de, visitor).and_then(|()| de.end());
    if let Some(e) = failure {
        return Err(e);
    }
    parsed.map_err(|e| {
        if e.is_io() {
            Error::io(path, std::io::Error::other(e.to_string()))
        } else {
            Error::json(path, &e)
        }
    })?;
    if progress {
        report(&label, total, total, terminal, true);
    }
    Ok(())
}

struct ElementVisitor<'a, T, F> {
    f: &'a mut F,
    failure: &'a mut Option<Error>,
    _t: std::marker::PhantomData<T>,
}

impl<'de, T, F> Visitor<'de> for ElementVisitor<'_, T, F>
where
    T: DeserializeOwned,
    F: FnMut(T) -> Result<()>,
{
    type Value = ();

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a JSON array")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> std::result::Result<(), A::Error> {
        while let Some(item) = seq.next_element::<T>()? {
            if let Err(e) = (self.f)(item) {
                // Our own error, not a JSON one: keep it and stop parsing.
                let msg = e.to_string();
                *self.failure = Some(e);
                return Err(serde::de::Error::custom(msg));
            }
        }
        Ok(())
    }
}

/// A JSON number that may be written as an integer or a float (image sizes, box coordinates).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Num {
    Int(i64),
    Float(f64),
}

impl Num {
    pub fn as_f64(self) -> f64 {
        match self {
            Num::Int(v) => v as f64,
            Num::Float(v) => v,
        }
    }
}

impl<'de> serde::Deserialize<'de> for Num {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Num;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a number")
            }
            fn visit_i64<E>(self, v: i64) -> std::result::Result<Num, E> {
                Ok(Num::Int(v))
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> std::result::Result<Num, E> {
                i64::try_from(v)
                    .map(Num::Int)
                    .map_err(|_| E::custom(format!("number {v} is too large")))
            }
            fn visit_f64<E>(self, v: f64) -> std::result::Result<Num, E> {
                Ok(Num::Float(v))
            }
        }
        d.deserialize_any(V)
    }
}
