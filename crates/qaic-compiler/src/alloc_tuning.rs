//! Process-wide allocator tuning for the command-line tools.
//!
//! Inference allocates the same large activation buffers on every run. glibc serves blocks
//! above its mmap threshold with fresh `mmap`s and returns them on free, so every run pays a
//! page fault and a page clear per 4 KiB of every large tensor (10–15% of a run on
//! ppocr_v4_det). Raising the mmap and trim thresholds keeps freed buffers in the heap for
//! the next run, as onnxruntime's arena does.

/// Raises glibc's mmap threshold to its maximum (32 MiB on 64-bit) and stops heap trimming.
/// A no-op on other C libraries.
pub fn keep_freed_buffers() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        const M_TRIM_THRESHOLD: i32 = -1;
        const M_MMAP_THRESHOLD: i32 = -3;
        unsafe extern "C" {
            fn mallopt(param: i32, value: i32) -> i32;
        }
        // SAFETY: mallopt only changes allocator parameters; called before any threads start.
        unsafe {
            mallopt(M_MMAP_THRESHOLD, 32 << 20);
            mallopt(M_TRIM_THRESHOLD, i32::MAX);
        }
    }
}
