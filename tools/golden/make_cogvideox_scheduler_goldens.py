#!/usr/bin/env python3
"""Golden files for vidlower's CogVideoX schedulers (CogVideoXDDIMScheduler, CogVideoXDPMScheduler) and for
the FlowMatchEulerDiscreteScheduler as HunyuanVideo-1.5's pipeline drives it; diffusers 0.42.1, CPU, f32.

Writes
  tests/golden/cogvideox/<variant>/model/scheduler/scheduler_config.json   (save_config of the real values)
  tests/golden/cogvideox/<variant>/model/model_index.json                  (as CogVideoXPipeline.save_pretrained)
  tests/golden/cogvideox/scheduler_{ddim,dpm}.{safetensors,json}
  tests/golden/flow_match_euler.{safetensors,json}

The scheduler configs are the values of the Hugging Face repositories THUDM/CogVideoX-2b, THUDM/CogVideoX-5b and
THUDM/CogVideoX1.5-5B (scaled_linear betas 0.00085..0.012, v_prediction, zero-terminal-SNR rescale,
set_alpha_to_one, trailing spacing, steps_offset 0; snr_shift_scale 3.0 for 2b, 1.0 for the 5B models). Those
repositories ship them under `CogVideoXDDIMScheduler`; the CogVideo authors' inference script swaps the class to
`CogVideoXDPMScheduler` for the 5B models (same config), and so do our 5b / 1.5-5b golden models, so that each
scheduler is exercised by a pipeline golden. See tools/golden/README_cogvideox_sched.md.

DPM noise: the scheduler draws its per-step noise with `randn_tensor` (twice on a second-order step, the first
draw discarded). The runs below replace `scheduling_dpm_cogvideox.randn_tensor` by a function that returns the
recorded `noise_i` for every draw of step i, so the step used exactly `noise_i`.

Usage (from the repository root):
    tools/golden/.venv/bin/python tools/golden/make_cogvideox_scheduler_goldens.py
Everything is seeded; a re-run on the same library versions reproduces the files bit for bit.
"""

import json
import math
import os
import sys
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("DIFFUSERS_VERBOSITY", "error")

import numpy as np  # noqa: E402
import torch  # noqa: E402
from safetensors.torch import save_file  # noqa: E402

import diffusers  # noqa: E402
import transformers  # noqa: E402
from diffusers import CogVideoXDDIMScheduler, CogVideoXDPMScheduler, FlowMatchEulerDiscreteScheduler  # noqa: E402
from diffusers.schedulers import scheduling_dpm_cogvideox  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
OUT = REPO / "tests" / "golden" / "cogvideox"
GENERATOR = "tools/golden/make_cogvideox_scheduler_goldens.py"
SEED = 20260301

torch.set_num_threads(1)
torch.use_deterministic_algorithms(True)
torch.set_default_dtype(torch.float32)

# The real repositories' scheduler_config.json values (everything but the class name is shared by 5b and 1.5-5B).
COGVIDEOX_SCHEDULER = dict(
    beta_end=0.012,
    beta_schedule="scaled_linear",
    beta_start=0.00085,
    clip_sample=False,
    clip_sample_range=1.0,
    num_train_timesteps=1000,
    prediction_type="v_prediction",
    rescale_betas_zero_snr=True,
    sample_max_value=1.0,
    set_alpha_to_one=True,
    steps_offset=0,
    timestep_spacing="trailing",
    trained_betas=None,
)
VARIANTS = {
    "cogvideox-2b": (CogVideoXDDIMScheduler, dict(COGVIDEOX_SCHEDULER, snr_shift_scale=3.0)),
    "cogvideox-5b": (CogVideoXDPMScheduler, dict(COGVIDEOX_SCHEDULER, snr_shift_scale=1.0)),
    "cogvideox1.5-5b": (CogVideoXDPMScheduler, dict(COGVIDEOX_SCHEDULER, snr_shift_scale=1.0)),
}
# Paths off the real configs, to cover epsilon prediction, leading spacing with steps_offset, no zero-SNR
# rescale and set_alpha_to_one = false (the last DPM step then keeps a noise term).
OFF_PATH = dict(COGVIDEOX_SCHEDULER, prediction_type="epsilon", rescale_betas_zero_snr=False, set_alpha_to_one=False,
                timestep_spacing="leading", steps_offset=1, snr_shift_scale=1.0)
LATENT = (1, 2, 8, 2, 2)  # [B, F, C, H, W] as CogVideoX holds latents
# HunyuanVideo-1.5's flow shifts (its README: 480p t2v/i2v 5, 720p t2v 9, 720p i2v 7).
FLOW_SHIFTS = (5.0, 7.0, 9.0)


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
            "torch": torch.__version__.split("+")[0], "numpy": np.__version__, **(meta or {})}
    save_file(tensors, str(path), metadata={"info": json.dumps(info, sort_keys=True)})
    return {k: stats(v) for k, v in tensors.items()}


def write_json(path, obj):
    with open(path, "w", encoding="utf-8") as f:
        json.dump(obj, f, indent=2, ensure_ascii=False)
        f.write("\n")


def randn(shape, seed):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(*shape, generator=g, dtype=torch.float32)


def check_nontrivial(name, t):
    t = t.detach().double()
    assert torch.isfinite(t).all(), f"{name}: non-finite values"
    assert t.std() > 1e-3 and t.abs().max() > 1e-3, f"{name}: (near) constant or zero"


def config_dict(s):
    return {k: v for k, v in dict(s.config).items() if not k.startswith("_")}


# ----------------------------------------------------------------------------------------------------------
# Model folders: scheduler/scheduler_config.json and model_index.json
# ----------------------------------------------------------------------------------------------------------


def write_model_folders():
    for variant, (cls, cfg) in VARIANTS.items():
        model = OUT / variant / "model"
        s = cls(**cfg)
        s.save_config(str(model / "scheduler"))
        # What CogVideoXPipeline.save_pretrained writes: its registered modules as [library, class name].
        index = {
            "_class_name": "CogVideoXPipeline",
            "_diffusers_version": diffusers.__version__,
            "scheduler": ["diffusers", cls.__name__],
            "text_encoder": ["transformers", "T5EncoderModel"],
            "tokenizer": ["transformers", "T5Tokenizer"],
            "transformer": ["diffusers", "CogVideoXTransformer3DModel"],
            "vae": ["diffusers", "AutoencoderKLCogVideoX"],
        }
        with open(model / "model_index.json", "w", encoding="utf-8") as f:
            f.write(json.dumps(index, indent=2, sort_keys=True) + "\n")
        back = cls.from_pretrained(str(model / "scheduler"))
        assert config_dict(back) == config_dict(s)


# ----------------------------------------------------------------------------------------------------------
# CogVideoX DDIM / DPM
# ----------------------------------------------------------------------------------------------------------


class InjectedNoise:
    """Stands in for scheduling_dpm_cogvideox.randn_tensor: every draw during step i returns `noise`."""

    def __init__(self):
        self.noise, self.calls = None, 0

    def __call__(self, shape, generator=None, device=None, dtype=None, layout=None):
        assert tuple(shape) == tuple(self.noise.shape) and dtype == torch.float32, (shape, dtype)
        self.calls += 1
        return self.noise.clone()


def spacing_summary(cls, cfg):
    """For n = 1..1000: the schedule's length and sum (an exhaustive check of the spacing arithmetic), and
    every n whose schedule is not n timesteps in [0, T) (np.arange's float length can overshoot)."""
    s = cls(**cfg)
    lengths, sums, bad = [], [], []
    for n in range(1, 1001):
        s.set_timesteps(n)
        t = s.timesteps
        lengths.append(len(t))
        sums.append(int(t.sum()))
        if len(t) != n or int(t.min()) < 0 or int(t.max()) >= cfg["num_train_timesteps"]:
            bad.append(n)
    return torch.tensor(lengths, dtype=torch.int64), torch.tensor(sums, dtype=torch.int64), bad


def stage_cogvideox(name, cls):
    real = VARIANTS["cogvideox-2b" if cls is CogVideoXDDIMScheduler else "cogvideox-5b"][1]
    tensors = {}
    info = {"class": cls.__name__, "scheduler_config": config_dict(cls(**real)),
            "off_path_config": config_dict(cls(**OFF_PATH)), "runs": {}, "spacing": {}}
    s = cls(**real)
    tensors["alphas_cumprod"] = s.alphas_cumprod.clone()
    assert s.alphas_cumprod.dtype == torch.float64
    tensors["off_path_alphas_cumprod"] = cls(**OFF_PATH).alphas_cumprod.clone()
    for n in (3, 5, 7, 50):
        s.set_timesteps(n)
        tensors[f"timesteps_{n}"] = s.timesteps.clone()
    for spacing, extra in (("trailing", {}), ("leading", {"steps_offset": 1}), ("linspace", {})):
        cfg = dict(real, timestep_spacing=spacing, **extra)
        lengths, sums, bad = spacing_summary(cls, cfg)
        tensors[f"{spacing}_lengths"], tensors[f"{spacing}_sums"] = lengths, sums
        info["spacing"][spacing] = {"steps_offset": cfg["steps_offset"], "bad_n": bad}
        for n in (3, 5, 50):
            sp = cls(**cfg)
            sp.set_timesteps(n)
            tensors[f"{spacing}_timesteps_{n}"] = sp.timesteps.clone()

    dpm = cls is CogVideoXDPMScheduler
    noise_fn = InjectedNoise()
    original = scheduling_dpm_cogvideox.randn_tensor
    scheduling_dpm_cogvideox.randn_tensor = noise_fn
    try:
        for run, cfg, n, seed in (("n5", real, 5, SEED), ("n3", real, 3, SEED + 1000),
                                  ("off_path_n3", OFF_PATH, 3, SEED + 2000)):
            s = cls(**cfg)
            s.set_timesteps(n)
            timesteps = s.timesteps
            sample = randn(LATENT, seed) * s.init_noise_sigma
            tensors[f"{run}_sample_0"] = sample
            old_pred = None
            steps = []
            for i, t in enumerate(timesteps):
                mo = randn(LATENT, seed + 100 + i)
                tensors[f"{run}_model_output_{i}"] = mo
                if dpm:
                    noise_fn.noise, noise_fn.calls = randn(LATENT, seed + 200 + i), 0
                    tensors[f"{run}_noise_{i}"] = noise_fn.noise
                    # exactly as CogVideoXPipeline calls it
                    prev, old_pred = s.step(mo, old_pred, t, timesteps[i - 1] if i > 0 else None, sample,
                                            return_dict=False)
                    tensors[f"{run}_pred_original_sample_{i}"] = old_pred
                    steps.append({"i": i, "timestep": int(t), "noise_draws": noise_fn.calls})
                else:
                    out = s.step(mo, t, sample)
                    prev = out.prev_sample
                    tensors[f"{run}_pred_original_sample_{i}"] = out.pred_original_sample
                    steps.append({"i": i, "timestep": int(t)})
                assert prev.dtype == torch.float32
                tensors[f"{run}_prev_sample_{i}"] = prev
                check_nontrivial(f"{name} {run} prev_sample_{i}", prev)
                sample = prev
            info["runs"][run] = {"config": "off_path_config" if cfg is OFF_PATH else "scheduler_config",
                                 "num_inference_steps": n, "timesteps": [int(x) for x in timesteps],
                                 "init_noise_sigma": float(s.init_noise_sigma), "latent_shape": list(LATENT),
                                 "sample_seed": seed, "model_output_seeds": [seed + 100 + i for i in range(n)],
                                 "noise_seeds": [seed + 200 + i for i in range(n)] if dpm else None, "steps": steps}
    finally:
        scheduling_dpm_cogvideox.randn_tensor = original
    info["tensors"] = save_tensors(OUT / f"scheduler_{name}.safetensors", tensors,
                                   {"noise": "randn_tensor replaced: step i's draws all return noise_i" if dpm else None})
    write_json(OUT / f"scheduler_{name}.json", info)
    print(name, "timesteps_5", tensors["timesteps_5"].tolist(), "bad trailing n", info["spacing"]["trailing"]["bad_n"][:5])


# ----------------------------------------------------------------------------------------------------------
# FlowMatchEuler (HunyuanVideo-1.5)
# ----------------------------------------------------------------------------------------------------------


def stage_flow_match():
    tensors, info = {}, {"class": "FlowMatchEulerDiscreteScheduler", "configs": {}, "runs": {}}
    for shift in FLOW_SHIFTS:
        base = FlowMatchEulerDiscreteScheduler(shift=shift)  # the other fields at diffusers' defaults
        info["configs"][f"shift{shift:g}"] = config_dict(base)
        for n in (3, 5, 50):
            s = FlowMatchEulerDiscreteScheduler.from_config(base.config)
            # as HunyuanVideo15Pipeline: sigmas = np.linspace(1.0, 0.0, n + 1)[:-1]
            s.set_timesteps(sigmas=np.linspace(1.0, 0.0, n + 1)[:-1])
            assert s.timesteps.dtype == torch.float32 and s.sigmas.dtype == torch.float32
            tensors[f"shift{shift:g}_timesteps_{n}"] = s.timesteps.clone()
            tensors[f"shift{shift:g}_sigmas_{n}"] = s.sigmas.clone()
    for run, shift, n, seed in (("shift5_n5", 5.0, 5, SEED + 3000), ("shift7_n3", 7.0, 3, SEED + 4000)):
        s = FlowMatchEulerDiscreteScheduler(shift=shift)
        s.set_timesteps(sigmas=np.linspace(1.0, 0.0, n + 1)[:-1])
        shape = (1, 8, 2, 2, 2)  # [B, C, F, H, W] as Hunyuan holds latents
        sample = randn(shape, seed)
        tensors[f"{run}_sample_0"] = sample
        for i, t in enumerate(s.timesteps):
            mo = randn(shape, seed + 100 + i)
            prev = s.step(mo, t, sample, return_dict=False)[0]
            tensors[f"{run}_model_output_{i}"] = mo
            tensors[f"{run}_prev_sample_{i}"] = prev
            check_nontrivial(f"flow {run} prev_sample_{i}", prev)
            sample = prev
        info["runs"][run] = {"shift": shift, "num_inference_steps": n, "timesteps": [float(x) for x in s.timesteps],
                             "sigmas": [float(x) for x in s.sigmas], "latent_shape": list(shape),
                             "sample_seed": seed}
    info["tensors"] = save_tensors(REPO / "tests" / "golden" / "flow_match_euler.safetensors", tensors)
    write_json(REPO / "tests" / "golden" / "flow_match_euler.json", info)
    print("flow shift5 n3", tensors["shift5_timesteps_3"].tolist())


# ----------------------------------------------------------------------------------------------------------
# CogVideoX dynamic CFG (pipeline_cogvideox.py, use_dynamic_cfg)
# ----------------------------------------------------------------------------------------------------------


def dynamic_cfg_cases():
    """The pipeline's expression, verbatim, for the unit test in runtime/src/scheduler/guidance.rs."""
    cases = []
    for g, n, t in ((6.0, 50, 999), (6.0, 50, 979), (6.0, 50, 19), (6.0, 50, 49), (6.0, 3, 999), (6.0, 3, 332),
                    (6.0, 3, 2), (7.0, 50, 50), (6.0, 50, 0)):
        cases.append([g, n, t, 1 + g * ((1 - math.cos(math.pi * ((n - t) / n) ** 5.0)) / 2)])
    return cases


def main():
    write_model_folders()
    stage_cogvideox("ddim", CogVideoXDDIMScheduler)
    stage_cogvideox("dpm", CogVideoXDPMScheduler)
    stage_flow_match()
    for c in dynamic_cfg_cases():
        print("dynamic cfg", c[:3], repr(c[3]))
    total = sum(f.stat().st_size for f in OUT.glob("scheduler_*")) + sum(
        f.stat().st_size for f in (REPO / "tests" / "golden").glob("flow_match_euler.*"))
    print(f"scheduler golden bytes: {total}")
    assert total < 600_000


if __name__ == "__main__":
    sys.exit(main())
