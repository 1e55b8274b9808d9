//! Run-time choice of the compute device (`--device`).
//!
//! `cpu` is Burn's pure-Rust `flex` backend and always available. GPU backends exist only when
//! the binary was built with their cargo feature (`cuda`, `vulkan`, `wgpu`); asking for one that
//! was not built is a clear error, never a silent CPU fallback.
//!
//! - `cuda`: NVIDIA GPUs through CUDA (kernels compiled at run time).
//! - `vulkan`: Burn's wgpu runtime pinned to Vulkan, shaders compiled to SPIR-V by cubecl.
//! - `wgpu`: Burn's portable wgpu runtime (Vulkan, Metal or DX12, whichever the machine has),
//!   shaders in WGSL through naga. This is the one that runs on Mesa's lavapipe (a CPU Vulkan
//!   driver) in CI; cubecl's own SPIR-V crashes lavapipe's pipeline compiler. In a binary built
//!   with both `wgpu` and `vulkan` the runtime is shared and compiles to SPIR-V on Vulkan
//!   adapters, so test on lavapipe with a `--features wgpu` build.
//!
//! A GPU device is probed when it is selected (acquired and one small kernel run), so a machine
//! without the driver or adapter, a driver error or an out-of-memory at creation becomes one
//! [`Error::Invalid`] line here instead of a panic deep inside the backend at first use.

use crate::{Error, Result};
use burn::tensor::Device;
use std::str::FromStr;

/// What the user asked for with `--device`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum DeviceChoice {
    /// Burn `flex` (CPU).
    #[default]
    Cpu,
    /// The original's spelling: the best GPU backend this binary was built with and this machine
    /// has (`cuda`, then `vulkan`, then `wgpu`).
    Gpu,
    Cuda,
    Vulkan,
    Wgpu,
}

impl FromStr for DeviceChoice {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        match s.to_ascii_lowercase().as_str() {
            "cpu" | "flex" => Ok(Self::Cpu),
            "gpu" => Ok(Self::Gpu),
            "cuda" => Ok(Self::Cuda),
            "vulkan" => Ok(Self::Vulkan),
            "wgpu" => Ok(Self::Wgpu),
            other => Err(Error::invalid(format!(
                "--device: unknown device {other:?}; expected cpu, gpu, cuda, vulkan or wgpu (built: {})",
                built_backends().join(", ")
            ))),
        }
    }
}

/// The backends this binary was compiled with, in the order `gpu` prefers them.
pub fn built_backends() -> Vec<&'static str> {
    let mut v = Vec::new();
    if cfg!(feature = "cuda") {
        v.push("cuda");
    }
    if cfg!(feature = "vulkan") {
        v.push("vulkan");
    }
    if cfg!(feature = "wgpu") {
        v.push("wgpu");
    }
    v.push("cpu");
    v
}

impl DeviceChoice {
    /// The spelling `--device` accepts (and `args.json` stores).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Cpu => "cpu",
            Self::Gpu => "gpu",
            Self::Cuda => "cuda",
            Self::Vulkan => "vulkan",
            Self::Wgpu => "wgpu",
        }
    }

    /// The Burn device (without autodiff; call `.autodiff()` on it for training), probed: a
    /// GPU that cannot be acquired or cannot run a kernel is an error, not a later panic.
    /// Probing happens once per process and kind; later calls return the same device or error.
    pub fn device(self) -> Result<Device> {
        match self {
            Self::Cpu => Ok(Device::flex()),
            Self::Cuda => gpu::get(gpu::Kind::Cuda),
            Self::Vulkan => gpu::get(gpu::Kind::Vulkan),
            Self::Wgpu => gpu::get(gpu::Kind::Wgpu),
            Self::Gpu => {
                let mut tried = Vec::new();
                for kind in gpu::BUILT {
                    match gpu::get(*kind) {
                        Ok(d) => return Ok(d),
                        Err(e) => tried.push(e.to_string()),
                    }
                }
                Err(Error::invalid(if tried.is_empty() {
                    "--device gpu: this binary was built without a GPU backend; rebuild with \
                     `--features cuda`, `--features vulkan` or `--features wgpu`, or use --device cpu"
                        .to_string()
                } else {
                    format!(
                        "--device gpu: no usable GPU ({}); use --device cpu",
                        tried.join("; ")
                    )
                }))
            }
        }
    }
}

mod gpu {
    use crate::{Error, Result};
    use burn::tensor::Device;

    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub(super) enum Kind {
        Cuda,
        Vulkan,
        Wgpu,
    }

    impl Kind {
        fn name(self) -> &'static str {
            match self {
                Kind::Cuda => "cuda",
                Kind::Vulkan => "vulkan",
                Kind::Wgpu => "wgpu",
            }
        }
    }

    /// The GPU kinds this binary was built with, in `--device gpu`'s order of preference.
    pub(super) const BUILT: &[Kind] = &[
        #[cfg(feature = "cuda")]
        Kind::Cuda,
        #[cfg(feature = "vulkan")]
        Kind::Vulkan,
        #[cfg(feature = "wgpu")]
        Kind::Wgpu,
    ];

    /// The probed device of `kind` (probed on first use, then remembered: Burn's wgpu runtime
    /// can be initialised only once per process and device).
    pub(super) fn get(kind: Kind) -> Result<Device> {
        let slot = match kind {
            Kind::Cuda => &PROBED[0],
            Kind::Vulkan => &PROBED[1],
            Kind::Wgpu => &PROBED[2],
        };
        slot.get_or_init(|| probe(kind))
            .clone()
            .map_err(Error::invalid)
    }

    type Probed = std::sync::OnceLock<std::result::Result<Device, String>>;
    static PROBED: [Probed; 3] = [Probed::new(), Probed::new(), Probed::new()];

    fn probe(kind: Kind) -> std::result::Result<Device, String> {
        let name = kind.name();
        if !BUILT.contains(&kind) {
            return Err(format!(
                "--device {name}: this binary was built without the `{name}` feature \
                 (cargo build --release --features {name})"
            ));
        }
        let fail = |what: &str, detail: String| {
            // Driver messages can span lines; the CLI prints one.
            let detail = detail.split_whitespace().collect::<Vec<_>>().join(" ");
            format!("--device {name}: {what}: {detail}")
        };
        let device = acquire(kind).map_err(|e| fail("no usable device", e))?;
        quietly(|| {
            // One kernel launch and a read-back: the first point where a missing driver
            // library, a shader compiler failure or an out-of-memory shows.
            let t = burn::tensor::Tensor::<1>::ones([4], &device).mul_scalar(2.0);
            t.sum().into_data().try_to_vec::<f32>().ok()
        })
        .map_err(|e| fail("the device failed its first kernel", e))
        .and_then(|v| match v.as_deref() {
            Some([s]) if *s == 8.0 => Ok(()),
            other => Err(fail(
                "the device computed a wrong result",
                format!("sum of four 2s = {other:?}"),
            )),
        })?;
        Ok(device)
    }

    /// Creates the device, returning initialisation failures where the backend reports them
    /// (wgpu) and catching its panics where it does not (CUDA's driver bindings).
    fn acquire(kind: Kind) -> std::result::Result<Device, String> {
        match kind {
            #[cfg(feature = "cuda")]
            Kind::Cuda => quietly(|| Device::cuda(0usize)),
            #[cfg(feature = "vulkan")]
            Kind::Vulkan => {
                refuse_cpu_only_vulkan()?;
                wgpu_init(burn::tensor::wgpu::WgpuBackend::Vulkan)
            }
            #[cfg(feature = "wgpu")]
            Kind::Wgpu => wgpu_init(burn::tensor::wgpu::WgpuBackend::Auto),
            #[allow(unreachable_patterns)] // every arm present when all features are on
            _ => unreachable!("probe() checks BUILT first"),
        }
    }

    /// Mesa's lavapipe (Vulkan on the CPU) kills the process (SIGSEGV in
    /// `create_compute_pipeline`) on the first of cubecl's SPIR-V shaders, which no panic hook can
    /// turn into an error. cubecl takes a CPU adapter only when there is no other, so refuse
    /// exactly then, before any shader is compiled. No adapter at all is left to cubecl's own
    /// (fallible) initialisation.
    #[cfg(feature = "vulkan")]
    fn refuse_cpu_only_vulkan() -> std::result::Result<(), String> {
        use burn::cubecl::wgpu::wgpu;
        let instance = wgpu::Instance::new(wgpu::InstanceDescriptor {
            backends: wgpu::Backends::VULKAN,
            ..wgpu::InstanceDescriptor::new_without_display_handle()
        });
        let adapters: Vec<wgpu::AdapterInfo> =
            burn::cubecl::future::block_on(instance.enumerate_adapters(wgpu::Backends::VULKAN))
                .iter()
                .map(wgpu::Adapter::get_info)
                .collect();
        if !adapters.is_empty()
            && adapters
                .iter()
                .all(|a| a.device_type == wgpu::DeviceType::Cpu)
        {
            let names: Vec<&str> = adapters.iter().map(|a| a.name.as_str()).collect();
            return Err(format!(
                "the only Vulkan adapter is a CPU driver ({}), which crashes on this backend's \
                 SPIR-V shaders; use --device wgpu (a binary built with --features wgpu alone) \
                 or --device cpu",
                names.join(", ")
            ));
        }
        Ok(())
    }

    #[cfg(any(feature = "wgpu", feature = "vulkan"))]
    fn wgpu_init(api: burn::tensor::wgpu::WgpuBackend) -> std::result::Result<Device, String> {
        quietly(|| {
            Device::wgpu_options()
                .graphics_api(api)
                .init()
                .map_err(|e| e.to_string())
        })?
    }

    /// Runs `f`, turning a panic into its message; no panic is printed (the caller reports it
    /// as one line). The backends run kernels on worker threads of their own, and a missing
    /// driver library panics there (CUDA: "Unable to dynamically load the \"cuda\" shared
    /// library …") while `f` only sees a closed channel; so while `f` runs, panics on every
    /// thread are captured, and the first one's message is the one returned. The probe runs
    /// before any other work starts, so no unrelated panic is swallowed.
    pub(super) fn quietly<T>(f: impl FnOnce() -> T) -> std::result::Result<T, String> {
        use std::panic;
        use std::sync::{Arc, Mutex};
        // The panic hook is process-wide: two probes at once would restore each other's hooks.
        static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());
        let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
        let prev: Arc<dyn Fn(&panic::PanicHookInfo<'_>) + Send + Sync> =
            Arc::from(panic::take_hook());
        let seen: Arc<Mutex<Vec<String>>> = Arc::default();
        let record = seen.clone();
        panic::set_hook(Box::new(move |info| {
            let msg = info.payload_as_str().unwrap_or("the backend panicked");
            if let Ok(mut seen) = record.lock() {
                seen.push(msg.to_string());
            }
        }));
        let out = panic::catch_unwind(panic::AssertUnwindSafe(f));
        panic::set_hook(Box::new(move |info| prev(info)));
        out.map_err(|_| {
            let seen = seen.lock().map(|s| s.clone()).unwrap_or_default();
            // The worker's panic (the cause) comes before the caller's (a closed channel).
            let first = seen
                .first()
                .map(String::as_str)
                .unwrap_or("the backend panicked");
            shorten(first)
        })
    }

    /// The first sentence of a driver message, at most 200 characters: cudarc's missing-library
    /// panic goes on to list thirty-odd file names.
    fn shorten(msg: &str) -> String {
        let msg = msg.split(" - ").next().unwrap_or(msg).trim();
        if msg.chars().count() > 200 {
            format!("{}…", msg.chars().take(200).collect::<String>())
        } else {
            msg.to_string()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_original_and_new_spellings() {
        assert_eq!("cpu".parse::<DeviceChoice>().unwrap(), DeviceChoice::Cpu);
        assert_eq!("GPU".parse::<DeviceChoice>().unwrap(), DeviceChoice::Gpu);
        assert_eq!(
            "vulkan".parse::<DeviceChoice>().unwrap(),
            DeviceChoice::Vulkan
        );
        assert_eq!("wgpu".parse::<DeviceChoice>().unwrap(), DeviceChoice::Wgpu);
        for d in [
            DeviceChoice::Cpu,
            DeviceChoice::Gpu,
            DeviceChoice::Cuda,
            DeviceChoice::Vulkan,
            DeviceChoice::Wgpu,
        ] {
            assert_eq!(d.as_str().parse::<DeviceChoice>().unwrap(), d);
        }
        let err = "tpu".parse::<DeviceChoice>().unwrap_err().to_string();
        assert!(err.contains("--device") && err.contains("tpu"), "{err}");
    }

    #[test]
    fn backends_not_built_are_one_line_errors() {
        for (d, feature) in [
            (DeviceChoice::Cuda, cfg!(feature = "cuda")),
            (DeviceChoice::Vulkan, cfg!(feature = "vulkan")),
            (DeviceChoice::Wgpu, cfg!(feature = "wgpu")),
        ] {
            if feature {
                continue;
            }
            let err = d.device().unwrap_err().to_string();
            assert!(
                err.contains(d.as_str()) && err.contains("feature") && !err.contains('\n'),
                "{err}"
            );
        }
        if !cfg!(any(feature = "cuda", feature = "vulkan", feature = "wgpu")) {
            let err = DeviceChoice::Gpu.device().unwrap_err().to_string();
            assert!(err.contains("without a GPU backend"), "{err}");
        }
    }

    #[test]
    fn a_panicking_probe_becomes_its_message() {
        let r = gpu::quietly(|| -> u8 { panic!("driver said no") });
        assert_eq!(r.unwrap_err(), "driver said no");
        let n = 7;
        let r = gpu::quietly(|| -> u8 { panic!("driver said {n}") });
        assert_eq!(r.unwrap_err(), "driver said 7");
        assert_eq!(gpu::quietly(|| 3), Ok(3));
    }

    #[test]
    fn a_worker_threads_panic_is_the_reported_cause() {
        // As CUDA without libcuda: the backend's worker panics, the caller sees a closed channel.
        let r = gpu::quietly(|| -> u8 {
            let (tx, rx) = std::sync::mpsc::channel::<u8>();
            std::thread::spawn(move || {
                let _tx = tx;
                panic!(
                    "Unable to dynamically load the \"cuda\" shared library - searched for \
                     library names: [\"libcuda.so\"]"
                )
            });
            rx.recv().unwrap()
        });
        assert_eq!(
            r.unwrap_err(),
            "Unable to dynamically load the \"cuda\" shared library"
        );
    }
}
