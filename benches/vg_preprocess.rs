//! `preprocess-vg` on a large synthetic Visual Genome input: wall time and peak memory.
//!
//! ```text
//! cargo bench --bench vg_preprocess                       # 100 000 images, 3 runs
//! VG_BENCH_IMAGES=108077 VG_BENCH_RUNS=5 cargo bench --bench vg_preprocess
//! VG_BENCH_DIR=/tmp/vgbench cargo bench --bench vg_preprocess   # keep / reuse the input
//! ```
//!
//! The generator writes the raw JSON files in VG 1.4's layout (every field the real files have,
//! so the parser skips what it would skip there) with about VG's per-image statistics: ~35
//! objects (with duplicate names, aliases, tiny boxes), ~20 relationships and an attribute
//! record per object. No images are written (preprocessing never opens them). Each run is a
//! child process, so its peak resident memory (`VmHWM`) is its own.

use sg2im::data::preprocess_vg::{PreprocessVgConfig, preprocess_vg};
use std::fmt::Write as _;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::time::Instant;

const NAMES: [&str; 60] = [
    "man", "woman", "person", "tree", "building", "window", "shirt", "wall", "sign", "sky",
    "ground", "grass", "table", "car", "head", "hand", "hair", "leg", "water", "plate", "cloud",
    "door", "pole", "light", "street", "chair", "fence", "snow", "floor", "road", "train", "boy",
    "girl", "bus", "umbrella", "dog", "cat", "horse", "elephant", "giraffe", "zebra", "pants",
    "jacket", "hat", "shoe", "bag", "car ", "Man", "MAN", "t shirt", "tshirt", "men", "leaves",
    "rock", "line", "shadow", "wheel", "bench", "boat", "kite",
];
const PREDICATES: [&str; 24] = [
    "on",
    "has",
    "in",
    "of",
    "wearing",
    "near",
    "with",
    "above",
    "holding",
    "behind",
    "under",
    "sitting on",
    "ON",
    "On",
    " on",
    "in front of",
    "on top of",
    "next to",
    "riding",
    "standing on",
    "beside",
    "by",
    "wears",
    "attached to",
];
const ATTRIBUTES: [&str; 20] = [
    "white", "black", "blue", "green", "red", "brown", "yellow", "small", "large", "wooden",
    "gray", "silver", "tall", "metal", "White", "Black", "long", "dark", "clear", "round",
];
const SIZES: [(u32, u32); 8] = [
    (800, 600),
    (500, 375),
    (500, 333),
    (800, 533),
    (1024, 768),
    (640, 480),
    (150, 170),
    (500, 500),
];

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        // SplitMix64.
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// Writes the seven input files for `n` images into `dir`; returns their total size.
fn generate(dir: &Path, n: usize) -> std::io::Result<u64> {
    std::fs::create_dir_all(dir)?;
    let open = |name: &str| -> std::io::Result<BufWriter<std::fs::File>> {
        Ok(BufWriter::with_capacity(
            1 << 20,
            std::fs::File::create(dir.join(name))?,
        ))
    };
    let (mut images, mut objects, mut attributes, mut relationships) = (
        open("image_data.json")?,
        open("objects.json")?,
        open("attributes.json")?,
        open("relationships.json")?,
    );
    let mut rng = Rng(42);
    let mut ids = Vec::with_capacity(n);
    let (mut next_object, mut next_rel) = (1_000_000u64, 3_000_000u64);
    for w in [
        &mut images,
        &mut objects,
        &mut attributes,
        &mut relationships,
    ] {
        w.write_all(b"[")?;
    }
    let mut buf = String::new();
    for i in 0..n {
        let id = 1 + i as u64 * 23;
        ids.push(id);
        let sep = if i == 0 { "" } else { ", " };
        let (w, h) = SIZES[rng.below(SIZES.len() as u64) as usize];
        let dir_name = if i % 2 == 0 { "VG_100K" } else { "VG_100K_2" };
        write!(
            images,
            "{sep}{{\"width\": {w}, \"url\": \"https://cs.stanford.edu/people/rak248/{dir_name}/{id}.jpg\", \
             \"height\": {h}, \"image_id\": {id}, \"coco_id\": null, \"flickr_id\": {}}}",
            id * 7
        )?;

        let n_obj = 10 + rng.below(51) as usize; // 10..=60, mean 35
        let mut obj_ids = Vec::with_capacity(n_obj);
        buf.clear();
        let _ = write!(buf, "{sep}{{\"image_id\": {id}, \"objects\": [");
        for k in 0..n_obj {
            let oid = next_object;
            next_object += 1;
            obj_ids.push(oid);
            let name = NAMES[rng.below(NAMES.len() as u64) as usize];
            let names = if rng.below(10) == 0 {
                format!("\"rare{}\", \"{name}\"", rng.below(5000))
            } else {
                format!("\"{name}\"")
            };
            let (x, y) = (rng.below(w as u64 / 2), rng.below(h as u64 / 2));
            let (bw, bh) = (4 + rng.below(w as u64 / 2), 4 + rng.below(h as u64 / 2));
            let _ = write!(
                buf,
                "{}{{\"synsets\": [\"{}.n.01\"], \"h\": {bh}, \"object_id\": {oid}, \
                 \"merged_object_ids\": [], \"names\": [{names}], \"w\": {bw}, \"y\": {y}, \"x\": {x}}}",
                if k == 0 { "" } else { ", " },
                name.trim()
            );
        }
        let _ = write!(
            buf,
            "], \"image_url\": \"https://cs.stanford.edu/people/rak248/{dir_name}/{id}.jpg\"}}"
        );
        objects.write_all(buf.as_bytes())?;

        buf.clear();
        let _ = write!(buf, "{sep}{{\"image_id\": {id}, \"attributes\": [");
        for (k, &oid) in obj_ids.iter().enumerate() {
            let _ = write!(
                buf,
                "{}{{\"synsets\": [], \"h\": 10, \"object_id\": {oid}, \"names\": [\"x\"], \"w\": 10",
                if k == 0 { "" } else { ", " }
            );
            if rng.below(2) == 0 {
                let m = 1 + rng.below(3);
                let list: Vec<String> = (0..m)
                    .map(|_| format!("\"{}\"", ATTRIBUTES[rng.below(20) as usize]))
                    .collect();
                let _ = write!(buf, ", \"attributes\": [{}]", list.join(", "));
            }
            buf.push_str(", \"y\": 1, \"x\": 1}");
        }
        buf.push_str("]}");
        attributes.write_all(buf.as_bytes())?;

        buf.clear();
        let _ = write!(buf, "{sep}{{\"relationships\": [");
        let n_rel = rng.below(41) as usize; // 0..=40, mean 20
        for k in 0..n_rel {
            let s = obj_ids[rng.below(n_obj as u64) as usize];
            let o = obj_ids[rng.below(n_obj as u64) as usize];
            let p = PREDICATES[rng.below(PREDICATES.len() as u64) as usize];
            let _ = write!(
                buf,
                "{}{{\"predicate\": \"{p}\", \"object\": {{\"object_id\": {o}, \"x\": 1, \"y\": 2, \
                 \"w\": 30, \"h\": 40, \"name\": \"tree\", \"synsets\": [\"tree.n.01\"]}}, \
                 \"relationship_id\": {}, \"synsets\": [], \"subject\": {{\"object_id\": {s}, \"x\": 3, \
                 \"y\": 4, \"w\": 50, \"h\": 60, \"names\": [\"man\"], \"synsets\": [\"man.n.01\"]}}}}",
                if k == 0 { "" } else { ", " },
                next_rel
            );
            next_rel += 1;
        }
        let _ = write!(buf, "], \"image_id\": {id}}}");
        relationships.write_all(buf.as_bytes())?;
    }
    for mut w in [images, objects, attributes, relationships] {
        w.write_all(b"]")?;
        w.flush()?;
    }
    // 80/10/10 splits, ids ascending in each (as vg_splits.json).
    let (a, b) = (n * 8 / 10, n * 9 / 10);
    let list = |s: &[u64]| s.iter().map(u64::to_string).collect::<Vec<_>>().join(", ");
    std::fs::write(
        dir.join("vg_splits.json"),
        format!(
            "{{\"train\": [{}], \"test\": [{}], \"val\": [{}]}}",
            list(&ids[..a]),
            list(&ids[a..b]),
            list(&ids[b..])
        ),
    )?;
    std::fs::write(
        dir.join("object_alias.txt"),
        "man,men, Man\nt shirt, tshirt\nperson,people\n",
    )?;
    std::fs::write(
        dir.join("relationship_alias.txt"),
        "on,on top of\nnext to,beside, by\nwearing,wears\n",
    )?;
    let mut total = 0;
    for e in std::fs::read_dir(dir)? {
        total += e?.metadata()?.len();
    }
    Ok(total)
}

fn peak_rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

/// One run in this (child) process; prints `seconds peak_kib`.
fn child(dir: &Path) {
    let out = dir.join("out");
    let cfg = PreprocessVgConfig {
        splits_json: dir.join("vg_splits.json"),
        images_json: dir.join("image_data.json"),
        objects_json: dir.join("objects.json"),
        attributes_json: dir.join("attributes.json"),
        object_aliases: dir.join("object_alias.txt"),
        relationship_aliases: dir.join("relationship_alias.txt"),
        relationships_json: dir.join("relationships.json"),
        output_vocab_json: out.join("vocab.json"),
        output_h5_dir: out,
        ..PreprocessVgConfig::default()
    };
    let t = Instant::now();
    let summary = preprocess_vg(&cfg, &mut std::io::sink()).expect("preprocess-vg failed");
    let secs = t.elapsed().as_secs_f64();
    let images: usize = summary.splits.iter().map(|s| s.num_images).sum();
    println!("{secs} {} {images}", peak_rss_kib());
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if let Some(pos) = args.iter().position(|a| a == "--child") {
        child(Path::new(&args[pos + 1]));
        return;
    }
    let n: usize = std::env::var("VG_BENCH_IMAGES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100_000);
    let runs: usize = std::env::var("VG_BENCH_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3);
    // VG_BENCH_DIR keeps the generated input for later runs (and reuses it if present).
    let keep = std::env::var_os("VG_BENCH_DIR").map(PathBuf::from);
    let dir = keep.clone().unwrap_or_else(|| {
        std::env::temp_dir().join(format!("sg2im-vg-bench-{}", std::process::id()))
    });
    let t = Instant::now();
    let bytes = if keep.is_some() && dir.join("vg_splits.json").is_file() {
        std::fs::read_dir(&dir)
            .and_then(|d| {
                d.map(|e| Ok(e?.metadata()?.len()))
                    .sum::<std::io::Result<u64>>()
            })
            .expect("reading the kept input")
    } else {
        generate(&dir, n).expect("generating the synthetic input")
    };
    println!(
        "vg_preprocess: generated {n} images, {:.0} MB of raw JSON in {:.1} s",
        bytes as f64 / 1e6,
        t.elapsed().as_secs_f64()
    );
    let exe = std::env::current_exe().expect("current exe");
    let (mut secs, mut peaks) = (Vec::new(), Vec::new());
    let mut kept = 0;
    for _ in 0..runs {
        let out = std::process::Command::new(&exe)
            .arg("--child")
            .arg(&dir)
            .output()
            .expect("running a child");
        assert!(
            out.status.success(),
            "child failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let line = String::from_utf8_lossy(&out.stdout);
        let f: Vec<f64> = line
            .split_whitespace()
            .filter_map(|x| x.parse().ok())
            .collect();
        secs.push(f[0]);
        peaks.push(f[1] / 1024.0);
        kept = f[2] as usize;
    }
    println!(
        "vg_preprocess: {n} images ({kept} written): median {:.2} s, median peak RSS {:.0} MiB over {runs} runs (runs: {:?} s)",
        median(&mut secs.clone()),
        median(&mut peaks),
        secs.iter()
            .map(|s| (s * 100.0).round() / 100.0)
            .collect::<Vec<_>>()
    );
    if keep.is_none() {
        let _ = std::fs::remove_dir_all(&dir);
    }
}
