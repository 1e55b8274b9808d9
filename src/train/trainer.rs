//! The training loop of `scripts/train.py` (§18.2–§18.7): setup, epochs, per-iteration steps,
//! logging, `check_model` and checkpoints, restore.
//!
//! Differences from the original, all deliberate:
//! * Everything random is seeded (`--seed`), see `train::rng`; the original seeded nothing.
//! * A checkpoint also stores the loader position, and `--restore_from_checkpoint 1` continues
//!   the interrupted epoch at the next batch (the original started a new epoch), so a resumed
//!   run repeats the uninterrupted one exactly, iteration by iteration.
//! * `--stop_at T` ends the run after iteration `T` (the original only stops at epoch ends).

use crate::io::model_file;
use crate::model::discriminators::{
    AcCropDiscriminator, AcCropDiscriminatorConfig, DiscriminatorConfig, PatchDiscriminator,
};
use crate::model::generator::{Sg2Im, Sg2ImConfig};
use crate::model::graph::GconvPooling;
use crate::model::layers::{CnnArch, PoolKind};
use crate::model::params::{Params, load_state_dict, to_device};
use crate::train::TrainArgs;
use crate::train::adam::{Adam, AdamConfig};
use crate::train::check::{CheckResult, check_model, samples_grid};
use crate::train::checkpoint::{
    Checkpoint, Counters, History, NetWithOptim, OptimState, Weights, checkpoint_paths,
};
use crate::train::data::build_datasets;
use crate::train::loader::Loader;
use crate::train::logging::{Console, MetricsJsonl, Sinks, fmt4};
use crate::train::rng::TrainRng;
use crate::train::step::{DeviceBatch, LossConfig, Nets, StepTimes, train_iteration};
use crate::train::tensorboard::EventWriter;
use crate::vocab::Vocab;
use crate::{Error, Result};
use burn::tensor::{Device, TensorData};
use indexmap::IndexMap;
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// What a finished run reports.
#[derive(Debug, Clone)]
pub struct TrainSummary {
    pub t: u64,
    pub epoch: u64,
    /// Checkpoints written by this run (iteration numbers).
    pub checkpoints: Vec<u64>,
    /// Items the loaders could not produce (skipped with a warning).
    pub bad_items: usize,
    /// Iterations whose generator loss was not finite (skipped, §18.3 step 6).
    pub nonfinite_skips: usize,
    pub output_dir: PathBuf,
    /// Wall time of the loop.
    pub elapsed: Duration,
}

/// The generator's configuration from the flags (§18.2 step 3; `gconv_pooling` is not a flag
/// and keeps the class default, avg).
pub fn generator_config(args: &TrainArgs, vocab: &Vocab) -> Result<Sg2ImConfig> {
    let cfg = Sg2ImConfig {
        vocab: vocab.clone(),
        image_size: args.image_size,
        embedding_dim: args.embedding_dim,
        gconv_dim: args.gconv_dim,
        gconv_hidden_dim: args.gconv_hidden_dim,
        gconv_pooling: GconvPooling::Avg,
        gconv_num_layers: args.gconv_num_layers,
        mlp_normalization: args.mlp_normalization,
        refinement_dims: args.refinement_network_dims.clone(),
        normalization: args.normalization,
        activation: args.activation.clone(),
        mask_size: args.mask_size,
        layout_noise_dim: args.layout_noise_dim,
    };
    vocab
        .validate()
        .map_err(Error::invalid)
        .and_then(|()| cfg.validate())
        .map_err(|e| Error::invalid(format!("generator configuration from the flags: {e}")))?;
    Ok(cfg)
}

/// The discriminators' CNN options from the flags (§18.2 steps 5 and 6; `pooling` is not a flag
/// and keeps the class default, avg).
fn discriminator_config(args: &TrainArgs, arch: &CnnArch) -> DiscriminatorConfig {
    DiscriminatorConfig {
        arch: arch.clone(),
        normalization: args.d_normalization,
        activation: args.d_activation.clone(),
        padding: args.d_padding,
        pooling: PoolKind::Avg,
    }
}

/// The object discriminator's configuration from the flags (§18.2 step 5).
pub fn d_obj_config(args: &TrainArgs, vocab: &Vocab) -> AcCropDiscriminatorConfig {
    AcCropDiscriminatorConfig {
        vocab: vocab.clone(),
        cnn: discriminator_config(args, &args.d_obj_arch),
        object_size: args.crop_size,
    }
}

/// The image discriminator's configuration from the flags (§18.2 step 6).
pub fn d_img_config(args: &TrainArgs) -> DiscriminatorConfig {
    discriminator_config(args, &args.d_img_arch)
}

fn optim_state(opt: &Adam) -> OptimState {
    let (tensors, meta) = opt.state_dict();
    OptimState {
        meta,
        tensors: tensors.into_iter().collect(),
    }
}

fn net_state(m: &impl Params, kwargs: Value) -> model_file::NetState {
    model_file::NetState {
        kwargs,
        state: crate::model::params::state_dict(m)
            .into_iter()
            .map(|(k, _, v)| (k, v))
            .collect::<IndexMap<String, TensorData>>(),
    }
}

fn restore_net(
    m: &mut impl Params,
    saved: Option<&NetWithOptim>,
    device: &Device,
    what: &str,
) -> Result<Adam> {
    let saved = saved.ok_or_else(|| {
        Error::invalid(format!(
            "{what}: the checkpoint has no state for it, but the current flags create it"
        ))
    })?;
    load_state_dict(m, &saved.net.state, device, what)?;
    to_device(m, device, true);
    let opt = Adam::load_state_dict(&saved.optim.meta, &saved.optim.tensors, device, what)?;
    opt.check_against(m, what)?;
    Ok(opt)
}

/// The networks of a run and the kwargs they were built from.
pub struct BuiltNets {
    pub nets: Nets,
    pub model_kwargs: Value,
    /// `{}` when the object discriminator does not exist.
    pub d_obj_kwargs: Value,
    pub d_img_kwargs: Value,
}

/// §18.2 steps 3–6: the generator from `--checkpoint_start_from` or from the flags (initialised
/// from `--seed`), the discriminators the flags ask for, a fresh Adam for each; all in train mode
/// with gradients on `device` (an autodiff device).
pub fn build_nets(args: &TrainArgs, vocab: &Vocab, device: &Device) -> Result<BuiltNets> {
    let seed = args.seed;
    let device = device.clone();
    // Step 3: the generator, from a checkpoint or from the flags.
    let (generator, model_kwargs) = match &args.checkpoint_start_from {
        Some(path) => {
            println!("Starting the generator from {}", path.display());
            let bundle = model_file::load_any(path)?;
            let what = path.display().to_string();
            let (mut g, warnings) = Sg2Im::from_net_state(&bundle.generator, &device, &what)?;
            for w in warnings {
                eprintln!("WARNING: {what}: {w}");
            }
            g.set_training(true);
            to_device(&mut g, &device, true);
            let kw = g.config.to_model_kwargs();
            (g, kw)
        }
        None => {
            let cfg = generator_config(args, vocab)?;
            let mut rng = TrainRng::derived(seed, "init/generator", &[]);
            let mut g = Sg2Im::init(&cfg, &device, &mut rng)?;
            to_device(&mut g, &device, true);
            g.set_training(true);
            let kw = g.config.to_model_kwargs();
            (g, kw)
        }
    };
    let adam = AdamConfig::with_lr(args.learning_rate);

    // Steps 5 and 6: discriminators.
    let mut d_obj = None;
    let mut d_obj_kw = json!({});
    if args.has_d_obj() {
        let mut d = AcCropDiscriminator::init(
            &d_obj_config(args, vocab),
            &device,
            &mut TrainRng::derived(seed, "init/d_obj", &[]),
        )?;
        to_device(&mut d, &device, true);
        Params::set_training(&mut d, true);
        d_obj_kw = d.to_kwargs();
        d_obj = Some((d, Adam::new(adam)));
    }
    let mut d_img = None;
    let mut d_img_kw = json!({});
    if args.has_d_img() {
        let mut d = PatchDiscriminator::init(
            &d_img_config(args),
            &device,
            &mut TrainRng::derived(seed, "init/d_img", &[]),
        )?;
        to_device(&mut d, &device, true);
        Params::set_training(&mut d, true);
        d_img_kw = d.to_kwargs();
        d_img = Some((d, Adam::new(adam)));
    }
    Ok(BuiltNets {
        nets: Nets {
            generator,
            optim_g: Adam::new(adam),
            d_obj,
            d_img,
        },
        model_kwargs,
        d_obj_kwargs: d_obj_kw,
        d_img_kwargs: d_img_kw,
    })
}

/// Trains as `scripts/train.py` does with these flags. Returns when the run ends.
pub fn train(args: TrainArgs) -> Result<TrainSummary> {
    // §18.2 step 1.
    println!("{}", args.to_json());
    args.check_args()?;
    let output_dir = PathBuf::from(&args.output_dir);
    std::fs::create_dir_all(&output_dir).map_err(|e| Error::io(&output_dir, e))?;
    let device = args.device.device()?.autodiff();
    let losses_cfg = LossConfig::from_args(&args)?;

    // Step 2: datasets and loaders.
    let datasets = build_datasets(&args)?;
    for line in &datasets.info {
        println!("{line}");
    }
    let vocab = datasets.vocab.clone();
    if datasets.train.is_empty() || datasets.val.is_empty() {
        return Err(Error::invalid(format!(
            "--dataset {}: the {} set is empty",
            args.dataset,
            if datasets.train.is_empty() {
                "training"
            } else {
                "validation"
            }
        )));
    }

    // Steps 3–6: the generator (from a checkpoint or the flags), the discriminators, optimizers.
    let mut seed = args.seed;
    let built = build_nets(&args, &vocab, &device)?;
    let (mut nets, model_kwargs, d_obj_kw, d_img_kw) = (
        built.nets,
        built.model_kwargs,
        built.d_obj_kwargs,
        built.d_img_kwargs,
    );
    // Graphs are checked against the generator's own vocabulary (it may come from a checkpoint).
    let model_vocab = nets.generator.config.vocab.clone();
    let adam = AdamConfig::with_lr(args.learning_rate);

    // Step 8: restore (§18.7) or a fresh checkpoint dictionary.
    let (with_path, _) = checkpoint_paths(&output_dir, &args.checkpoint_name);
    let mut restored = false;
    let mut ck = if args.restore_from_checkpoint && with_path.exists() {
        println!("Restoring from checkpoint: {}", with_path.display());
        let mut ck = Checkpoint::load(&with_path)?;
        let what = with_path.display().to_string();
        let w = ck
            .weights
            .take()
            .ok_or_else(|| Error::invalid(format!("{what}: no weights")))?;
        nets.optim_g = restore_net(
            &mut nets.generator,
            Some(&w.generator),
            &device,
            &format!("{what}: generator"),
        )?;
        if let Some((d, opt)) = nets.d_obj.as_mut() {
            *opt = restore_net(
                d,
                w.d_obj.as_ref(),
                &device,
                &format!("{what}: object discriminator"),
            )?;
        }
        if let Some((d, opt)) = nets.d_img.as_mut() {
            *opt = restore_net(
                d,
                w.d_img.as_ref(),
                &device,
                &format!("{what}: image discriminator"),
            )?;
        }
        let t = ck.counters.t as i64;
        nets.generator
            .set_training(!(0 <= args.eval_mode_after && args.eval_mode_after <= t));
        if ck.seed != seed {
            println!(
                "Continuing the random streams of the checkpoint (seed {}, not --seed {seed})",
                ck.seed
            );
            seed = ck.seed;
        }
        restored = true;
        ck
    } else {
        Checkpoint {
            args: args.to_json(),
            vocab: vocab.clone(),
            model_kwargs: model_kwargs.clone(),
            d_obj_kwargs: d_obj_kw.clone(),
            d_img_kwargs: d_img_kw.clone(),
            history: History::default(),
            counters: Counters::default(),
            seed,
            train_samples: Vec::new(),
            val_samples: Vec::new(),
            train_batch_data: Vec::new(),
            val_batch_data: Vec::new(),
            weights: None,
        }
    };

    let workers = args.loader_num_workers;
    let train_loader = Loader::new(
        datasets.train.clone(),
        args.batch_size,
        true,
        workers,
        seed,
        "train",
    );
    let check_train_loader = Loader::new(
        datasets.train.clone(),
        args.batch_size,
        true,
        workers,
        seed,
        "check-train",
    );
    let check_val_loader = Loader::new(
        datasets.val.clone(),
        args.batch_size,
        args.shuffle_val,
        workers,
        seed,
        "check-val",
    );
    let num_batches = train_loader.num_batches();
    println!("There are {num_batches} iterations per epoch");

    // Where the interrupted epoch continues (sg2im-rs: exact resume).
    let same_batching =
        ck.args.get("batch_size").and_then(Value::as_u64) == Some(args.batch_size as u64);
    let mut resume_at = (restored
        && ck.counters.epoch > 0
        && ck.counters.epoch_batches_done < num_batches
        && same_batching)
        .then_some(ck.counters.epoch_batches_done);
    if restored && !same_batching {
        eprintln!("WARNING: --batch_size differs from the checkpoint's; starting a new epoch");
    }

    let mut sinks = Sinks::default();
    let metrics_path = args
        .metrics_jsonl
        .clone()
        .unwrap_or_else(|| output_dir.join("metrics.jsonl"));
    sinks.jsonl = Some(MetricsJsonl::open(&metrics_path)?);
    if args.tensorboard {
        sinks.tensorboard = Some(EventWriter::create(&output_dir.join("tensorboard"))?);
    }

    let console = Console::new(
        args.progress,
        args.num_iterations.max(ck.counters.t),
        ck.counters.t,
    );
    let mut summary = TrainSummary {
        t: ck.counters.t,
        epoch: ck.counters.epoch,
        checkpoints: Vec::new(),
        bad_items: 0,
        nonfinite_skips: 0,
        output_dir: output_dir.clone(),
        elapsed: Duration::ZERO,
    };
    let started = Instant::now();
    let z = nets.generator.config.layout_noise_dim;

    'epochs: loop {
        if ck.counters.t >= args.num_iterations {
            break;
        }
        let start_batch = match resume_at.take() {
            Some(b) => b,
            None => {
                ck.counters.epoch += 1;
                ck.counters.epoch_batches_done = 0;
                0
            }
        };
        console.println(format!("Starting epoch {}", ck.counters.epoch));
        let mut epoch_iter = train_loader.epoch(ck.counters.epoch, start_batch);
        loop {
            let wait = Instant::now();
            let Some(lb) = epoch_iter.next() else { break };
            let data_wait = wait.elapsed();
            ck.counters.epoch_batches_done = lb.index + 1;
            for e in &lb.errors {
                console.warn(format!("skipping a training item that failed to load: {e}"));
            }
            summary.bad_items += lb.errors.len();
            if lb.batch.num_images == 0 {
                console.warn(format!(
                    "batch {} of epoch {} has no loadable item; skipped",
                    lb.index, ck.counters.epoch
                ));
                continue;
            }
            // §18.3: the eval-mode switch happens before t is incremented.
            if ck.counters.t as i64 == args.eval_mode_after {
                console.println("switching to eval mode");
                nets.generator.set_training(false);
                nets.optim_g = Adam::new(adam);
            }
            ck.counters.t += 1;
            let t = ck.counters.t;
            let batch = DeviceBatch::new(&lb.batch, &model_vocab, &device)?;
            let noise = (z > 0).then(|| {
                let mut rng = TrainRng::derived(seed, "noise", &[t]);
                nets.generator
                    .sample_noise(batch.num_images, &mut rng, &device)
            });
            let result = train_iteration(&mut nets, &batch, noise, &losses_cfg);
            drop(batch);
            console.set_position(t);
            if t > args.num_iterations {
                console.set_length(t);
            }
            if result.skipped {
                console.warn(format!(
                    "Got loss = {}, not backpropping (t = {t})",
                    result.g.total_loss
                ));
                summary.nonfinite_skips += 1;
                continue;
            }
            console.set_message(format!("loss {}", fmt4(result.g.total_loss as f64)));
            if args.timing {
                print_timing(&console, &result.times, data_wait);
            }
            if t % args.print_every == 0 {
                log_losses(
                    &console,
                    &mut ck.history,
                    &mut sinks,
                    t,
                    &args,
                    &result,
                    data_wait,
                    ck.counters.epoch,
                )?;
            }
            if t % args.checkpoint_every == 0 {
                do_checkpoint(
                    &console,
                    &mut ck,
                    &mut nets,
                    &check_train_loader,
                    &check_val_loader,
                    &args,
                    &losses_cfg,
                    &model_vocab,
                    &device,
                    &mut sinks,
                    &output_dir,
                    (&model_kwargs, &d_obj_kw, &d_img_kw),
                )?;
                summary.checkpoints.push(t);
            }
            if args.stop_at == Some(t) {
                console.println(format!("Stopping at t = {t} (--stop_at)"));
                break 'epochs;
            }
        }
    }
    console.finish();
    summary.t = ck.counters.t;
    summary.epoch = ck.counters.epoch;
    summary.elapsed = started.elapsed();
    if summary.bad_items > 0 {
        eprintln!(
            "WARNING: {} training items failed to load and were skipped",
            summary.bad_items
        );
    }
    Ok(summary)
}

fn print_timing(console: &Console, t: &StepTimes, data: Duration) {
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    console.println(format!("data: {:.2} ms", ms(data)));
    console.println(format!("forward: {:.2} ms", ms(t.forward)));
    console.println(format!("loss: {:.2} ms", ms(t.losses)));
    console.println(format!("backward: {:.2} ms", ms(t.backward)));
    console.println(format!("d_obj: {:.2} ms", ms(t.d_obj)));
    console.println(format!("d_img: {:.2} ms", ms(t.d_img)));
}

#[allow(clippy::too_many_arguments)]
fn log_losses(
    console: &Console,
    history: &mut History,
    sinks: &mut Sinks,
    t: u64,
    args: &TrainArgs,
    r: &crate::train::step::IterationResult,
    data_wait: Duration,
    epoch: u64,
) -> Result<()> {
    console.println(format!("t = {t} / {}", args.num_iterations));
    let mut g = serde_json::Map::new();
    let mut scalars = Vec::new();
    for (name, v) in r.g.named() {
        console.println(format!(" G [{name}]: {}", fmt4(v as f64)));
        history
            .losses
            .entry(name.to_string())
            .or_default()
            .push(v as f64);
        g.insert(name.into(), json!(v));
        scalars.push((format!("G/{name}"), v));
    }
    history.losses_ts.push(t);
    let mut d_obj = serde_json::Map::new();
    if let Some(d) = &r.d_obj {
        for (name, v) in d.named() {
            console.println(format!(" D_obj [{name}]: {}", fmt4(v as f64)));
            history
                .d_losses
                .entry(name.to_string())
                .or_default()
                .push(v as f64);
            d_obj.insert(name.into(), json!(v));
            scalars.push((format!("D_obj/{name}"), v));
        }
    }
    let mut d_img = serde_json::Map::new();
    if let Some(d) = &r.d_img {
        for (name, v) in d.named() {
            console.println(format!(" D_img [{name}]: {}", fmt4(v as f64)));
            history
                .d_losses
                .entry(name.to_string())
                .or_default()
                .push(v as f64);
            d_img.insert(name.into(), json!(v));
            scalars.push((format!("D_img/{name}"), v));
        }
    }
    let secs = r.times.total().as_secs_f64();
    scalars.push(("time/iteration_s".into(), secs as f32));
    sinks.scalars(t, &scalars)?;
    sinks.record(&json!({
        "kind": "train",
        "t": t,
        "epoch": epoch,
        "G": g,
        "D_obj": d_obj,
        "D_img": d_img,
        "time_s": {
            "iteration": secs,
            "data_wait": data_wait.as_secs_f64(),
            "forward": r.times.forward.as_secs_f64(),
            "losses": r.times.losses.as_secs_f64(),
            "backward": r.times.backward.as_secs_f64(),
            "d_obj": r.times.d_obj.as_secs_f64(),
            "d_img": r.times.d_img.as_secs_f64(),
        },
    }))
}

#[allow(clippy::too_many_arguments)]
fn do_checkpoint(
    console: &Console,
    ck: &mut Checkpoint,
    nets: &mut Nets,
    train_loader: &Loader,
    val_loader: &Loader,
    args: &TrainArgs,
    losses_cfg: &LossConfig,
    vocab: &Vocab,
    device: &Device,
    sinks: &mut Sinks,
    output_dir: &Path,
    kwargs: (&Value, &Value, &Value),
) -> Result<()> {
    let t = ck.counters.t;
    let n = args.num_val_samples;
    let check = |g: &mut Sg2Im, loader: &Loader, split: &str| -> Result<CheckResult> {
        let noise_seed = crate::train::rng::derive_seed(ck.seed, &format!("check/{split}"), &[t]);
        let r = check_model(g, loader, t, n, losses_cfg, vocab, device, noise_seed)?;
        for e in &r.bad_items {
            console.warn(format!(
                "check_model ({split}): skipping an item that failed to load: {e}"
            ));
        }
        Ok(r)
    };
    console.println("checking on train");
    let tr = check(&mut nets.generator, train_loader, "train")?;
    ck.train_batch_data.push(tr.batch_data.clone());
    ck.train_samples.push(tr.samples.clone());
    ck.history.checkpoint_ts.push(t);
    ck.history.train_iou.push(tr.avg_iou);
    console.println("checking on val");
    let va = check(&mut nets.generator, val_loader, "val")?;
    ck.val_samples.push(va.samples.clone());
    ck.val_batch_data.push(va.batch_data.clone());
    ck.history.val_iou.push(va.avg_iou);
    console.println(format!("train iou:  {}", tr.avg_iou));
    console.println(format!("val iou:  {}", va.avg_iou));
    for (k, v) in &va.mean_losses {
        ck.history.val_losses.entry(k.clone()).or_default().push(*v);
    }

    // Machine-readable records and sample images.
    let mut scalars = vec![
        ("iou/train".to_string(), tr.avg_iou as f32),
        ("iou/val".to_string(), va.avg_iou as f32),
    ];
    for (k, v) in &va.mean_losses {
        scalars.push((format!("val/{k}"), *v as f32));
    }
    for (k, v) in &tr.mean_losses {
        scalars.push((format!("train_check/{k}"), *v as f32));
    }
    sinks.scalars(t, &scalars)?;
    for (split, r) in [("train", &tr), ("val", &va)] {
        if let Some((rgb, h, w)) = samples_grid(&r.samples, 8) {
            sinks.image(t, &format!("samples/{split}"), &rgb, h, w)?;
            if args.save_sample_images {
                let dir = output_dir.join("samples");
                std::fs::create_dir_all(&dir).map_err(|e| Error::io(&dir, e))?;
                crate::imagenet::save_png_rgb(
                    dir.join(format!("{split}_t{t:08}.png")),
                    &rgb,
                    h,
                    w,
                )?;
            }
        }
    }
    sinks.record(&json!({
        "kind": "checkpoint",
        "t": t,
        "epoch": ck.counters.epoch,
        "train_iou": tr.avg_iou,
        "val_iou": va.avg_iou,
        "train_losses": tr.mean_losses,
        "val_losses": va.mean_losses,
    }))?;

    // The weights at this point, then both files.
    let (model_kwargs, d_obj_kw, d_img_kw) = kwargs;
    ck.weights = Some(Weights {
        generator: NetWithOptim {
            net: net_state(&nets.generator, model_kwargs.clone()),
            optim: optim_state(&nets.optim_g),
        },
        d_obj: nets.d_obj.as_ref().map(|(d, opt)| NetWithOptim {
            net: net_state(d, d_obj_kw.clone()),
            optim: optim_state(opt),
        }),
        d_img: nets.d_img.as_ref().map(|(d, opt)| NetWithOptim {
            net: net_state(d, d_img_kw.clone()),
            optim: optim_state(opt),
        }),
    });
    let (with_path, _) = checkpoint_paths(output_dir, &args.checkpoint_name);
    console.println(format!("Saving checkpoint to  {}", with_path.display()));
    ck.save(output_dir, &args.checkpoint_name)?;
    ck.weights = None;
    console.println("Done.");
    Ok(())
}
