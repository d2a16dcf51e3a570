//! `with_avx512!`: a host loop compiled twice, for the crate's x86-64 baseline (SSE2) and for
//! AVX-512 (F, BW), the copy picked at run time. The loops it wraps (weight conversions, the CPU
//! attention's softmax) are written to vectorize, and the baseline leaves most of that unused
//! (measured: f32 -> bf16 rounding was 13% of a rank-32 LoRA upload, the low-rank products 8%).

/// Defines `pub? fn $name($args) [-> $ret]` that runs `$body` (an `#[inline(always)]` fn with the
/// same arguments) compiled for AVX-512 where the CPU has it.
macro_rules! with_avx512 {
    ($(#[$doc:meta])* $vis:vis fn $name:ident($($arg:ident: $ty:ty),*) $(-> $ret:ty)? = $body:ident) => {
        $(#[$doc])*
        $vis fn $name($($arg: $ty),*) $(-> $ret)? {
            #[cfg(target_arch = "x86_64")]
            if std::arch::is_x86_feature_detected!("avx512bw") {
                #[target_feature(enable = "avx512f,avx512bw")]
                unsafe fn avx512($($arg: $ty),*) $(-> $ret)? {
                    $body($($arg),*)
                }
                // SAFETY: the CPU has AVX-512F and BW (checked just now).
                return unsafe { avx512($($arg),*) };
            }
            $body($($arg),*)
        }
    };
}
pub(crate) use with_avx512;
