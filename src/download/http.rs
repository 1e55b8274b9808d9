//! Resumable HTTP(S) transfers into a `.part` file.
//!
//! A transfer asks for `Range: bytes=<have>-` when part of the file is already there. A `206`
//! whose `Content-Range` starts there is appended; a `200` means the server ignored the range,
//! and the file is started over from byte 0. A transfer that is cut (connection reset, stall,
//! short body) is retried a few times, each retry resuming; when the retries are spent the
//! `.part` stays, and running the same command again resumes it.

use super::Options;
use super::verify::{ensure_free_space, human_bytes, write_error};
use crate::report::SharedReporter;
use crate::{Error, Result};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::path::Path;
use std::time::Duration;

pub(super) struct Client {
    agent: ureq::Agent,
    /// For loopback URLs: never sent through a proxy from the environment.
    direct: ureq::Agent,
    retries: u32,
    retry_delay: Duration,
    progress: bool,
    verbose: bool,
    reporter: SharedReporter,
}

/// How one attempt ended, when it did not fail for good.
enum Attempt {
    Complete,
    /// Cut part-way; worth resuming.
    Cut(String),
}

impl Client {
    pub(super) fn new(opts: &Options) -> Self {
        let agent = |proxy: Option<ureq::Proxy>| -> ureq::Agent {
            ureq::Agent::config_builder()
                // Statuses are ours to report (with the URL), not ureq's.
                .http_status_as_error(false)
                .proxy(proxy)
                .user_agent(concat!("sg2im-rs/", env!("CARGO_PKG_VERSION")))
                .timeout_connect(Some(Duration::from_secs(30)))
                .timeout_recv_response(Some(Duration::from_secs(60)))
                // Per read, so a stalled transfer is cut (and resumed) rather than hanging;
                // a total body timeout would cut large files on slow links.
                .timeout_per_read(Some(opts.read_timeout))
                .build()
                .into()
        };
        Client {
            agent: agent(ureq::Proxy::try_from_env()),
            direct: agent(None),
            retries: opts.retries,
            retry_delay: opts.retry_delay,
            progress: opts.progress,
            verbose: opts.verbose,
            reporter: opts.reporter.clone(),
        }
    }

    /// Fetches `url` into `part` (resuming what is there) until it is complete; returns the
    /// number of bytes transferred in this call.
    pub(super) fn fetch(&self, url: &str, part: &Path, name: &str) -> Result<u64> {
        // One writer per .part: a second `sg2im download` into the same directory would
        // otherwise interleave its bytes with ours.
        let lock_path = part.with_extension("part.lock");
        let lock = File::create(&lock_path).map_err(|e| write_error(&lock_path, e))?;
        if lock.try_lock().is_err() {
            return Err(Error::invalid(format!(
                "{}: another `sg2im download` is fetching this file; wait for it to finish",
                part.display()
            )));
        }
        let result = self.fetch_locked(url, part, name);
        drop(lock);
        let _ = fs::remove_file(&lock_path);
        result
    }

    fn fetch_locked(&self, url: &str, part: &Path, name: &str) -> Result<u64> {
        let mut transferred = 0u64;
        let mut delay = self.retry_delay;
        let mut attempt = 0u32;
        loop {
            match self.attempt(url, part, name, &mut transferred)? {
                Attempt::Complete => return Ok(transferred),
                Attempt::Cut(why) => {
                    let have = fs::metadata(part).map_or(0, |m| m.len());
                    if attempt >= self.retries {
                        return Err(Error::invalid(format!(
                            "{url}: transfer interrupted after {} ({why}); {} kept, run the \
                             same command again to resume",
                            human_bytes(have),
                            part.display()
                        )));
                    }
                    attempt += 1;
                    if self.verbose {
                        self.reporter.warn(&format!(
                            "{name}: transfer interrupted at {} ({why}); resuming (retry {attempt} of {})",
                            human_bytes(have),
                            self.retries
                        ));
                    }
                    std::thread::sleep(delay);
                    delay = delay.saturating_mul(2);
                }
            }
        }
    }

    fn attempt(
        &self,
        url: &str,
        part: &Path,
        name: &str,
        transferred: &mut u64,
    ) -> Result<Attempt> {
        let have = fs::metadata(part).map_or(0, |m| m.len());
        let agent = if is_loopback(url) {
            &self.direct
        } else {
            &self.agent
        };
        let mut request = agent.get(url);
        if have > 0 {
            request = request.header("Range", format!("bytes={have}-"));
        }
        let mut response = match request.call() {
            Ok(r) => r,
            Err(e) => {
                return match network_error(url, e) {
                    NetError::Fatal(err) => Err(err),
                    NetError::Transient(why) => Ok(Attempt::Cut(why)),
                };
            }
        };
        let status = response.status().as_u16();
        let content_range = response
            .headers()
            .get("content-range")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let length = response
            .headers()
            .get("content-length")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok());

        // Where the body starts, and the whole file's size if known.
        let (start, total) = match status {
            206 => match content_range.as_deref().and_then(parse_content_range) {
                Some((first, _, total)) if first == have => (have, total),
                // A range we did not ask for: start over rather than guess.
                _ => {
                    truncate(part)?;
                    return Ok(Attempt::Cut(format!(
                        "server answered with an unexpected range {content_range:?}"
                    )));
                }
            },
            200 => {
                if have > 0 && self.verbose {
                    self.reporter.warn(&format!(
                        "{name}: the server does not resume transfers; starting over"
                    ));
                }
                (0, length)
            }
            416 if have > 0 => {
                // "bytes */N": our part already has N bytes means it is complete.
                let total = content_range
                    .as_deref()
                    .and_then(|v| v.strip_prefix("bytes */"))
                    .and_then(|v| v.trim().parse::<u64>().ok());
                if total == Some(have) {
                    return Ok(Attempt::Complete);
                }
                truncate(part)?;
                return Ok(Attempt::Cut(
                    "the partial file is longer than the server's".into(),
                ));
            }
            _ => {
                let reason = response
                    .status()
                    .canonical_reason()
                    .map(|r| format!(" {r}"))
                    .unwrap_or_default();
                let message = format!("HTTP {status}{reason} for {url}");
                if status >= 500 || status == 429 || status == 408 {
                    return Ok(Attempt::Cut(message));
                }
                return Err(Error::invalid(message));
            }
        };

        let dir = part.parent().unwrap_or(Path::new("."));
        if let Some(total) = total {
            ensure_free_space(dir, total.saturating_sub(start), name)?;
        }
        let mut file = if start == 0 {
            File::create(part)
        } else {
            OpenOptions::new().append(true).open(part)
        }
        .map_err(|e| write_error(part, e))?;

        let bar = bar(self.progress, total.unwrap_or(0), name);
        bar.set_position(start);
        let mut reader = response.body_mut().as_reader();
        let mut buf = vec![0u8; 256 * 1024];
        let mut written = start;
        let cut = loop {
            let n = match reader.read(&mut buf) {
                Ok(0) => break None,
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => break Some(e.to_string()),
            };
            file.write_all(&buf[..n])
                .map_err(|e| write_error(part, e))?;
            written += n as u64;
            *transferred += n as u64;
            bar.set_position(written);
        };
        file.sync_all().map_err(|e| write_error(part, e))?;
        bar.finish_and_clear();

        if let Some(why) = cut {
            return Ok(Attempt::Cut(why));
        }
        match total {
            Some(total) if written < total => Ok(Attempt::Cut(format!(
                "connection closed at {written} of {total} bytes"
            ))),
            Some(total) if written > total => {
                truncate(part)?;
                Err(Error::invalid(format!(
                    "{url}: received {written} bytes but the server announced {total}; the \
                     partial file was deleted, run the same command again"
                )))
            }
            _ => Ok(Attempt::Complete),
        }
    }
}

fn truncate(part: &Path) -> Result<()> {
    match fs::remove_file(part) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(Error::io(part, e)),
    }
}

/// A progress bar for `len` bytes (a spinner when unknown); hidden when not wanted or when
/// stderr is not a terminal.
pub(super) fn bar(show: bool, len: u64, name: &str) -> ProgressBar {
    if !show {
        return ProgressBar::hidden();
    }
    let bar =
        ProgressBar::with_draw_target(Some(len).filter(|&l| l > 0), ProgressDrawTarget::stderr());
    let template = if len > 0 {
        "{msg} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} eta {eta}"
    } else {
        "{msg} {spinner} {bytes} {bytes_per_sec}"
    };
    if let Ok(style) = ProgressStyle::with_template(template) {
        bar.set_style(style.progress_chars("=> "));
    }
    bar.set_message(name.to_string());
    bar
}

/// `Content-Range: bytes first-last/total` (total may be `*`).
pub(super) fn parse_content_range(value: &str) -> Option<(u64, u64, Option<u64>)> {
    let rest = value.trim().strip_prefix("bytes ")?;
    let (range, total) = rest.split_once('/')?;
    let (first, last) = range.split_once('-')?;
    let total = match total.trim() {
        "*" => None,
        t => Some(t.parse().ok()?),
    };
    Some((first.trim().parse().ok()?, last.trim().parse().ok()?, total))
}

fn is_loopback(url: &str) -> bool {
    let host = url
        .split_once("://")
        .map_or(url, |(_, rest)| rest)
        .split('/')
        .next()
        .unwrap_or("");
    host.starts_with("127.") || host.starts_with("localhost") || host.starts_with("[::1]")
}

enum NetError {
    /// Retrying will not help (bad URL, DNS, refused, TLS): report now.
    Fatal(Error),
    /// May well work a moment later (reset, timeout): retry and resume.
    Transient(String),
}

/// One line that names the URL and says what to check.
fn network_error(url: &str, e: ureq::Error) -> NetError {
    let check = "check your network connection (or point --base_url at a reachable mirror)";
    let fatal = |msg: String| NetError::Fatal(Error::invalid(msg));
    match e {
        ureq::Error::HostNotFound => fatal(format!(
            "{url}: cannot resolve the host name (DNS lookup failed); {check}"
        )),
        ureq::Error::ConnectionFailed => fatal(format!("{url}: cannot connect; {check}")),
        ureq::Error::Io(io) => match io.kind() {
            io::ErrorKind::ConnectionRefused => {
                fatal(format!("{url}: connection refused; {check}"))
            }
            io::ErrorKind::NetworkUnreachable
            | io::ErrorKind::HostUnreachable
            | io::ErrorKind::NetworkDown => {
                fatal(format!("{url}: network unreachable ({io}); {check}"))
            }
            _ => NetError::Transient(io.to_string()),
        },
        ureq::Error::Timeout(t @ (ureq::Timeout::Resolve | ureq::Timeout::Connect)) => {
            fatal(format!("{url}: cannot connect (timed out: {t}); {check}"))
        }
        ureq::Error::Timeout(t) => NetError::Transient(format!("timed out ({t})")),
        ureq::Error::BadUri(msg) => fatal(format!("{url}: not a valid URL: {msg}")),
        other => {
            let msg = other.to_string();
            if msg.to_ascii_lowercase().contains("tls") || msg.contains("certificate") {
                fatal(format!("{url}: secure connection failed: {msg}"))
            } else {
                NetError::Transient(msg)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_range_parses() {
        assert_eq!(
            parse_content_range("bytes 100-199/200"),
            Some((100, 199, Some(200)))
        );
        assert_eq!(parse_content_range("bytes 0-9/*"), Some((0, 9, None)));
        assert_eq!(parse_content_range("bytes */200"), None);
        assert_eq!(parse_content_range("items 0-9/10"), None);
    }

    #[test]
    fn loopback_hosts_are_recognised() {
        assert!(is_loopback("http://127.0.0.1:9/x"));
        assert!(is_loopback("http://localhost/x"));
        assert!(is_loopback("http://[::1]:80/x"));
        assert!(!is_loopback("http://images.cocodataset.org/zips/x.zip"));
    }
}
