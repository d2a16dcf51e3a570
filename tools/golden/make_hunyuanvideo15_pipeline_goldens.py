#!/usr/bin/env python3
"""3-step HunyuanVideo15Pipeline goldens for the tiny HunyuanVideo-1.5 model (diffusers 0.42.1, CPU, f32).

Writes the pipeline-level files of tests/golden/hunyuanvideo15/hunyuanvideo1.5-480p-t2v/model/
  model_index.json, scheduler/scheduler_config.json (FlowMatchEulerDiscreteScheduler, shift 5),
  guider/guider_config.json (ClassifierFreeGuidance, scale 6)
then assembles the pipeline in a temporary folder with the components
  text_encoder/, tokenizer/, text_encoder_2/, tokenizer_2/   make_hunyuanvideo15_text_goldens.py
  transformer/                                             make_hunyuanvideo15_transformer_goldens.py
  vae/                                                     make_hunyuanvideo15_vae_goldens.py
(the first of the --components roots that has each) and runs it for 3 steps at 64x96, 9 frames (3 latent frames),
with fixed input `latents=`, once per prompt below.

Writes tests/golden/hunyuanvideo15/hunyuanvideo1.5-480p-t2v/pipeline_3step_<case>.{safetensors,json}:
  latents                            the input latents [1, 8, 3, 4, 6]
  prompt_embeds, prompt_embeds_mask, prompt_embeds_2, prompt_embeds_mask_2 and the four negative_* ones:
                                     pipe.encode_prompt's outputs (masks as float, as encode_prompt casts them)
  timestep_{i}                       the transformer's float timestep at step i
  noise_pred_cond_{i}, noise_pred_uncond_{i}   its two calls' outputs (the guider runs cond first)
  latents_step_{i}                   the latents after step i
  latents_out                        output_type="latent"
  decoded (glyph case only)          vae.decode(latents_out / scaling_factor).sample [1, 3, 9, 64, 96]; the np video
                                     is clamp(decoded * 0.5 + 0.5, 0, 1) permuted (checked here)

Usage (from the repository root):
    tools/golden/.venv/bin/python tools/golden/make_hunyuanvideo15_pipeline_goldens.py [--components DIR ...]
"""

import argparse
import json
import os
import shutil
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("DIFFUSERS_VERBOSITY", "error")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")

import numpy as np  # noqa: E402
import torch  # noqa: E402
from safetensors.torch import save_file  # noqa: E402

import diffusers  # noqa: E402
import transformers  # noqa: E402
from diffusers import ClassifierFreeGuidance, FlowMatchEulerDiscreteScheduler, HunyuanVideo15Pipeline  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
VARIANT = "hunyuanvideo1.5-480p-t2v"
OUT = REPO / "tests" / "golden" / "hunyuanvideo15" / VARIANT
GENERATOR = "tools/golden/make_hunyuanvideo15_pipeline_goldens.py"
DEFAULT_COMPONENTS = [REPO / "tests" / "golden" / "hunyuanvideo15"] + [
    Path(f"/work/wt/{w}/tests/golden/hunyuanvideo15") for w in ("hytext", "hyxfmr", "hyvae")
]
COMPONENTS = ("text_encoder", "tokenizer", "text_encoder_2", "tokenizer_2", "transformer", "vae")
SEED = 20261205
# One prompt with quoted (glyph) text, so ByT5 runs for the prompt and not for the negative one; one without.
CASES = {
    "glyph": ('A neon sign reading "OPEN LATE" flickers above a rainy street.', "blurry, low quality"),
    "plain": ("A red fox running through snow.", ""),
}
ARGS = dict(height=64, width=96, num_frames=9, num_inference_steps=3)
SHIFT = 5.0
GUIDANCE = 6.0

torch.set_num_threads(1)
torch.use_deterministic_algorithms(True)
torch.set_default_dtype(torch.float32)


def stats(t):
    t = torch.as_tensor(t)
    tf = t.double()
    return {"shape": list(t.shape), "dtype": str(t.dtype).replace("torch.", ""), "min": float(tf.min()),
            "max": float(tf.max()), "mean_abs": float(tf.abs().mean())}


def save_tensors(path, tensors, meta=None):
    tensors = {k: v.detach().contiguous().clone() for k, v in tensors.items()}
    info = {"generator": GENERATOR, "diffusers": diffusers.__version__, "transformers": transformers.__version__,
            "torch": torch.__version__.split("+")[0], **(meta or {})}
    save_file(tensors, str(path), metadata={"info": json.dumps(info, sort_keys=True)})
    return {k: stats(v) for k, v in tensors.items()}


def write_json(path, obj):
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        json.dump(obj, f, indent=2, ensure_ascii=False)
        f.write("\n")


def check_nontrivial(name, t, min_std=1e-3):
    t = t.detach().double()
    assert torch.isfinite(t).all(), f"{name}: non-finite values"
    assert t.std() > min_std and t.abs().max() > 1e-3, f"{name}: (near) constant or zero"


def write_pipeline_files():
    model = OUT / "model"
    FlowMatchEulerDiscreteScheduler(shift=SHIFT).save_pretrained(str(model / "scheduler"))
    ClassifierFreeGuidance(guidance_scale=GUIDANCE).save_pretrained(str(model / "guider"))
    write_json(model / "model_index.json", {
        "_class_name": "HunyuanVideo15Pipeline",
        "_diffusers_version": diffusers.__version__,
        "guider": ["diffusers", "ClassifierFreeGuidance"],
        "scheduler": ["diffusers", "FlowMatchEulerDiscreteScheduler"],
        "text_encoder": ["transformers", "Qwen2_5_VLTextModel"],
        "text_encoder_2": ["transformers", "T5EncoderModel"],
        "tokenizer": ["transformers", "Qwen2TokenizerFast"],
        "tokenizer_2": ["transformers", "ByT5Tokenizer"],
        "transformer": ["diffusers", "HunyuanVideo15Transformer3DModel"],
        "vae": ["diffusers", "AutoencoderKLHunyuanVideo15"],
    })


def assemble(roots, into):
    ours = OUT / "model"
    for f in ("model_index.json",):
        shutil.copy(ours / f, into / f)
    for d in ("scheduler", "guider"):
        shutil.copytree(ours / d, into / d)
    missing = []
    for c in COMPONENTS:
        for root in roots:
            d = Path(root) / VARIANT / "model" / c
            if d.is_dir() and any(d.iterdir()):
                shutil.copytree(d, into / c)
                break
        else:
            missing.append(c)
    return f"missing {', '.join(missing)}" if missing else None


def run_case(pipe, case, prompt, negative, seed):
    cfg = pipe.transformer.config
    shape = (1, pipe.vae.config.latent_channels, (ARGS["num_frames"] - 1) // 4 + 1, ARGS["height"] // 16,
             ARGS["width"] // 16)
    latents = torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float32)
    calls, steps = [], []

    def hook(module, inputs, kwargs, output):
        calls.append({"timestep": kwargs["timestep"].clone(), "hidden_states": kwargs["hidden_states"].clone(),
                      "out": output[0].clone()})

    # The pipeline has no step callback: the scheduler's step records the latents it returns.
    step = pipe.scheduler.step

    def recording_step(*a, **k):
        out = step(*a, **k)
        steps.append(out[0].clone())
        return out

    h = pipe.transformer.register_forward_hook(hook, with_kwargs=True)
    pipe.scheduler.step = recording_step
    try:
        with torch.no_grad():
            lat_out = pipe(prompt=prompt, negative_prompt=negative or None, latents=latents.clone(),
                           output_type="latent", **ARGS).frames
            video = pipe(prompt=prompt, negative_prompt=negative or None, latents=latents.clone(), output_type="np",
                         **ARGS).frames
    finally:
        h.remove()
        pipe.scheduler.step = step
    n = ARGS["num_inference_steps"]
    assert len(calls) == 4 * n, len(calls)  # two runs, cond + uncond per step
    calls = calls[: 2 * n]
    with torch.no_grad():
        p = pipe.encode_prompt(prompt=prompt, dtype=torch.float32)
        q = pipe.encode_prompt(prompt=negative or None, dtype=torch.float32)
        vae_input = lat_out / pipe.vae.config.scaling_factor
        decoded = pipe.vae.decode(vae_input, return_dict=False)[0]
    video = torch.from_numpy(np.ascontiguousarray(video))
    by_hand = (decoded * 0.5 + 0.5).clamp(0, 1).permute(0, 2, 3, 4, 1)
    assert torch.equal(by_hand, video), "video != clamp(decoded * 0.5 + 0.5, 0, 1) permuted"

    tensors = {"latents": latents, "latents_out": lat_out}
    if case == "glyph":  # one decode is enough (and 660 KB)
        tensors["decoded"] = decoded
    for prefix, (e, m, e2, m2) in (("", p), ("negative_", q)):
        tensors[f"{prefix}prompt_embeds"], tensors[f"{prefix}prompt_embeds_mask"] = e, m
        tensors[f"{prefix}prompt_embeds_2"], tensors[f"{prefix}prompt_embeds_mask_2"] = e2, m2
    timesteps = []
    for i in range(n):
        cond, uncond = calls[2 * i], calls[2 * i + 1]
        assert torch.equal(cond["timestep"], uncond["timestep"])
        tensors[f"timestep_{i}"] = cond["timestep"]
        tensors[f"noise_pred_cond_{i}"], tensors[f"noise_pred_uncond_{i}"] = cond["out"], uncond["out"]
        tensors[f"latents_step_{i}"] = steps[i]
        timesteps.append(float(cond["timestep"][0]))
        assert (cond["out"] - uncond["out"]).abs().max() > 1e-4
    assert torch.equal(steps[-1], lat_out)
    check_nontrivial(f"{case} latents_out", lat_out)
    check_nontrivial(f"{case} decoded", decoded, min_std=1e-3)
    glyph = bool(p[3].sum() > 0)
    info = {
        "pipeline_args": {**ARGS, "prompt": prompt, "negative_prompt": negative, "output_type": ["latent", "np"],
                          "latents_seed": seed},
        "guidance_scale": GUIDANCE,
        "scheduler": type(pipe.scheduler).__name__,
        "scheduler_config": {k: v for k, v in dict(pipe.scheduler.config).items() if not k.startswith("_")},
        "latent_shape": list(shape),
        "prompt_has_glyph_text": glyph,
        "cfg_call_order": ["cond (prompt)", "uncond (negative_prompt)"],
        "timesteps": timesteps,
        "vae_scaling_factor": pipe.vae.config.scaling_factor,
        "video": "clamp(decoded * 0.5 + 0.5, 0, 1).permute(0, 2, 3, 4, 1), exactly (f32)",
        "in_channels": cfg.in_channels,
    }
    info["tensors"] = save_tensors(OUT / f"pipeline_3step_{case}.safetensors", tensors)
    write_json(OUT / f"pipeline_3step_{case}.json", info)
    print(case, "timesteps", timesteps, "glyph", glyph)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--components", nargs="*", type=Path, default=DEFAULT_COMPONENTS,
                    help="folders holding hunyuanvideo1.5-480p-t2v/model/<component>/, searched in order")
    a = ap.parse_args()
    write_pipeline_files()
    with tempfile.TemporaryDirectory() as tmp:
        why = assemble(a.components, Path(tmp))
        if why:
            print(f"skipped: {why}")
            return 1
        # The tiny transformer's ByT5 projection is narrower than diffusers' hard-coded 2048
        # (make_hunyuanvideo15_transformer_goldens.py): loaded by that script, passed in.
        sys.path.insert(0, str(Path(__file__).resolve().parent))
        from make_hunyuanvideo15_transformer_goldens import load_tiny_transformer
        transformer = load_tiny_transformer(Path(tmp) / "transformer")
        pipe = HunyuanVideo15Pipeline.from_pretrained(tmp, transformer=transformer, torch_dtype=torch.float32)
        pipe.set_progress_bar_config(disable=True)
        for k, (case, (prompt, negative)) in enumerate(CASES.items()):
            run_case(pipe, case, prompt, negative, SEED + k)
    total = sum(f.stat().st_size for f in OUT.glob("pipeline_3step_*"))
    print(f"pipeline golden bytes: {total}")
    assert total < 1_500_000
    return 0


if __name__ == "__main__":
    sys.exit(main())
