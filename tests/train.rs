//! End-to-end training on the built-in `shapes` data with tiny networks: checkpoints, exact
//! resume, atomic checkpoint writes under a kill, the files a run leaves, and `strip-checkpoint`,
//! `print-args` and `run` on its checkpoint.

mod common;

use common::{scratch, sg2im_cmd as sg2im};
use serde_json::Value;
use sg2im::train::checkpoint::{ABORT_HOOK_ENV, Checkpoint, checkpoint_paths};
use sg2im::train::{TrainArgs, train};
use std::path::{Path, PathBuf};

/// The tiny networks of `common::TINY_FLAGS` on 8 batches of 4 shapes scenes per epoch, both
/// discriminators, mask loss on, 2 loader workers.
const SHAPES: [&str; 14] = [
    "--dataset=shapes",
    "--shapes_num_train=32",
    "--shapes_num_val=8",
    "--num_val_samples=8",
    "--mask_size=4",
    "--mask_loss_weight=0.1",
    "--gconv_num_layers=2",
    "--layout_noise_dim=4",
    "--learning_rate=1e-3",
    "--loader_num_workers=2",
    "--print_every=1",
    "--checkpoint_every=6",
    "--num_iterations=18",
    "--seed=7",
];

fn tiny_flags(out: &Path) -> Vec<String> {
    common::tiny_flags(out, &SHAPES)
}

fn args(out: &Path, extra: &[&str]) -> TrainArgs {
    let mut flags = tiny_flags(out);
    flags.extend(extra.iter().map(|s| s.to_string()));
    TrainArgs::parse_from(flags).unwrap()
}

/// The `(t, losses)` records of a metrics file, timings dropped.
fn loss_records(path: &Path, kind: &str) -> Vec<(u64, Value)> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .filter(|r| r["kind"] == kind)
        .map(|mut r| {
            let t = r["t"].as_u64().unwrap();
            r.as_object_mut().unwrap().remove("time_s");
            (t, r)
        })
        .collect()
}

#[test]
fn interrupted_and_resumed_run_repeats_the_uninterrupted_one_exactly() {
    resume_is_exact("default", &[]);
}

#[test]
fn resume_is_exact_across_the_eval_mode_switch_with_lsgan_and_no_workers() {
    // The checkpoint at t = 12 is taken just before the switch to eval mode (which also
    // recreates the generator's Adam); the resumed run must make the same switch.
    resume_is_exact(
        "evalmode",
        &[
            "--eval_mode_after=12",
            "--gan_loss_type=lsgan",
            "--loader_num_workers=0",
        ],
    );
}

fn resume_is_exact(name: &str, extra: &[&str]) {
    let with = |more: &[&str]| -> Vec<String> {
        extra.iter().chain(more).map(|s| s.to_string()).collect()
    };
    let run = |dir: &Path, more: &[&str]| {
        let flags = with(more);
        let refs: Vec<&str> = flags.iter().map(String::as_str).collect();
        train(args(dir, &refs)).unwrap()
    };
    // Uninterrupted, with the original's rule: the iteration limit (18) is only checked between
    // epochs of 8 batches, so the run ends at t = 24 (§18.4), with checkpoints at 6, 12, 18, 24.
    let a = scratch(&format!("resume-a-{name}"));
    let sa = run(&a, &["--finish_epoch=1"]);
    assert_eq!((sa.t, sa.epoch), (24, 3));
    assert_eq!(sa.checkpoints, vec![6, 12, 18, 24]);

    // Interrupted at the checkpoint t = 12 (mid-epoch 2), then resumed in the same directory.
    let b = scratch(&format!("resume-b-{name}"));
    let (m1, m2) = (b.join("m1.jsonl"), b.join("m2.jsonl"));
    let sb = run(
        &b,
        &[
            "--num_iterations=12",
            "--metrics_jsonl",
            m1.to_str().unwrap(),
        ],
    );
    assert_eq!(sb.t, 12);
    let sc = run(
        &b,
        &[
            "--finish_epoch=1",
            "--restore_from_checkpoint=1",
            "--metrics_jsonl",
            m2.to_str().unwrap(),
        ],
    );
    assert_eq!((sc.t, sc.epoch), (24, 3));
    assert_eq!(sc.checkpoints, vec![18, 24]);

    let full = loss_records(&a.join("metrics.jsonl"), "train");
    let mut pieces = loss_records(&b.join("m1.jsonl"), "train");
    pieces.extend(loss_records(&b.join("m2.jsonl"), "train"));
    assert_eq!(full.len(), 24);
    assert_eq!(pieces.len(), 24);
    for ((ta, ra), (tb, rb)) in full.iter().zip(&pieces) {
        assert_eq!(ta, tb);
        // Bit-identical losses: same data, same noise, same weights and optimizer moments.
        assert_eq!(ra, rb, "losses differ at t = {ta}");
    }
    let ck_full = loss_records(&a.join("metrics.jsonl"), "checkpoint");
    let ck_resumed = loss_records(&b.join("m2.jsonl"), "checkpoint");
    assert_eq!(
        &ck_full[2..],
        &ck_resumed[..],
        "check_model results after the resume"
    );

    // The resumed checkpoint carries the whole history, like the uninterrupted one.
    let (with_a, _) = checkpoint_paths(&a, "checkpoint");
    let (with_b, no_b) = checkpoint_paths(&b, "checkpoint");
    let (ca, cb) = (
        Checkpoint::load(&with_a).unwrap(),
        Checkpoint::load(&with_b).unwrap(),
    );
    assert_eq!(ca.history, cb.history);
    assert_eq!(cb.history.checkpoint_ts, vec![6, 12, 18, 24]);
    assert_eq!(cb.history.losses_ts.len(), 24);
    assert_eq!(cb.train_samples.len(), 4);
    assert_eq!(cb.counters.t, 24);
    let wa = ca.weights.unwrap();
    let wb = cb.weights.unwrap();
    assert_eq!(wa.generator.net.state, wb.generator.net.state);
    assert!(Checkpoint::load(&no_b).unwrap().weights.is_none());
    std::fs::remove_dir_all(&a).unwrap();
    std::fs::remove_dir_all(&b).unwrap();
}

#[test]
fn a_kill_while_writing_a_checkpoint_leaves_the_previous_one_intact() {
    let dir = scratch("kill");
    let metrics = |n: u32| dir.join(format!("m{n}.jsonl")).display().to_string();
    // Run to the first checkpoint (t = 6).
    let st = sg2im()
        .arg("train")
        .args(tiny_flags(&dir))
        .args(["--num_iterations=6", "--metrics_jsonl", &metrics(1)])
        .output()
        .unwrap();
    assert!(st.status.success());
    let (with, _) = checkpoint_paths(&dir, "checkpoint");
    let before = std::fs::read(&with).unwrap();

    // Resume; the process is killed (abort) half-way through writing the t = 12 checkpoint.
    let out = sg2im()
        .arg("train")
        .args(tiny_flags(&dir))
        .args([
            "--restore_from_checkpoint=1",
            "--num_iterations=12",
            "--metrics_jsonl",
            &metrics(2),
        ])
        .env(ABORT_HOOK_ENV, "1")
        .output()
        .unwrap();
    assert!(!out.status.success(), "the hook must kill the process");
    assert!(String::from_utf8_lossy(&out.stderr).contains("aborting half-way"));
    // A partial temporary file exists beside it, but the checkpoint itself is untouched.
    let leftovers: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains(".tmp-"))
        .collect();
    assert_eq!(leftovers.len(), 1, "{leftovers:?}");
    assert_eq!(std::fs::read(&with).unwrap(), before);
    assert_eq!(Checkpoint::load(&with).unwrap().counters.t, 6);

    // Resuming again works and redoes iterations 7..12 exactly as the killed run did.
    let st = sg2im()
        .arg("train")
        .args(tiny_flags(&dir))
        .args([
            "--restore_from_checkpoint=1",
            "--num_iterations=12",
            "--metrics_jsonl",
            &metrics(3),
        ])
        .output()
        .unwrap();
    assert!(st.status.success());
    let killed = loss_records(Path::new(&metrics(2)), "train");
    let redone = loss_records(Path::new(&metrics(3)), "train");
    assert_eq!(killed.len(), 6);
    assert_eq!(killed, redone);
    assert_eq!(Checkpoint::load(&with).unwrap().counters.t, 12);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_run_leaves_checkpoints_samples_metrics_and_tensorboard_events_usable_by_the_tools() {
    let dir = scratch("files");
    let st = sg2im()
        .arg("train")
        .args(tiny_flags(&dir))
        .args([
            "--num_iterations=6",
            "--finish_epoch=1",
            "--checkpoint_every=8",
            "--print_every=4",
        ])
        .output()
        .unwrap();
    assert!(
        st.status.success(),
        "{}",
        String::from_utf8_lossy(&st.stderr)
    );
    let stdout = String::from_utf8_lossy(&st.stdout);
    // The original's console format.
    assert!(stdout.contains("Starting epoch 1"), "{stdout}");
    assert!(stdout.contains("t = 4 / 6"), "{stdout}");
    assert!(stdout.contains(" G [L1_pixel_loss]: "), "{stdout}");
    assert!(stdout.contains(" D_obj [d_ac_loss_fake]: "), "{stdout}");
    assert!(stdout.contains(" D_img [d_img_gan_loss]: "), "{stdout}");
    assert!(stdout.contains("checking on val"), "{stdout}");
    assert!(stdout.contains("val iou:  "), "{stdout}");
    let (with, no) = checkpoint_paths(&dir, "checkpoint");
    assert!(with.exists() && no.exists());
    assert!(dir.join("samples/val_t00000008.png").exists());
    assert!(dir.join("samples/train_t00000008.png").exists());
    assert_eq!(loss_records(&dir.join("metrics.jsonl"), "train").len(), 2);
    assert_eq!(
        loss_records(&dir.join("metrics.jsonl"), "checkpoint").len(),
        1
    );
    let events: Vec<PathBuf> = std::fs::read_dir(dir.join("tensorboard"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(events.len(), 1);
    let records = sg2im::train::tensorboard::read_records(&events[0]).unwrap();
    // File version, two scalar prints, checkpoint scalars, two sample images.
    assert_eq!(records.len(), 6);

    // print-args: one `key value` line per flag, Python formatting.
    let out = sg2im()
        .args(["print-args", with.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.lines().any(|l| l == "batch_size 4"), "{text}");
    assert!(text.lines().any(|l| l == "image_size (16, 16)"), "{text}");
    assert!(text.lines().any(|l| l == "d_clip None"), "{text}");

    // strip-checkpoint → a smaller model file; `run` accepts both.
    let stripped = dir.join("stripped.safetensors");
    let out = sg2im()
        .args([
            "strip-checkpoint",
            "--input_checkpoint",
            with.to_str().unwrap(),
        ])
        .args([
            "--output_checkpoint",
            stripped.to_str().unwrap(),
            "--keep_discriminators",
            "0",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(std::fs::metadata(&stripped).unwrap().len() < std::fs::metadata(&with).unwrap().len());
    let bundle = sg2im::io::model_file::load_model_file(&stripped).unwrap();
    assert!(bundle.d_obj.is_none() && bundle.d_img.is_none());
    let vocab = sg2im::data::synthetic::shapes_vocab();
    let graphs = dir.join("graphs.json");
    let (a, b) = (
        &vocab.object_idx_to_name[1],
        &vocab.object_idx_to_name[vocab.num_objects() - 1],
    );
    std::fs::write(
        &graphs,
        format!(r#"[{{"objects": ["{a}", "{b}"], "relationships": [[1, "above", 0]]}}]"#),
    )
    .unwrap();
    for model in [&with, &stripped] {
        let images = dir.join(format!(
            "run-{}",
            model.file_stem().unwrap().to_string_lossy()
        ));
        let out = sg2im()
            .args(["run", "--checkpoint", model.to_str().unwrap()])
            .args([
                "--scene_graphs_json",
                graphs.to_str().unwrap(),
                "--output_dir",
                images.to_str().unwrap(),
            ])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(images.join("img000000.png").exists());
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn bad_flags_are_rejected_with_one_clear_line() {
    let out = sg2im()
        .args(["train", "--batch-size", "0"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("--batch_size") && err.contains("expected a positive integer"),
        "{err}"
    );
    let out = sg2im()
        .args(["train", "--shuffle_val", "maybe"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("expected 1, 0, true or false"), "{err}");
    // check_args, as the original (§18.1): too many refinement modules for the image height.
    let dir = scratch("badargs");
    let out = sg2im()
        .arg("train")
        .args(tiny_flags(&dir))
        .args(["--image_size=4,4", "--refinement_network_dims=8,8,8,8"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("--refinement_network_dims: too many layers"),
        "{err}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

/// A short learning run: 200 iterations of batch 8 on 16×16 scenes. Validation L1 and box IoU
/// at the last checkpoint (t = 200) against the first (t = 20). Measured with this seed:
/// IoU 0.03 → 0.47, L1 0.77 → 0.46; other seeds behave alike (IoU ≥ +0.4, L1 −40 %). The margins
/// asserted (IoU +0.15, L1 −20 %) leave room for any change that does not break learning.
#[test]
fn a_short_run_learns_boxes_and_pixels() {
    let dir = scratch("learn");
    let flags = [
        "--dataset=shapes",
        "--image_size=16,16",
        "--batch_size=8",
        "--shapes_num_train=1600",
        "--shapes_num_val=64",
        "--num_val_samples=64",
        "--mask_size=4",
        "--embedding_dim=16",
        "--gconv_dim=32",
        "--gconv_hidden_dim=64",
        "--gconv_num_layers=2",
        "--refinement_network_dims=32,16",
        "--layout_noise_dim=4",
        "--d_obj_arch=C3-8-2,C3-16-2",
        "--d_img_arch=C3-8-2,C3-16-2",
        "--crop_size=8",
        "--learning_rate=1e-3",
        "--loader_num_workers=1",
        "--print_every=1000",
        "--checkpoint_every=20",
        "--num_iterations=200",
        "--progress=0",
        "--tensorboard=0",
        "--save_sample_images=0",
        "--seed=1",
    ];
    let mut all: Vec<String> = flags.iter().map(|s| s.to_string()).collect();
    all.push(format!("--output_dir={}", dir.display()));
    let summary = train(TrainArgs::parse_from(all).unwrap()).unwrap();
    assert_eq!(summary.checkpoints.len(), 10);
    let (with, _) = checkpoint_paths(&dir, "checkpoint");
    let ck = Checkpoint::load(&with).unwrap();
    let iou = &ck.history.val_iou;
    let l1 = &ck.history.val_losses["L1_pixel_loss"];
    let (iou0, iou1) = (iou[0], iou[iou.len() - 1]);
    let (l10, l11) = (l1[0], l1[l1.len() - 1]);
    assert!(
        iou1 >= iou0 + 0.15,
        "val IoU {iou0:.3} -> {iou1:.3} (history {iou:?})"
    );
    assert!(
        l11 <= 0.8 * l10,
        "val L1 {l10:.3} -> {l11:.3} (history {l1:?})"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

/// The `_with_model` checkpoint of a run directory.
fn load_checkpoint(dir: &Path) -> Checkpoint {
    Checkpoint::load(checkpoint_paths(dir, "checkpoint").0).unwrap()
}

/// Iteration numbers of the checkpoint records of a metrics file.
fn checkpoint_records_after(path: &Path, after: u64) -> Vec<(u64, Value)> {
    loss_records(path, "checkpoint")
        .into_iter()
        .filter(|(t, _)| *t > after)
        .collect()
}

#[test]
fn num_iterations_stops_mid_epoch_and_the_last_iteration_is_saved() {
    // 8 batches per epoch: t = 10 is in epoch 2 and not a multiple of --checkpoint_every (6).
    let dir = scratch("exact-n");
    let reporter = sg2im::report::Collect::default();
    let summary = sg2im::train::train_with(
        args(&dir, &["--num_iterations=10"]),
        &reporter,
        &sg2im::train::StopSignal::new(),
    )
    .unwrap();
    assert_eq!((summary.t, summary.epoch), (10, 2));
    assert_eq!(
        summary.checkpoints,
        vec![6, 10],
        "a final checkpoint at t = 10"
    );
    assert_eq!(summary.stopped_by, None);
    let ck = load_checkpoint(&dir);
    assert_eq!(ck.counters.t, 10);
    assert_eq!(ck.counters.epoch_batches_done, 2);
    assert_eq!(ck.history.losses_ts, (1..=10).collect::<Vec<u64>>());
    for (name, values) in ck.history.losses.iter().chain(&ck.history.d_losses) {
        assert_eq!(values.len(), 10, "{name}");
    }
    assert_eq!(ck.history.checkpoint_ts, vec![6, 10]);
    assert_eq!((ck.train_samples.len(), ck.val_samples.len()), (2, 2));
    assert!(dir.join("samples/val_t00000010.png").exists());
    assert_eq!(loss_records(&dir.join("metrics.jsonl"), "train").len(), 10);
    // The loss printout went to the reporter, not to stdout.
    let lines: Vec<String> = reporter.take().into_iter().map(|(_, l)| l).collect();
    assert!(lines.iter().any(|l| l == "t = 10 / 10"), "{lines:?}");
    assert_eq!(
        lines
            .iter()
            .filter(|l| l.starts_with("Saving checkpoint"))
            .count(),
        2
    );

    // Resumed to t = 18, it repeats an uninterrupted 18-iteration run exactly: losses,
    // check_model results after t = 10, and the final weights (the off-schedule checkpoint
    // stored the generator as it was before its own check_model passes).
    let full = scratch("exact-n-full");
    let sf = train(args(&full, &[])).unwrap();
    assert_eq!((sf.t, sf.checkpoints.clone()), (18, vec![6, 12, 18]));
    let m2 = dir.join("m2.jsonl");
    let sr = train(args(
        &dir,
        &[
            "--restore_from_checkpoint=1",
            "--metrics_jsonl",
            m2.to_str().unwrap(),
        ],
    ))
    .unwrap();
    assert_eq!((sr.t, sr.checkpoints), (18, vec![12, 18]));
    let mut pieces = loss_records(&dir.join("metrics.jsonl"), "train");
    pieces.extend(loss_records(&m2, "train"));
    assert_eq!(pieces, loss_records(&full.join("metrics.jsonl"), "train"));
    assert_eq!(
        checkpoint_records_after(&m2, 10),
        checkpoint_records_after(&full.join("metrics.jsonl"), 10)
    );
    let (wr, wf) = (
        load_checkpoint(&dir).weights.unwrap(),
        load_checkpoint(&full).weights.unwrap(),
    );
    assert_eq!(wr.generator.net.state, wf.generator.net.state);
    assert_eq!(wr.generator.optim.tensors, wf.generator.optim.tensors);
    std::fs::remove_dir_all(&dir).unwrap();
    std::fs::remove_dir_all(&full).unwrap();
}

#[test]
fn finish_epoch_keeps_the_original_epoch_boundary_rule() {
    let dir = scratch("finish-epoch");
    let s = train(args(&dir, &["--num_iterations=10", "--finish_epoch=1"])).unwrap();
    // t = 10 is reached in epoch 2, which ends at t = 16; 16 is saved although it is not a
    // multiple of --checkpoint_every.
    assert_eq!((s.t, s.epoch), (16, 2));
    assert_eq!(s.checkpoints, vec![6, 12, 16]);
    let ck = load_checkpoint(&dir);
    assert_eq!(ck.counters.t, 16);
    assert_eq!(ck.history.losses_ts.len(), 16);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn sigterm_finishes_the_iteration_saves_it_and_the_run_resumes_exactly() {
    let dir = scratch("sigterm");
    let metrics = dir.join("metrics.jsonl");
    let mut child = sg2im()
        .arg("train")
        .args(tiny_flags(&dir))
        .arg("--num_iterations=100000")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Wait until a few iterations are done (one metrics line per iteration).
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(300);
    loop {
        let done = std::fs::read_to_string(&metrics).map_or(0, |m| m.lines().count());
        if done >= 3 {
            break;
        }
        assert!(
            child.try_wait().unwrap().is_none(),
            "training ended before the signal"
        );
        assert!(
            std::time::Instant::now() < deadline,
            "no iteration in 300 s"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    // SAFETY: kill(2) on the pid of our own child process.
    let rc = unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGTERM) };
    assert_eq!(rc, 0);
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(128 + libc::SIGTERM), "{stderr}");
    let lines: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 1, "one line: {stderr}");
    assert!(
        lines[0].starts_with("Interrupted by SIGTERM: stopped at t = "),
        "{stderr}"
    );

    // The checkpoint holds the last iteration, whatever the schedule.
    let ck = load_checkpoint(&dir);
    let k = ck.counters.t;
    assert!(
        lines[0].contains(&format!("t = {k} ")),
        "{stderr} vs t = {k}"
    );
    assert!(k >= 3);
    assert_eq!(ck.history.losses_ts, (1..=k).collect::<Vec<u64>>());
    assert_eq!(ck.history.checkpoint_ts.last(), Some(&k));
    assert!(ck.weights.is_some());

    // Resumed to k + 5, the run repeats an uninterrupted one of k + 5 iterations.
    let n = format!("--num_iterations={}", k + 5);
    let m2 = dir.join("m2.jsonl");
    let sr = train(args(
        &dir,
        &[
            n.as_str(),
            "--restore_from_checkpoint=1",
            "--metrics_jsonl",
            m2.to_str().unwrap(),
        ],
    ))
    .unwrap();
    assert_eq!(sr.t, k + 5);
    let full = scratch("sigterm-full");
    train(args(&full, &[n.as_str()])).unwrap();
    let mut pieces = loss_records(&metrics, "train");
    pieces.extend(loss_records(&m2, "train"));
    let uninterrupted = loss_records(&full.join("metrics.jsonl"), "train");
    assert_eq!(pieces.len() as u64, k + 5);
    assert_eq!(pieces, uninterrupted, "losses after the resume");
    assert_eq!(
        checkpoint_records_after(&m2, k),
        checkpoint_records_after(&full.join("metrics.jsonl"), k)
    );
    assert_eq!(
        load_checkpoint(&dir).weights.unwrap().generator.net.state,
        load_checkpoint(&full).weights.unwrap().generator.net.state
    );
    std::fs::remove_dir_all(&dir).unwrap();
    std::fs::remove_dir_all(&full).unwrap();
}
