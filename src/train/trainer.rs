//! The training loop of `scripts/train.py` (§18.2–§18.7): setup, epochs, per-iteration steps,
//! logging, `check_model` and checkpoints, restore.
//!
//! Differences from the original, all deliberate:
//! * Everything random is seeded (`--seed`), see [`crate::rng`]; the original seeded nothing.
//! * A checkpoint also stores the loader position, and `--restore_from_checkpoint 1` continues
//!   the interrupted epoch at the next batch (the original started a new epoch), so a resumed
//!   run repeats the uninterrupted one exactly, iteration by iteration.
//! * `--num_iterations N` ends the run after iteration `N`; the original's rule (checked only
//!   at epoch start, so the run finishes the epoch in which `N` is reached, §18.4) is
//!   `--finish_epoch 1`.
//! * The last iteration is always saved: when the run ends (the limit, or a [`StopSignal`] such
//!   as the CLI's SIGINT/SIGTERM handler) and its last iteration was not a multiple of
//!   `--checkpoint_every`, a final checkpoint is written, exactly as a regular one (check_model
//!   on both splits, samples, metrics, both files), except that it stores the generator as it
//!   was *before* those checks: `check_model` updates BatchNorm running statistics in train
//!   mode, and a run resumed from it must continue from the state an uninterrupted run has.
//! * Nothing is printed: progress lines, the loss printout and warnings go to a [`Reporter`].

use crate::data::loader::{LoadedBatch, Loader};
use crate::io::model_file;
use crate::model::discriminators::{
    AcCropDiscriminator, AcCropDiscriminatorConfig, DiscriminatorConfig, PatchDiscriminator,
};
use crate::model::generator::{Sg2Im, Sg2ImConfig};
use crate::model::graph::GconvPooling;
use crate::model::layers::{CnnArch, PoolKind};
use crate::model::params::{Params, load_state_dict, to_device};
use crate::report::{Quiet, Reporter};
use crate::rng::{TrainRng, derive_seed};
use crate::train::TrainArgs;
use crate::train::adam::{Adam, AdamConfig};
use crate::train::check::{CheckResult, check_model, samples_grid};
use crate::train::checkpoint::{
    Checkpoint, Counters, History, NetWithOptim, OptimState, Weights, checkpoint_paths,
};
use crate::train::data::build_datasets;
use crate::train::logging::{MetricsJsonl, Sinks, fmt4};
use crate::train::step::{
    DeviceBatch, IterationResult, LossConfig, Nets, StepTimes, train_iteration,
};
use crate::train::tensorboard::EventWriter;
use crate::vocab::Vocab;
use crate::{Error, Result};
use burn::tensor::{Device, TensorData};
use indexmap::IndexMap;
use serde_json::{Value, json};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
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
    /// The `_with_model` checkpoint file of the run.
    pub checkpoint_path: PathBuf,
    /// Wall time of the loop.
    pub elapsed: Duration,
    /// The code given to [`StopSignal::request`] when the run ended on request (the CLI uses
    /// the signal number); `None` when it ran to its end.
    pub stopped_by: Option<usize>,
}

/// Asks a running training to stop after its current iteration (and save it). Clones share the
/// request, so a signal handler or another thread can hold one while `train_with` runs.
#[derive(Debug, Clone, Default)]
pub struct StopSignal(Arc<AtomicUsize>);

impl StopSignal {
    pub fn new() -> Self {
        Self::default()
    }

    /// Requests the stop; `code` (non-zero) comes back in [`TrainSummary::stopped_by`].
    pub fn request(&self, code: usize) {
        self.0.store(code.max(1), Ordering::SeqCst);
    }

    /// The pending request's code, if any.
    pub fn requested(&self) -> Option<usize> {
        match self.0.load(Ordering::SeqCst) {
            0 => None,
            code => Some(code),
        }
    }

    /// The shared cell, for handlers that store a code themselves (e.g. `signal-hook`'s
    /// `flag::register_usize`); any non-zero value is a request.
    pub fn cell(&self) -> &Arc<AtomicUsize> {
        &self.0
    }
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
    /// Problems with a `--checkpoint_start_from` file the run can live with.
    pub warnings: Vec<String>,
}

/// §18.2 steps 3–6: the generator from `--checkpoint_start_from` or from the flags (initialised
/// from `--seed`), the discriminators the flags ask for, a fresh Adam for each; all in train mode
/// with gradients on `device` (an autodiff device).
pub fn build_nets(args: &TrainArgs, vocab: &Vocab, device: &Device) -> Result<BuiltNets> {
    let seed = args.seed;
    let device = device.clone();
    let mut warnings = Vec::new();
    // Step 3: the generator, from a checkpoint or from the flags.
    let (generator, model_kwargs) = match &args.checkpoint_start_from {
        Some(path) => {
            let bundle = model_file::load_any(path)?;
            let what = path.display().to_string();
            let (mut g, w) = Sg2Im::from_net_state(&bundle.generator, &device, &what)?;
            warnings.extend(w.into_iter().map(|w| format!("{what}: {w}")));
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
    let (d_obj, d_obj_kw) = discriminator(
        args.has_d_obj(),
        || {
            let mut rng = TrainRng::derived(seed, "init/d_obj", &[]);
            AcCropDiscriminator::init(&d_obj_config(args, vocab), &device, &mut rng)
        },
        AcCropDiscriminator::to_kwargs,
        &device,
        adam,
    )?;
    let (d_img, d_img_kw) = discriminator(
        args.has_d_img(),
        || {
            let mut rng = TrainRng::derived(seed, "init/d_img", &[]);
            PatchDiscriminator::init(&d_img_config(args), &device, &mut rng)
        },
        PatchDiscriminator::to_kwargs,
        &device,
        adam,
    )?;
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
        warnings,
    })
}

/// A discriminator the flags ask for (`exists`), built from its kwargs, in train mode on
/// `device` with a fresh Adam; `{}` kwargs when it does not exist.
fn discriminator<D: Params>(
    exists: bool,
    init: impl FnOnce() -> Result<D>,
    kwargs: impl FnOnce(&D) -> Value,
    device: &Device,
    adam: AdamConfig,
) -> Result<(Option<(D, Adam)>, Value)> {
    if !exists {
        return Ok((None, json!({})));
    }
    let mut d = init()?;
    to_device(&mut d, device, true);
    Params::set_training(&mut d, true);
    let kw = kwargs(&d);
    Ok((Some((d, Adam::new(adam))), kw))
}

/// Trains as `scripts/train.py` does with these flags, silently and to the end. Returns when
/// the run ends.
pub fn train(args: TrainArgs) -> Result<TrainSummary> {
    train_with(args, &Quiet, &StopSignal::new())
}

/// [`train`] with its progress, loss printout and warnings sent to `reporter`, ending early
/// (after saving the current iteration) when `stop` is requested.
pub fn train_with(
    args: TrainArgs,
    reporter: &dyn Reporter,
    stop: &StopSignal,
) -> Result<TrainSummary> {
    let mut run = Run::setup(args, reporter)?;
    run.epochs(stop)?;
    Ok(run.finish())
}

/// Everything a run holds between iterations.
struct Run<'a> {
    args: TrainArgs,
    reporter: &'a dyn Reporter,
    device: Device,
    losses_cfg: LossConfig,
    nets: Nets,
    /// Graphs are checked against the generator's own vocabulary (it may come from a checkpoint).
    model_vocab: Vocab,
    /// `model_kwargs`, `d_obj_kwargs`, `d_img_kwargs`.
    kwargs: (Value, Value, Value),
    ck: Checkpoint,
    /// The seed of every stream: `--seed`, or the restored checkpoint's.
    seed: u64,
    train_loader: Loader,
    check_train_loader: Loader,
    check_val_loader: Loader,
    /// The batch at which the restored, interrupted epoch continues (sg2im-rs: exact resume).
    resume_at: Option<usize>,
    sinks: Sinks,
    output_dir: PathBuf,
    summary: TrainSummary,
    started: Instant,
    /// The iteration the state on disk belongs to (the restored one, or the last checkpoint).
    saved_t: Option<u64>,
}

impl<'a> Run<'a> {
    /// §18.2: flags, datasets, networks, restore (§18.7), loaders, metric sinks.
    fn setup(args: TrainArgs, reporter: &'a dyn Reporter) -> Result<Self> {
        // Step 1.
        reporter.info(&args.to_json().to_string());
        args.check_args()?;
        let output_dir = PathBuf::from(&args.output_dir);
        std::fs::create_dir_all(&output_dir).map_err(|e| Error::io(&output_dir, e))?;
        let device = args.device.device()?.autodiff();
        let losses_cfg = LossConfig::from_args(&args)?;

        // Step 2: datasets.
        let datasets = build_datasets(&args, reporter)?;
        for line in &datasets.info {
            reporter.info(line);
        }
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
        if let Some(path) = &args.checkpoint_start_from {
            reporter.info(&format!("Starting the generator from {}", path.display()));
        }
        let built = build_nets(&args, &datasets.vocab, &device)?;
        for w in &built.warnings {
            reporter.warn(&format!("WARNING: {w}"));
        }
        let mut nets = built.nets;
        let model_vocab = nets.generator.config.vocab.clone();
        let kwargs = (built.model_kwargs, built.d_obj_kwargs, built.d_img_kwargs);

        // Step 8: restore (§18.7) or a fresh checkpoint dictionary.
        let (with_path, _) = checkpoint_paths(&output_dir, &args.checkpoint_name);
        let restored = args.restore_from_checkpoint && with_path.exists();
        let (ck, seed) = if restored {
            reporter.info(&format!(
                "Restoring from checkpoint: {}",
                with_path.display()
            ));
            let ck = restore(&with_path, &mut nets, &args, &device)?;
            if ck.seed != args.seed {
                reporter.info(&format!(
                    "Continuing the random streams of the checkpoint (seed {}, not --seed {})",
                    ck.seed, args.seed
                ));
            }
            let seed = ck.seed;
            (ck, seed)
        } else {
            let ck = Checkpoint {
                args: args.to_json(),
                vocab: datasets.vocab.clone(),
                model_kwargs: kwargs.0.clone(),
                d_obj_kwargs: kwargs.1.clone(),
                d_img_kwargs: kwargs.2.clone(),
                history: History::default(),
                counters: Counters::default(),
                seed: args.seed,
                train_samples: Vec::new(),
                val_samples: Vec::new(),
                train_batch_data: Vec::new(),
                val_batch_data: Vec::new(),
                weights: None,
            };
            (ck, args.seed)
        };

        let loader = |dataset: &Arc<dyn crate::data::SceneGraphDataset>, shuffle, tag| {
            Loader::new(
                dataset.clone(),
                args.batch_size,
                shuffle,
                args.loader_num_workers,
                seed,
                tag,
            )
        };
        let train_loader = loader(&datasets.train, true, "train");
        let check_train_loader = loader(&datasets.train, true, "check-train");
        let check_val_loader = loader(&datasets.val, args.shuffle_val, "check-val");
        let num_batches = train_loader.num_batches();
        reporter.info(&format!("There are {num_batches} iterations per epoch"));

        // Where the interrupted epoch continues (sg2im-rs: exact resume).
        let same_batching =
            ck.args.get("batch_size").and_then(Value::as_u64) == Some(args.batch_size as u64);
        let resume_at = (restored
            && ck.counters.epoch > 0
            && ck.counters.epoch_batches_done < num_batches
            && same_batching)
            .then_some(ck.counters.epoch_batches_done);
        if restored && !same_batching {
            reporter
                .warn("WARNING: --batch_size differs from the checkpoint's; starting a new epoch");
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

        let summary = TrainSummary {
            t: ck.counters.t,
            epoch: ck.counters.epoch,
            checkpoints: Vec::new(),
            bad_items: 0,
            nonfinite_skips: 0,
            output_dir: output_dir.clone(),
            checkpoint_path: with_path,
            elapsed: Duration::ZERO,
            stopped_by: None,
        };
        Ok(Run {
            saved_t: restored.then_some(ck.counters.t),
            args,
            reporter,
            device,
            losses_cfg,
            nets,
            model_vocab,
            kwargs,
            ck,
            seed,
            train_loader,
            check_train_loader,
            check_val_loader,
            resume_at,
            sinks,
            output_dir,
            summary,
            started: Instant::now(),
        })
    }

    fn warn(&self, line: impl AsRef<str>) {
        self.reporter.warn(&format!("WARNING: {}", line.as_ref()));
    }

    /// What the datasets raised while loading (as they word it).
    fn dataset_warnings(&self) {
        for loader in [&self.train_loader, &self.check_val_loader] {
            for w in loader.dataset().take_warnings() {
                self.reporter.warn(&w);
            }
        }
    }

    /// The progress bar's length: `--num_iterations`, or further when the run finishes an
    /// epoch past it.
    fn progress(&self, message: &str) {
        let t = self.ck.counters.t;
        self.reporter
            .progress(t, self.args.num_iterations.max(t), message);
    }

    /// Whether the iteration limit is reached (checked at epoch start, and after every
    /// iteration unless `--finish_epoch 1`).
    fn done(&self) -> bool {
        self.ck.counters.t >= self.args.num_iterations
    }

    /// §18.3: epochs of iterations until the limit or a stop request; then the final checkpoint.
    fn epochs(&mut self, stop: &StopSignal) -> Result<()> {
        self.progress("");
        'epochs: while !self.done() && stop.requested().is_none() {
            let start_batch = match self.resume_at.take() {
                Some(b) => b,
                None => {
                    self.ck.counters.epoch += 1;
                    self.ck.counters.epoch_batches_done = 0;
                    0
                }
            };
            self.reporter
                .info(&format!("Starting epoch {}", self.ck.counters.epoch));
            let mut epoch_iter = self.train_loader.epoch(self.ck.counters.epoch, start_batch);
            loop {
                let wait = Instant::now();
                let Some(lb) = epoch_iter.next() else { break };
                self.iteration(lb, wait.elapsed())?;
                if (!self.args.finish_epoch && self.done()) || stop.requested().is_some() {
                    break 'epochs;
                }
            }
        }
        self.summary.stopped_by = stop.requested();
        if self.saved_t != Some(self.ck.counters.t) && self.ck.counters.t > 0 {
            self.checkpoint(true)?;
        }
        Ok(())
    }

    /// One batch: §18.3 (eval-mode switch, the three steps), printing every `--print_every`,
    /// a checkpoint every `--checkpoint_every` iterations.
    fn iteration(&mut self, lb: LoadedBatch, data_wait: Duration) -> Result<()> {
        let args = &self.args;
        self.ck.counters.epoch_batches_done = lb.index + 1;
        for e in &lb.errors {
            self.warn(format!("skipping a training item that failed to load: {e}"));
        }
        self.summary.bad_items += lb.errors.len();
        self.dataset_warnings();
        if lb.batch.num_images == 0 {
            self.warn(format!(
                "batch {} of epoch {} has no loadable item; skipped",
                lb.index, self.ck.counters.epoch
            ));
            return Ok(());
        }
        // §18.3: the eval-mode switch happens before t is incremented.
        if self.ck.counters.t as i64 == args.eval_mode_after {
            self.reporter.info("switching to eval mode");
            self.nets.generator.set_training(false);
            self.nets.optim_g = Adam::new(AdamConfig::with_lr(args.learning_rate));
        }
        self.ck.counters.t += 1;
        let t = self.ck.counters.t;
        let batch = DeviceBatch::new(&lb.batch, &self.model_vocab, &self.device)?;
        let z = self.nets.generator.config.layout_noise_dim;
        let noise = (z > 0).then(|| {
            let mut rng = TrainRng::derived(self.seed, "noise", &[t]);
            self.nets
                .generator
                .sample_noise(batch.num_images, &mut rng, &self.device)
        });
        let result = train_iteration(&mut self.nets, &batch, noise, &self.losses_cfg);
        drop(batch);
        if result.skipped {
            self.progress("");
            self.warn(format!(
                "Got loss = {}, not backpropping (t = {t})",
                result.g.total_loss
            ));
            self.summary.nonfinite_skips += 1;
            return Ok(());
        }
        self.progress(&format!("loss {}", fmt4(result.g.total_loss as f64)));
        if self.args.timing {
            self.print_timing(&result.times, data_wait);
        }
        if t.is_multiple_of(self.args.print_every) {
            self.log_losses(&result, data_wait)?;
        }
        if t.is_multiple_of(self.args.checkpoint_every) {
            self.checkpoint(false)?;
        }
        Ok(())
    }

    fn print_timing(&self, t: &StepTimes, data: Duration) {
        let ms = |d: Duration| d.as_secs_f64() * 1000.0;
        for (what, d) in [
            ("data", data),
            ("forward", t.forward),
            ("loss", t.losses),
            ("backward", t.backward),
            ("d_obj", t.d_obj),
            ("d_img", t.d_img),
        ] {
            self.reporter.info(&format!("{what}: {:.2} ms", ms(d)));
        }
    }

    /// The original's loss printout, the histories, and the `train` metrics record.
    fn log_losses(&mut self, r: &IterationResult, data_wait: Duration) -> Result<()> {
        let t = self.ck.counters.t;
        self.reporter
            .info(&format!("t = {t} / {}", self.args.num_iterations));
        let history = &mut self.ck.history;
        let mut scalars = Vec::new();
        let mut groups = Vec::new();
        for (label, named) in [
            ("G", Some(r.g.named())),
            ("D_obj", r.d_obj.as_ref().map(|d| d.named())),
            ("D_img", r.d_img.as_ref().map(|d| d.named())),
        ] {
            let store = if label == "G" {
                &mut history.losses
            } else {
                &mut history.d_losses
            };
            let mut values = serde_json::Map::new();
            for (name, v) in named.unwrap_or_default() {
                self.reporter
                    .info(&format!(" {label} [{name}]: {}", fmt4(v as f64)));
                store.entry(name.to_string()).or_default().push(v as f64);
                values.insert(name.into(), json!(v));
                scalars.push((format!("{label}/{name}"), v));
            }
            groups.push(Value::Object(values));
        }
        history.losses_ts.push(t);
        let secs = r.times.total().as_secs_f64();
        scalars.push(("time/iteration_s".into(), secs as f32));
        self.sinks.scalars(t, &scalars)?;
        let [g, d_obj, d_img] = <[Value; 3]>::try_from(groups).unwrap_or_default();
        self.sinks.record(&json!({
            "kind": "train",
            "t": t,
            "epoch": self.ck.counters.epoch,
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

    /// `check_model` of one split at the current iteration, its bad items reported.
    fn check(&mut self, split: &str) -> Result<CheckResult> {
        let t = self.ck.counters.t;
        let noise_seed = derive_seed(self.ck.seed, &format!("check/{split}"), &[t]);
        let loader = match split {
            "train" => &self.check_train_loader,
            _ => &self.check_val_loader,
        };
        let r = check_model(
            &mut self.nets.generator,
            loader,
            t,
            self.args.num_val_samples,
            &self.losses_cfg,
            &self.model_vocab,
            &self.device,
            noise_seed,
        )?;
        for e in &r.bad_items {
            self.warn(format!(
                "check_model ({split}): skipping an item that failed to load: {e}"
            ));
        }
        self.dataset_warnings();
        Ok(r)
    }

    /// §18.6: check_model on both splits, histories, samples and metrics, then both files.
    /// `last`: the run's final, possibly off-schedule checkpoint, which stores the generator
    /// as it was before the checks (see the module documentation).
    fn checkpoint(&mut self, last: bool) -> Result<()> {
        let t = self.ck.counters.t;
        let generator_before = last.then(|| net_state(&self.nets.generator, self.kwargs.0.clone()));
        self.reporter.info("checking on train");
        let tr = self.check("train")?;
        let ck = &mut self.ck;
        ck.train_batch_data.push(tr.batch_data.clone());
        ck.train_samples.push(tr.samples.clone());
        ck.history.checkpoint_ts.push(t);
        ck.history.train_iou.push(tr.avg_iou);
        self.reporter.info("checking on val");
        let va = self.check("val")?;
        let ck = &mut self.ck;
        ck.val_samples.push(va.samples.clone());
        ck.val_batch_data.push(va.batch_data.clone());
        ck.history.val_iou.push(va.avg_iou);
        self.reporter.info(&format!("train iou:  {}", tr.avg_iou));
        self.reporter.info(&format!("val iou:  {}", va.avg_iou));
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
        self.sinks.scalars(t, &scalars)?;
        for (split, r) in [("train", &tr), ("val", &va)] {
            if let Some((rgb, h, w)) = samples_grid(&r.samples, 8) {
                self.sinks
                    .image(t, &format!("samples/{split}"), &rgb, h, w)?;
                if self.args.save_sample_images {
                    let dir = self.output_dir.join("samples");
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
        self.sinks.record(&json!({
            "kind": "checkpoint",
            "t": t,
            "epoch": self.ck.counters.epoch,
            "train_iou": tr.avg_iou,
            "val_iou": va.avg_iou,
            "train_losses": tr.mean_losses,
            "val_losses": va.mean_losses,
        }))?;

        // The weights at this point, then both files.
        let nets = &self.nets;
        let (model_kwargs, d_obj_kw, d_img_kw) = &self.kwargs;
        self.ck.weights = Some(Weights {
            generator: NetWithOptim {
                net: generator_before
                    .unwrap_or_else(|| net_state(&nets.generator, model_kwargs.clone())),
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
        self.reporter.info(&format!(
            "Saving checkpoint to  {}",
            self.summary.checkpoint_path.display()
        ));
        self.ck.save(&self.output_dir, &self.args.checkpoint_name)?;
        self.ck.weights = None;
        self.reporter.info("Done.");
        self.saved_t = Some(t);
        self.summary.checkpoints.push(t);
        Ok(())
    }

    fn finish(mut self) -> TrainSummary {
        self.reporter.finish();
        self.summary.t = self.ck.counters.t;
        self.summary.epoch = self.ck.counters.epoch;
        self.summary.elapsed = self.started.elapsed();
        if self.summary.bad_items > 0 {
            self.warn(format!(
                "{} training items failed to load and were skipped",
                self.summary.bad_items
            ));
        }
        self.summary
    }
}

/// §18.7: the networks and optimizers of the checkpoint at `path` into `nets`; the generator's
/// mode as the iteration counter asks. Returns the checkpoint without its weights.
fn restore(
    path: &std::path::Path,
    nets: &mut Nets,
    args: &TrainArgs,
    device: &Device,
) -> Result<Checkpoint> {
    let mut ck = Checkpoint::load(path)?;
    let what = path.display().to_string();
    let w = ck
        .weights
        .take()
        .ok_or_else(|| Error::invalid(format!("{what}: no weights")))?;
    nets.optim_g = restore_net(
        &mut nets.generator,
        Some(&w.generator),
        device,
        &format!("{what}: generator"),
    )?;
    if let Some((d, opt)) = nets.d_obj.as_mut() {
        *opt = restore_net(
            d,
            w.d_obj.as_ref(),
            device,
            &format!("{what}: object discriminator"),
        )?;
    }
    if let Some((d, opt)) = nets.d_img.as_mut() {
        *opt = restore_net(
            d,
            w.d_img.as_ref(),
            device,
            &format!("{what}: image discriminator"),
        )?;
    }
    let t = ck.counters.t as i64;
    nets.generator
        .set_training(!(0 <= args.eval_mode_after && args.eval_mode_after <= t));
    Ok(ck)
}
