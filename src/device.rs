//! Run-time choice of the compute device (`--device`).
//!
//! `cpu` is Burn's pure-Rust `flex` backend and always available. GPU backends exist only when
//! the binary was built with their cargo feature (`vulkan`, `cuda`); asking for one that was not
//! built is a clear error, never a silent CPU fallback.

use crate::{Error, Result};
use burn::tensor::Device;
use std::str::FromStr;

/// What the user asked for with `--device`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum DeviceChoice {
    /// Burn `flex` (CPU).
    #[default]
    Cpu,
    /// The original's spelling: the first GPU backend this binary was built with.
    Gpu,
    Cuda,
    Vulkan,
}

impl FromStr for DeviceChoice {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        match s.to_ascii_lowercase().as_str() {
            "cpu" | "flex" => Ok(Self::Cpu),
            "gpu" => Ok(Self::Gpu),
            "cuda" => Ok(Self::Cuda),
            "vulkan" => Ok(Self::Vulkan),
            other => Err(Error::invalid(format!(
                "--device: unknown device {other:?}; expected cpu, gpu, cuda or vulkan (built: {})",
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
    v.push("cpu");
    v
}

impl DeviceChoice {
    /// The Burn device (without autodiff; call `.autodiff()` on it for training).
    pub fn device(self) -> Result<Device> {
        match self {
            Self::Cpu => Ok(Device::flex()),
            Self::Cuda => cuda(),
            Self::Vulkan => vulkan(),
            Self::Gpu => cuda().or_else(|_| vulkan()).map_err(|_| {
                Error::invalid(
                    "--device gpu: this binary was built without a GPU backend; rebuild with \
                     `--features vulkan` or `--features cuda`, or use --device cpu",
                )
            }),
        }
    }
}

#[cfg(feature = "cuda")]
fn cuda() -> Result<Device> {
    Ok(Device::cuda(0usize))
}

#[cfg(not(feature = "cuda"))]
fn cuda() -> Result<Device> {
    Err(Error::invalid(
        "--device cuda: this binary was built without the `cuda` feature (cargo build --features cuda)",
    ))
}

#[cfg(feature = "vulkan")]
fn vulkan() -> Result<Device> {
    Ok(Device::vulkan(burn::tensor::DeviceKind::DefaultDevice))
}

#[cfg(not(feature = "vulkan"))]
fn vulkan() -> Result<Device> {
    Err(Error::invalid(
        "--device vulkan: this binary was built without the `vulkan` feature (cargo build --features vulkan)",
    ))
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
        let err = "tpu".parse::<DeviceChoice>().unwrap_err().to_string();
        assert!(err.contains("--device") && err.contains("tpu"), "{err}");
    }
}
