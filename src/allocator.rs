//! glibc's malloc keeps freed blocks below its (self-raising, up to 32 MiB) mmap threshold in
//! per-thread arenas instead of returning them, and XLA CPU allocates each run's scratch on its
//! own threads: measured on the Wan VAE decode at 256x256x17 (wan2.1-tiny), peak RSS was 430 MiB
//! with the default and 264 MiB with a fixed 64 KiB threshold, against 245 MiB of live buffers
//! (`vidlower plan`). A fixed threshold sends every block of 64 KiB or more to mmap and back to
//! the system when freed, so the process peak is what is live, and the memory plan can predict it.

/// Sets the threshold; a no-op off glibc.
pub fn return_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        // `M_MMAP_THRESHOLD` from <malloc.h>.
        const M_MMAP_THRESHOLD: std::ffi::c_int = -3;
        extern "C" {
            fn mallopt(param: std::ffi::c_int, value: std::ffi::c_int) -> std::ffi::c_int;
        }
        // SAFETY: mallopt only changes the allocator's tuning; called before any thread starts.
        unsafe {
            mallopt(M_MMAP_THRESHOLD, 64 * 1024);
        }
    }
}
