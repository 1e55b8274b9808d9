//! Synthetic scenes in the raw Visual Genome format `preprocess-vg` reads (spec §17, and the
//! `raw/` table of the vg_preprocess fixture README): `image_data.json`, `objects.json`,
//! `attributes.json`, `relationships.json`, the two alias files, a `vg_splits.json` covering the
//! generated ids (80/10/10) and `images/VG_100K{,_2}/<id>.jpg`.
//!
//! Real-VG quirks are sprinkled in: several names per object (the first known one wins),
//! upper-case and space-padded names and predicates, alias spellings, duplicate objects,
//! self-relationships, relationships to unknown objects, records without attributes, repeated
//! attributes, endpoint dicts with `name` instead of `names`, and a few images smaller than
//! `--min_image_size`. The JSON files are streamed, one image at a time.

use super::json_stream::{ArrayWriter, StreamFile};
use super::scene::{Category, Colour, Scene, SceneConfig, Shape, Stuff};
use crate::io::atomic::write_bytes_atomic;
use crate::rng::SplitMix64;
use crate::{Error, Result};
use serde::Serialize;
use std::path::{Path, PathBuf};

/// What `make-synthetic --format vg` writes.
#[derive(Debug, Clone, PartialEq)]
pub struct VgExportOptions {
    pub num_images: usize,
    pub seed: u64,
    /// `(H, W)` of every image; `None` = realistic VG sizes that vary per image.
    pub image_size: Option<(usize, usize)>,
    pub write_images: bool,
    /// JPEG quality of the images.
    pub jpeg_quality: u8,
    /// Generation threads (0 = all cores).
    pub threads: usize,
}

impl VgExportOptions {
    pub fn new(num_images: usize) -> Self {
        VgExportOptions {
            num_images,
            seed: 0,
            image_size: None,
            write_images: true,
            jpeg_quality: 90,
            threads: 0,
        }
    }
}

/// Counts of what was written.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct VgExportSummary {
    pub images: usize,
    pub objects: usize,
    pub relationships: usize,
    pub train: usize,
    pub val: usize,
    pub test: usize,
}

/// Image sizes `(W, H)` common in Visual Genome.
const VG_SIZES: [(usize, usize); 10] = [
    (500, 375),
    (500, 333),
    (800, 600),
    (375, 500),
    (333, 500),
    (800, 533),
    (600, 800),
    (640, 480),
    (500, 500),
    (800, 450),
];
/// A few images below the default `--min_image_size` 200, and one exactly at it.
const SMALL_SIZES: [(usize, usize); 3] = [(199, 300), (300, 150), (200, 320)];

const LONG_TAIL_ADJECTIVES: [&str; 8] = [
    "odd", "bright", "tiny", "flat", "shiny", "dark", "plain", "painted",
];
const LONG_TAIL_NOUNS: [&str; 8] = [
    "shape", "object", "figure", "form", "piece", "item", "sign", "mark",
];

const URL_PREFIX: &str = "https://cs.stanford.edu/people/rak248";

/// Predicate words beyond the COCO geometric ones.
const VG_PREDICATES: [&str; 5] = ["on", "in front of", "behind", "near", "next to"];

pub const OBJECT_ALIASES: &str = "water,sea, ocean \n\
road, street\n\
clouds,cloud\n";

pub const RELATIONSHIP_ALIASES: &str = "on,on top of, sitting on\n\
next to, beside,by \n\
in front of,infront of\n";

fn object_alias_file() -> String {
    let mut s = String::from(OBJECT_ALIASES);
    for c in Colour::ALL {
        let c = c.name();
        s.push_str(&format!("{c} circle,{c} disc, {c} disk\n"));
        s.push_str(&format!("{c} square, {c} box \n"));
    }
    s
}

fn synset(category: Category) -> &'static str {
    match category {
        Category::Stuff(s) => match s {
            Stuff::Sky => "sky.n.01",
            Stuff::Clouds => "cloud.n.02",
            Stuff::Grass => "grass.n.01",
            Stuff::Sea => "body_of_water.n.01",
            Stuff::Sand => "sand.n.01",
            Stuff::Road => "road.n.01",
            Stuff::Wall => "wall.n.01",
            Stuff::Floor => "floor.n.01",
        },
        Category::Thing(_, s) => match s {
            Shape::Square => "square.n.01",
            Shape::Circle => "circle.n.01",
            Shape::Triangle => "triangle.n.01",
            Shape::Star => "star.n.03",
            Shape::Cross => "cross.n.01",
        },
    }
}

fn vg_name(category: Category) -> String {
    match category {
        Category::Stuff(s) => s.vg_name().to_string(),
        Category::Thing(..) => category.name(),
    }
}

/// An alias spelling (in the alias file) of a name, if it has one.
fn alias_of(category: Category, rng: &mut SplitMix64) -> Option<String> {
    match category {
        Category::Stuff(Stuff::Sea) => Some(if rng.chance(0.5) { "sea" } else { "ocean" }.into()),
        Category::Stuff(Stuff::Road) => Some("street".into()),
        Category::Stuff(Stuff::Clouds) => Some("cloud".into()),
        Category::Thing(c, Shape::Circle) => Some(format!(
            "{} {}",
            c.name(),
            if rng.chance(0.5) { "disc" } else { "disk" }
        )),
        Category::Thing(c, Shape::Square) => Some(format!("{} box", c.name())),
        _ => None,
    }
}

fn attributes_for(category: Category, area_fraction: f64, rng: &mut SplitMix64) -> Vec<String> {
    let mut a: Vec<String> = match category {
        Category::Thing(c, s) => {
            let mut v = vec![c.name().to_string()];
            v.push(
                if area_fraction > 0.08 {
                    "large"
                } else {
                    "small"
                }
                .into(),
            );
            if s == Shape::Circle {
                v.push("round".into());
            }
            v
        }
        Category::Stuff(s) => match s {
            Stuff::Sky => vec!["blue".into(), "clear".into()],
            Stuff::Clouds => vec!["white".into(), "fluffy".into()],
            Stuff::Grass => vec!["green".into()],
            Stuff::Sea => vec!["blue".into(), "calm".into()],
            Stuff::Sand => vec!["brown".into()],
            Stuff::Road => vec!["gray".into(), "paved".into()],
            Stuff::Wall => vec!["white".into()],
            Stuff::Floor => vec!["wooden".into(), "brown".into()],
        },
    };
    if rng.chance(0.04) {
        // Real VG capitalises some attributes ("White"); they are separate attributes.
        let first = &a[0];
        let mut chars = first.chars();
        if let Some(c0) = chars.next() {
            a[0] = c0.to_uppercase().collect::<String>() + chars.as_str();
        }
    }
    if rng.chance(0.03) {
        a.push(a[0].clone());
    }
    a
}

#[derive(Serialize)]
struct ImageData<'a> {
    width: usize,
    url: &'a str,
    height: usize,
    image_id: u64,
    coco_id: Option<u64>,
    flickr_id: Option<u64>,
}

#[derive(Serialize, Clone)]
struct VgObject {
    synsets: Vec<&'static str>,
    h: usize,
    object_id: u64,
    merged_object_ids: Vec<u64>,
    names: Vec<String>,
    w: usize,
    y: usize,
    x: usize,
}

#[derive(Serialize)]
struct ImageObjects<'a> {
    image_id: u64,
    objects: &'a [VgObject],
    image_url: &'a str,
}

#[derive(Serialize)]
struct AttributeRecord<'a> {
    synsets: &'a [&'static str],
    h: usize,
    object_id: u64,
    names: &'a [String],
    w: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    attributes: Option<Vec<String>>,
    y: usize,
    x: usize,
}

#[derive(Serialize)]
struct ImageAttributes<'a> {
    image_id: u64,
    attributes: Vec<AttributeRecord<'a>>,
}

#[derive(Serialize)]
struct Endpoint<'a> {
    object_id: u64,
    x: usize,
    y: usize,
    w: usize,
    h: usize,
    synsets: &'a [&'static str],
    #[serde(skip_serializing_if = "Option::is_none")]
    name: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    names: Option<&'a [String]>,
}

#[derive(Serialize)]
struct Relationship<'a> {
    predicate: String,
    object: Endpoint<'a>,
    relationship_id: u64,
    synsets: Vec<&'static str>,
    subject: Endpoint<'a>,
}

#[derive(Serialize)]
struct ImageRelationships<'a> {
    relationships: Vec<Relationship<'a>>,
    image_id: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Split {
    Train,
    Val,
    Test,
}

/// Everything written for one image.
struct VgImage {
    index: usize,
    id: u64,
    width: usize,
    height: usize,
    url: String,
    split: Split,
    objects: Vec<VgObject>,
    /// Per object: its attributes record (`None` = no `attributes` key).
    attributes: Vec<Option<Vec<String>>>,
    /// `(subject, predicate, object, use "name" in endpoints)`; indices into `objects`, or
    /// `usize::MAX` for an endpoint missing from objects.json.
    relationships: Vec<(usize, String, usize, bool)>,
    jpeg: Option<(String, Vec<u8>)>,
}

const OBJECT_ID_BASE: u64 = 1_000_000;
const RELATIONSHIP_ID_BASE: u64 = 3_000_000;
const MISSING: usize = usize::MAX;

fn make_image(index: usize, opts: &VgExportOptions) -> Result<VgImage> {
    let mut rng = SplitMix64::from_parts(&[opts.seed, 0x5647, index as u64]);
    // Increasing, unique, sparse ids (like real VG ids).
    let id = 1 + index as u64 * 20 + rng.below(20) as u64;
    let (width, height) = match opts.image_size {
        Some((h, w)) => (w, h),
        None if rng.chance(0.02) => SMALL_SIZES[rng.below(SMALL_SIZES.len())],
        None => VG_SIZES[rng.below(VG_SIZES.len())],
    };
    let dir = if rng.chance(0.3) {
        "VG_100K_2"
    } else {
        "VG_100K"
    };
    let url = format!("{URL_PREFIX}/{dir}/{id}.jpg");
    let u = rng.f64();
    let split = if u < 0.8 {
        Split::Train
    } else if u < 0.9 {
        Split::Val
    } else {
        Split::Test
    };
    let mut cfg = SceneConfig::new(height, width);
    cfg.min_objects = 3;
    cfg.max_objects = 12;
    cfg.min_object_size = 0.004;
    let scene = Scene::generate(rng.next_u64(), &cfg)?;

    let mut objects = Vec::new();
    let mut attributes = Vec::new();
    // Index in `objects` of each scene object (duplicates are extra entries).
    let mut scene_to_vg = Vec::new();
    let image_area = (width * height) as f64;
    for o in &scene.objects {
        let [x0, y0, x1, y1] = o.pixel_box;
        let canonical = vg_name(o.category);
        let names = if rng.chance(0.08) {
            // A long-tail name first (one of 64, each too rare for the vocabulary): the first
            // name that is in the vocabulary is used.
            let adj = LONG_TAIL_ADJECTIVES[rng.below(LONG_TAIL_ADJECTIVES.len())];
            let noun = LONG_TAIL_NOUNS[rng.below(LONG_TAIL_NOUNS.len())];
            vec![format!("{adj} {noun}"), canonical]
        } else if rng.chance(0.05) {
            vec![alias_of(o.category, &mut rng).unwrap_or(canonical)]
        } else if rng.chance(0.03) {
            vec![canonical.to_uppercase()]
        } else if rng.chance(0.01) {
            vec![format!("{canonical} ")]
        } else {
            vec![canonical]
        };
        let record = VgObject {
            synsets: vec![synset(o.category)],
            h: y1 - y0,
            // Assigned below, once duplicates are in place.
            object_id: 0,
            merged_object_ids: Vec::new(),
            names,
            w: x1 - x0,
            y: y0,
            x: x0,
        };
        let attrs = (!rng.chance(0.3))
            .then(|| attributes_for(o.category, o.area as f64 / image_area, &mut rng));
        scene_to_vg.push(objects.len());
        objects.push(record.clone());
        attributes.push(attrs.clone());
        if rng.chance(0.03) {
            // Duplicate annotation: same names and box, new id.
            let dup = record;
            objects.push(dup);
            attributes.push(attrs);
        }
    }
    // Object ids must stay unique after duplicates shifted them.
    for (k, o) in objects.iter_mut().enumerate() {
        o.object_id = OBJECT_ID_BASE + index as u64 * 100 + k as u64;
    }

    let n = scene.objects.len();
    let mut relationships = Vec::new();
    let count = rng.int_in(1, (n + 2).min(14));
    for _ in 0..count {
        let s = rng.below(n);
        let mut o = rng.below(n);
        if o == s && !rng.chance(0.1) {
            o = (s + 1) % n;
        }
        let predicate = vg_predicate(&scene, s, o, &mut rng);
        let (mut si, mut oi) = (scene_to_vg[s], scene_to_vg[o]);
        if rng.chance(0.01) {
            si = MISSING;
        } else if rng.chance(0.01) {
            oi = MISSING;
        }
        relationships.push((si, predicate, oi, rng.chance(0.4)));
    }
    let jpeg = if opts.write_images {
        let rgb = scene.render();
        let bytes = super::encode_jpeg(&rgb, height, width, opts.jpeg_quality, false)?;
        Some((format!("images/{dir}/{id}.jpg"), bytes))
    } else {
        None
    };
    Ok(VgImage {
        index,
        id,
        width,
        height,
        url,
        split,
        objects,
        attributes,
        relationships,
        jpeg,
    })
}

/// The predicate of a relationship: COCO's geometric rule on the boxes and visible-mask
/// centres, or a VG word where the scene supports it; spelled with VG's quirks.
fn vg_predicate(scene: &Scene, s: usize, o: usize, rng: &mut SplitMix64) -> String {
    let (so, oo) = (&scene.objects[s], &scene.objects[o]);
    let overlap = {
        let (a, b) = (so.pixel_box, oo.pixel_box);
        a[0] < b[2] && b[0] < a[2] && a[1] < b[3] && b[1] < a[3]
    };
    let ground = |c: Category| {
        matches!(
            c,
            Category::Stuff(Stuff::Grass | Stuff::Sea | Stuff::Sand | Stuff::Road | Stuff::Floor)
        )
    };
    let word = match (so.paint_order, oo.paint_order) {
        (Some(a), Some(b)) if overlap && s != o && rng.chance(0.7) => {
            if a > b {
                VG_PREDICATES[1].to_string()
            } else {
                VG_PREDICATES[2].to_string()
            }
        }
        (Some(_), None) if ground(oo.category) && overlap && rng.chance(0.7) => {
            VG_PREDICATES[0].to_string()
        }
        _ => {
            let p = super::geometric_predicate(scene, s, o);
            if (p == "left of" || p == "right of") && rng.chance(0.15) {
                VG_PREDICATES[3 + rng.below(2)].to_string()
            } else {
                p.to_string()
            }
        }
    };
    let word = if rng.chance(0.05) {
        match word.as_str() {
            "on" => "on top of".to_string(),
            "next to" => "beside".to_string(),
            "in front of" => "infront of".to_string(),
            _ => word,
        }
    } else {
        word
    };
    if rng.chance(0.04) {
        word.to_uppercase()
    } else if rng.chance(0.03) {
        let mut c = word.chars();
        match c.next() {
            Some(f) => f.to_uppercase().collect::<String>() + c.as_str(),
            None => word,
        }
    } else if rng.chance(0.02) {
        format!(" {word} ")
    } else {
        word
    }
}

/// Writes a synthetic Visual Genome into `out`.
pub fn write_vg(out: &Path, opts: &VgExportOptions) -> Result<VgExportSummary> {
    let mkdir = |p: PathBuf| std::fs::create_dir_all(&p).map_err(|e| Error::io(&p, e));
    mkdir(out.to_path_buf())?;
    if opts.write_images {
        mkdir(out.join("images/VG_100K"))?;
        mkdir(out.join("images/VG_100K_2"))?;
    }
    write_bytes_atomic(out.join("object_alias.txt"), object_alias_file().as_bytes())?;
    write_bytes_atomic(
        out.join("relationship_alias.txt"),
        RELATIONSHIP_ALIASES.as_bytes(),
    )?;

    let mut f_images = StreamFile::create(&out.join("image_data.json"))?;
    let mut f_objects = StreamFile::create(&out.join("objects.json"))?;
    let mut f_attrs = StreamFile::create(&out.join("attributes.json"))?;
    let mut f_rels = StreamFile::create(&out.join("relationships.json"))?;
    let mut a_images = ArrayWriter::open(&mut f_images)?;
    let mut a_objects = ArrayWriter::open(&mut f_objects)?;
    let mut a_attrs = ArrayWriter::open(&mut f_attrs)?;
    let mut a_rels = ArrayWriter::open(&mut f_rels)?;
    let mut summary = VgExportSummary::default();
    let (mut train, mut val, mut test) = (Vec::new(), Vec::new(), Vec::new());

    super::parallel_ordered(
        opts.num_images,
        opts.threads,
        |i| make_image(i, opts),
        |img| {
            let img = img?;
            if let Some((rel, bytes)) = &img.jpeg {
                write_bytes_atomic(out.join(rel), bytes)?;
            }
            a_images.push(
                &mut f_images,
                &ImageData {
                    width: img.width,
                    url: &img.url,
                    height: img.height,
                    image_id: img.id,
                    coco_id: None,
                    flickr_id: None,
                },
            )?;
            a_objects.push(
                &mut f_objects,
                &ImageObjects {
                    image_id: img.id,
                    objects: &img.objects,
                    image_url: &img.url,
                },
            )?;
            let attributes = img
                .objects
                .iter()
                .zip(&img.attributes)
                .map(|(o, a)| AttributeRecord {
                    synsets: &o.synsets,
                    h: o.h,
                    object_id: o.object_id,
                    names: &o.names,
                    w: o.w,
                    attributes: a.clone(),
                    y: o.y,
                    x: o.x,
                })
                .collect();
            a_attrs.push(
                &mut f_attrs,
                &ImageAttributes {
                    image_id: img.id,
                    attributes,
                },
            )?;
            let missing = VgObject {
                synsets: vec!["thing.n.01"],
                h: 40,
                object_id: OBJECT_ID_BASE + img.index as u64 * 100 + 99,
                merged_object_ids: Vec::new(),
                names: vec!["thing".into()],
                w: 40,
                y: 0,
                x: 0,
            };
            let endpoint = |k: usize, use_name: bool| {
                let o = if k == MISSING {
                    &missing
                } else {
                    &img.objects[k]
                };
                Endpoint {
                    object_id: o.object_id,
                    x: o.x,
                    y: o.y,
                    w: o.w,
                    h: o.h,
                    synsets: &o.synsets,
                    name: use_name.then(|| o.names[0].as_str()),
                    names: (!use_name).then_some(o.names.as_slice()),
                }
            };
            let relationships: Vec<Relationship> = img
                .relationships
                .iter()
                .enumerate()
                .map(|(r, (s, p, o, use_name))| Relationship {
                    predicate: p.clone(),
                    object: endpoint(*o, *use_name),
                    relationship_id: RELATIONSHIP_ID_BASE + img.index as u64 * 100 + r as u64,
                    synsets: Vec::new(),
                    subject: endpoint(*s, *use_name),
                })
                .collect();
            a_rels.push(
                &mut f_rels,
                &ImageRelationships {
                    relationships,
                    image_id: img.id,
                },
            )?;
            summary.images += 1;
            summary.objects += img.objects.len();
            summary.relationships += img.relationships.len();
            match img.split {
                Split::Train => train.push(img.id),
                Split::Val => val.push(img.id),
                Split::Test => test.push(img.id),
            }
            Ok(())
        },
    )?;
    a_images.close(&mut f_images)?;
    a_objects.close(&mut f_objects)?;
    a_attrs.close(&mut f_attrs)?;
    a_rels.close(&mut f_rels)?;
    f_images.finish()?;
    f_objects.finish()?;
    f_attrs.finish()?;
    f_rels.finish()?;
    summary.train = train.len();
    summary.val = val.len();
    summary.test = test.len();
    // Key order as in the real sg2im/data/vg_splits.json.
    let splits = serde_json::json!({ "train": train, "test": test, "val": val });
    let text = serde_json::to_vec(&splits).map_err(|e| Error::invalid(e.to_string()))?;
    write_bytes_atomic(out.join("vg_splits.json"), &text)?;
    Ok(summary)
}
