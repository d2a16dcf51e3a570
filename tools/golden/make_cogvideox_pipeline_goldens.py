#!/usr/bin/env python3
"""3-step CogVideoXPipeline goldens for the tiny CogVideoX models (diffusers 0.42.1, CPU, f32).

For each variant (cogvideox-2b: CogVideoXDDIMScheduler; cogvideox-5b, cogvideox1.5-5b: CogVideoXDPMScheduler)
whose model folder is complete, assembles the pipeline in a temporary folder from
  scheduler/ + model_index.json  tests/golden/cogvideox/<variant>/model/ (make_cogvideox_scheduler_goldens.py)
  transformer/, vae/, text_encoder/, tokenizer/   the first of --components dirs that has them (default: this
                                                   repository's tests/golden/cogvideox, then the helper
                                                   worktrees /work/wt/{xfmr,vae,text}/tests/golden/cogvideox)
and runs it for 3 steps at 32x48, 9 frames (3 latent frames; CogVideoX1.5 pads them to 4 for patch_size_t 2),
guidance 6 with CFG, max_sequence_length 226, fixed input `latents=` and, for the DPM scheduler, injected per-step
noise (`scheduling_dpm_cogvideox.randn_tensor` replaced: every draw of step i returns `noise_i`).

Writes tests/golden/cogvideox/<variant>/pipeline_3step.{safetensors,json}:
  latents                     the input latents [1, F, 8, 4, 6] (F = 3, or 4 for 1.5: they include the padding)
  prompt_embeds, negative_prompt_embeds   [1, 226, 32] as the pipeline encoded the prompts below
  timestep_{i}, hidden_states_{i}         the transformer's inputs at step i (batch 2: [uncond, cond])
  noise_pred_uncond_{i}, noise_pred_cond_{i}   its outputs; noise_{i} (DPM) the injected noise
  rotary_cos, rotary_sin      image_rotary_emb (5b / 1.5 only)
  latents_step_{i}            the latents after step i (callback_on_step_end)
  latents_out                 output_type="latent": the final latents [B, F, C, H, W], padding frames kept
  vae_input                   what decode_latents hands to vae.decode: latents[:, pad:] permuted to [B, C, F, H, W],
                              times 1 / scaling_factor (1.5 drops the FIRST `pad` frames)
  decoded                     vae.decode(vae_input).sample, [1, 3, 9, 32, 48]: the decoded frames before
                              postprocessing. output_type="np" is exactly, in f32,
                              video = clamp(decoded * 0.5 + 0.5, 0, 1).permute(0, 2, 3, 4, 1) -> [1, 9, 32, 48, 3]
                              (checked here); only `decoded` is stored (unclamped, and half the files' size)
  latents_out_dynamic_cfg     the same run with use_dynamic_cfg=True; guidance_scales_dynamic_cfg the per-step scale

Usage (from the repository root):
    tools/golden/.venv/bin/python tools/golden/make_cogvideox_pipeline_goldens.py [--components DIR ...]
"""

import argparse
import json
import math
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
from diffusers import CogVideoXDPMScheduler, CogVideoXPipeline  # noqa: E402
from diffusers.schedulers import scheduling_dpm_cogvideox  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
OUT = REPO / "tests" / "golden" / "cogvideox"
GENERATOR = "tools/golden/make_cogvideox_pipeline_goldens.py"
DEFAULT_COMPONENTS = [OUT] + [Path(f"/work/wt/{w}/tests/golden/cogvideox") for w in ("xfmr", "vae", "text")]
VARIANTS = ("cogvideox-2b", "cogvideox-5b", "cogvideox1.5-5b")
COMPONENTS = ("transformer", "vae", "text_encoder", "tokenizer")
SEED = 20260302
PROMPT = "A panda, dressed in a small red jacket, plays a tiny guitar by a quiet bamboo forest stream."
NEGATIVE = "blurry, low quality"
ARGS = dict(height=32, width=48, num_frames=9, num_inference_steps=3, guidance_scale=6.0, max_sequence_length=226,
            num_videos_per_prompt=1)

torch.set_num_threads(1)
torch.use_deterministic_algorithms(True)
torch.set_default_dtype(torch.float32)


def stats(t):
    t = torch.as_tensor(t)
    if t.dtype in (torch.int64, torch.int32):
        return {"shape": list(t.shape), "dtype": str(t.dtype).replace("torch.", ""), "min": int(t.min()),
                "max": int(t.max())}
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
    with open(path, "w", encoding="utf-8") as f:
        json.dump(obj, f, indent=2, ensure_ascii=False)
        f.write("\n")


def randn(shape, seed):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(*shape, generator=g, dtype=torch.float32)


def check_nontrivial(name, t, min_std=1e-3):
    t = t.detach().double()
    assert torch.isfinite(t).all(), f"{name}: non-finite values"
    assert t.std() > min_std and t.abs().max() > 1e-3, f"{name}: (near) constant or zero"


def find_component(variant, component, roots):
    for root in roots:
        d = Path(root) / variant / "model" / component
        if d.is_dir() and any(d.iterdir()):
            return d
    return None


def assemble(variant, roots, into):
    """The pipeline folder: our scheduler + model_index, the other components copied (symlinks resolved)."""
    ours = OUT / variant / "model"
    if not (ours / "model_index.json").is_file() or not (ours / "scheduler").is_dir():
        return f"run make_cogvideox_scheduler_goldens.py first ({ours} has no scheduler/model_index.json)"
    missing = []
    shutil.copy(ours / "model_index.json", into / "model_index.json")
    shutil.copytree(ours / "scheduler", into / "scheduler")
    for c in COMPONENTS:
        src = find_component(variant, c, roots)
        if src is None:
            missing.append(c)
        else:
            shutil.copytree(src, into / c)
    return f"missing {', '.join(missing)}" if missing else None


class InjectedNoise:
    """Stands in for scheduling_dpm_cogvideox.randn_tensor: every draw during step `step` returns noise[step]."""

    def __init__(self, noise):
        self.noise, self.step, self.calls = noise, 0, []

    def __call__(self, shape, generator=None, device=None, dtype=None, layout=None):
        assert tuple(shape) == tuple(self.noise[self.step].shape), (shape, self.noise[self.step].shape)
        self.calls.append(self.step)
        return self.noise[self.step].clone()


def run_variant(variant, model_dir):
    pipe = CogVideoXPipeline.from_pretrained(str(model_dir), torch_dtype=torch.float32)
    pipe.set_progress_bar_config(disable=True)
    dpm = isinstance(pipe.scheduler, CogVideoXDPMScheduler)
    cfg = pipe.transformer.config
    latent_frames = (ARGS["num_frames"] - 1) // pipe.vae_scale_factor_temporal + 1
    pad = 0
    if cfg.patch_size_t is not None and latent_frames % cfg.patch_size_t != 0:
        pad = cfg.patch_size_t - latent_frames % cfg.patch_size_t
    shape = (1, latent_frames + pad, cfg.in_channels, ARGS["height"] // 8, ARGS["width"] // 8)
    seed = SEED + 1000 * VARIANTS.index(variant)
    latents = randn(shape, seed)
    noise = [randn(shape, seed + 200 + i) for i in range(ARGS["num_inference_steps"])]

    def run(output_type, record=None, **extra):
        calls, steps = [], []
        injected = InjectedNoise(noise)

        def hook(module, inputs, kwargs, output):
            calls.append({k: kwargs[k] for k in ("hidden_states", "timestep", "encoder_hidden_states")}
                         | {"rotary": kwargs.get("image_rotary_emb"), "out": output[0].clone()})

        def on_step_end(p, i, t, cb):
            steps.append({"latents": cb["latents"].clone(), "guidance_scale": float(p.guidance_scale)})
            injected.step = i + 1
            return {}

        h = pipe.transformer.register_forward_hook(hook, with_kwargs=True)
        original = scheduling_dpm_cogvideox.randn_tensor
        scheduling_dpm_cogvideox.randn_tensor = injected
        try:
            with torch.no_grad():
                out = pipe(prompt=PROMPT, negative_prompt=NEGATIVE, latents=latents.clone(), output_type=output_type,
                           callback_on_step_end=on_step_end, **{**ARGS, **extra}).frames
        finally:
            scheduling_dpm_cogvideox.randn_tensor = original
            h.remove()
        assert len(calls) == ARGS["num_inference_steps"], len(calls)  # one batch-2 call per step: CFG ran
        if dpm:
            assert sorted(set(injected.calls)) == list(range(ARGS["num_inference_steps"])), injected.calls
        else:
            assert not injected.calls
        return out, calls, steps

    lat_out, calls, steps = run("latent")
    video, calls_np, _ = run("np")
    lat_dyn, _, steps_dyn = run("latent", use_dynamic_cfg=True)
    video = torch.from_numpy(np.ascontiguousarray(video))
    assert lat_out.shape == shape, (lat_out.shape, shape)
    assert video.shape == (1, ARGS["num_frames"], ARGS["height"], ARGS["width"], 3), video.shape
    assert torch.equal(calls_np[-1]["out"], calls[-1]["out"]), "the np run denoised differently"

    # decode_latents, by hand: drop the (leading) padding frames, to [B, C, F, H, W], unscale.
    vae_input = 1 / pipe.vae_scaling_factor_image * lat_out[:, pad:].permute(0, 2, 1, 3, 4)
    with torch.no_grad():
        decoded = pipe.vae.decode(vae_input).sample
    check = pipe.video_processor.postprocess_video(video=decoded, output_type="np")
    assert np.array_equal(check, video.numpy()), "video != postprocess(vae.decode(vae_input))"
    by_hand = (decoded * 0.5 + 0.5).clamp(0, 1).permute(0, 2, 3, 4, 1)
    assert torch.equal(by_hand, video), "video != clamp(decoded * 0.5 + 0.5, 0, 1) permuted"

    tensors = {"latents": latents, "latents_out": lat_out, "vae_input": vae_input, "decoded": decoded,
               "latents_out_dynamic_cfg": lat_dyn}
    enc = calls[0]["encoder_hidden_states"]
    assert enc.shape[0] == 2
    tensors["negative_prompt_embeds"], tensors["prompt_embeds"] = enc[:1], enc[1:]
    rotary = calls[0]["rotary"]
    if rotary is not None:
        tensors["rotary_cos"], tensors["rotary_sin"] = rotary
    timesteps = []
    for i, c in enumerate(calls):
        assert torch.equal(c["encoder_hidden_states"], enc)
        unc, cond = c["hidden_states"].chunk(2)
        assert torch.equal(unc, cond)
        tensors[f"hidden_states_{i}"] = unc
        tensors[f"timestep_{i}"] = c["timestep"]
        tensors[f"noise_pred_uncond_{i}"], tensors[f"noise_pred_cond_{i}"] = c["out"].chunk(2)
        tensors[f"latents_step_{i}"] = steps[i]["latents"]
        if dpm:
            tensors[f"noise_{i}"] = noise[i]
        timesteps.append(int(c["timestep"][0]))
        assert (tensors[f"noise_pred_cond_{i}"] - tensors[f"noise_pred_uncond_{i}"]).abs().max() > 1e-3
    assert torch.equal(steps[-1]["latents"], lat_out)
    dyn_scales = [s["guidance_scale"] for s in steps_dyn]
    n = ARGS["num_inference_steps"]
    for t, g in zip(timesteps, dyn_scales):
        assert g == 1 + ARGS["guidance_scale"] * ((1 - math.cos(math.pi * ((n - t) / n) ** 5.0)) / 2)
    tensors["guidance_scales_dynamic_cfg"] = torch.tensor(dyn_scales, dtype=torch.float64)
    check_nontrivial(f"{variant} latents_out", lat_out)
    check_nontrivial(f"{variant} video", video, min_std=1e-2)
    check_nontrivial(f"{variant} decoded", decoded, min_std=1e-2)
    dyn_diff = float((lat_dyn - lat_out).abs().max())
    assert dyn_diff > 1e-4, f"dynamic CFG changed nothing ({dyn_diff})"

    info = {
        "pipeline_args": {**ARGS, "prompt": PROMPT, "negative_prompt": NEGATIVE, "output_type": ["latent", "np"],
                          "latents_seed": seed, "eta": 0.0, "generator": None},
        "scheduler": type(pipe.scheduler).__name__,
        "scheduler_config": {k: v for k, v in dict(pipe.scheduler.config).items() if not k.startswith("_")},
        "dpm_noise": "randn_tensor replaced: every draw of step i returns noise_i" if dpm else None,
        "noise_seeds": [seed + 200 + i for i in range(n)] if dpm else None,
        "latent_shape": list(shape),
        "latent_padding_frames": pad,
        "padding_dropped": "latents[:, pad:] (the first frames) before decoding; output_type='latent' keeps them",
        "cfg_batch_order": ["uncond (negative_prompt)", "cond (prompt)"],
        "timesteps": timesteps,
        "timestep_dtype": str(calls[0]["timestep"].dtype).replace("torch.", ""),
        "guidance_scales_dynamic_cfg": dyn_scales,
        "max_abs_diff_dynamic_vs_static_cfg": dyn_diff,
        "vae_scaling_factor": pipe.vae_scaling_factor_image,
        "video": "clamp(decoded * 0.5 + 0.5, 0, 1).permute(0, 2, 3, 4, 1), exactly (f32)",
        "video_shape": list(video.shape),
        "video_fraction_at_0_or_1": float(((video == 0) | (video == 1)).double().mean()),
    }
    info["tensors"] = save_tensors(OUT / variant / "pipeline_3step.safetensors", tensors)
    write_json(OUT / variant / "pipeline_3step.json", info)
    print(variant, type(pipe.scheduler).__name__, "timesteps", timesteps, "pad", pad, "dyn scales",
          [round(g, 4) for g in dyn_scales], "video at bounds", info["video_fraction_at_0_or_1"])


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--components", nargs="*", type=Path, default=DEFAULT_COMPONENTS,
                    help="folders holding <variant>/model/<component>/, searched in order")
    ap.add_argument("--variants", nargs="*", default=list(VARIANTS), choices=VARIANTS)
    a = ap.parse_args()
    skipped = {}
    for variant in a.variants:
        with tempfile.TemporaryDirectory() as tmp:
            why = assemble(variant, a.components, Path(tmp))
            if why:
                skipped[variant] = why
                print(f"{variant}: skipped: {why}")
                continue
            run_variant(variant, Path(tmp))
    total = sum(f.stat().st_size for f in OUT.glob("*/pipeline_3step.*"))
    print(f"pipeline golden bytes: {total}")
    assert total < 1_200_000
    return 1 if skipped else 0


if __name__ == "__main__":
    sys.exit(main())
