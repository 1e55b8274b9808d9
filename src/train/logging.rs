//! What a user watches: console lines (the original's format) above a progress bar, and what a
//! machine reads: a JSON-lines metrics file and TensorBoard event files.

use crate::report::Reporter;
use crate::train::tensorboard::EventWriter;
use crate::{Error, Result};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde_json::Value;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// The CLI's [`Reporter`] for training: lines on stdout (warnings on stderr), and on a terminal
/// a progress bar on stderr that stays below them.
pub struct Console {
    show: bool,
    /// `None` until the first progress report; then the bar, or `None` when not drawn.
    bar: Mutex<Option<Option<ProgressBar>>>,
}

impl Console {
    /// `show`: draw a progress bar (only ever drawn when stderr is a terminal).
    pub fn new(show: bool) -> Self {
        Self {
            show,
            bar: Mutex::new(None),
        }
    }

    fn bar(&self) -> Option<ProgressBar> {
        self.bar.lock().ok().and_then(|b| b.clone().flatten())
    }

    fn make_bar(total: u64, position: u64) -> Option<ProgressBar> {
        let bar = ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::stderr_with_hz(4));
        let style = ProgressStyle::with_template(
            "{elapsed_precise} [{wide_bar}] t={pos}/{len} {per_sec} ETA {eta_precise} {msg}",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> ");
        bar.set_style(style);
        bar.set_position(position);
        bar.reset_eta();
        (!bar.is_hidden()).then_some(bar)
    }
}

impl Reporter for Console {
    fn info(&self, line: &str) {
        match self.bar() {
            Some(bar) => bar.println(line),
            None => println!("{line}"),
        }
    }

    fn warn(&self, line: &str) {
        match self.bar() {
            Some(bar) => bar.suspend(|| eprintln!("{line}")),
            None => eprintln!("{line}"),
        }
    }

    /// An empty `message` keeps the previous one.
    fn progress(&self, position: u64, total: u64, message: &str) {
        let Ok(mut slot) = self.bar.lock() else {
            return;
        };
        let bar = slot
            .get_or_insert_with(|| self.show.then(|| Self::make_bar(total, position)).flatten());
        if let Some(bar) = bar {
            if bar.length() != Some(total) {
                bar.set_length(total);
            }
            bar.set_position(position);
            if !message.is_empty() {
                bar.set_message(message.to_string());
            }
        }
    }

    fn finish(&self) {
        if let Ok(mut slot) = self.bar.lock()
            && let Some(Some(bar)) = slot.take()
        {
            bar.finish_and_clear();
            *slot = Some(None);
        }
    }
}

/// The JSON-lines metrics file: one object per line, appended and flushed as it happens.
pub struct MetricsJsonl {
    path: PathBuf,
    out: BufWriter<File>,
}

impl MetricsJsonl {
    /// Opens `path` for appending (a resumed run continues the same file).
    pub fn open(path: &Path) -> Result<Self> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
        }
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .map_err(|e| Error::io(path, e))?;
        Ok(Self {
            path: path.to_path_buf(),
            out: BufWriter::new(file),
        })
    }

    pub fn write(&mut self, record: &Value) -> Result<()> {
        writeln!(self.out, "{record}")
            .and_then(|_| self.out.flush())
            .map_err(|e| Error::io(&self.path, e))
    }
}

/// Both machine-readable sinks; each is optional.
#[derive(Default)]
pub struct Sinks {
    pub jsonl: Option<MetricsJsonl>,
    pub tensorboard: Option<EventWriter>,
}

impl Sinks {
    pub fn record(&mut self, record: &Value) -> Result<()> {
        match &mut self.jsonl {
            Some(j) => j.write(record),
            None => Ok(()),
        }
    }

    pub fn scalars(&mut self, step: u64, values: &[(String, f32)]) -> Result<()> {
        match &mut self.tensorboard {
            Some(tb) => tb.scalars(step, values),
            None => Ok(()),
        }
    }

    pub fn image(&mut self, step: u64, tag: &str, rgb: &[u8], h: usize, w: usize) -> Result<()> {
        match &mut self.tensorboard {
            Some(tb) => tb.image_rgb(step, tag, rgb, h, w),
            None => Ok(()),
        }
    }
}

/// `<value to 4 decimals>` as Python's `'%.4f'`.
pub fn fmt4(v: f64) -> String {
    if v.is_nan() {
        "nan".to_string()
    } else if v.is_infinite() {
        if v > 0.0 { "inf" } else { "-inf" }.to_string()
    } else {
        format!("{v:.4}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn python_style_four_decimals() {
        assert_eq!(fmt4(0.123456), "0.1235");
        assert_eq!(fmt4(2.0), "2.0000");
        assert_eq!(fmt4(f64::NAN), "nan");
        assert_eq!(fmt4(f64::NEG_INFINITY), "-inf");
    }

    #[test]
    fn jsonl_appends_one_object_per_line() {
        let dir = std::env::temp_dir().join(format!("sg2im-jsonl-{}", std::process::id()));
        let path = dir.join("m.jsonl");
        let _ = std::fs::remove_file(&path);
        MetricsJsonl::open(&path)
            .unwrap()
            .write(&serde_json::json!({"t": 1}))
            .unwrap();
        MetricsJsonl::open(&path)
            .unwrap()
            .write(&serde_json::json!({"t": 2}))
            .unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(text, "{\"t\":1}\n{\"t\":2}\n");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
