//! `sg2im download` against a small HTTP/1.1 server written here on 127.0.0.1 (never the real
//! hosts). The server answers a bounded number of requests and stops by itself; it can honour
//! or ignore `Range`, cut a transfer after N bytes, answer 404, or announce an absurd size. The
//! archives it serves are made here with the `zip` crate.

mod common;

use common::{scratch, sg2im_cmd};
use sg2im::download::{self, Bundle, Checksum, Item, Options, Outcome};
use std::collections::HashMap;
use std::io::{BufRead, BufReader, Cursor, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

// ---------------------------------------------------------------------------------------------
// The test server.

#[derive(Clone)]
enum Serve {
    /// Honours `Range`.
    Ok(Vec<u8>),
    /// As `Ok`, but the first `times` responses announce the full length and stop after
    /// `after` body bytes.
    Cut {
        body: Vec<u8>,
        after: usize,
        times: usize,
    },
    /// The first response goes silent after `after` bytes (for 3 s, on its own thread, so
    /// the server meanwhile answers the retry) instead of closing.
    Stall {
        body: Vec<u8>,
        after: usize,
    },
    /// Always the whole body with 200, whatever `Range` says.
    IgnoreRange(Vec<u8>),
    NotFound,
    /// Announces a Content-Length no disk has, sends nothing.
    Huge,
}

#[derive(Debug, Clone)]
struct Logged {
    path: String,
    range: Option<String>,
}

struct Server {
    base: String,
    stop: Arc<AtomicBool>,
    log: Arc<Mutex<Vec<Logged>>>,
    handle: JoinHandle<()>,
}

impl Server {
    /// Serves `routes` for at most `max_requests` requests or 20 s, whichever comes first.
    fn start(routes: Vec<(String, Serve)>, max_requests: usize) -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let stop = Arc::new(AtomicBool::new(false));
        let log = Arc::new(Mutex::new(Vec::new()));
        let (stop2, log2) = (stop.clone(), log.clone());
        let mut routes: HashMap<String, Serve> = routes.into_iter().collect();
        let handle = std::thread::spawn(move || {
            let deadline = Instant::now() + Duration::from_secs(20);
            let mut served = 0;
            while served < max_requests
                && !stop2.load(Ordering::SeqCst)
                && Instant::now() < deadline
            {
                match listener.accept() {
                    Ok((stream, _)) => {
                        served += 1;
                        handle_connection(stream, &mut routes, &log2);
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                        std::thread::sleep(Duration::from_millis(2));
                    }
                    Err(_) => break,
                }
            }
        });
        Server {
            base,
            stop,
            log,
            handle,
        }
    }

    /// Stops the server and returns the requests it saw.
    fn finish(self) -> Vec<Logged> {
        self.stop.store(true, Ordering::SeqCst);
        self.handle.join().unwrap();
        self.log.lock().unwrap().clone()
    }
}

/// How many `Serve::Stall` silences have run their full 3 s (the only test that stalls is
/// `a_stalled_transfer_is_cut_by_the_read_timeout_and_resumed`).
static STALLS_ENDED: AtomicUsize = AtomicUsize::new(0);

fn handle_connection(
    stream: TcpStream,
    routes: &mut HashMap<String, Serve>,
    log: &Mutex<Vec<Logged>>,
) {
    stream.set_nonblocking(false).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut request_line = String::new();
    if reader.read_line(&mut request_line).is_err() {
        return;
    }
    let path = request_line
        .split_whitespace()
        .nth(1)
        .unwrap_or("")
        .to_string();
    let mut range = None;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
            break;
        }
        if let Some((name, value)) = line.split_once(':')
            && name.eq_ignore_ascii_case("range")
        {
            range = Some(value.trim().to_string());
        }
    }
    log.lock().unwrap().push(Logged {
        path: path.clone(),
        range: range.clone(),
    });
    let from = range
        .as_deref()
        .and_then(|r| r.strip_prefix("bytes="))
        .and_then(|r| r.strip_suffix('-'))
        .and_then(|r| r.parse::<usize>().ok());

    let mut out = stream;
    let route = routes.get_mut(&path);
    let (body, limit) = match route {
        None | Some(Serve::NotFound) => {
            let _ = out.write_all(
                b"HTTP/1.1 404 Not Found\r\nContent-Length: 9\r\nConnection: close\r\n\r\nnot found",
            );
            return;
        }
        Some(Serve::Huge) => {
            let _ = out.write_all(
                b"HTTP/1.1 200 OK\r\nContent-Length: 1000000000000000000\r\nConnection: close\r\n\r\n",
            );
            return;
        }
        Some(Serve::IgnoreRange(body)) => {
            respond(&mut out, "200 OK", None, body, body.len());
            return;
        }
        Some(Serve::Ok(body)) => (body.clone(), usize::MAX),
        Some(Serve::Stall { body, after }) => {
            let (body, after) = (body.clone(), *after);
            routes.insert(path, Serve::Ok(body.clone()));
            let header = format!(
                "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                body.len()
            );
            let _ = out.write_all(header.as_bytes());
            let _ = out.write_all(&body[..after]);
            let _ = out.flush();
            std::thread::spawn(move || {
                std::thread::sleep(Duration::from_secs(3));
                STALLS_ENDED.fetch_add(1, Ordering::SeqCst);
                drop(out);
            });
            return;
        }
        Some(Serve::Cut { body, after, times }) => {
            let limit = if *times > 0 {
                *times -= 1;
                *after
            } else {
                usize::MAX
            };
            (body.clone(), limit)
        }
    };
    match from {
        Some(n) if n >= body.len() => {
            let header = format!(
                "HTTP/1.1 416 Range Not Satisfiable\r\nContent-Range: bytes */{}\r\n\
                 Content-Length: 0\r\nConnection: close\r\n\r\n",
                body.len()
            );
            let _ = out.write_all(header.as_bytes());
        }
        Some(n) => {
            let content_range = format!("bytes {n}-{}/{}", body.len() - 1, body.len());
            respond(
                &mut out,
                "206 Partial Content",
                Some(&content_range),
                &body[n..],
                limit,
            );
        }
        None => respond(&mut out, "200 OK", None, &body, limit),
    }
}

/// Writes a response announcing all of `body` but sending at most `limit` bytes of it.
fn respond(out: &mut TcpStream, status: &str, range: Option<&str>, body: &[u8], limit: usize) {
    let mut header = format!(
        "HTTP/1.1 {status}\r\nContent-Length: {}\r\nConnection: close\r\n",
        body.len()
    );
    if let Some(r) = range {
        header.push_str(&format!("Content-Range: {r}\r\n"));
    }
    header.push_str("\r\n");
    let _ = out.write_all(header.as_bytes());
    let _ = out.write_all(&body[..limit.min(body.len())]);
    let _ = out.flush();
    let _ = out.shutdown(std::net::Shutdown::Both);
}

// ---------------------------------------------------------------------------------------------
// Helpers.

/// A zip of (name, contents); names ending in '/' are directories.
fn make_zip(entries: &[(&str, &[u8])]) -> Vec<u8> {
    let mut zip = zip::ZipWriter::new(Cursor::new(Vec::new()));
    // Stored, so a test can find a member's bytes in the archive and damage them.
    let options =
        zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Stored);
    for (name, contents) in entries {
        if name.ends_with('/') {
            zip.add_directory(*name, options).unwrap();
        } else {
            zip.start_file(*name, options).unwrap();
            zip.write_all(contents).unwrap();
        }
    }
    zip.finish().unwrap().into_inner()
}

/// Deterministic non-repeating bytes, so a resumed file that is stitched wrongly differs.
fn pseudo_random(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(6364136223846793005).wrapping_add(1);
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

fn options(dir: &Path, base: &str) -> Options {
    let mut o = Options::new(dir);
    o.base_url = Some(base.to_string());
    o.retries = 0;
    o.retry_delay = Duration::ZERO;
    o.read_timeout = Duration::from_secs(5);
    o.progress = false;
    o.verbose = false;
    o
}

fn item(url: &str, file: &str, unpack_into: Option<&str>) -> Item {
    Item {
        url: url.to_string(),
        file: file.into(),
        unpack_into: unpack_into.map(Into::into),
        checksum: None,
    }
}

/// Every path under `dir`, relative, sorted; directories end in '/'.
fn tree(dir: &Path) -> Vec<String> {
    fn walk(root: &Path, dir: &Path, out: &mut Vec<String>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            let rel = path
                .strip_prefix(root)
                .unwrap()
                .to_string_lossy()
                .into_owned();
            if path.is_dir() {
                out.push(format!("{rel}/"));
                walk(root, &path, out);
            } else {
                out.push(rel);
            }
        }
    }
    let mut out = Vec::new();
    if dir.exists() {
        walk(dir, dir, &mut out);
    }
    out.sort();
    out
}

fn read(path: impl AsRef<Path>) -> Vec<u8> {
    std::fs::read(path.as_ref()).unwrap_or_else(|e| panic!("{}: {e}", path.as_ref().display()))
}

// ---------------------------------------------------------------------------------------------
// Tests.

#[test]
fn coco_downloads_into_the_original_layout_and_a_rerun_fetches_nothing() {
    let dir = scratch("coco");
    let annotations = make_zip(&[
        ("annotations/", b""),
        ("annotations/instances_train2017.json", b"{\"train\":1}"),
        ("annotations/instances_val2017.json", b"{\"val\":1}"),
    ]);
    let stuff = make_zip(&[
        ("annotations/stuff_train2017.json", b"{\"stuff\":\"train\"}"),
        ("annotations/stuff_val2017.json", b"{\"stuff\":\"val\"}"),
    ]);
    let train = make_zip(&[
        ("train2017/", b""),
        ("train2017/000000000009.jpg", b"JPEG9"),
    ]);
    let val = make_zip(&[("val2017/000000000139.jpg", b"JPEG139")]);
    let server = Server::start(
        vec![
            (
                "/annotations/annotations_trainval2017.zip".into(),
                Serve::Ok(annotations.clone()),
            ),
            (
                "/annotations/stuff_annotations_trainval2017.zip".into(),
                Serve::Ok(stuff),
            ),
            ("/zips/train2017.zip".into(), Serve::Ok(train)),
            ("/zips/val2017.zip".into(), Serve::Ok(val)),
        ],
        4,
    );
    let mut opts = options(&dir, &server.base);
    // Our small archives are not the real ones, so their MD5s differ from the pinned ones.
    opts.verify_checksums = false;
    let report = download::download_bundle(Bundle::Coco, &opts).unwrap();
    let log = server.finish();
    // The original script's order, each asked for once, from the start.
    let paths: Vec<&str> = log.iter().map(|l| l.path.as_str()).collect();
    assert_eq!(
        paths,
        [
            "/annotations/annotations_trainval2017.zip",
            "/annotations/stuff_annotations_trainval2017.zip",
            "/zips/train2017.zip",
            "/zips/val2017.zip",
        ]
    );
    assert!(log.iter().all(|l| l.range.is_none()), "{log:?}");
    assert!(
        report
            .files
            .iter()
            .all(|(_, o)| matches!(o, Outcome::Downloaded { .. })),
        "{report:?}"
    );

    assert_eq!(
        tree(&dir),
        [
            ".annotations_trainval2017.zip.unpacked",
            ".stuff_annotations_trainval2017.zip.unpacked",
            "annotations/",
            "annotations/instances_train2017.json",
            "annotations/instances_val2017.json",
            "annotations/stuff_train2017.json",
            "annotations/stuff_val2017.json",
            "annotations_trainval2017.zip",
            "images/",
            "images/.train2017.zip.unpacked",
            "images/.val2017.zip.unpacked",
            "images/train2017/",
            "images/train2017/000000000009.jpg",
            "images/val2017/",
            "images/val2017/000000000139.jpg",
            "stuff_annotations_trainval2017.zip",
            "train2017.zip",
            "val2017.zip",
        ]
    );
    assert_eq!(
        read(dir.join("annotations/stuff_val2017.json")),
        b"{\"stuff\":\"val\"}"
    );
    assert_eq!(
        read(dir.join("images/train2017/000000000009.jpg")),
        b"JPEG9"
    );
    assert_eq!(read(dir.join("annotations_trainval2017.zip")), annotations);

    // Everything is complete: a second run asks the network for nothing.
    let idle = Server::start(vec![], 4);
    let again = download::download_bundle(Bundle::Coco, &options(&dir, &idle.base)).unwrap();
    assert!(
        again.files.iter().all(|(_, o)| *o == Outcome::Skipped),
        "{again:?}"
    );
    assert_eq!(again.bytes_downloaded(), 0);
    assert!(idle.finish().is_empty());
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn pinned_md5_mismatch_is_rejected_and_the_download_deleted() {
    let dir = scratch("md5");
    let fake = make_zip(&[("annotations/instances_val2017.json", b"{}")]);
    let server = Server::start(
        vec![(
            "/annotations/annotations_trainval2017.zip".into(),
            Serve::Ok(fake),
        )],
        1,
    );
    let opts = options(&dir, &server.base);
    let err = download::download_bundle(Bundle::Coco, &opts)
        .unwrap_err()
        .to_string();
    server.finish();
    let url = format!(
        "{}/annotations/annotations_trainval2017.zip",
        opts.base_url.as_ref().unwrap()
    );
    assert!(
        err.contains(&format!(
            "MD5 mismatch for {url}: expected f4bbac642086de4f52a3fdda2de5fa2c, got "
        )),
        "{err}"
    );
    assert!(err.contains("the download was deleted"), "{err}");
    assert!(tree(&dir).is_empty(), "{:?}", tree(&dir));
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn sha256_is_checked_when_known() {
    let dir = scratch("sha");
    let body = pseudo_random(5000, 3);
    let server = Server::start(vec![("/m/a.pt".into(), Serve::Ok(body.clone()))], 2);
    let opts = options(&dir, &server.base);
    let mut good = item("https://example.invalid/m/a.pt", "a.pt", None);
    // SHA-256 computed independently of the code under test (sha2 is the reference here).
    use sha2::Digest;
    let hex: String = sha2::Sha256::digest(&body)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    good.checksum = Some(Checksum::Sha256(hex));
    let mut bad = item("https://example.invalid/m/a.pt", "b.pt", None);
    bad.checksum = Some(Checksum::Sha256("00".repeat(32)));
    download::download(&[good], &opts).unwrap();
    let err = download::download(&[bad], &opts).unwrap_err().to_string();
    server.finish();
    assert_eq!(read(dir.join("a.pt")), body);
    assert!(err.contains("SHA-256 mismatch"), "{err}");
    assert!(!dir.join("b.pt").exists() && !dir.join("b.pt.part").exists());
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn cut_transfer_is_resumed_with_range_and_is_byte_identical() {
    let dir = scratch("resume");
    let body = pseudo_random(200_000, 1);
    let server = Server::start(
        vec![(
            "/sg2im-data/small/coco64.pt".into(),
            Serve::Cut {
                body: body.clone(),
                after: 70_000,
                times: 1,
            },
        )],
        2,
    );
    let opts = options(&dir, &server.base);
    let items = Bundle::Models {
        main: true,
        ablated: false,
        full: false,
    }
    .items();
    let items = &items[..1];
    let err = download::download(items, &opts).unwrap_err().to_string();
    assert!(
        err.contains("/sg2im-data/small/coco64.pt: transfer interrupted after"),
        "{err}"
    );
    assert!(
        err.contains("run the same command again to resume"),
        "{err}"
    );
    assert_eq!(
        std::fs::metadata(dir.join("coco64.pt.part")).unwrap().len(),
        70_000
    );
    assert!(!dir.join("coco64.pt").exists());

    let report = download::download(items, &opts).unwrap();
    let log = server.finish();
    assert_eq!(log.len(), 2, "{log:?}");
    assert_eq!(log[0].range, None);
    assert_eq!(log[1].range.as_deref(), Some("bytes=70000-"));
    assert_eq!(report.files[0].1, Outcome::Downloaded { bytes: 130_000 });
    assert!(read(dir.join("coco64.pt")) == body, "resumed file differs");
    assert_eq!(tree(&dir), ["coco64.pt"]);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn cut_transfers_are_retried_automatically_and_resume() {
    let dir = scratch("retry");
    let body = pseudo_random(150_000, 2);
    let server = Server::start(
        vec![(
            "/f.bin".into(),
            Serve::Cut {
                body: body.clone(),
                after: 40_000,
                times: 2,
            },
        )],
        3,
    );
    let mut opts = options(&dir, &server.base);
    opts.retries = 2;
    download::download(&[item("http://h/f.bin", "f.bin", None)], &opts).unwrap();
    let log = server.finish();
    let ranges: Vec<_> = log.iter().map(|l| l.range.as_deref()).collect();
    assert_eq!(ranges, [None, Some("bytes=40000-"), Some("bytes=80000-")]);
    assert!(read(dir.join("f.bin")) == body);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_stalled_transfer_is_cut_by_the_read_timeout_and_resumed() {
    let dir = scratch("stall");
    let body = pseudo_random(60_000, 6);
    let server = Server::start(
        vec![(
            "/f.bin".into(),
            Serve::Stall {
                body: body.clone(),
                after: 25_000,
            },
        )],
        2,
    );
    let mut opts = options(&dir, &server.base);
    opts.retries = 1;
    opts.read_timeout = Duration::from_millis(200);
    download::download(&[item("http://h/f.bin", "f.bin", None)], &opts).unwrap();
    // Cut by our 200 ms read timeout, not by the server closing after its 3 s silence: the
    // stalled response is still silent (its connection open) when the download is complete.
    assert_eq!(
        STALLS_ENDED.load(Ordering::SeqCst),
        0,
        "the 3 s stall ran out first"
    );
    let log = server.finish();
    let ranges: Vec<_> = log.iter().map(|l| l.range.as_deref()).collect();
    assert_eq!(ranges, [None, Some("bytes=25000-")]);
    assert!(read(dir.join("f.bin")) == body);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_server_that_ignores_range_restarts_the_file_cleanly() {
    let dir = scratch("norange");
    let body = pseudo_random(100_000, 4);
    // A stale partial file from an earlier attempt.
    std::fs::write(dir.join("f.bin.part"), &body[..30_000]).unwrap();
    let server = Server::start(vec![("/f.bin".into(), Serve::IgnoreRange(body.clone()))], 1);
    let opts = options(&dir, &server.base);
    download::download(&[item("http://h/f.bin", "f.bin", None)], &opts).unwrap();
    let log = server.finish();
    assert_eq!(log[0].range.as_deref(), Some("bytes=30000-"));
    assert!(
        read(dir.join("f.bin")) == body,
        "file not restarted cleanly"
    );
    assert_eq!(tree(&dir), ["f.bin"]);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_partial_file_that_is_already_whole_is_finished_without_refetching() {
    let dir = scratch("whole");
    let body = pseudo_random(10_000, 5);
    std::fs::write(dir.join("f.bin.part"), &body).unwrap();
    let server = Server::start(vec![("/f.bin".into(), Serve::Ok(body.clone()))], 1);
    let opts = options(&dir, &server.base);
    let report = download::download(&[item("http://h/f.bin", "f.bin", None)], &opts).unwrap();
    let log = server.finish();
    assert_eq!(log[0].range.as_deref(), Some("bytes=10000-"));
    assert_eq!(report.files[0].1, Outcome::Downloaded { bytes: 0 });
    assert!(read(dir.join("f.bin")) == body);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn corrupt_archive_is_rejected_and_nothing_half_written_is_left() {
    let dir = scratch("corrupt");
    let payload = b"VG-IMAGE-BYTES-0123456789".repeat(40);
    let mut bad = make_zip(&[
        ("VG_100K/1.jpg", b"first member is fine"),
        ("VG_100K/2.jpg", &payload),
    ]);
    let at = bad
        .windows(payload.len())
        .position(|w| w == payload.as_slice())
        .unwrap();
    bad[at + 500] ^= 0xff;
    // Data the user already has in the target must survive a failed unpack.
    std::fs::create_dir_all(dir.join("images/VG_100K")).unwrap();
    std::fs::write(dir.join("images/VG_100K/0.jpg"), b"older").unwrap();

    let server = Server::start(
        vec![
            ("/people/rak248/VG_100K_2/images.zip".into(), Serve::Ok(bad)),
            (
                "/static/data/dataset/objects.json.zip".into(),
                Serve::Ok(b"<html>oops</html>".to_vec()),
            ),
        ],
        2,
    );
    let opts = options(&dir, &server.base);
    let images = item(
        "https://cs.stanford.edu/people/rak248/VG_100K_2/images.zip",
        "images.zip",
        Some("images"),
    );
    let err = download::download(&[images], &opts)
        .unwrap_err()
        .to_string();
    assert!(err.contains("corrupt archive images.zip"), "{err}");
    assert!(err.contains("Invalid checksum"), "{err}");
    assert!(
        err.contains("run the same command again to download it anew"),
        "{err}"
    );
    // The bad download is gone (a retry re-fetches), nothing new is in the target.
    assert_eq!(
        tree(&dir),
        ["images/", "images/VG_100K/", "images/VG_100K/0.jpg"]
    );

    // Not a zip at all.
    let objects = item(
        "https://visualgenome.org/static/data/dataset/objects.json.zip",
        "objects.json.zip",
        Some(""),
    );
    let err = download::download(&[objects], &opts)
        .unwrap_err()
        .to_string();
    server.finish();
    assert!(err.contains("corrupt archive objects.json.zip"), "{err}");
    assert_eq!(
        tree(&dir),
        ["images/", "images/VG_100K/", "images/VG_100K/0.jpg"]
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn http_404_names_the_status_and_the_url() {
    let dir = scratch("404");
    let server = Server::start(vec![("/gone.zip".into(), Serve::NotFound)], 1);
    let opts = options(&dir, &server.base);
    let err = download::download(&[item("http://h/gone.zip", "gone.zip", Some(""))], &opts)
        .unwrap_err()
        .to_string();
    server.finish();
    assert_eq!(
        err,
        format!("HTTP 404 Not Found for {}/gone.zip", opts.base_url.unwrap())
    );
    assert!(tree(&dir).is_empty(), "{:?}", tree(&dir));
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn not_enough_disk_space_is_refused_before_writing() {
    let dir = scratch("space");
    let server = Server::start(vec![("/big.zip".into(), Serve::Huge)], 1);
    let opts = options(&dir, &server.base);
    let err = download::download(&[item("http://h/big.zip", "big.zip", Some(""))], &opts)
        .unwrap_err()
        .to_string();
    server.finish();
    assert!(
        err.contains("not enough free disk space for big.zip: need 888.2 PiB"),
        "{err}"
    );
    assert!(tree(&dir).is_empty(), "{:?}", tree(&dir));
    std::fs::remove_dir_all(&dir).unwrap();
}

/// A TCP socket bound to a free 127.0.0.1 port but not listening: connections to the port are
/// refused, and while the returned descriptor is open no other process can take the port (a
/// listener bound and closed again would leave it free for anyone).
fn port_nobody_listens_on() -> (u16, std::os::fd::OwnedFd) {
    use std::os::fd::FromRawFd;
    // SAFETY: plain socket calls on a descriptor this function owns; `addr` and `len` describe
    // a valid `sockaddr_in`.
    unsafe {
        let fd = libc::socket(libc::AF_INET, libc::SOCK_STREAM, 0);
        assert!(fd >= 0, "socket: {}", std::io::Error::last_os_error());
        let fd = std::os::fd::OwnedFd::from_raw_fd(fd);
        let mut addr: libc::sockaddr_in = std::mem::zeroed();
        addr.sin_family = libc::AF_INET as libc::sa_family_t;
        addr.sin_addr.s_addr = u32::from(std::net::Ipv4Addr::LOCALHOST).to_be();
        let mut len = std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t;
        let p = &mut addr as *mut libc::sockaddr_in as *mut libc::sockaddr;
        use std::os::fd::AsRawFd;
        assert_eq!(libc::bind(fd.as_raw_fd(), p, len), 0, "bind");
        assert_eq!(
            libc::getsockname(fd.as_raw_fd(), p, &mut len),
            0,
            "getsockname"
        );
        (u16::from_be(addr.sin_port), fd)
    }
}

#[test]
fn connection_refused_is_one_clear_line_from_the_binary() {
    let dir = scratch("refused");
    let (port, _held) = port_nobody_listens_on();
    let out = sg2im_cmd()
        .args(["download", "models", "--retries", "0", "--output_dir"])
        .arg(&dir)
        .args(["--base_url", &format!("http://127.0.0.1:{port}")])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert_eq!(
        stderr.lines().last().unwrap(),
        format!(
            "error: http://127.0.0.1:{port}/sg2im-data/small/coco64.pt: connection refused; \
             check your network connection (or point --base_url at a reachable mirror)"
        )
    );
    assert!(tree(&dir).is_empty(), "{:?}", tree(&dir));
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn vg_through_the_binary_gives_the_original_layout() {
    let dir = scratch("vg");
    let json_zip = |name: &str| make_zip(&[(name, b"[]")]);
    let routes = vec![
        (
            "/static/data/dataset/objects.json.zip".into(),
            Serve::Ok(json_zip("objects.json")),
        ),
        (
            "/static/data/dataset/attributes.json.zip".into(),
            Serve::Ok(json_zip("attributes.json")),
        ),
        (
            "/static/data/dataset/relationships.json.zip".into(),
            Serve::Ok(json_zip("relationships.json")),
        ),
        (
            "/static/data/dataset/object_alias.txt".into(),
            Serve::Ok(b"man,person\n".to_vec()),
        ),
        (
            "/static/data/dataset/relationship_alias.txt".into(),
            Serve::Ok(b"on top of,on\n".to_vec()),
        ),
        (
            "/static/data/dataset/image_data.json.zip".into(),
            Serve::Ok(json_zip("image_data.json")),
        ),
        (
            "/people/rak248/VG_100K_2/images.zip".into(),
            Serve::Ok(make_zip(&[("VG_100K/1.jpg", b"one")])),
        ),
        (
            "/people/rak248/VG_100K_2/images2.zip".into(),
            Serve::Ok(make_zip(&[("VG_100K_2/2.jpg", b"two")])),
        ),
    ];
    let server = Server::start(routes, 8);
    let out = sg2im_cmd()
        .args(["download", "vg", "--delete_archives", "--output_dir"])
        .arg(&dir)
        .env("SG2IM_DOWNLOAD_BASE_URL", &server.base)
        .output()
        .unwrap();
    assert_eq!(server.finish().len(), 8);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let visible: Vec<String> = tree(&dir)
        .into_iter()
        // Directories end in '/', so their last piece is "" and they stay.
        .filter(|p| !p.rsplit('/').next().unwrap_or("").starts_with('.'))
        .collect();
    assert_eq!(
        visible,
        [
            "attributes.json",
            "image_data.json",
            "images/",
            "images/VG_100K/",
            "images/VG_100K/1.jpg",
            "images/VG_100K_2/",
            "images/VG_100K_2/2.jpg",
            "object_alias.txt",
            "objects.json",
            "relationship_alias.txt",
            "relationships.json",
        ]
    );
    assert_eq!(read(dir.join("images/VG_100K_2/2.jpg")), b"two");
    assert_eq!(read(dir.join("relationship_alias.txt")), b"on top of,on\n");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn dry_run_lists_every_url_and_touches_nothing() {
    let dir = scratch("dry").join("not-created");
    let out = sg2im_cmd()
        .args([
            "download",
            "models",
            "--full",
            "--ablated",
            "--dry_run",
            "--output_dir",
        ])
        .arg(&dir)
        .args(["--base_url", "http://127.0.0.1:9/mirror/"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    // One `fetch` line per file: `--ablated` asks for the 12 models of
    // download_ablated_models.sh (into the output folder), `--full` for the 15 of
    // download_full_models.sh (the 3 main models and the 12 ablations, unstripped, into
    // `full/`); the 3 main stripped models of download_models.sh are not asked for.
    let lines: Vec<&str> = stdout.lines().collect();
    let prefix = "fetch      http://127.0.0.1:9/mirror/sg2im-data/";
    assert!(lines.iter().all(|l| l.starts_with(prefix)), "{stdout}");
    let count = |folder: &str| {
        lines
            .iter()
            .filter(|l| l[prefix.len()..].starts_with(folder))
            .count()
    };
    assert_eq!(
        (count("small/"), count("full/"), lines.len()),
        (12, 15, 27),
        "{stdout}"
    );
    let want = format!(
        "fetch      http://127.0.0.1:9/mirror/sg2im-data/full/vg128.pt -> {}",
        dir.join("full/vg128.pt").display()
    );
    assert!(stdout.lines().any(|l| l == want), "{stdout}");
    assert!(!dir.exists());

    let out = sg2im_cmd()
        .args(["download", "coco", "--full"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("only apply to `sg2im download models`"));
    std::fs::remove_dir_all(dir.parent().unwrap()).unwrap();
}

#[test]
fn inception_weights_are_checked_against_the_sha256_prefix_in_their_name() {
    let dir = scratch("inception");
    let path =
        "/toshas/torch-fidelity/releases/download/v0.2.0/weights-inception-2015-12-05-6726825d.pth";
    let body = pseudo_random(4000, 11);
    use sha2::Digest;
    let hex: String = sha2::Sha256::digest(&body)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    // The file's real name carries 6726825d; our body hashes to something else, so the
    // download through the binary must be rejected and deleted.
    assert!(!hex.starts_with("6726825d"));
    let server = Server::start(
        vec![
            (path.into(), Serve::Ok(body.clone())),
            ("/w/ok.pth".into(), Serve::Ok(body.clone())),
        ],
        3,
    );
    let out = sg2im_cmd()
        .args(["download", "inception", "--retries", "0", "--output_dir"])
        .arg(&dir)
        .args(["--base_url", &server.base])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("SHA-256 mismatch") && stderr.contains("expected 6726825d, got "),
        "{stderr}"
    );
    assert!(tree(&dir).is_empty(), "{:?}", tree(&dir));
    // A prefix that does match is accepted (the library path the command uses).
    let opts = options(&dir, &server.base);
    let mut good = item("https://example.invalid/w/ok.pth", "ok.pth", None);
    good.checksum = Some(Checksum::Sha256Prefix(hex[..8].to_string()));
    download::download(&[good], &opts).unwrap();
    server.finish();
    assert_eq!(read(dir.join("ok.pth")), body);
    std::fs::remove_dir_all(&dir).unwrap();
}
