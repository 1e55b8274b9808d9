//! Synthetic scenes in the real COCO 2017 / COCO-Stuff 2017 formats (spec §15.1, §15.6):
//! `annotations/instances_{train,val}2017.json`, `annotations/stuff_{train,val}2017.json` and
//! `images/{train,val}2017/<12-digit id>.jpg`.
//!
//! Things are written as polygons (their shape polygon when fully visible, exact staircase
//! outlines of the visible pixels when partly hidden), a few as `iscrowd=1` uncompressed RLE;
//! stuff as compressed RLE, one annotation per (image, class), with every thing pixel labelled
//! 183 `other` as in COCO-Stuff. Thing category ids have COCO's gaps, stuff ids are the real
//! COCO-Stuff ids. Scene `i` of the train split is the scene [`super::ShapesDataset`] generates
//! for index `i` with the same seed and image size, so the loader and the dataset can be
//! compared object for object.

use super::json_stream::{ArrayWriter, StreamFile};
use super::scene::{Category, Scene, SceneConfig, Segmentation, Stuff};
use crate::io::atomic::write_bytes_atomic;
use crate::rng::SplitMix64;
use crate::{Error, Result};
use serde::Serialize;
use serde_json::json;
use std::path::{Path, PathBuf};

/// What `make-synthetic --format coco` writes.
#[derive(Debug, Clone, PartialEq)]
pub struct CocoExportOptions {
    pub num_train: usize,
    pub num_val: usize,
    pub seed: u64,
    /// `(H, W)` of every image; `None` = common COCO sizes that vary per image.
    pub image_size: Option<(usize, usize)>,
    pub write_images: bool,
    /// Generation threads (0 = all cores).
    pub threads: usize,
}

impl CocoExportOptions {
    pub fn new(num_train: usize) -> Self {
        CocoExportOptions {
            num_train,
            num_val: num_train.div_ceil(10),
            seed: 0,
            image_size: None,
            write_images: true,
            threads: 0,
        }
    }
}

/// Counts of what was written, per split.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CocoSplitSummary {
    pub images: usize,
    pub instance_annotations: usize,
    pub crowd_annotations: usize,
    pub stuff_annotations: usize,
}

/// Common COCO image sizes `(W, H)`.
const COCO_SIZES: [(usize, usize); 10] = [
    (640, 480),
    (640, 427),
    (480, 640),
    (640, 426),
    (500, 375),
    (427, 640),
    (640, 424),
    (612, 612),
    (640, 360),
    (375, 500),
];

/// COCO's "other" stuff class: every thing pixel in COCO-Stuff.
pub const OTHER_ID: i64 = 183;

/// Salt of the scene seeds of each split; train's is the one [`super::ShapesDataset`] uses.
pub(crate) const TRAIN_SALT: u64 = 0;
const VAL_SALT: u64 = 0x0076_616c;

/// The `(H, W)` config of scene `index` of a split, as both the dataset and the export use it.
pub(crate) fn scene_config(height: usize, width: usize) -> SceneConfig {
    let mut cfg = SceneConfig::new(height, width);
    cfg.crowd_probability = 0.03;
    cfg
}

/// The seed of scene `index` of a split.
pub(crate) fn scene_seed(seed: u64, salt: u64, index: usize) -> u64 {
    SplitMix64::from_parts(&[seed, salt, index as u64]).next_u64()
}

struct ImageInfo {
    id: u64,
    width: usize,
    height: usize,
    license: u32,
    date: String,
    flickr: String,
    grayscale: bool,
    quality: u8,
}

fn image_info(opts: &CocoExportOptions, salt: u64, id_offset: usize, index: usize) -> ImageInfo {
    let mut rng = SplitMix64::from_parts(&[opts.seed, salt, index as u64, 0x696d67]);
    let (width, height) = match opts.image_size {
        Some((h, w)) => (w, h),
        None => COCO_SIZES[rng.below(COCO_SIZES.len())],
    };
    ImageInfo {
        // Unique and increasing across both splits, sparse like real COCO ids.
        id: 1 + 7 * (id_offset + index) as u64 + rng.below(7) as u64,
        width,
        height,
        license: 1 + rng.below(8) as u32,
        date: format!(
            "2013-{:02}-{:02} {:02}:{:02}:{:02}",
            1 + rng.below(12),
            1 + rng.below(28),
            rng.below(24),
            rng.below(60),
            rng.below(60)
        ),
        flickr: format!(
            "http://farm{}.staticflickr.com/{}/{}_{:010x}_z.jpg",
            1 + rng.below(9),
            1000 + rng.below(9000),
            1_000_000_000 + rng.below(9_000_000_000),
            rng.next_u64() & 0xff_ffff_ffff
        ),
        grayscale: rng.chance(0.02),
        quality: 75 + rng.below(21) as u8,
    }
}

#[derive(Serialize)]
struct ImageRecord<'a> {
    license: u32,
    file_name: &'a str,
    coco_url: &'a str,
    height: usize,
    width: usize,
    date_captured: &'a str,
    flickr_url: &'a str,
    id: u64,
}

#[derive(Serialize)]
struct Annotation {
    segmentation: serde_json::Value,
    area: f64,
    iscrowd: u8,
    image_id: u64,
    bbox: [f64; 4],
    category_id: i64,
    id: u64,
}

fn licenses() -> serde_json::Value {
    let l = [
        (
            "http://creativecommons.org/licenses/by-nc-sa/2.0/",
            "Attribution-NonCommercial-ShareAlike License",
        ),
        (
            "http://creativecommons.org/licenses/by-nc/2.0/",
            "Attribution-NonCommercial License",
        ),
        (
            "http://creativecommons.org/licenses/by-nc-nd/2.0/",
            "Attribution-NonCommercial-NoDerivs License",
        ),
        (
            "http://creativecommons.org/licenses/by/2.0/",
            "Attribution License",
        ),
        (
            "http://creativecommons.org/licenses/by-sa/2.0/",
            "Attribution-ShareAlike License",
        ),
        (
            "http://creativecommons.org/licenses/by-nd/2.0/",
            "Attribution-NoDerivs License",
        ),
        (
            "http://flickr.com/commons/usage/",
            "No known copyright restrictions",
        ),
        (
            "http://www.usa.gov/copyright.shtml",
            "United States Government Work",
        ),
    ];
    serde_json::Value::Array(
        l.iter()
            .enumerate()
            .map(|(i, (url, name))| json!({"url": url, "id": i + 1, "name": name}))
            .collect(),
    )
}

fn info() -> serde_json::Value {
    json!({
        "description": "sg2im synthetic shapes, COCO 2017 format",
        "url": "",
        "version": "1.0",
        "year": 2017,
        "contributor": "sg2im make-synthetic",
        "date_created": "2017/09/01"
    })
}

fn thing_categories() -> serde_json::Value {
    serde_json::Value::Array(
        Category::all()
            .into_iter()
            .filter_map(|c| match c {
                Category::Thing(_, s) => {
                    Some(json!({"supercategory": s.name(), "id": c.coco_id(), "name": c.name()}))
                }
                Category::Stuff(_) => None,
            })
            .collect(),
    )
}

fn stuff_categories() -> serde_json::Value {
    let mut stuff: Vec<Stuff> = Stuff::ALL.to_vec();
    stuff.sort_by_key(|s| s.coco_id());
    let mut v: Vec<serde_json::Value> = stuff
        .iter()
        .map(|s| json!({"supercategory": s.supercategory(), "id": s.coco_id(), "name": s.name()}))
        .collect();
    v.push(json!({"supercategory": "other", "id": OTHER_ID, "name": "other"}));
    serde_json::Value::Array(v)
}

/// One generated image and its annotations.
struct CocoImage {
    instances: Vec<Annotation>,
    stuff: Vec<Annotation>,
    jpeg: Option<Vec<u8>>,
}

/// Compressed RLE `{"counts": str, "size": [h, w]}` of RLE counts.
fn compressed_rle(counts: Vec<u32>, h: usize, w: usize) -> serde_json::Value {
    let rle = crate::data::rle::Rle { h, w, counts };
    json!({"counts": crate::data::rle::to_compressed_string(&rle), "size": [h, w]})
}

fn make_image(
    info: &ImageInfo,
    opts: &CocoExportOptions,
    salt: u64,
    index: usize,
) -> Result<CocoImage> {
    let cfg = scene_config(info.height, info.width);
    let scene = Scene::generate(scene_seed(opts.seed, salt, index), &cfg)?;
    let (h, w) = (scene.height, scene.width);
    let mut instances = Vec::new();
    let mut stuff = Vec::new();
    for (k, o) in scene.objects.iter().enumerate() {
        let segmentation = match scene.segmentation(k) {
            Segmentation::Polygons(p) => json!(p),
            Segmentation::Rle(counts) if o.category.is_thing() => {
                json!({"counts": counts, "size": [h, w]})
            }
            Segmentation::Rle(counts) => compressed_rle(counts, h, w),
        };
        let ann = Annotation {
            segmentation,
            area: o.area as f64,
            iscrowd: u8::from(o.iscrowd),
            image_id: info.id,
            bbox: o.bbox,
            category_id: o.category.coco_id(),
            id: 0,
        };
        if o.category.is_thing() {
            instances.push(ann);
        } else {
            stuff.push(ann);
        }
    }
    let things = scene.things_mask();
    let area = things.iter().filter(|&&v| v != 0).count();
    if area > 0 {
        let (mut x0, mut y0, mut x1, mut y1) = (w, h, 0, 0);
        for y in 0..h {
            for x in 0..w {
                if things[y * w + x] != 0 {
                    x0 = x0.min(x);
                    y0 = y0.min(y);
                    x1 = x1.max(x + 1);
                    y1 = y1.max(y + 1);
                }
            }
        }
        stuff.push(Annotation {
            segmentation: compressed_rle(super::raster::rle_counts_of_mask(&things, h, w), h, w),
            area: area as f64,
            iscrowd: 0,
            image_id: info.id,
            bbox: [x0 as f64, y0 as f64, (x1 - x0) as f64, (y1 - y0) as f64],
            category_id: OTHER_ID,
            id: 0,
        });
    }
    let jpeg = if opts.write_images {
        Some(super::encode_jpeg(
            &scene.render(),
            h,
            w,
            info.quality,
            info.grayscale,
        )?)
    } else {
        None
    };
    Ok(CocoImage {
        instances,
        stuff,
        jpeg,
    })
}

fn write_split(
    out: &Path,
    split: &str,
    opts: &CocoExportOptions,
    salt: u64,
    id_offset: usize,
    count: usize,
) -> Result<CocoSplitSummary> {
    let image_dir = out.join("images").join(format!("{split}2017"));
    let ann_dir = out.join("annotations");
    for d in [&image_dir, &ann_dir] {
        if opts.write_images || d == &ann_dir {
            std::fs::create_dir_all(d).map_err(|e| Error::io(d, e))?;
        }
    }
    let infos: Vec<ImageInfo> = (0..count)
        .map(|i| image_info(opts, salt, id_offset, i))
        .collect();
    let mut f_inst = StreamFile::create(&ann_dir.join(format!("instances_{split}2017.json")))?;
    let mut f_stuff = StreamFile::create(&ann_dir.join(format!("stuff_{split}2017.json")))?;
    for f in [&mut f_inst, &mut f_stuff] {
        f.write_raw(b"{\"info\":")?;
        f.write_json(&info())?;
        f.write_raw(b",\"licenses\":")?;
        f.write_json(&licenses())?;
        f.write_raw(b",\"images\":")?;
        let mut a = ArrayWriter::open(f)?;
        for info in &infos {
            let file_name = format!("{:012}.jpg", info.id);
            a.push(
                f,
                &ImageRecord {
                    license: info.license,
                    file_name: &file_name,
                    coco_url: &format!("http://images.cocodataset.org/{split}2017/{file_name}"),
                    height: info.height,
                    width: info.width,
                    date_captured: &info.date,
                    flickr_url: &info.flickr,
                    id: info.id,
                },
            )?;
        }
        a.close(f)?;
        f.write_raw(b",\"annotations\":")?;
    }
    let mut a_inst = ArrayWriter::open(&mut f_inst)?;
    let mut a_stuff = ArrayWriter::open(&mut f_stuff)?;
    let mut summary = CocoSplitSummary::default();
    // Annotation ids in the ranges real COCO uses (crowd ids are 9001… in COCO 2017).
    let (mut inst_id, mut crowd_id, mut stuff_id) = (100_000u64, 900_100_000_000u64, 10_000_000u64);
    super::parallel_ordered(
        count,
        opts.threads,
        |i| make_image(&infos[i], opts, salt, i),
        |img| {
            let img = img?;
            let i = summary.images;
            if let Some(bytes) = &img.jpeg {
                let path: PathBuf = image_dir.join(format!("{:012}.jpg", infos[i].id));
                write_bytes_atomic(&path, bytes)?;
            }
            for mut ann in img.instances {
                if ann.iscrowd == 1 {
                    crowd_id += 1;
                    ann.id = crowd_id;
                    summary.crowd_annotations += 1;
                } else {
                    inst_id += 1;
                    ann.id = inst_id;
                }
                summary.instance_annotations += 1;
                a_inst.push(&mut f_inst, &ann)?;
            }
            for mut ann in img.stuff {
                stuff_id += 1;
                ann.id = stuff_id;
                summary.stuff_annotations += 1;
                a_stuff.push(&mut f_stuff, &ann)?;
            }
            summary.images += 1;
            Ok(())
        },
    )?;
    a_inst.close(&mut f_inst)?;
    a_stuff.close(&mut f_stuff)?;
    for (f, cats) in [
        (&mut f_inst, thing_categories()),
        (&mut f_stuff, stuff_categories()),
    ] {
        f.write_raw(b",\"categories\":")?;
        f.write_json(&cats)?;
        f.write_raw(b"}")?;
    }
    f_inst.finish()?;
    f_stuff.finish()?;
    Ok(summary)
}

/// Writes a synthetic COCO-Stuff 2017 into `out`; returns the train and val summaries.
pub fn write_coco(
    out: &Path,
    opts: &CocoExportOptions,
) -> Result<(CocoSplitSummary, CocoSplitSummary)> {
    let train = write_split(out, "train", opts, TRAIN_SALT, 0, opts.num_train)?;
    let val = if opts.num_val > 0 {
        write_split(out, "val", opts, VAL_SALT, opts.num_train, opts.num_val)?
    } else {
        CocoSplitSummary::default()
    };
    Ok((train, val))
}
