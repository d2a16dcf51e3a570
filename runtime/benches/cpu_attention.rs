//! Times the fused CPU attention kernel on one [B, H, S, D] f32 call (default: CogVideoX mid
//! config at 256x256x33, [2, 8, 2530, 64]): `cargo bench -p vidlower-runtime --bench cpu_attention
//! -- [B H S D] [runs]`.

use std::time::Instant;
use vidlower_runtime::cpu_kernels::attention::{attention_base2, AttentionDims};

fn main() {
    let args: Vec<usize> = std::env::args().skip(1).filter_map(|a| a.parse().ok()).collect();
    let (b, h, s, d) = match args[..] {
        [b, h, s, d, ..] => (b, h, s, d),
        _ => (2, 8, 2530, 64),
    };
    let runs = args.get(4).copied().unwrap_or(5);
    let dims = AttentionDims { b, h, sq: s, sk: s, d, dv: d };
    let [lq, lk, lv, lo] = dims.lens();
    let fill = |n: usize, seed: u32| (0..n).map(|i| ((i as u32).wrapping_mul(2654435761).wrapping_add(seed) >> 8) as f32 / 16777216.0 - 0.5).collect::<Vec<f32>>();
    let (q, k, v) = (fill(lq, 1), fill(lk, 2), fill(lv, 3));
    let mut out = vec![0f32; lo];
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let mut times = Vec::new();
    for _ in 0..runs {
        let t = Instant::now();
        attention_base2(&q, &k, &v, None, &mut out, dims, threads);
        times.push(t.elapsed().as_secs_f64());
    }
    times.sort_by(f64::total_cmp);
    let median = times[times.len() / 2];
    let gflops = 2.0 * dims.macs() as f64 / median / 1e9;
    println!("[{b}, {h}, {s}, {d}] f32, {threads} threads: median {:.1} ms ({gflops:.0} GFLOP/s)", median * 1e3);
}
