//! Where the library's human-readable messages go. The library never prints: training,
//! sampling, preprocessing and downloading hand each line to a [`Reporter`], which the CLI
//! prints ([`Stdio`], or training's progress-bar console) and a library user collects, logs or
//! drops ([`Quiet`]).

/// Receives progress lines and warnings, each one complete line without its newline.
pub trait Reporter {
    /// Progress and results a person reads (the CLI prints them on stdout).
    fn info(&self, line: &str);

    /// Warnings and notes that must not mix with the results (the CLI prints them on stderr).
    /// The line carries its own prefix (`WARNING: `, `warning: `, a file name).
    fn warn(&self, line: &str);

    /// A long task advanced: `position` of `total` steps done, `message` a short status (the
    /// latest loss). `total` may grow while the task runs.
    fn progress(&self, _position: u64, _total: u64, _message: &str) {}

    /// The task that reported progress is over (a progress bar goes away).
    fn finish(&self) {}
}

/// Drops everything.
#[derive(Debug, Clone, Copy, Default)]
pub struct Quiet;

impl Reporter for Quiet {
    fn info(&self, _line: &str) {}
    fn warn(&self, _line: &str) {}
}

/// `info` on stdout, `warn` on stderr; no progress display.
#[derive(Debug, Clone, Copy, Default)]
pub struct Stdio;

impl Reporter for Stdio {
    fn info(&self, line: &str) {
        println!("{line}");
    }

    fn warn(&self, line: &str) {
        eprintln!("{line}");
    }
}

/// Keeps every line, for callers that show them later (and for tests).
#[derive(Debug, Default)]
pub struct Collect {
    pub lines: std::sync::Mutex<Vec<(Level, String)>>,
}

/// Which method a [`Collect`]ed line came through.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    Info,
    Warn,
}

impl Collect {
    /// The lines so far, in order.
    pub fn take(&self) -> Vec<(Level, String)> {
        self.lines
            .lock()
            .map(|mut l| std::mem::take(&mut *l))
            .unwrap_or_default()
    }

    fn push(&self, level: Level, line: &str) {
        if let Ok(mut l) = self.lines.lock() {
            l.push((level, line.to_string()));
        }
    }
}

impl Reporter for Collect {
    fn info(&self, line: &str) {
        self.push(Level::Info, line);
    }

    fn warn(&self, line: &str) {
        self.push(Level::Warn, line);
    }
}

/// A reporter that option structs can hold and clone (and that threads can share).
#[derive(Clone)]
pub struct SharedReporter(pub std::sync::Arc<dyn Reporter + Send + Sync>);

impl SharedReporter {
    pub fn new(reporter: impl Reporter + Send + Sync + 'static) -> Self {
        Self(std::sync::Arc::new(reporter))
    }
}

impl Default for SharedReporter {
    /// [`Quiet`].
    fn default() -> Self {
        Self::new(Quiet)
    }
}

impl std::fmt::Debug for SharedReporter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SharedReporter")
    }
}

impl std::ops::Deref for SharedReporter {
    type Target = dyn Reporter + Send + Sync;
    fn deref(&self) -> &Self::Target {
        &*self.0
    }
}
