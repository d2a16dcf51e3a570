#!/usr/bin/env python3
"""diffusers' side of the transformer-step benchmark: one WanTransformer3DModel forward, eager on CPU.

Builds a "mini" Wan 2.1 transformer (random weights, seeded; bigger than the golden tiny model so
the numbers mean something: 2 heads x 128 = dim 256, 4 layers, ffn 1024, text_dim 64, freq_dim 256,
Wan's own patch size and RoPE), saves it as a diffusers model directory (the golden tiny pipeline's
other components next to it, so `vidlower --model-dir` opens it), and times the transformer forward
at each shape: batch 2 (the pipeline's CFG pair), 512 text tokens, median of N after warm-up, under
`torch.inference_mode()`, with torch using every core this process may run on.

vidlower benches the same directory, so both sides run the same weights, config and shapes:

    tools/golden/.venv/bin/python tools/golden/bench_wan_step.py --out target/bench-wan-mini --save-only
    target/release/vidlower bench --model-dir target/bench-wan-mini --component transformer \\
        --height 128 --width 128 --frames 17 --batch 2 --max-sequence-length 512 --dtype f32 --runs 5
    tools/golden/.venv/bin/python tools/golden/bench_wan_step.py --out target/bench-wan-mini \\
        --shapes 128x128x17 --dtype f32 --runs 5

With an existing directory the script loads it instead of rebuilding (the weights stay the same).
`--dtype bf16` loads it with `from_pretrained(torch_dtype=torch.bfloat16)` (diffusers keeps its
fp32 modules in f32), as vidlower's `--dtype bf16` does. The directory also gets
`bench_io.safetensors` (inputs and f32 `sample` at the first shape) so `vidlower exec` can check
that both sides compute the same thing before their times are compared.
"""

import argparse
import json
import os
import shutil
import statistics
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("DIFFUSERS_VERBOSITY", "error")

import torch  # noqa: E402
from safetensors.torch import save_file  # noqa: E402

import diffusers  # noqa: E402
from diffusers import WanTransformer3DModel  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
GOLDEN_MODEL = REPO / "tests" / "golden" / "wan" / "model"

MINI_CONFIG = dict(
    patch_size=(1, 2, 2),
    num_attention_heads=2,
    attention_head_dim=128,
    in_channels=16,
    out_channels=16,
    text_dim=64,
    freq_dim=256,
    ffn_dim=1024,
    num_layers=4,
    cross_attn_norm=True,
    qk_norm="rms_norm_across_heads",
    eps=1e-6,
    rope_max_seq_len=1024,
)
BATCH = 2
TEXT_LEN = 512
TIMESTEP = 999  # what the pipeline passes at the first step (int64)


def parse_shape(s):
    h, w, f = (int(x) for x in s.lower().split("x"))
    if h % 16 or w % 16 or (f - 1) % 4:
        raise SystemExit(f"shape {s}: height/width must be multiples of 16 and frames 4n+1")
    return h, w, f


def model_dir(out: Path) -> Path:
    """The mini model as a diffusers directory: the golden tiny pipeline with the mini transformer."""
    if (out / "transformer" / "config.json").is_file():
        return out
    tmp = out.with_name(out.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    shutil.copytree(GOLDEN_MODEL, tmp)
    shutil.rmtree(tmp / "transformer")
    torch.manual_seed(0)
    model = WanTransformer3DModel(**MINI_CONFIG).eval()
    model.save_pretrained(tmp / "transformer", safe_serialization=True)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp.rename(out)
    print(f"saved the mini model to {out} ({sum(p.numel() for p in model.parameters()) / 1e6:.1f} M parameters)")
    return out


def inputs(shape, dtype, seed=0):
    h, w, f = shape
    g = torch.Generator().manual_seed(seed)
    latent = (BATCH, 16, (f - 1) // 4 + 1, h // 8, w // 8)
    return dict(
        hidden_states=torch.randn(latent, generator=g).to(dtype),
        timestep=torch.full((BATCH,), TIMESTEP, dtype=torch.int64),
        encoder_hidden_states=torch.randn((BATCH, TEXT_LEN, MINI_CONFIG["text_dim"]), generator=g).to(dtype),
    )


def bench(model, shape, dtype, runs, warmup):
    x = inputs(shape, dtype)
    times = []
    with torch.inference_mode():
        for i in range(warmup + runs):
            start = time.perf_counter()
            model(**x, return_dict=False)
            if i >= warmup:
                times.append(time.perf_counter() - start)
    return times


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=REPO / "target" / "bench-wan-mini", help="the model directory")
    ap.add_argument("--shapes", default="128x128x17,256x256x33", help="HxWxF in pixels, comma-separated")
    ap.add_argument("--dtype", choices=["f32", "bf16"], default="f32")
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--threads", type=int, default=len(os.sched_getaffinity(0)))
    ap.add_argument("--save-only", action="store_true", help="write the model directory and bench_io, time nothing")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    shapes = [parse_shape(s) for s in args.shapes.split(",")]

    out = model_dir(args.out.resolve())
    io_file = out / "bench_io.safetensors"
    if not io_file.is_file():
        model = WanTransformer3DModel.from_pretrained(out / "transformer").eval()
        x = inputs(shapes[0], torch.float32)
        with torch.inference_mode():
            sample = model(**x, return_dict=False)[0]
        save_file({**x, "sample": sample.contiguous()}, str(io_file))
        print(f"wrote {io_file}: inputs and f32 sample at {'x'.join(map(str, shapes[0]))}")
    if args.save_only:
        return

    torch_dtype = {"f32": torch.float32, "bf16": torch.bfloat16}[args.dtype]
    model = WanTransformer3DModel.from_pretrained(out / "transformer", torch_dtype=torch_dtype).eval()
    for shape in shapes:
        times = bench(model, shape, torch_dtype, args.runs, args.warmup)
        h, w, f = shape
        tokens = ((f - 1) // 4 + 1) * (h // 16) * (w // 16)
        result = dict(
            shape=f"{h}x{w}x{f}",
            tokens=tokens,
            batch=BATCH,
            text_len=TEXT_LEN,
            dtype=args.dtype,
            threads=torch.get_num_threads(),
            torch=torch.__version__,
            diffusers=diffusers.__version__,
            median_s=statistics.median(times),
            min_s=min(times),
            max_s=max(times),
            runs=[round(t, 4) for t in times],
        )
        print(
            f"diffusers {args.dtype} {h}x{w}x{f} ({tokens} tokens, batch {BATCH}, {TEXT_LEN} text tokens): "
            f"median {result['median_s'] * 1e3:.1f} ms (of {args.runs}; min {result['min_s'] * 1e3:.1f}, "
            f"max {result['max_s'] * 1e3:.1f}), {result['threads']} threads"
        )
        print("json " + json.dumps(result))


if __name__ == "__main__":
    main()
