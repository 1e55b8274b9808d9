//! Image-quality metrics exactly as torch-fidelity 0.4.0 computes them: Inception Score, FID
//! and KID on the features of its `inception-v3-compat` network, from folders of images or FID
//! reference statistics (`.npz`). `sg2im metrics` is the command-line front end.
//!
//! Not to be confused with [`crate::model::metrics`] (box IoU during training).

pub mod fidelity;
pub mod gemm_avx512;
pub mod inception;
pub mod linalg;
pub mod resize;
pub mod winograd;

use crate::io::npz::{self, NpyArray};
use crate::{Error, Result};
use fidelity::{FidStats, KidOptions};
use inception::{Act, Features, InceptionV3};
use indexmap::IndexMap;
use rayon::prelude::*;
use resize::INCEPTION_SIZE;
use std::path::{Path, PathBuf};

/// torch-fidelity's result names, in its order.
pub const KEY_ISC_MEAN: &str = "inception_score_mean";
pub const KEY_ISC_STD: &str = "inception_score_std";
pub const KEY_FID: &str = "frechet_inception_distance";
pub const KEY_KID_MEAN: &str = "kernel_inception_distance_mean";
pub const KEY_KID_STD: &str = "kernel_inception_distance_std";

/// The second input: a folder of images or FID statistics saved with `--save_stats`
/// (pytorch-fid's `.npz` layout: `mu`, `sigma`).
#[derive(Clone, Debug)]
pub enum Input2 {
    Folder(PathBuf),
    Stats(PathBuf),
}

impl Input2 {
    /// A path ending in `.npz` is statistics, anything else a folder.
    pub fn from_path(p: &Path) -> Self {
        let is_npz = p.extension().is_some_and(|e| e.eq_ignore_ascii_case("npz"));
        if is_npz {
            Input2::Stats(p.to_path_buf())
        } else {
            Input2::Folder(p.to_path_buf())
        }
    }
}

/// What to compute (torch-fidelity's `calculate_metrics` keyword arguments).
#[derive(Clone, Debug)]
pub struct MetricsOptions {
    pub isc: bool,
    pub fid: bool,
    pub kid: bool,
    pub isc_splits: usize,
    pub kid_subsets: usize,
    pub kid_subset_size: usize,
    /// `rng_seed`: IS shuffling and KID subsets.
    pub seed: u32,
    pub batch_size: usize,
    /// Write input1's FID statistics here (`.npz`).
    pub save_stats: Option<PathBuf>,
}

impl Default for MetricsOptions {
    fn default() -> Self {
        Self {
            isc: false,
            fid: false,
            kid: false,
            isc_splits: 10,
            kid_subsets: 100,
            kid_subset_size: 1000,
            seed: 2020,
            batch_size: 32,
            save_stats: None,
        }
    }
}

/// Progress of feature extraction, for a progress bar.
#[derive(Clone, Copy, Debug)]
pub enum Progress {
    /// Extraction of `total` images begins (`input` 1 or 2).
    Start { input: usize, total: usize },
    /// `done` images of the current input have been processed.
    Done { done: usize },
}

/// The folder's `png`/`jpg`/`jpeg` files (extension in any case), sorted by name, not
/// recursive — torch-fidelity's `glob_samples_paths` with its defaults. Empty → error.
pub fn list_images(dir: &Path) -> Result<Vec<PathBuf>> {
    let entries = std::fs::read_dir(dir).map_err(|e| Error::io(dir, e))?;
    let mut files = Vec::new();
    for entry in entries {
        let path = entry.map_err(|e| Error::io(dir, e))?.path();
        let ext = path
            .extension()
            .and_then(|e| e.to_str())
            .map(str::to_ascii_lowercase);
        if matches!(ext.as_deref(), Some("png" | "jpg" | "jpeg")) && path.is_file() {
            files.push(path);
        }
    }
    if files.is_empty() {
        return Err(Error::invalid(format!(
            "{}: no images (expected .png, .jpg or .jpeg files in the folder)",
            dir.display()
        )));
    }
    files.sort();
    Ok(files)
}

/// Decodes and resizes a batch of images into the network's input, in `buffer` (any length
/// and contents: a recycled activation buffer saves allocating and faulting in ~34 MB per
/// batch of 32).
///
/// # Shapes
/// `paths (N)` → `(3, N, 299, 299)` channel-major.
pub fn load_batch(paths: &[PathBuf], mut buffer: Vec<f32>) -> Result<Act> {
    let (s, n) = (INCEPTION_SIZE, paths.len());
    buffer.resize(3 * n * s * s, 0.0);
    // Plane `c·N + i` is channel c of image i: regroup them per image.
    let mut planes = buffer.chunks_exact_mut(s * s);
    let mut channel = || planes.by_ref().take(n).collect::<Vec<_>>();
    let (r, g, b) = (channel(), channel(), channel());
    let per_image: Vec<[&mut [f32]; 3]> = r
        .into_iter()
        .zip(g)
        .zip(b)
        .map(|((r, g), b)| [r, g, b])
        .collect();
    paths
        .par_iter()
        .zip(per_image)
        .try_for_each(|(p, dst)| -> Result<()> {
            let (rgb, w, h) = crate::data::image::load_rgb(p)?;
            resize::resize_normalize_planes(&rgb, h, w, s, dst);
            Ok(())
        })?;
    Ok(Act {
        c: 3,
        n,
        h: s,
        w: s,
        data: buffer,
    })
}

/// All features of the images, in batches of `batch_size`.
pub fn extract_features(
    net: &InceptionV3,
    paths: &[PathBuf],
    batch_size: usize,
    progress: &mut dyn FnMut(Progress),
) -> Result<Features> {
    let mut all = Features::default();
    let mut done = 0;
    for chunk in paths.chunks(batch_size.max(1)) {
        let len = 3 * chunk.len() * INCEPTION_SIZE * INCEPTION_SIZE;
        let x = load_batch(chunk, net.recycled_buffer(len))?;
        all.extend(net.forward(x));
        done += chunk.len();
        progress(Progress::Done { done });
    }
    Ok(all)
}

/// Reads FID statistics (`mu (D,)`, `sigma (D, D)`) from an `.npz`.
pub fn read_stats(path: &Path) -> Result<FidStats> {
    let mu = npz::read_npz_array(path, "mu")?;
    let sigma = npz::read_npz_array(path, "sigma")?;
    let d = mu.data.len();
    if mu.shape.len() != 1 || sigma.shape != [d, d] {
        return Err(Error::invalid(format!(
            "{}: 'mu' has shape {:?} and 'sigma' {:?}, expected (D,) and (D, D)",
            path.display(),
            mu.shape,
            sigma.shape
        )));
    }
    FidStats::from_mu_sigma(mu.data, sigma.data)
        .map_err(|e| Error::invalid(format!("{}: {e}", path.display())))
}

/// Writes FID statistics as pytorch-fid does (`mu`, `sigma`, float64).
pub fn write_stats(path: &Path, stats: &FidStats) -> Result<()> {
    let mu = NpyArray {
        shape: vec![stats.dim],
        data: stats.mu.clone(),
    };
    let sigma = NpyArray {
        shape: vec![stats.dim, stats.dim],
        data: stats.sigma().to_vec(),
    };
    npz::write_npz(path, &[("mu", &mu), ("sigma", &sigma)])
}

/// torch-fidelity's `calculate_metrics(input1, input2, isc, fid, kid, …)` with the
/// `inception-v3-compat` extractor loaded from `weights`. Inputs are checked before the
/// network is loaded, so bad arguments fail fast.
pub fn calculate_metrics(
    input1: &Path,
    input2: Option<&Input2>,
    weights: &Path,
    opts: &MetricsOptions,
    progress: &mut dyn FnMut(Progress),
) -> Result<IndexMap<&'static str, f64>> {
    if !(opts.isc || opts.fid || opts.kid || opts.save_stats.is_some()) {
        return Err(Error::invalid(
            "nothing to compute: pass --isc, --fid, --kid and/or --save_stats",
        ));
    }
    if (opts.fid || opts.kid) && input2.is_none() {
        return Err(Error::invalid(
            "--fid and --kid compare two inputs: pass --input2 (a folder, or an .npz for --fid)",
        ));
    }
    if let (true, Some(Input2::Stats(p))) = (opts.kid, input2) {
        return Err(Error::invalid(format!(
            "{}: --kid needs the second input's images, not FID statistics",
            p.display()
        )));
    }
    let paths1 = list_images(input1)?;
    let paths2 = match input2 {
        Some(Input2::Folder(d)) if opts.fid || opts.kid => Some(list_images(d)?),
        _ => None,
    };
    let stats2_file = match input2 {
        Some(Input2::Stats(p)) if opts.fid => Some(read_stats(p)?),
        _ => None,
    };
    if opts.isc && paths1.len() < opts.isc_splits.max(1) {
        return Err(Error::invalid(format!(
            "{}: {} images cannot be cut into --isc_splits {} non-empty splits",
            input1.display(),
            paths1.len(),
            opts.isc_splits
        )));
    }
    if opts.kid {
        let n2 = paths2.as_ref().map_or(0, Vec::len);
        let m = opts.kid_subset_size;
        if m < 2 || opts.kid_subsets == 0 {
            return Err(Error::invalid(format!(
                "KID needs --kid_subset_size ≥ 2 and --kid_subsets ≥ 1 (got {m} and {})",
                opts.kid_subsets
            )));
        }
        if paths1.len() < m || n2 < m {
            return Err(Error::invalid(format!(
                "KID subset size {m} is larger than the number of images (input1: {}, input2: {n2}); lower --kid_subset_size",
                paths1.len()
            )));
        }
    }
    if let (Some(s), true) = (&stats2_file, opts.fid)
        && s.dim != 2048
    {
        return Err(Error::invalid(format!(
            "{}: statistics of dimension {}, expected 2048 (Inception pool features)",
            match input2 {
                Some(Input2::Stats(p)) => p.display().to_string(),
                _ => String::new(),
            },
            s.dim
        )));
    }

    let net = InceptionV3::load(weights)?;
    progress(Progress::Start {
        input: 1,
        total: paths1.len(),
    });
    let feats1 = extract_features(&net, &paths1, opts.batch_size, progress)?;
    let feats2 = match &paths2 {
        Some(p) => {
            progress(Progress::Start {
                input: 2,
                total: p.len(),
            });
            Some(extract_features(&net, p, opts.batch_size, progress)?)
        }
        None => None,
    };

    let mut out = IndexMap::new();
    if opts.isc {
        let (m, s) = fidelity::inception_score(
            &feats1.logits_unbiased,
            1008,
            opts.isc_splits,
            Some(opts.seed),
        )?;
        out.insert(KEY_ISC_MEAN, m);
        out.insert(KEY_ISC_STD, s);
    }
    let needs_stats1 = opts.fid || opts.save_stats.is_some();
    let stats1 = if needs_stats1 {
        Some(FidStats::from_features(&feats1.f2048, 2048)?)
    } else {
        None
    };
    if let (Some(path), Some(s1)) = (&opts.save_stats, &stats1) {
        write_stats(path, s1)?;
    }
    if opts.fid
        && let Some(s1) = &stats1
    {
        let s2 = match (&stats2_file, &feats2) {
            (Some(s), _) => s.clone(),
            (None, Some(f)) => FidStats::from_features(&f.f2048, 2048)?,
            (None, None) => return Err(Error::invalid("--fid needs --input2")),
        };
        out.insert(KEY_FID, fidelity::frechet_distance(s1, &s2)?);
    }
    if opts.kid
        && let Some(f2) = &feats2
    {
        let (m, s) = fidelity::kernel_inception_distance(
            &feats1.f2048,
            &f2.f2048,
            2048,
            KidOptions {
                subsets: opts.kid_subsets,
                subset_size: opts.kid_subset_size,
                seed: opts.seed,
            },
        )?;
        out.insert(KEY_KID_MEAN, m);
        out.insert(KEY_KID_STD, s);
    }
    Ok(out)
}
