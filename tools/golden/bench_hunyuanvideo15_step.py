#!/usr/bin/env python3
"""diffusers' side of the HunyuanVideo-1.5 transformer-step benchmark: one
HunyuanVideo15Transformer3DModel forward, eager on CPU, with the inputs `HunyuanVideo15Pipeline` builds for
text-to-video (latents + zero condition latents + zero mask, float timestep, 1000 Qwen + 256 ByT5 text tokens
with padding masks, all-zero image embeds of 729 tokens).

Builds a "mini" transformer (random weights, seeded: 2 heads x 64 = dim 128, 4 double-stream blocks, 1 refiner
block, 8 latent channels, text dims of the tiny golden encoders) into a diffusers directory next to the golden
tiny pipeline's other components (so `vidlower --model-dir` opens it), and times the forward at each shape:
batch 2 (the CFG pair), the first half of each text valid (as `vidlower bench`'s inputs), median of N after
warm-up, under `torch.inference_mode()`.

    tools/golden/.venv/bin/python tools/golden/bench_hunyuanvideo15_step.py --out target/bench-hv15-mini --save-only
    target/release/vidlower bench --model-dir target/bench-hv15-mini --component transformer \\
        --height 256 --width 256 --frames 33 --batch 2 --max-sequence-length 1000 --dtype f32 --runs 5
    tools/golden/.venv/bin/python tools/golden/bench_hunyuanvideo15_step.py --out target/bench-hv15-mini \\
        --shapes 256x256x33 --runs 5
"""

import argparse
import os
import shutil
import statistics
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("DIFFUSERS_VERBOSITY", "error")

import torch  # noqa: E402
from diffusers import HunyuanVideo15Transformer3DModel  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
GOLDEN_MODEL = REPO / "tests" / "golden" / "hunyuanvideo15" / "hunyuanvideo1.5-480p-t2v" / "model"
MINI = dict(
    in_channels=17, out_channels=8, num_attention_heads=2, attention_head_dim=64, num_layers=4, num_refiner_layers=1,
    mlp_ratio=4.0, patch_size=1, patch_size_t=1, qk_norm="rms_norm", text_embed_dim=32, text_embed_2_dim=24,
    image_embed_dim=16, rope_theta=256.0, rope_axes_dim=(16, 24, 24), target_size=640, task_type="t2v",
)
BATCH, TEXT_LEN, TEXT_LEN_2, IMAGE_TOKENS = 2, 1000, 256, 729


def model_dir(out: Path) -> Path:
    if (out / "transformer" / "config.json").is_file():
        return out
    tmp = out.with_name(out.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    shutil.copytree(GOLDEN_MODEL, tmp, symlinks=False)
    shutil.rmtree(tmp / "transformer")
    torch.manual_seed(0)
    HunyuanVideo15Transformer3DModel(**MINI).eval().save_pretrained(tmp / "transformer", safe_serialization=True)
    tmp.rename(out)
    return out


def half_mask(length):
    m = torch.zeros((BATCH, length))
    m[:, : (length + 1) // 2] = 1
    return m


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=REPO / "target" / "bench-hv15-mini")
    ap.add_argument("--shapes", default="256x256x33")
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--threads", type=int, default=len(os.sched_getaffinity(0)))
    ap.add_argument("--save-only", action="store_true")
    a = ap.parse_args()
    out = model_dir(a.out)
    if a.save_only:
        print(f"saved {out}")
        return
    torch.set_num_threads(a.threads)
    model = HunyuanVideo15Transformer3DModel.from_pretrained(out / "transformer").eval()
    for s in a.shapes.split(","):
        h, w, f = (int(x) for x in s.split("x"))
        frames = (f - 1) // 4 + 1
        g = torch.Generator().manual_seed(0)
        x = torch.randn((BATCH, 17, frames, h // 16, w // 16), generator=g)
        text = torch.randn((BATCH, TEXT_LEN, MINI["text_embed_dim"]), generator=g)
        text_2 = torch.randn((BATCH, TEXT_LEN_2, MINI["text_embed_2_dim"]), generator=g)
        image = torch.zeros((BATCH, IMAGE_TOKENS, MINI["image_embed_dim"]))
        t = torch.full((BATCH,), 999.0)
        kwargs = dict(hidden_states=x, timestep=t, encoder_hidden_states=text, encoder_attention_mask=half_mask(TEXT_LEN),
                      encoder_hidden_states_2=text_2, encoder_attention_mask_2=half_mask(TEXT_LEN_2), image_embeds=image,
                      return_dict=False)
        times = []
        with torch.inference_mode():
            for i in range(a.warmup + a.runs):
                start = time.perf_counter()
                model(**kwargs)
                if i >= a.warmup:
                    times.append(time.perf_counter() - start)
        tokens = frames * (h // 16) * (w // 16)
        print(f"{s}: {tokens} video + {TEXT_LEN} + {TEXT_LEN_2} text tokens, forward median "
              f"{statistics.median(times) * 1e3:.1f} ms (min {min(times) * 1e3:.1f}, max {max(times) * 1e3:.1f}; "
              f"{a.runs} runs, {a.threads} threads)")


if __name__ == "__main__":
    main()
