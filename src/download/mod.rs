//! `sg2im download`: COCO-Stuff 2017, Visual Genome 1.4 and the pretrained models — the files of
//! the original's `scripts/download_*.sh` (spec §19.6), with one shared machinery:
//!
//! * resumable HTTP(S) transfers into `<file>.part` (HTTP `Range`; a server that ignores the
//!   range restarts the file cleanly), automatic retries that resume, a progress bar;
//! * the size checked against Content-Length, the MD5/SHA-256 checked where one is known
//!   ([`sources`] holds the table);
//! * zips unpacked with every member's CRC checked, into a temporary directory beside the
//!   target, then renamed into place, so nothing half-written is ever where the data is expected;
//! * files already complete are skipped without touching the network.
//!
//! A downloaded file only ever gets its final name after it has been verified (and, for a zip,
//! unpacked), so "the final name exists" means "complete".

mod http;
pub mod sources;
mod unpack;
mod verify;

pub use verify::human_bytes;

use crate::report::SharedReporter;
use crate::{Error, Result};
use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// A digest a downloaded file must have, as lowercase hex.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Checksum {
    Md5(String),
    Sha256(String),
    /// The first hex digits of the SHA-256 (torch hub's convention: `name-<8 hex>.pth`).
    Sha256Prefix(String),
}

/// One file to fetch.
#[derive(Debug, Clone)]
pub struct Item {
    /// The original URL (its host is replaced when a base URL is given).
    pub url: String,
    /// Where the downloaded file goes, relative to the output directory.
    pub file: PathBuf,
    /// For a zip: the directory, relative to the output directory, it is unpacked into
    /// (`""` = the output directory itself). `None` keeps the file as it is.
    pub unpack_into: Option<PathBuf>,
    pub checksum: Option<Checksum>,
}

/// What to download: one of the original's download scripts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Bundle {
    /// `download_coco.sh`.
    Coco,
    /// `download_vg.sh`.
    Vg,
    /// `download_models.sh` (`main`), `download_ablated_models.sh` (`ablated`),
    /// `download_full_models.sh` (`full`).
    Models {
        main: bool,
        ablated: bool,
        full: bool,
    },
    /// torch-fidelity's Inception-v3 weights for `sg2im metrics`.
    Inception,
}

impl Bundle {
    /// The original script's output directory.
    pub fn default_dir(self) -> &'static str {
        match self {
            Bundle::Coco => sources::COCO_DIR,
            Bundle::Vg => sources::VG_DIR,
            Bundle::Models { .. } | Bundle::Inception => sources::MODELS_DIR,
        }
    }

    /// The files of this bundle, in the original script's order.
    pub fn items(self) -> Vec<Item> {
        match self {
            Bundle::Coco => sources::coco(),
            Bundle::Vg => sources::vg(),
            Bundle::Models {
                main,
                ablated,
                full,
            } => sources::models(main, ablated, full),
            Bundle::Inception => sources::inception(),
        }
    }
}

/// The environment variable that sets the base URL when `--base_url` is not given.
pub const BASE_URL_ENV: &str = "SG2IM_DOWNLOAD_BASE_URL";

#[derive(Debug, Clone)]
pub struct Options {
    pub output_dir: PathBuf,
    /// Replaces scheme and host of every URL: `http://mirror/x` + original
    /// `http://images.cocodataset.org/zips/val2017.zip` gives `http://mirror/x/zips/val2017.zip`.
    pub base_url: Option<String>,
    /// Print what would be fetched and where it would go; touch nothing.
    pub dry_run: bool,
    /// Further attempts after a transfer is cut (each resumes where the last stopped).
    pub retries: u32,
    /// Wait before the first retry; doubled for each further one.
    pub retry_delay: Duration,
    /// A transfer that receives nothing for this long is cut (and retried).
    pub read_timeout: Duration,
    /// Check the known MD5/SHA-256 digests (Content-Length and zip CRCs are always checked).
    pub verify_checksums: bool,
    /// Delete each zip once it is unpacked (the original keeps them).
    pub delete_archives: bool,
    /// Draw progress bars (only ever drawn on a terminal).
    pub progress: bool,
    /// Report one status line per file (and retries) as warnings.
    pub verbose: bool,
    /// Where status lines and the dry run's plan go (the CLI prints them).
    pub reporter: SharedReporter,
}

impl Options {
    pub fn new(output_dir: impl Into<PathBuf>) -> Self {
        Options {
            output_dir: output_dir.into(),
            base_url: None,
            dry_run: false,
            retries: 3,
            retry_delay: Duration::from_secs(2),
            read_timeout: Duration::from_secs(60),
            verify_checksums: true,
            delete_archives: false,
            progress: true,
            verbose: true,
            reporter: SharedReporter::default(),
        }
    }
}

/// What happened to each file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Already complete; nothing was fetched.
    Skipped,
    /// Fetched (or resumed) and verified; unpacked if it is a zip.
    Downloaded { bytes: u64 },
    /// The archive was already complete and is now unpacked.
    Unpacked,
    /// Dry run: would be fetched from this URL.
    WouldFetch { url: String },
}

#[derive(Debug, Clone)]
pub struct Report {
    /// One entry per item, in order: (the file's path, what happened).
    pub files: Vec<(PathBuf, Outcome)>,
}

impl Report {
    /// Bytes transferred over the network in this run.
    pub fn bytes_downloaded(&self) -> u64 {
        self.files
            .iter()
            .map(|(_, o)| match o {
                Outcome::Downloaded { bytes } => *bytes,
                _ => 0,
            })
            .sum()
    }
}

/// Downloads a bundle into `opts.output_dir`.
pub fn download_bundle(bundle: Bundle, opts: &Options) -> Result<Report> {
    download(&bundle.items(), opts)
}

/// Downloads `items` into `opts.output_dir`, one after the other; stops at the first failure
/// (what is complete stays complete, a cut transfer stays resumable).
pub fn download(items: &[Item], opts: &Options) -> Result<Report> {
    let mut files = Vec::with_capacity(items.len());
    let client = if opts.dry_run {
        None
    } else {
        Some(http::Client::new(opts))
    };
    for item in items {
        let url = effective_url(&item.url, opts.base_url.as_deref())?;
        let path = opts.output_dir.join(&item.file);
        let outcome = match &client {
            None => dry_run_item(item, &url, &path, opts),
            Some(client) => fetch_item(client, item, &url, &path, opts)?,
        };
        files.push((path, outcome));
    }
    Ok(Report { files })
}

/// The URL to fetch: the original one, or its path under `base_url`.
pub fn effective_url(url: &str, base_url: Option<&str>) -> Result<String> {
    let Some(base) = base_url else {
        return Ok(url.to_string());
    };
    if !(base.starts_with("http://") || base.starts_with("https://")) {
        return Err(Error::invalid(format!(
            "--base_url {base:?}: expected a URL starting with http:// or https://"
        )));
    }
    // Everything after "scheme://host[:port]" of the original.
    let after_scheme = url.split_once("://").map_or(url, |(_, rest)| rest);
    let path = after_scheme.find('/').map_or("/", |i| &after_scheme[i..]);
    Ok(format!("{}{}", base.trim_end_matches('/'), path))
}

fn part_path(path: &Path) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(".part");
    path.with_file_name(name)
}

fn unpack_dir(item: &Item, opts: &Options) -> Option<PathBuf> {
    // join("") would leave a trailing separator in every message.
    item.unpack_into
        .as_ref()
        .map(|d| match d.as_os_str().is_empty() {
            true => opts.output_dir.clone(),
            false => opts.output_dir.join(d),
        })
}

/// The file's name as shown to the user.
fn label(item: &Item) -> String {
    item.file.display().to_string()
}

fn is_complete(item: &Item, path: &Path, opts: &Options) -> bool {
    match unpack_dir(item, opts) {
        None => path.is_file(),
        Some(dir) => unpack::is_unpacked(&dir, &label(item)),
    }
}

fn dry_run_item(item: &Item, url: &str, path: &Path, opts: &Options) -> Outcome {
    if is_complete(item, path, opts) {
        opts.reporter
            .info(&format!("complete   {}", path.display()));
        return Outcome::Skipped;
    }
    let unpack = match unpack_dir(item, opts) {
        Some(dir) => format!(" (unpack into {}/)", dir.display()),
        None => String::new(),
    };
    let resume = match fs::metadata(part_path(path)) {
        Ok(m) if m.len() > 0 => format!(" [resume at byte {}]", m.len()),
        _ => String::new(),
    };
    opts.reporter.info(&format!(
        "fetch      {url} -> {}{unpack}{resume}",
        path.display()
    ));
    Outcome::WouldFetch {
        url: url.to_string(),
    }
}

fn fetch_item(
    client: &http::Client,
    item: &Item,
    url: &str,
    path: &Path,
    opts: &Options,
) -> Result<Outcome> {
    let name = label(item);
    if is_complete(item, path, opts) {
        if opts.verbose {
            opts.reporter
                .warn(&format!("{name}: already complete, skipped"));
        }
        return Ok(Outcome::Skipped);
    }
    if let Some(parent) = path.parent() {
        fs::create_dir_all(parent).map_err(|e| Error::io(parent, e))?;
    }

    // A zip whose final name exists was verified and kept by an earlier run that stopped
    // before (or while) moving its contents into place: unpack it again, fetch nothing.
    if path.is_file()
        && let Some(dir) = unpack_dir(item, opts)
    {
        unpack_and_publish(item, path, path, &dir, opts)?;
        return Ok(Outcome::Unpacked);
    }

    let part = part_path(path);
    let bytes = client.fetch(url, &part, &name)?;
    if opts.verify_checksums
        && let Some(expected) = &item.checksum
    {
        verify::check_digest(&part, expected, url, opts.progress)?;
    }
    match unpack_dir(item, opts) {
        None => crate::io::atomic::publish(&part, path)?,
        Some(dir) => unpack_and_publish(item, &part, path, &dir, opts)?,
    }
    if opts.verbose {
        opts.reporter.warn(&format!("{name}: done"));
    }
    Ok(Outcome::Downloaded { bytes })
}

/// Unpacks the verified download `source` (the `.part` or the already-named archive) into
/// `dir`, names it `path`, and marks it unpacked. A corrupt archive is deleted, so running
/// again fetches it anew.
fn unpack_and_publish(
    item: &Item,
    source: &Path,
    path: &Path,
    dir: &Path,
    opts: &Options,
) -> Result<()> {
    let name = label(item);
    let staged = match unpack::extract_to_staging(source, &name, dir, opts.progress) {
        Ok(staged) => staged,
        Err(err) => {
            if matches!(err, unpack::UnpackError::Corrupt(_)) {
                let _ = fs::remove_file(source);
            }
            return Err(err.into_error(source, &name));
        }
    };
    if source != path
        && let Err(e) = crate::io::atomic::publish(source, path)
    {
        staged.discard();
        return Err(e);
    }
    staged.publish()?;
    if opts.delete_archives {
        fs::remove_file(path).map_err(|e| Error::io(path, e))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base_url_replaces_scheme_and_host_only() {
        let u = "http://images.cocodataset.org/zips/val2017.zip";
        assert_eq!(effective_url(u, None).unwrap(), u);
        assert_eq!(
            effective_url(u, Some("http://127.0.0.1:8000/")).unwrap(),
            "http://127.0.0.1:8000/zips/val2017.zip"
        );
        assert_eq!(
            effective_url(u, Some("https://mirror.example/sg2im")).unwrap(),
            "https://mirror.example/sg2im/zips/val2017.zip"
        );
        let err = effective_url(u, Some("ftp://x")).unwrap_err().to_string();
        assert!(err.contains("--base_url \"ftp://x\""), "{err}");
    }

    #[test]
    fn part_file_sits_beside_the_target() {
        assert_eq!(
            part_path(Path::new("d/full/vg64.pt")),
            PathBuf::from("d/full/vg64.pt.part")
        );
    }
}
