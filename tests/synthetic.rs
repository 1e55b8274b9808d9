//! The synthetic `shapes` dataset and `make-synthetic`: determinism, sizes, masks against boxes,
//! predicates against an independent re-computation of the geometry, occlusion, and the COCO
//! and VG files read back by the real loaders / preprocessing.

use sg2im::data::coco::{CocoConfig, CocoSceneGraphDataset};
use sg2im::data::preprocess_vg::{PreprocessVgConfig, preprocess_vg};
use sg2im::data::synthetic::export_coco::{CocoExportOptions, write_coco};
use sg2im::data::synthetic::export_vg::{VgExportOptions, write_vg};
use sg2im::data::synthetic::scene::Category;
use sg2im::data::synthetic::{ShapesConfig, ShapesDataset};
use sg2im::data::{Sample, SceneGraphDataset};

mod common;

use common::{ok, scratch as tmp_dir, sg2im, sg2im_cmd};

fn dataset(h: usize, w: usize, seed: u64) -> ShapesDataset {
    ShapesDataset::new(ShapesConfig {
        image_size: (h, w),
        num_images: 50,
        seed,
        ..ShapesConfig::default()
    })
    .unwrap()
}

#[test]
fn same_seed_same_samples_other_seed_other_samples() {
    let a = dataset(64, 64, 1);
    let b = dataset(64, 64, 1);
    let c = dataset(64, 64, 2);
    let mut differ = 0;
    for i in 0..10 {
        assert_eq!(a.get(i, 7).unwrap(), b.get(i, 7).unwrap());
        differ += usize::from(a.get(i, 7).unwrap() != c.get(i, 7).unwrap());
    }
    assert_eq!(differ, 10);
    // The per-call seed only redraws the relationships (data augmentation, §15.4).
    let (s1, s2) = (a.get(3, 1).unwrap(), a.get(3, 2).unwrap());
    assert_eq!(
        (&s1.image, &s1.objs, &s1.boxes, &s1.masks),
        (&s2.image, &s2.objs, &s2.boxes, &s2.masks)
    );
    let err = a.get(50, 0).unwrap_err().to_string();
    assert!(
        err.contains("index 50 is out of range (dataset length 50)"),
        "{err}"
    );
}

#[test]
fn any_size_including_non_square() {
    for (h, w) in [(32, 32), (64, 64), (48, 80), (100, 30), (128, 128)] {
        let ds = dataset(h, w, 0);
        for i in 0..8 {
            let s = ds.get(i, 0).unwrap();
            let o = s.objs.len();
            assert!((4..=9).contains(&o), "{h}x{w}: {o} objects");
            assert_eq!(s.image.len(), 3 * h * w);
            assert_eq!(s.image_size, (h, w));
            assert_eq!(s.masks.as_ref().unwrap().len(), o * 16 * 16);
            assert_eq!(*s.objs.last().unwrap(), 0, "__image__ last");
            assert_eq!(*s.boxes.last().unwrap(), [0.0, 0.0, 1.0, 1.0]);
            for b in &s.boxes {
                assert!(
                    b[0] >= 0.0
                        && b[1] >= 0.0
                        && b[2] <= 1.0
                        && b[3] <= 1.0
                        && b[0] < b[2]
                        && b[1] < b[3],
                    "{b:?}"
                );
                // COCO's size filter: box area fraction > 0.02.
                assert!((b[2] - b[0]) * (b[3] - b[1]) > 0.0199, "{b:?}");
            }
        }
    }
}

#[test]
fn masks_and_boxes_agree_with_the_scene() {
    let ds = dataset(64, 96, 3);
    let vocab = ds.vocab().clone();
    for i in 0..20 {
        let scene = ds.scene(i).unwrap();
        let s = ds.get(i, 0).unwrap();
        let kept = scene.kept(0.02);
        assert_eq!(kept.len() + 1, s.objs.len());
        for (j, &k) in kept.iter().enumerate() {
            let o = &scene.objects[k];
            assert_eq!(
                vocab.object_idx_to_name[s.objs[j] as usize],
                o.category.name()
            );
            // Every visible pixel lies inside the (pixel) box and touches each of its sides.
            let m = scene.visible_mask(k);
            let [x0, y0, x1, y1] = o.pixel_box;
            for y in 0..64 {
                for x in 0..96 {
                    if m[y * 96 + x] == 1 {
                        assert!((x0..x1).contains(&x) && (y0..y1).contains(&y));
                    }
                }
            }
            let b = s.boxes[j];
            let px = [
                x0 as f32 / 96.0,
                y0 as f32 / 64.0,
                x1 as f32 / 96.0,
                y1 as f32 / 64.0,
            ];
            // A polygon box is the polygon's extent: close to the pixel box (a star's thin
            // tip may reach past the last pixel centre it covers).
            for c in 0..4 {
                let tol = if c % 2 == 0 { 2.0 / 96.0 } else { 2.0 / 64.0 } + 1e-6;
                assert!((b[c] - px[c]).abs() <= tol, "{b:?} vs {px:?}");
            }
            let mask = &s.masks.as_ref().unwrap()[j * 256..(j + 1) * 256];
            assert!(mask.contains(&1), "{:?} has an empty mask", o.category);
        }
    }
}

/// The predicate of (s, o) recomputed from the sample alone: strict box containment, else
/// the angle sector of the mask-weighted centre difference (y down).
fn expected_predicate(s: &Sample, a: usize, b: usize) -> &'static str {
    let m = s.mask_size;
    let masks = s.masks.as_ref().unwrap();
    let centre = |k: usize| {
        let [x0, y0, x1, y1] = s.boxes[k].map(f64::from);
        let (mut cx, mut cy, mut n) = (0.0, 0.0, 0.0);
        for r in 0..m {
            for c in 0..m {
                if masks[k * m * m + r * m + c] == 1 {
                    cx += x0 + (x1 - x0) * c as f64 / (m - 1) as f64;
                    cy += y0 + (y1 - y0) * r as f64 / (m - 1) as f64;
                    n += 1.0;
                }
            }
        }
        if n == 0.0 {
            ((x0 + x1) / 2.0, (y0 + y1) / 2.0)
        } else {
            (cx / n, cy / n)
        }
    };
    let (sb, ob) = (s.boxes[a], s.boxes[b]);
    if sb[0] < ob[0] && sb[1] < ob[1] && sb[2] > ob[2] && sb[3] > ob[3] {
        return "surrounding";
    }
    if sb[0] > ob[0] && sb[1] > ob[1] && sb[2] < ob[2] && sb[3] < ob[3] {
        return "inside";
    }
    let ((sx, sy), (ox, oy)) = (centre(a), centre(b));
    let deg = (sy - oy).atan2(sx - ox).to_degrees();
    if !(-135.0..135.0).contains(&deg) {
        "left of"
    } else if deg < -45.0 {
        "above"
    } else if deg < 45.0 {
        "right of"
    } else {
        "below"
    }
}

#[test]
fn every_predicate_matches_the_geometry() {
    let ds = dataset(64, 64, 4);
    let vocab = ds.vocab().clone();
    let mut seen = std::collections::HashSet::new();
    for i in 0..50 {
        let s = ds.get(i, i as u64).unwrap();
        let o = s.objs.len() as i64;
        let real = (o - 1) as usize;
        // One geometric triple per real object, then one __in_image__ per real object.
        assert_eq!(s.triples.len(), 2 * real);
        for (t, &[a, p, b]) in s.triples.iter().enumerate() {
            let name = vocab.pred_idx_to_name[p as usize].as_str();
            if t >= real {
                assert_eq!((a, name, b), ((t - real) as i64, "__in_image__", o - 1));
                continue;
            }
            assert!(a != b && a < o - 1 && b < o - 1);
            // Centres near a sector boundary could flip on float32 rounding; none occur here.
            assert_eq!(
                name,
                expected_predicate(&s, a as usize, b as usize),
                "sample {i}"
            );
            seen.insert(name);
        }
    }
    for p in [
        "left of",
        "right of",
        "above",
        "below",
        "inside",
        "surrounding",
    ] {
        assert!(seen.contains(p), "{p} never drawn: {seen:?}");
    }
    assert_eq!(
        vocab.pred_idx_to_name,
        [
            "__in_image__",
            "left of",
            "right of",
            "above",
            "below",
            "inside",
            "surrounding"
        ]
    );
}

/// Occlusion: a thing's visible mask is where its colour shows; hidden parts are not in it.
#[test]
fn masks_are_what_is_visible() {
    let ds = ShapesDataset::new(ShapesConfig {
        image_size: (96, 96),
        normalize_images: false,
        num_images: 40,
        ..ShapesConfig::default()
    })
    .unwrap();
    let mut occluded = 0;
    for i in 0..40 {
        let scene = ds.scene(i).unwrap();
        let rgb = scene.render();
        let mut owner = vec![usize::MAX; 96 * 96];
        for k in 0..scene.objects.len() {
            for (p, &v) in scene.visible_mask(k).iter().enumerate() {
                if v == 1 {
                    assert_eq!(owner[p], usize::MAX, "pixel in two masks");
                    owner[p] = k;
                }
            }
        }
        assert!(owner.iter().all(|&k| k != usize::MAX), "pixel in no mask");
        for (k, o) in scene.objects.iter().enumerate() {
            let Category::Thing(colour, _) = o.category else {
                continue;
            };
            occluded += usize::from(o.occluded);
            let want = colour.rgb();
            let mask = scene.visible_mask(k);
            let (mut err, mut n) = (0f64, 0f64);
            for p in 0..96 * 96 {
                if mask[p] == 1 {
                    for c in 0..3 {
                        err += (f64::from(rgb[p * 3 + c]) - f64::from(want[c])).abs();
                    }
                    n += 3.0;
                }
            }
            // Shading is ±10 % and noise ±5 levels around the class colour.
            assert!(err / n < 20.0, "{:?}: mean |Δ| {}", o.category, err / n);
        }
    }
    assert!(occluded >= 5, "only {occluded} occluded things");
}

#[test]
fn coco_files_load_with_the_coco_loader_as_the_same_samples() {
    let dir = tmp_dir("coco");
    let mut opts = CocoExportOptions::new(12);
    opts.num_val = 2;
    opts.seed = 9;
    opts.image_size = Some((64, 80));
    opts.threads = 2;
    let (train, val) = write_coco(&dir, &opts).unwrap();
    assert_eq!((train.images, val.images), (12, 2));
    let coco = CocoSceneGraphDataset::new(CocoConfig {
        image_dir: dir.join("images/train2017"),
        instances_json: dir.join("annotations/instances_train2017.json"),
        stuff_json: Some(dir.join("annotations/stuff_train2017.json")),
        image_size: (64, 80),
        ..CocoConfig::default()
    })
    .unwrap();
    let shapes = ShapesDataset::new(ShapesConfig {
        image_size: (64, 80),
        num_images: 12,
        seed: 9,
        ..ShapesConfig::default()
    })
    .unwrap();
    assert_eq!(coco.len(), 12, "the loader keeps every generated image");
    let (cv, sv) = (coco.vocab(), shapes.vocab());
    assert_eq!(cv.pred_idx_to_name, sv.pred_idx_to_name);
    let mut crowd_or_occluded = 0;
    for i in 0..12 {
        let a = coco.get(i, 100 + i as u64).unwrap();
        let b = shapes.get(i, 100 + i as u64).unwrap();
        let names = |s: &Sample, v: &sg2im::vocab::Vocab| -> Vec<String> {
            s.objs
                .iter()
                .map(|&k| v.object_idx_to_name[k as usize].clone())
                .collect()
        };
        assert_eq!(names(&a, cv), names(&b, sv), "image {i}");
        assert_eq!(a.boxes, b.boxes, "image {i}");
        assert_eq!(a.masks, b.masks, "image {i}");
        assert_eq!(a.triples, b.triples, "image {i}");
        // Images differ only by JPEG compression (quality 75–95; a few are grayscale JPEGs):
        // compare luma in [0, 1].
        let luma = |s: &Sample| -> Vec<f32> {
            let hw = 64 * 80;
            let (mean, std) = (sg2im::imagenet::MEAN, sg2im::imagenet::STD);
            (0..hw)
                .map(|p| {
                    let c = |k: usize| s.image[k * hw + p] * std[k] + mean[k];
                    0.299 * c(0) + 0.587 * c(1) + 0.114 * c(2)
                })
                .collect()
        };
        let (la, lb) = (luma(&a), luma(&b));
        let mad = la.iter().zip(&lb).map(|(x, y)| (x - y).abs()).sum::<f32>() / la.len() as f32;
        assert!(mad < 0.03, "image {i}: mean |Δ luma| {mad}");
        let scene = shapes.scene(i).unwrap();
        crowd_or_occluded += scene
            .objects
            .iter()
            .filter(|o| o.iscrowd || o.occluded)
            .count();
    }
    assert!(
        crowd_or_occluded > 0,
        "staircase polygons / RLE things not exercised"
    );

    // The files are the real formats: thing ids with COCO's gaps, stuff ids 92..=183.
    let inst: serde_json::Value = serde_json::from_slice(
        &std::fs::read(dir.join("annotations/instances_train2017.json")).unwrap(),
    )
    .unwrap();
    let keys: Vec<&String> = inst.as_object().unwrap().keys().collect();
    assert_eq!(
        keys,
        ["info", "licenses", "images", "annotations", "categories"]
    );
    let ids: Vec<i64> = inst["categories"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["id"].as_i64().unwrap())
        .collect();
    assert_eq!(ids.len(), 30);
    assert!(!ids.contains(&12) && !ids.contains(&26) && ids.contains(&13));
    let img = &inst["images"][0];
    assert_eq!(
        img["file_name"].as_str().unwrap(),
        format!("{:012}.jpg", img["id"].as_i64().unwrap())
    );
    let stuff: serde_json::Value = serde_json::from_slice(
        &std::fs::read(dir.join("annotations/stuff_train2017.json")).unwrap(),
    )
    .unwrap();
    for a in stuff["annotations"].as_array().unwrap() {
        let id = a["category_id"].as_i64().unwrap();
        assert!((92..=183).contains(&id));
        assert!(
            a["segmentation"]["counts"].is_string(),
            "stuff RLE is compressed"
        );
    }
    assert!(
        stuff["annotations"]
            .as_array()
            .unwrap()
            .iter()
            .any(|a| a["category_id"] == 183)
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn vg_files_parse_and_preprocess_end_to_end() {
    let dir = tmp_dir("vg");
    let mut opts = VgExportOptions::new(300);
    opts.seed = 5;
    opts.write_images = false;
    opts.threads = 2;
    let summary = write_vg(&dir, &opts).unwrap();
    assert_eq!(summary.images, 300);
    assert_eq!(summary.train + summary.val + summary.test, 300);
    assert!((200..=280).contains(&summary.train), "{summary:?}");

    let read = |name: &str| -> serde_json::Value {
        serde_json::from_slice(&std::fs::read(dir.join(name)).unwrap()).unwrap()
    };
    let images = read("image_data.json");
    let objects = read("objects.json");
    let rels = read("relationships.json");
    let attrs = read("attributes.json");
    let splits = read("vg_splits.json");
    assert_eq!(
        splits.as_object().unwrap().keys().collect::<Vec<_>>(),
        ["train", "test", "val"]
    );
    let mut split_ids: Vec<i64> = ["train", "val", "test"]
        .iter()
        .flat_map(|k| {
            splits[k]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_i64().unwrap())
        })
        .collect();
    for k in ["train", "val", "test"] {
        let v: Vec<i64> = splits[k]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_i64().unwrap())
            .collect();
        assert!(v.windows(2).all(|p| p[0] < p[1]), "{k} ascending");
    }
    split_ids.sort();
    let mut image_ids: Vec<i64> = images
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["image_id"].as_i64().unwrap())
        .collect();
    image_ids.sort();
    assert_eq!(
        split_ids, image_ids,
        "the splits cover exactly the generated images"
    );
    for f in [&objects, &rels, &attrs] {
        assert_eq!(f.as_array().unwrap().len(), 300);
    }
    let o0 = &objects[0]["objects"][0];
    for key in ["object_id", "x", "y", "w", "h", "names", "synsets"] {
        assert!(!o0[key].is_null(), "objects.json object lacks {key}");
    }
    let preds: Vec<&str> = rels
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|r| r["relationships"].as_array().unwrap())
        .map(|r| r["predicate"].as_str().unwrap())
        .collect();
    assert!(
        preds.iter().any(|p| p.chars().any(char::is_uppercase)),
        "upper-case predicates"
    );
    assert!(preds.contains(&"left of") && preds.iter().any(|p| *p == "on" || *p == "on top of"));
    let multi = objects
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|i| i["objects"].as_array().unwrap())
        .filter(|o| o["names"].as_array().unwrap().len() > 1)
        .count();
    assert!(multi > 0, "objects with several names");

    let out = dir.join("out");
    std::fs::create_dir_all(&out).unwrap();
    let cfg = PreprocessVgConfig {
        splits_json: dir.join("vg_splits.json"),
        images_json: dir.join("image_data.json"),
        objects_json: dir.join("objects.json"),
        attributes_json: dir.join("attributes.json"),
        object_aliases: dir.join("object_alias.txt"),
        relationship_aliases: dir.join("relationship_alias.txt"),
        relationships_json: dir.join("relationships.json"),
        min_object_instances: 20,
        min_attribute_instances: 20,
        min_relationship_instances: 10,
        output_vocab_json: out.join("vocab.json"),
        output_h5_dir: out.clone(),
        ..PreprocessVgConfig::default()
    };
    let mut log = Vec::new();
    let s = preprocess_vg(&cfg, &mut log).unwrap();
    let train = s.splits.iter().find(|x| x.name == "train").unwrap();
    assert!(train.num_images > 150, "{s:?}");
    let vocab = sg2im::vocab::Vocab::from_json_file(out.join("vocab.json")).unwrap();
    for name in ["__image__", "sky", "red circle", "water", "road"] {
        assert!(
            vocab.object_name_to_idx.contains_key(name),
            "{name} not in {:?}",
            vocab.object_idx_to_name
        );
    }
    for p in [
        "__in_image__",
        "left of",
        "above",
        "on",
        "next to",
        "in front of",
    ] {
        assert!(
            vocab.pred_name_to_idx.contains_key(p),
            "{p} not in {:?}",
            vocab.pred_idx_to_name
        );
    }
    assert!(
        !vocab.object_name_to_idx.contains_key("sea"),
        "aliases map sea to water"
    );
    // Long-tail, upper-case and space-padded names stay below the threshold.
    let mut canonical: Vec<String> = vec!["__image__".into()];
    canonical.extend(
        [
            "sky", "clouds", "grass", "water", "sand", "road", "wall", "floor",
        ]
        .map(String::from),
    );
    canonical.extend(
        Category::all()
            .into_iter()
            .filter(|c| c.is_thing())
            .map(Category::name),
    );
    for name in &vocab.object_idx_to_name {
        assert!(
            canonical.contains(name),
            "unexpected vocabulary entry {name:?}"
        );
    }
    for split in ["train.h5", "val.h5", "test.h5"] {
        assert!(out.join(split).is_file());
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn make_synthetic_command_writes_files_and_rejects_bad_flags() {
    let dir = tmp_dir("cli");
    let out = ok(sg2im_cmd()
        .args([
            "make-synthetic",
            "--format",
            "vg",
            "--num_images",
            "20",
            "--image_size",
            "240,320",
            "--threads",
            "1",
            "--out",
        ])
        .arg(&dir)
        .output()
        .unwrap());
    assert!(String::from_utf8_lossy(&out.stdout).contains("20 images"));
    assert_eq!(
        std::fs::read_dir(dir.join("images/VG_100K"))
            .unwrap()
            .count()
            + std::fs::read_dir(dir.join("images/VG_100K_2"))
                .unwrap()
                .count(),
        20
    );
    let out = sg2im(&[
        "make-synthetic",
        "--format",
        "coco",
        "--num_images",
        "2",
        "--image_size",
        "64,x",
        "--out",
        common::s(&dir),
    ]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("--image_size \"64,x\": expected H,W or S"),
        "{err}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}
