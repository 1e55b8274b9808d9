//! Files in and out: atomic writes, the original's `torch.save` checkpoints and constructor
//! kwargs ([`kwargs`]), our own model and checkpoint files, safetensors helpers.

pub mod atomic;
pub mod hdf5;
pub mod kwargs;
pub mod model_file;
pub mod npz;
pub mod safetensors_io;
pub mod torch;
