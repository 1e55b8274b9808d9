//! COCO-Stuff loader benchmark: annotation-load time (JSON parsing, filtering, validation)
//! and loader throughput (images/s into collated batches) on a large synthetic COCO-format set
//! generated here into a temporary directory. Prints medians.
//!
//! `cargo bench --bench coco_loader` (release). Scale with `SG2IM_BENCH_COCO_IMAGES`
//! (annotated images, default 20 000) and `SG2IM_BENCH_COCO_FILES` (JPEG files written and
//! loaded in the throughput runs, default 384).

use sg2im::data::coco::{CocoConfig, CocoSceneGraphDataset};
use sg2im::data::{SceneGraphDataset, collate, rle};
use sg2im::rng::PyRandom;
use std::fmt::Write as _;
use std::path::Path;
use std::time::Instant;

const W: usize = 640;
const H: usize = 480;

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[v.len() / 2]
}

/// A star-shaped polygon with `n` vertices around `(cx, cy)`.
fn polygon(rng: &mut PyRandom, cx: f64, cy: f64, r: f64, n: usize) -> String {
    let mut s = String::from("[");
    for i in 0..n {
        let a = i as f64 / n as f64 * std::f64::consts::TAU;
        let rr = r * (0.6 + 0.4 * rng.random());
        let (x, y) = (cx + rr * a.cos(), cy + rr * a.sin());
        let _ = write!(s, "{}{:.2},{:.2}", if i > 0 { "," } else { "" }, x, y);
    }
    s.push(']');
    s
}

/// Writes `instances.json` and `stuff.json` for `n` images of 640×480 (4 things + 3 stuff
/// bands each, all kept by the default filters) and JPEGs for the first `files` images.
fn generate(dir: &Path, n: usize, files: usize) {
    let mut rng = PyRandom::seed(1234);
    let mut inst = String::with_capacity(n * 2200);
    let mut stuff = String::with_capacity(n * 1200);
    inst.push_str("{\"info\": {}, \"licenses\": [], \"images\": [");
    for i in 0..n {
        let _ = write!(
            inst,
            "{}{{\"license\": 1, \"file_name\": \"{:012}.jpg\", \"height\": {H}, \"width\": {W}, \"id\": {}}}",
            if i > 0 { "," } else { "" },
            i + 1,
            i + 1
        );
    }
    inst.push_str("], \"annotations\": [");
    stuff.push_str("{\"info\": {}, \"licenses\": [], \"images\": [], \"annotations\": [");
    let (mut ann_id, mut first_i, mut first_s) = (1u64, true, true);
    for i in 0..n {
        for _ in 0..4 {
            let r = 60.0 + 60.0 * rng.random();
            let cx = r + (W as f64 - 2.0 * r) * rng.random();
            let cy = r + (H as f64 - 2.0 * r) * rng.random();
            let nv = 16 + rng.randbelow(16) as usize;
            let poly = polygon(&mut rng, cx, cy, r, nv);
            let _ = write!(
                inst,
                "{}{{\"segmentation\": [{poly}], \"area\": 1.0, \"iscrowd\": 0, \"image_id\": {}, \"bbox\": [{:.2},{:.2},{:.2},{:.2}], \"category_id\": {}, \"id\": {ann_id}}}",
                if first_i { "" } else { "," },
                i + 1,
                cx - r,
                cy - r,
                2.0 * r,
                2.0 * r,
                1 + rng.randbelow(80)
            );
            first_i = false;
            ann_id += 1;
        }
        // Three horizontal stuff bands, as compressed RLE.
        let cuts = [
            0,
            120 + rng.randbelow(60) as usize,
            300 + rng.randbelow(60) as usize,
            H,
        ];
        for b in 0..3 {
            let (y0, y1) = (cuts[b], cuts[b + 1]);
            let mut counts = Vec::with_capacity(2 * W + 1);
            counts.push(y0 as u32);
            for _ in 0..W - 1 {
                counts.push((y1 - y0) as u32);
                counts.push((H - (y1 - y0)) as u32);
            }
            counts.push((y1 - y0) as u32);
            counts.push((H - y1) as u32);
            // RLE strings use ASCII 48..111, which includes the backslash: escape it for JSON.
            let s =
                rle::to_compressed_string(&rle::Rle { h: H, w: W, counts }).replace('\\', "\\\\");
            let _ = write!(
                stuff,
                "{}{{\"segmentation\": {{\"counts\": \"{s}\", \"size\": [{H}, {W}]}}, \"area\": 1.0, \"iscrowd\": 0, \"image_id\": {}, \"bbox\": [0, {y0}, {W}, {}], \"category_id\": {}, \"id\": {ann_id}}}",
                if first_s { "" } else { "," },
                i + 1,
                y1 - y0,
                92 + rng.randbelow(91)
            );
            first_s = false;
            ann_id += 1;
        }
    }
    let mut cats = String::new();
    for c in 1..=90 {
        let _ = write!(
            cats,
            "{}{{\"supercategory\": \"s\", \"id\": {c}, \"name\": \"thing{c}\"}}",
            if c > 1 { "," } else { "" }
        );
    }
    let _ = write!(inst, "], \"categories\": [{cats}]}}");
    let mut cats = String::new();
    for c in 92..=183 {
        let _ = write!(
            cats,
            "{}{{\"supercategory\": \"s\", \"id\": {c}, \"name\": \"stuff{c}\"}}",
            if c > 92 { "," } else { "" }
        );
    }
    let _ = write!(stuff, "], \"categories\": [{cats}]}}");
    std::fs::write(dir.join("instances.json"), inst).unwrap();
    std::fs::write(dir.join("stuff.json"), stuff).unwrap();

    std::fs::create_dir_all(dir.join("images")).unwrap();
    for i in 0..files {
        let mut px = vec![0u8; W * H * 3];
        for y in 0..H {
            for x in 0..W {
                let v = ((x * 7 + y * 3 + i * 11) % 256) as u8;
                let noise = (rng.genrand_uint32() & 15) as u8;
                px[(y * W + x) * 3] = v.wrapping_add(noise);
                px[(y * W + x) * 3 + 1] = ((y * 2 + i) % 256) as u8;
                px[(y * W + x) * 3 + 2] = ((x + 3 * i) % 256) as u8 ^ noise;
            }
        }
        let mut c = mozjpeg::Compress::new(mozjpeg::ColorSpace::JCS_RGB);
        c.set_size(W, H);
        c.set_quality(90.0);
        let mut c = c.start_compress(Vec::new()).unwrap();
        c.write_scanlines(&px).unwrap();
        let jpeg = c.finish().unwrap();
        std::fs::write(dir.join(format!("images/{:012}.jpg", i + 1)), jpeg).unwrap();
    }
}

fn config(dir: &Path, max_samples: Option<usize>) -> CocoConfig {
    CocoConfig {
        image_dir: dir.join("images"),
        instances_json: dir.join("instances.json"),
        stuff_json: Some(dir.join("stuff.json")),
        max_samples,
        ..CocoConfig::default()
    }
}

/// Loads every sample on `threads` workers, collating batches of 32; returns images/s.
fn throughput(ds: &CocoSceneGraphDataset, threads: usize) -> f64 {
    let n = ds.len();
    let next = std::sync::atomic::AtomicUsize::new(0);
    let start = Instant::now();
    std::thread::scope(|s| {
        for _ in 0..threads {
            s.spawn(|| {
                loop {
                    let b = next.fetch_add(32, std::sync::atomic::Ordering::Relaxed);
                    if b >= n {
                        break;
                    }
                    let samples: Vec<_> = (b..(b + 32).min(n))
                        .map(|i| ds.get(i, i as u64).unwrap())
                        .collect();
                    std::hint::black_box(collate(&samples));
                }
            });
        }
    });
    n as f64 / start.elapsed().as_secs_f64()
}

fn main() {
    // `cargo bench` passes `--bench`; `cargo test --benches` runs this too, so keep it small
    // there.
    let quick = !std::env::args().any(|a| a == "--bench");
    let n = env_usize("SG2IM_BENCH_COCO_IMAGES", if quick { 500 } else { 20_000 });
    let files = env_usize("SG2IM_BENCH_COCO_FILES", if quick { 32 } else { 384 }).min(n);
    let dir = std::env::temp_dir().join(format!("sg2im-bench-coco-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let t = Instant::now();
    generate(&dir, n, files);
    let mb = |f: &str| std::fs::metadata(dir.join(f)).unwrap().len() as f64 / 1e6;
    println!(
        "synthetic COCO set: {n} images, {} instance + {} stuff annotations, instances {:.1} MB, stuff {:.1} MB, {files} JPEGs {W}x{H} (generated in {:.1} s)",
        4 * n,
        3 * n,
        mb("instances.json"),
        mb("stuff.json"),
        t.elapsed().as_secs_f64()
    );

    let reps = if quick { 1 } else { 5 };
    let load: Vec<f64> = (0..reps)
        .map(|_| {
            let t = Instant::now();
            let ds = CocoSceneGraphDataset::new(config(&dir, None)).unwrap();
            assert_eq!(ds.len(), n);
            t.elapsed().as_secs_f64()
        })
        .collect();
    println!(
        "annotation load (parse + filter + validate, {n} images): median {:.3} s",
        median(load)
    );

    let ds = CocoSceneGraphDataset::new(config(&dir, Some(files))).unwrap();
    let cores = std::thread::available_parallelism().map_or(1, |c| c.get());
    let mut thread_counts = vec![1];
    if cores > 1 {
        thread_counts.push(cores);
    }
    for threads in thread_counts {
        let runs: Vec<f64> = (0..reps.min(3)).map(|_| throughput(&ds, threads)).collect();
        println!(
            "loader throughput ({threads} thread(s), 64x64 images, mask 16, batches of 32): median {:.1} images/s",
            median(runs)
        );
    }
    std::fs::remove_dir_all(&dir).unwrap();
}
