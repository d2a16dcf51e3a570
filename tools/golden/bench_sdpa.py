"""torch's CPU scaled_dot_product_attention on one [B, H, S, D] f32 call: the peer of
`cargo bench -p vidlower-runtime --bench cpu_attention --profile dev -- B H S D` (vidlower's fused
CPU attention kernel). Not a golden file.

    tools/golden/.venv/bin/python tools/golden/bench_sdpa.py [B H S D] [--runs N]
"""

import argparse
import os
import time

import torch


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("dims", nargs="*", type=int, default=[2, 8, 2530, 64], help="B H S D")
    ap.add_argument("--runs", type=int, default=7)
    args = ap.parse_args()
    b, h, s, d = args.dims
    torch.set_num_threads(len(os.sched_getaffinity(0)))
    torch.manual_seed(0)
    q, k, v = (torch.randn(b, h, s, d) for _ in range(3))
    attention = torch.nn.functional.scaled_dot_product_attention
    with torch.inference_mode():
        for _ in range(2):
            attention(q, k, v)
        times = []
        for _ in range(args.runs):
            start = time.perf_counter()
            attention(q, k, v)
            times.append(time.perf_counter() - start)
    times.sort()
    median = times[len(times) // 2]
    flops = 4 * b * h * s * s * d
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, [{b}, {h}, {s}, {d}] f32: "
          f"median {median * 1e3:.1f} ms ({flops / median / 1e9:.0f} GFLOP/s)")


if __name__ == "__main__":
    main()
