//! Where every file of `sg2im download` comes from: the one table of URLs, destinations and
//! known checksums.
//!
//! The URLs, file names and destination layout are those of the original's shell scripts
//! (google/sg2im `scripts/download_coco.sh`, `download_vg.sh`, `download_models.sh`,
//! `download_ablated_models.sh`, `download_full_models.sh`; spec §19.6). COCO is fetched over
//! plain `http://` as the original does; the MD5 digests below make that safe to accept.

use super::{Checksum, Item};

/// `download_coco.sh`: (URL, unpack into, MD5 if known).
///
/// The MD5 digests are not published by the COCO site itself; they are the values that several
/// independent public download tools pin for these exact archives (and agree on). If the COCO
/// server ever re-packs an archive, `--no_checksum` lets a user proceed.
const COCO: &[(&str, &str, Option<&str>)] = &[
    (
        "http://images.cocodataset.org/annotations/annotations_trainval2017.zip",
        "",
        Some("f4bbac642086de4f52a3fdda2de5fa2c"),
    ),
    (
        "http://images.cocodataset.org/annotations/stuff_annotations_trainval2017.zip",
        "",
        Some("2a27c15a2dfcbd2e1c9276dc23cac101"),
    ),
    (
        "http://images.cocodataset.org/zips/train2017.zip",
        "images",
        Some("cced6f7f71b7629ddf16f17bbcfab6b2"),
    ),
    (
        "http://images.cocodataset.org/zips/val2017.zip",
        "images",
        Some("442b8da7639aecaf257c1dceb8ba8c80"),
    ),
];

/// `download_vg.sh`: (URL, unpack into; `None` = keep the file as it is).
///
/// No checksums: Visual Genome publishes none and we found no pinned values we could confirm,
/// so these files are checked only against the server's Content-Length and, for the zips, the
/// CRC of every member while unpacking.
const VG: &[(&str, Option<&str>)] = &[
    (
        "https://visualgenome.org/static/data/dataset/objects.json.zip",
        Some(""),
    ),
    (
        "https://visualgenome.org/static/data/dataset/attributes.json.zip",
        Some(""),
    ),
    (
        "https://visualgenome.org/static/data/dataset/relationships.json.zip",
        Some(""),
    ),
    (
        "https://visualgenome.org/static/data/dataset/object_alias.txt",
        None,
    ),
    (
        "https://visualgenome.org/static/data/dataset/relationship_alias.txt",
        None,
    ),
    (
        "https://visualgenome.org/static/data/dataset/image_data.json.zip",
        Some(""),
    ),
    (
        "https://cs.stanford.edu/people/rak248/VG_100K_2/images.zip",
        Some("images"),
    ),
    (
        "https://cs.stanford.edu/people/rak248/VG_100K_2/images2.zip",
        Some("images"),
    ),
];

/// The pretrained models live in the `sg2im-data` Google Cloud Storage bucket. No checksums are
/// published for them; they are checked against Content-Length only.
const MODEL_BUCKET: &str = "https://storage.googleapis.com/sg2im-data";

/// `download_models.sh`: the three main models (Figures 5 and 6).
const MAIN_MODELS: &[&str] = &["coco64", "vg64", "vg128"];

/// `download_ablated_models.sh`: the Table 1 ablations, in the script's order.
const ABLATED_MODELS: &[&str] = &[
    "coco64_no_gconv",
    "coco64_no_relations",
    "coco64_no_discriminators",
    "coco64_no_img_discriminator",
    "coco64_no_obj_discriminator",
    "coco64_gt_layout",
    "coco64_gt_layout_no_gconv",
    "vg64_no_relations",
    "vg64_no_gconv",
    "vg64_no_discriminators",
    "vg64_no_img_discriminator",
    "vg64_no_obj_discriminator",
];

/// `download_full_models.sh`: every model above, unstripped (with training history), in the
/// script's order; saved under `full/`.
const FULL_MODELS: &[&str] = &[
    "coco64",
    "coco64_no_gconv",
    "coco64_no_relations",
    "coco64_no_discriminators",
    "coco64_no_img_discriminator",
    "coco64_no_obj_discriminator",
    "coco64_gt_layout",
    "coco64_gt_layout_no_gconv",
    "vg64",
    "vg128",
    "vg64_no_relations",
    "vg64_no_gconv",
    "vg64_no_discriminators",
    "vg64_no_img_discriminator",
    "vg64_no_obj_discriminator",
];

/// Default output directories, as in the original scripts.
pub const COCO_DIR: &str = "datasets/coco";
pub const VG_DIR: &str = "datasets/vg";
pub const MODELS_DIR: &str = "sg2im-models";

fn file_name(url: &str) -> &str {
    url.rsplit('/').next().unwrap_or(url)
}

pub(super) fn coco() -> Vec<Item> {
    COCO.iter()
        .map(|&(url, into, md5)| Item {
            url: url.to_string(),
            file: file_name(url).into(),
            unpack_into: Some(into.into()),
            checksum: md5.map(|hex| Checksum::Md5(hex.to_string())),
        })
        .collect()
}

pub(super) fn vg() -> Vec<Item> {
    VG.iter()
        .map(|&(url, into)| Item {
            url: url.to_string(),
            file: file_name(url).into(),
            unpack_into: into.map(Into::into),
            checksum: None,
        })
        .collect()
}

/// The model files: `main` = download_models.sh, `ablated` = download_ablated_models.sh,
/// `full` = download_full_models.sh (into `full/`).
pub(super) fn models(main: bool, ablated: bool, full: bool) -> Vec<Item> {
    let small = |name: &str| Item {
        url: format!("{MODEL_BUCKET}/small/{name}.pt"),
        file: format!("{name}.pt").into(),
        unpack_into: None,
        checksum: None,
    };
    let mut items = Vec::new();
    if main {
        items.extend(MAIN_MODELS.iter().map(|n| small(n)));
    }
    if ablated {
        items.extend(ABLATED_MODELS.iter().map(|n| small(n)));
    }
    if full {
        items.extend(FULL_MODELS.iter().map(|name| Item {
            url: format!("{MODEL_BUCKET}/full/{name}.pt"),
            file: format!("full/{name}.pt").into(),
            unpack_into: None,
            checksum: None,
        }));
    }
    items
}

/// torch-fidelity's Inception-v3 weights (release v0.2.0), the network of `sg2im metrics`.
pub const INCEPTION_URL: &str = "https://github.com/toshas/torch-fidelity/releases/download/v0.2.0/weights-inception-2015-12-05-6726825d.pth";

/// The Inception weights, checked against the SHA-256 prefix in their name (torch hub's
/// convention, as `torch.hub.load_state_dict_from_url(check_hash=True)` does).
pub(super) fn inception() -> Vec<Item> {
    let file = file_name(INCEPTION_URL);
    let prefix = file
        .rsplit('-')
        .next()
        .and_then(|s| s.strip_suffix(".pth"))
        .unwrap_or_default();
    vec![Item {
        url: INCEPTION_URL.to_string(),
        file: file.into(),
        unpack_into: None,
        checksum: Some(Checksum::Sha256Prefix(prefix.to_string())),
    }]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_match_the_original_scripts() {
        let c = coco();
        assert_eq!(c.len(), 4);
        assert_eq!(c[2].file.to_str(), Some("train2017.zip"));
        assert_eq!(
            c[2].unpack_into.as_deref().and_then(|p| p.to_str()),
            Some("images")
        );
        let v = vg();
        assert_eq!(v.len(), 8);
        assert_eq!(v.iter().filter(|i| i.unpack_into.is_none()).count(), 2);
        assert_eq!(models(true, false, false).len(), 3);
        assert_eq!(models(false, true, false).len(), 12);
        let full = models(false, false, true);
        assert_eq!(full.len(), 15);
        assert_eq!(
            full[9].url,
            "https://storage.googleapis.com/sg2im-data/full/vg128.pt"
        );
        assert_eq!(full[9].file.to_str(), Some("full/vg128.pt"));
        let inc = inception();
        assert_eq!(
            inc[0].file.to_str(),
            Some("weights-inception-2015-12-05-6726825d.pth")
        );
        assert_eq!(
            inc[0].checksum,
            Some(Checksum::Sha256Prefix("6726825d".into()))
        );
    }
}
