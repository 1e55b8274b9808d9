//! The object classifier's network: a ResNet (He et al., 2016) with torchvision's module names,
//! so `resnet18` loads a torchvision state dict as it is (`conv1`, `bn1`, `layer1.0.conv1`, …,
//! `fc`), and a small CIFAR-style `resnet8` that trains on the CPU in minutes.
//!
//! Deviation from torchvision: the input is an object crop in `[0, 1]` that the network
//! normalises itself with the ImageNet mean and standard deviation (the statistics torchvision's
//! weights were trained with), so callers hand in crops exactly as
//! [`crate::eval::crops::crop_resized`] gives them.

use crate::imagenet::{MEAN, STD};
use crate::kernels;
use crate::model::layers::{Activation, BatchNorm, Init, Linear};
use crate::model::params::{ParamKind, ParamMut, ParamRef, Params, impl_leaf_params, key};
use crate::{Error, Result};
use burn::tensor::module::{conv2d, max_pool2d};
use burn::tensor::ops::{ConvOptions, MaxPoolOptions};
use burn::tensor::{Device, Tensor, TensorData};
use rand_distr::{Distribution, Normal};

/// `--arch`: which network classifies the crops.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ClassifierArch {
    /// CIFAR-style ResNet-8: a 3×3 stem and three stages of one basic block (16, 32, 64
    /// channels, each halving the map), about 80 k parameters. Trains from scratch.
    #[default]
    Resnet8,
    /// torchvision's ResNet-18 (7×7 stem, max-pool, stages of 64–512 channels), from scratch or
    /// from torchvision's ImageNet weights (`--init_from`).
    Resnet18,
}

impl std::str::FromStr for ClassifierArch {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "resnet8" => Ok(Self::Resnet8),
            "resnet18" => Ok(Self::Resnet18),
            _ => Err(Error::invalid(format!(
                "--arch {s:?}: expected resnet8 or resnet18"
            ))),
        }
    }
}

impl std::fmt::Display for ClassifierArch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Resnet8 => "resnet8",
            Self::Resnet18 => "resnet18",
        })
    }
}

/// The shape of a ResNet built from basic blocks.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Spec {
    stem_kernel: usize,
    stem_stride: usize,
    /// 3×3 max-pool with stride 2 after the stem (torchvision).
    stem_pool: bool,
    /// Per stage: output channels, number of blocks, stride of its first block.
    stages: Vec<(usize, usize, usize)>,
}

impl ClassifierArch {
    fn spec(self) -> Spec {
        match self {
            // Every stage halves the map (32 → 16 → 8 → 4 for 32×32 crops): a quarter of the
            // CIFAR ResNet's work, which keeps its first stage at full resolution, for the same
            // accuracy on the synthetic shapes.
            Self::Resnet8 => Spec {
                stem_kernel: 3,
                stem_stride: 1,
                stem_pool: false,
                stages: vec![(16, 1, 2), (32, 1, 2), (64, 1, 2)],
            },
            Self::Resnet18 => Spec {
                stem_kernel: 7,
                stem_stride: 2,
                stem_pool: true,
                stages: vec![(64, 2, 1), (128, 2, 2), (256, 2, 2), (512, 2, 2)],
            },
        }
    }
}

/// `nn.Conv2d(bias=False)`, square kernel: the ResNet's convolutions (each is followed by a
/// BatchNorm, which makes a bias redundant).
#[derive(Debug, Clone)]
pub struct Conv {
    /// `(C_out, C_in, k, k)`.
    pub weight: Tensor<4>,
    pub stride: usize,
    pub padding: usize,
}

impl Conv {
    #[allow(clippy::too_many_arguments)]
    fn init(
        c_in: usize,
        c_out: usize,
        kernel: usize,
        stride: usize,
        padding: usize,
        device: &Device,
        rng: &mut dyn rand::RngCore,
    ) -> Self {
        // torchvision: kaiming_normal_(mode="fan_out", nonlinearity="relu").
        let shape = [c_out, c_in, kernel, kernel];
        let std = (2.0 / (c_out * kernel * kernel) as f32).sqrt();
        let dist = Normal::new(0.0f32, std).expect("finite std");
        let v: Vec<f32> = (0..shape.iter().product())
            .map(|_| dist.sample(rng))
            .collect();
        Self {
            weight: Tensor::from_data(TensorData::new(v, shape), device),
            stride,
            padding,
        }
    }

    /// `(N, C_in, H, W) → (N, C_out, H', W')`.
    fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let [c_out, ..] = self.weight.dims();
        let (s, p) = (self.stride, self.padding);
        // The CPU kernel takes a bias; a zero one on the input's device adds nothing and, not
        // being a parameter, gets no update.
        let zero = Tensor::<1>::zeros([c_out], &x.device());
        kernels::conv::conv2d(&x, &self.weight, &zero, s, p).unwrap_or_else(|| {
            conv2d(
                x,
                self.weight.clone(),
                None,
                ConvOptions::new([s; 2], [p; 2], [1, 1], 1),
            )
        })
    }
}

impl_leaf_params!(Conv { weight });

/// torchvision's `BatchNorm2d` init: `γ = 1`, `β = 0` (the project's [`BatchNorm::init`] draws
/// `γ ~ U(0, 1)` as PyTorch 0.4 did).
fn batch_norm(c: usize, device: &Device, rng: &mut dyn rand::RngCore) -> BatchNorm {
    let mut bn = BatchNorm::init(c, device, rng);
    bn.weight = Tensor::ones([c], device);
    bn
}

/// The 1×1 projection shortcut of a block that changes the map's shape (`downsample.0`,
/// `downsample.1`).
#[derive(Debug, Clone)]
pub struct Downsample {
    pub conv: Conv,
    pub bn: BatchNorm,
}

crate::impl_params!(Downsample { conv => "0", bn => "1" });

/// torchvision's `BasicBlock`: `relu(bn2(conv2(relu(bn1(conv1(x))))) + shortcut(x))`.
#[derive(Debug, Clone)]
pub struct BasicBlock {
    pub conv1: Conv,
    pub bn1: BatchNorm,
    pub conv2: Conv,
    pub bn2: BatchNorm,
    pub downsample: Option<Downsample>,
}

crate::impl_params!(BasicBlock {
    conv1 => "conv1",
    bn1 => "bn1",
    conv2 => "conv2",
    bn2 => "bn2",
    downsample => "downsample",
});

impl BasicBlock {
    fn init(
        c_in: usize,
        c_out: usize,
        stride: usize,
        device: &Device,
        rng: &mut dyn rand::RngCore,
    ) -> Self {
        let downsample = (stride != 1 || c_in != c_out).then(|| Downsample {
            conv: Conv::init(c_in, c_out, 1, stride, 0, device, rng),
            bn: batch_norm(c_out, device, rng),
        });
        Self {
            conv1: Conv::init(c_in, c_out, 3, stride, 1, device, rng),
            bn1: batch_norm(c_out, device, rng),
            conv2: Conv::init(c_out, c_out, 3, 1, 1, device, rng),
            bn2: batch_norm(c_out, device, rng),
            downsample,
        }
    }

    /// `(N, C_in, H, W) → (N, C_out, H/s, W/s)` (`s` the block's stride, rounded up).
    fn forward(&mut self, x: Tensor<4>) -> Tensor<4> {
        let relu = Activation::Relu;
        let y = self
            .bn1
            .forward4(self.conv1.forward(x.clone()), Some(&relu));
        let y = self.bn2.forward4(self.conv2.forward(y), None);
        let shortcut = match &mut self.downsample {
            Some(d) => d.bn.forward4(d.conv.forward(x), None),
            None => x,
        };
        relu.apply(y + shortcut)
    }
}

/// The whole classifier: stem, stages `layer1…layerK`, global average pool, `fc`.
#[derive(Debug, Clone)]
pub struct ResNet {
    pub arch: ClassifierArch,
    pub conv1: Conv,
    pub bn1: BatchNorm,
    stem_pool: bool,
    /// `layers[k]` is torchvision's `layer{k+1}`.
    pub layers: Vec<Vec<BasicBlock>>,
    pub fc: Linear,
}

impl Params for ResNet {
    fn visit(&self, prefix: &str, f: &mut dyn FnMut(&str, ParamKind, ParamRef<'_>)) {
        self.conv1.visit(&key(prefix, "conv1"), f);
        self.bn1.visit(&key(prefix, "bn1"), f);
        for (i, stage) in self.layers.iter().enumerate() {
            stage.visit(&key(prefix, &format!("layer{}", i + 1)), f);
        }
        self.fc.visit(&key(prefix, "fc"), f);
    }

    fn visit_mut(&mut self, prefix: &str, f: &mut dyn FnMut(&str, ParamKind, ParamMut<'_>)) {
        self.conv1.visit_mut(&key(prefix, "conv1"), f);
        self.bn1.visit_mut(&key(prefix, "bn1"), f);
        for (i, stage) in self.layers.iter_mut().enumerate() {
            stage.visit_mut(&key(prefix, &format!("layer{}", i + 1)), f);
        }
        self.fc.visit_mut(&key(prefix, "fc"), f);
    }

    fn set_training(&mut self, training: bool) {
        self.bn1.set_training(training);
        self.layers.set_training(training);
    }
}

impl ResNet {
    /// A freshly initialised network with `num_classes` outputs.
    pub fn init(
        arch: ClassifierArch,
        num_classes: usize,
        device: &Device,
        rng: &mut dyn rand::RngCore,
    ) -> Self {
        let spec = arch.spec();
        let c0 = spec.stages[0].0;
        let conv1 = Conv::init(
            3,
            c0,
            spec.stem_kernel,
            spec.stem_stride,
            spec.stem_kernel / 2,
            device,
            rng,
        );
        let bn1 = batch_norm(c0, device, rng);
        let mut c_in = c0;
        let mut layers = Vec::new();
        for &(c_out, blocks, stride) in &spec.stages {
            let mut stage = Vec::new();
            for b in 0..blocks {
                let s = if b == 0 { stride } else { 1 };
                stage.push(BasicBlock::init(c_in, c_out, s, device, rng));
                c_in = c_out;
            }
            layers.push(stage);
        }
        let fc = Linear::init(c_in, num_classes, Init::Default, device, rng);
        Self {
            arch,
            conv1,
            bn1,
            stem_pool: spec.stem_pool,
            layers,
            fc,
        }
    }

    /// Number of classes (rows of `fc`).
    pub fn num_classes(&self) -> usize {
        self.fc.weight.dims()[0]
    }

    /// Class scores of object crops.
    ///
    /// # Shapes
    /// `crops (O, 3, S, S)` in `[0, 1]` (`S` the crop size) → logits `(O, C)`, `C` the number
    /// of object categories.
    pub fn forward(&mut self, crops: Tensor<4>) -> Tensor<2> {
        let device = crops.device();
        let mean = Tensor::<1>::from_data(TensorData::new(MEAN.to_vec(), [3]), &device);
        let inv_std = Tensor::<1>::from_data(
            TensorData::new(STD.iter().map(|s| 1.0 / s).collect::<Vec<_>>(), [3]),
            &device,
        );
        let x = (crops - mean.reshape([1, 3, 1, 1])) * inv_std.reshape([1, 3, 1, 1]);
        let x = self
            .bn1
            .forward4(self.conv1.forward(x), Some(&Activation::Relu));
        let mut x = if self.stem_pool {
            max_pool2d(
                x,
                MaxPoolOptions::new([3, 3])
                    .with_stride([2, 2])
                    .with_padding([1, 1]),
            )
        } else {
            x
        };
        for stage in &mut self.layers {
            for block in stage {
                x = block.forward(x);
            }
        }
        let [n, c, _, _] = x.dims();
        let pooled = x.mean_dim(2).mean_dim(3).reshape([n, c]); // (O, C_last)
        self.fc.forward(pooled)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::params::shapes;
    use rand::SeedableRng;

    #[test]
    fn arch_names_round_trip_and_unknown_ones_are_refused() {
        for a in [ClassifierArch::Resnet8, ClassifierArch::Resnet18] {
            assert_eq!(a.to_string().parse::<ClassifierArch>().unwrap(), a);
        }
        let err = "vgg".parse::<ClassifierArch>().unwrap_err().to_string();
        assert!(err.contains("\"vgg\"") && err.contains("resnet8"), "{err}");
    }

    #[test]
    fn resnet18_has_torchvision_keys_and_shapes() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(0);
        let m = ResNet::init(ClassifierArch::Resnet18, 10, &Device::default(), &mut rng);
        let s = shapes(&m);
        let get = |k: &str| s.iter().find(|(n, _)| n == k).map(|(_, d)| d.clone());
        assert_eq!(get("conv1.weight"), Some(vec![64, 3, 7, 7]));
        assert_eq!(get("layer1.0.conv1.weight"), Some(vec![64, 64, 3, 3]));
        assert_eq!(
            get("layer2.0.downsample.0.weight"),
            Some(vec![128, 64, 1, 1])
        );
        assert_eq!(get("layer2.0.downsample.1.running_var"), Some(vec![128]));
        assert_eq!(get("layer1.0.downsample.0.weight"), None);
        assert_eq!(get("layer4.1.bn2.bias"), Some(vec![512]));
        assert_eq!(get("fc.weight"), Some(vec![10, 512]));
        // torchvision's resnet18 state dict: 62 weights and biases + 40 BN running stats
        // (without num_batches_tracked), 102 tensors.
        assert_eq!(s.len(), 102);
    }

    #[test]
    fn resnet8_maps_crops_to_class_scores() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(0);
        let device = Device::default();
        let mut m = ResNet::init(ClassifierArch::Resnet8, 7, &device, &mut rng);
        m.set_training(false);
        let x = Tensor::<4>::ones([5, 3, 32, 32], &device) * 0.5;
        let y = m.forward(x);
        assert_eq!(y.dims(), [5, 7]);
        let v = y.to_data().try_to_vec::<f32>().unwrap();
        // Identical crops, eval mode: identical rows.
        for r in 1..5 {
            for c in 0..7 {
                assert!((v[r * 7 + c] - v[c]).abs() < 1e-5);
            }
        }
    }
}
