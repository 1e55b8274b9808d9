//! `sg2im metrics` feature extraction: torch-fidelity's Inception-v3 on the metrics fixture's
//! 64×64 images (`../shared/fixtures/metrics/images_a`), batches of 32, CPU. Prints the median
//! images/s of the network alone (decode + resize + forward, weights loaded once) over 3 runs of
//! 64 images, and the median of 3 whole-command-equivalent runs on the fixture's 160 images
//! (load weights, IS + FID + KID with 5 subsets of 40), after the `gemm` crate's single-thread
//! throughput on Inception's GEMM shapes (the ceiling analysis in BENCHMARKS.md) and, on
//! AVX-512 CPUs, that of the network's own pre-packed kernel on the same shapes. Comparison
//! figure: torch-fidelity 0.4.0 (PyTorch 2.15 CPU, 2 threads) takes 14.8–15.0 s for that call
//! (≈ 11 images/s). Run: `cargo bench --bench metrics`.

use sg2im::metrics::inception::InceptionV3;
use sg2im::metrics::{self, Input2, MetricsOptions};
use std::path::PathBuf;
use std::time::Instant;

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

fn main() {
    sg2im::malloc::tune_for_large_tensors();
    let fx = PathBuf::from(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../shared/fixtures/metrics"
    ));
    gemm_reference();
    let weights = fx.join("inception_random.pth");
    let paths = metrics::list_images(&fx.join("images_a")).expect("images");
    let net = InceptionV3::load(&weights).expect("weights");
    let batch = &paths[..64];
    let mut rates = Vec::new();
    for _ in 0..3 {
        let t = Instant::now();
        let f = metrics::extract_features(&net, batch, 32, &mut |_| {}).expect("features");
        assert_eq!(f.len(), 64);
        rates.push(64.0 / t.elapsed().as_secs_f64());
    }
    println!(
        "inception-v3-compat, 64x64 inputs, batch 32: {:.1} images/s (median of 3 x 64 images, {} threads)",
        median(rates),
        rayon::current_num_threads()
    );

    let opts = MetricsOptions {
        isc: true,
        fid: true,
        kid: true,
        kid_subsets: 5,
        kid_subset_size: 40,
        ..MetricsOptions::default()
    };
    let input2 = Input2::Folder(fx.join("images_b"));
    let mut whole = Vec::new();
    for _ in 0..3 {
        let t = Instant::now();
        let r = metrics::calculate_metrics(
            &fx.join("images_a"),
            Some(&input2),
            &weights,
            &opts,
            &mut |_| {},
        )
        .expect("metrics");
        assert_eq!(r.len(), 5);
        whole.push(t.elapsed().as_secs_f64());
    }
    println!(
        "calculate_metrics(images_a, images_b, isc, fid, kid 5x40), 160 images, weights load included: {:.2} s (median of 3)",
        median(whole)
    );
}

/// CPU time of the calling thread (load-independent on a shared machine, unlike wall time).
fn thread_cpu_seconds() -> f64 {
    let mut t = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: writes one timespec.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut t) };
    t.tv_sec as f64 + t.tv_nsec as f64 * 1e-9
}

/// A GEMM of `mkn` multiply-adds timed in this thread's CPU time, repeated in 7 rounds of about
/// 2·10⁹ multiply-adds each: the median rate in GFLOP per CPU-second.
fn gflops_per_cpu_second(mkn: usize, mut gemm: impl FnMut()) -> f64 {
    let reps = (2_000_000_000 / mkn).max(1);
    let rates = (0..7)
        .map(|_| {
            let t = thread_cpu_seconds();
            for _ in 0..reps {
                gemm();
            }
            2.0 * (reps * mkn) as f64 / (thread_cpu_seconds() - t) / 1e9
        })
        .collect();
    median(rates)
}

/// What the `gemm` crate reaches on one thread on Inception's GEMM shapes (`M = Co`, `K =
/// Ci·kh·kw`, `N` = a tile of output positions as `conv` cuts them), in GFLOP per CPU-second:
/// compare with the FMA peak per core (≈ 116 on this machine's Zen 4 at 3.6 GHz: 32 FLOP per
/// cycle, AVX2 or AVX-512 alike), since the machine is shared.
fn gemm_reference() {
    for (what, m, k, n) in [
        ("Conv2d_2b 3x3 im2col", 64usize, 288usize, 2048usize),
        ("Conv2d_4a 3x3 im2col", 192, 720, 704),
        ("Mixed_6e 1x1", 192, 768, 2320),
        ("Mixed_6e 1x7 im2col", 192, 1344, 384),
        ("Mixed_7c 3x3 im2col", 384, 4032, 128),
        ("Winograd F(4,3) 2b per point", 64, 32, 4096),
        ("Winograd 6e 1x7 per point", 192, 192, 2048),
    ] {
        let a = vec![0.5f32; m * k];
        let b = vec![0.25f32; k * n];
        let mut c = vec![0.0f32; m * n];
        let rate = gflops_per_cpu_second(m * k * n, || {
            // SAFETY: row-major buffers of the sizes given.
            unsafe {
                gemm::gemm(
                    m,
                    n,
                    k,
                    c.as_mut_ptr(),
                    1,
                    n as isize,
                    false,
                    a.as_ptr(),
                    1,
                    k as isize,
                    b.as_ptr(),
                    1,
                    n as isize,
                    0.0f32,
                    1.0f32,
                    false,
                    false,
                    false,
                    gemm::Parallelism::None,
                );
            }
        });
        assert!(c[0] > 0.0);
        println!(
            "f32 GEMM {m}x{k} . {k}x{n} ({what}), 1 thread: {rate:.0} GFLOP per CPU-second (median of 7)"
        );
        // The network's own kernel (weights pre-packed, as at load time), where it runs.
        #[cfg(target_arch = "x86_64")]
        if sg2im::metrics::gemm_avx512::available() {
            let ap = sg2im::metrics::gemm_avx512::pack_a(&a, m, k);
            let rate = gflops_per_cpu_second(m * k * n, || {
                // SAFETY: AVX-512 checked; row-major buffers of the sizes given.
                unsafe {
                    sg2im::metrics::gemm_avx512::gemm(
                        m,
                        n,
                        k,
                        ap.as_ptr(),
                        b.as_ptr(),
                        n,
                        c.as_mut_ptr(),
                        n,
                        None,
                    );
                }
            });
            println!(
                "  same on the packed AVX-512 kernel (gemm_avx512): {rate:.0} GFLOP per CPU-second (median of 7)"
            );
        }
    }
}
