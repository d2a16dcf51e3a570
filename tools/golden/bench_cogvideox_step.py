#!/usr/bin/env python3
"""diffusers' side of the CogVideoX transformer-step benchmark: one CogVideoXTransformer3DModel
forward, eager on CPU, with the rotary tables computed as `CogVideoXPipeline` computes them.

Builds a "mini" CogVideoX-5b-like transformer (random weights, seeded: 2 heads x 64 = dim 128,
4 layers, text 32, RoPE, patch 2; `--config mid`: 8 heads = dim 512, text 4096) into a diffusers directory next to the golden tiny 5b pipeline's
other components (so `vidlower --model-dir` opens it), and times the forward at each shape: batch 2
(the CFG pair), 226 text tokens, median of N after warm-up, under `torch.inference_mode()`.

    tools/golden/.venv/bin/python tools/golden/bench_cogvideox_step.py --out target/bench-cog-mini --save-only
    target/release/vidlower bench --model-dir target/bench-cog-mini --component transformer \\
        --height 128 --width 128 --frames 17 --batch 2 --max-sequence-length 226 --dtype f32 --runs 5
    tools/golden/.venv/bin/python tools/golden/bench_cogvideox_step.py --out target/bench-cog-mini \\
        --shapes 128x128x17 --runs 5
"""

import argparse
import os
import shutil
import statistics
import time
from pathlib import Path
from types import SimpleNamespace

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("DIFFUSERS_VERBOSITY", "error")

import torch  # noqa: E402
from diffusers import CogVideoXPipeline, CogVideoXTransformer3DModel  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
GOLDEN_MODEL = REPO / "tests" / "golden" / "cogvideox" / "cogvideox-5b" / "model"
MINI = dict(
    num_attention_heads=2, attention_head_dim=64, in_channels=8, out_channels=8, time_embed_dim=128,
    text_embed_dim=32, num_layers=4, sample_width=90, sample_height=60, sample_frames=49, patch_size=2,
    use_rotary_positional_embeddings=True, max_text_seq_length=226,
)
# "mid": the mini's shapes with a 4x wider model (8 heads x 64 = dim 512) and the real T5 width
# (4096), so the linear layers weigh as they do at full size rather than the attention alone.
MID = dict(MINI, num_attention_heads=8, in_channels=16, out_channels=16, time_embed_dim=512, text_embed_dim=4096)
CONFIGS = {"mini": MINI, "mid": MID}
BATCH, TEXT_LEN = 2, 226


def model_dir(out: Path, config: dict) -> Path:
    if (out / "transformer" / "config.json").is_file():
        return out
    tmp = out.with_name(out.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    shutil.copytree(GOLDEN_MODEL, tmp, symlinks=False)
    shutil.rmtree(tmp / "transformer")
    torch.manual_seed(0)
    CogVideoXTransformer3DModel(**config).eval().save_pretrained(tmp / "transformer", safe_serialization=True)
    tmp.rename(out)
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=REPO / "target" / "bench-cog-mini")
    ap.add_argument("--shapes", default="128x128x17")
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--threads", type=int, default=len(os.sched_getaffinity(0)))
    ap.add_argument("--save-only", action="store_true")
    ap.add_argument("--config", choices=sorted(CONFIGS), default="mini",
                    help="the transformer to build into a new --out (an existing one is used as it is)")
    a = ap.parse_args()
    out = model_dir(a.out, CONFIGS[a.config])
    if a.save_only:
        print(f"saved {out}")
        return
    torch.set_num_threads(a.threads)
    model = CogVideoXTransformer3DModel.from_pretrained(out / "transformer").eval()
    for s in a.shapes.split(","):
        h, w, f = (int(x) for x in s.split("x"))
        frames = (f - 1) // 4 + 1
        g = torch.Generator().manual_seed(0)
        x = torch.randn((BATCH, frames, model.config.in_channels, h // 8, w // 8), generator=g)
        text = torch.randn((BATCH, TEXT_LEN, model.config.text_embed_dim), generator=g)
        t = torch.full((BATCH,), 999, dtype=torch.int64)
        pipe = SimpleNamespace(vae_scale_factor_spatial=8, transformer=model)
        rope = CogVideoXPipeline._prepare_rotary_positional_embeddings(pipe, h, w, frames, torch.device("cpu"))
        times = []
        with torch.inference_mode():
            for i in range(a.warmup + a.runs):
                start = time.perf_counter()
                model(hidden_states=x, encoder_hidden_states=text, timestep=t, image_rotary_emb=rope, return_dict=False)
                if i >= a.warmup:
                    times.append(time.perf_counter() - start)
        tokens = frames * (h // 16) * (w // 16)
        print(f"{s}: {tokens} video + {TEXT_LEN} text tokens, forward median {statistics.median(times) * 1e3:.1f} ms "
              f"(min {min(times) * 1e3:.1f}, max {max(times) * 1e3:.1f}; {a.runs} runs, {a.threads} threads)")


if __name__ == "__main__":
    main()
