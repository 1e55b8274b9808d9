//! Process-wide allocator settings for large tensors (CPU speed only).
//!
//! glibc serves every allocation above its mmap threshold (at most 32 MiB by default) with a
//! fresh `mmap` and returns it with `munmap` on free, so each activation tensor of the refinement
//! network costs page faults and kernel page zeroing on every use: 15–20 % of an inference
//! forward pass and ~10 % of a default-configuration training step here. Raising the mmap and
//! trim thresholds keeps freed tensors in the heap for reuse. The price is that the process keeps
//! its peak memory until it exits, which suits a training or inference run.

/// Applies the settings; call once at start-up, before threads allocate. Does nothing outside
/// glibc, or when the user set `GLIBC_TUNABLES` (their choice wins).
pub fn tune_for_large_tensors() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        if std::env::var_os("GLIBC_TUNABLES").is_some() {
            return;
        }
        // SAFETY: mallopt only changes allocator parameters; called before other threads exist.
        unsafe {
            libc::mallopt(libc::M_MMAP_THRESHOLD, 1 << 30);
            libc::mallopt(libc::M_TRIM_THRESHOLD, i32::MAX);
        }
    }
}
