#!/usr/bin/env python3
"""Golden files for vidlower's CogVideoXTransformer3DModel (CogVideoX-2b, CogVideoX-5b, CogVideoX1.5-5B).

For each variant, builds a tiny random `CogVideoXTransformer3DModel` whose config is the real checkpoint's
`transformer/config.json` with only the sizes scaled down, saves it (diffusers format, safetensors) to
tests/golden/cogvideox/<variant>/model/transformer/, and records the model's output for two input sizes in
tests/golden/cogvideox/<variant>/transformer_io.safetensors, with the rotary tables computed by the real
`CogVideoXPipeline._prepare_rotary_positional_embeddings` (called on a stand-in `self` that carries the
transformer and `vae_scale_factor_spatial = 8`). Also a fourth tiny model with `ofs_embed_dim` (the
CogVideoX1.5 I2V "ofs" conditioning, on a text-to-video-shaped config) in tests/golden/cogvideox/transformer_ofs/.
All on CPU in float32 with diffusers 0.42.1. See tools/golden/README_cogvideox_xfmr.md.

Usage (from the repository root):
    tools/golden/.venv/bin/python tools/golden/make_cogvideox_transformer_goldens.py

Everything is seeded; a re-run on the same library versions reproduces the files bit for bit.
"""

import json
import math
import os
import shutil
import sys
from pathlib import Path
from types import SimpleNamespace

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("DIFFUSERS_VERBOSITY", "error")

import numpy as np  # noqa: E402
import torch  # noqa: E402
from safetensors.torch import save_file  # noqa: E402

import diffusers  # noqa: E402
from diffusers import CogVideoXPipeline, CogVideoXTransformer3DModel  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
OUT = REPO / "tests" / "golden" / "cogvideox"
GENERATOR = "tools/golden/make_cogvideox_transformer_goldens.py"
VAE_SCALE_FACTOR_SPATIAL = 8  # AutoencoderKLCogVideoX: 2 ** (len(block_out_channels) - 1)

torch.set_num_threads(1)  # fixed reduction order: bit-reproducible files
torch.use_deterministic_algorithms(True)
torch.set_default_dtype(torch.float32)

# ----------------------------------------------------------------------------------------------------------
# Configs: the real transformer/config.json of each checkpoint, sizes scaled down
# ----------------------------------------------------------------------------------------------------------
# Fields every released CogVideoX transformer config has with these values (THUDM/CogVideoX-2b, -5b,
# CogVideoX1.5-5B): flip_sin_to_cos true, freq_shift 0, dropout 0.0, attention_bias true,
# temporal_compression_ratio 4, max_text_seq_length 226, activation_fn gelu-approximate,
# timestep_activation_fn silu, norm_elementwise_affine true, norm_eps 1e-5, spatial_interpolation_scale
# 1.875, temporal_interpolation_scale 1.0, use_learned_positional_embeddings false.
REAL_COMMON = dict(
    flip_sin_to_cos=True,
    freq_shift=0,
    dropout=0.0,
    attention_bias=True,
    temporal_compression_ratio=4,
    max_text_seq_length=226,
    activation_fn="gelu-approximate",
    timestep_activation_fn="silu",
    norm_elementwise_affine=True,
    norm_eps=1e-5,
    spatial_interpolation_scale=1.875,
    temporal_interpolation_scale=1.0,
    use_learned_positional_embeddings=False,
)
# Scaled-down sizes shared by the tiny CogVideoX pipeline (latent channels 8, T5 d_model 32).
TINY = dict(
    num_attention_heads=2,
    attention_head_dim=16,
    in_channels=8,
    out_channels=8,
    text_embed_dim=32,
    time_embed_dim=16,
    num_layers=2,
)
VARIANTS = {
    # THUDM/CogVideoX-2b: 30 heads x 64, 30 layers, sample 60x90 latents, 49 frames (13 latent), patch 2,
    # sincos 3D positions (no rotary).
    "cogvideox-2b": dict(**REAL_COMMON, **TINY, sample_height=8, sample_width=12, sample_frames=9,
                         patch_size=2, use_rotary_positional_embeddings=False),
    # THUDM/CogVideoX-5b: 48 heads x 64, 42 layers, sample 60x90, 49 frames, patch 2, 3D RoPE
    # ("linspace" grid over the resize-crop region of the sample size).
    "cogvideox-5b": dict(**REAL_COMMON, **TINY, sample_height=8, sample_width=12, sample_frames=9,
                         patch_size=2, use_rotary_positional_embeddings=True),
    # THUDM/CogVideoX1.5-5B: 48 heads x 64, 42 layers, sample 300x300, 81 frames, patch 2, patch_size_t 2,
    # patch_bias false, 3D RoPE ("slice" grid, max size = sample size / patch).
    "cogvideox1.5-5b": dict(**REAL_COMMON, **TINY, sample_height=24, sample_width=24, sample_frames=17,
                            patch_size=2, patch_size_t=2, patch_bias=False,
                            use_rotary_positional_embeddings=True),
}
# A CogVideoX1.5-shaped model with the ofs embedding (CogVideoX1.5-5B-I2V has ofs_embed_dim 512 =
# time_embed_dim; its in_channels 32 is image-to-video, which vidlower refuses, so this keeps 8 -> 8).
OFS_VARIANT = dict(VARIANTS["cogvideox1.5-5b"], ofs_embed_dim=16, num_layers=1)

# Per variant: two cases (latent frames F, latent height H, latent width W, text length L).
# "main" is the sample size where there is one (2b and 5b), "resized" another size (2b: the sincos table is
# recomputed, 5b: the RoPE crop region is no longer the whole grid, so the linspace grid is fractional).
CASES = {
    "cogvideox-2b": {"main": (3, 8, 12, 226), "resized": (2, 6, 8, 226)},  # sincos needs L = max_text_seq_length
    "cogvideox-5b": {"main": (3, 8, 12, 10), "resized": (2, 8, 8, 7)},
    "cogvideox1.5-5b": {"main": (4, 8, 12, 10), "resized": (2, 12, 6, 7)},
}
OFS_CASE = (2, 6, 8, 5)
TIMESTEPS = {"main": [999, 261], "resized": [1, 733]}

SEED_MODEL = {"cogvideox-2b": 5101, "cogvideox-5b": 5102, "cogvideox1.5-5b": 5103, "ofs": 5104}
SEED_IO = {"cogvideox-2b": 6101, "cogvideox-5b": 6102, "cogvideox1.5-5b": 6103, "ofs": 6104}


# ----------------------------------------------------------------------------------------------------------
# Helpers
# ----------------------------------------------------------------------------------------------------------
def stats(t):
    t = torch.as_tensor(t)
    if t.dtype in (torch.int64, torch.int32, torch.bool):
        return {"shape": list(t.shape), "dtype": str(t.dtype).replace("torch.", ""), "min": int(t.min()),
                "max": int(t.max())}
    tf = t.double()
    return {"shape": list(t.shape), "dtype": str(t.dtype).replace("torch.", ""), "min": float(tf.min()),
            "max": float(tf.max()), "mean": float(tf.mean()), "std": float(tf.std()) if t.numel() > 1 else 0.0}


def save_tensors(path, tensors, meta=None):
    tensors = {k: v.detach().contiguous().clone() for k, v in tensors.items()}
    info = {"generator": GENERATOR, "diffusers": diffusers.__version__,
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
    assert t.std() > min_std, f"{name}: (near) constant, std {float(t.std())}"


@torch.no_grad()
def rerandomize(module, seed):
    """Every parameter re-drawn: 1-D norm scales 1 + N(0, 0.1^2), biases N(0, 0.1^2), matrices and kernels
    N(0, 1/fan_in). So no gate or modulation is zero (diffusers' init is not zero here either, but this makes
    every tensor matter)."""
    g = torch.Generator().manual_seed(seed)
    for name, p in sorted(module.named_parameters(), key=lambda kv: kv[0]):
        r = torch.randn(p.shape, generator=g, dtype=torch.float32)
        leaf = name.rsplit(".", 1)[-1]
        if "norm" in name and leaf == "weight" and p.ndim == 1:
            v = 1.0 + 0.1 * r
        elif leaf == "bias":
            v = 0.1 * r
        else:
            v = r / math.sqrt(int(np.prod(p.shape[1:])))
        p.copy_(v)


def rotary_emb(model, frames, height, width):
    """`CogVideoXPipeline._prepare_rotary_positional_embeddings` as the pipeline calls it: pixel height/width
    (latent * 8) and `latents.size(1)` frames (padded to a multiple of patch_size_t for 1.5)."""
    if not model.config.use_rotary_positional_embeddings:
        return None
    pipe_self = SimpleNamespace(vae_scale_factor_spatial=VAE_SCALE_FACTOR_SPATIAL, transformer=model)
    return CogVideoXPipeline._prepare_rotary_positional_embeddings(
        pipe_self, height * VAE_SCALE_FACTOR_SPATIAL, width * VAE_SCALE_FACTOR_SPATIAL, frames, torch.device("cpu"))


def sincos_pos_embedding(model, frames, height, width):
    """The table `CogVideoXPatchEmbed.forward` adds to the video tokens (f32), for the debug tensors."""
    pe = model.patch_embed
    pre = (frames - 1) * pe.temporal_compression_ratio + 1
    if (pe.sample_height, pe.sample_width, pe.sample_frames) != (height, width, pre):
        table = pe._get_positional_embeddings(height, width, pre)
    else:
        table = pe.pos_embedding
    return table[0, pe.max_text_seq_length:].to(torch.float32)


def build(config, seed):
    torch.manual_seed(seed)
    model = CogVideoXTransformer3DModel(**config).eval().float()
    rerandomize(model, seed)
    return model


def save_and_reload(model, model_dir):
    if model_dir.exists():
        shutil.rmtree(model_dir)
    model.save_pretrained(str(model_dir), safe_serialization=True)
    loaded = CogVideoXTransformer3DModel.from_pretrained(str(model_dir), torch_dtype=torch.float32).eval()
    sa, sb = model.state_dict(), loaded.state_dict()
    assert sa.keys() == sb.keys()
    for k in sa:
        assert torch.equal(sa[k], sb[k]), f"{k} changed on save/load"
    return loaded


def run_case(model, case, seed, timestep, ofs=None):
    frames, height, width, text_len = case
    cfg = model.config
    hs = randn((2, frames, cfg.in_channels, height, width), seed)
    ehs = randn((2, text_len, cfg.text_embed_dim), seed + 1)
    timestep = torch.tensor(timestep, dtype=torch.int64)  # the pipeline's t.expand(B): int64
    rope = rotary_emb(model, frames, height, width)
    kw = dict(image_rotary_emb=rope) if ofs is None else dict(image_rotary_emb=rope, ofs=ofs)
    with torch.no_grad():
        sample = model(hidden_states=hs, encoder_hidden_states=ehs, timestep=timestep, **kw).sample
        sample_f32 = model(hidden_states=hs, encoder_hidden_states=ehs, timestep=timestep.float(), **kw).sample
        swapped = model(hidden_states=hs, encoder_hidden_states=ehs, timestep=timestep.flip(0), **kw).sample
    assert torch.equal(sample, sample_f32), "int64 and f32 timesteps should agree"
    assert (swapped - sample).abs().max() > 1e-3, "the output should depend on each row's timestep"
    assert sample.shape == hs.shape
    check_nontrivial("sample", sample)
    out = {"hidden_states": hs, "timestep": timestep, "timestep_f32": timestep.float(),
           "encoder_hidden_states": ehs, "sample": sample}
    if rope is not None:
        cos, sin = rope
        # [S, head_dim], each rotated pair's value repeated (repeat_interleave_real)
        out["freqs_cos"], out["freqs_sin"] = cos, sin
        if ofs is None:  # without RoPE the output would differ: the tables are used
            with torch.no_grad():
                plain = model(hidden_states=hs, encoder_hidden_states=ehs, timestep=timestep).sample
            assert (plain - sample).abs().max() > 1e-3
    else:
        out["pos_embedding"] = sincos_pos_embedding(model, frames, height, width)
    return out


def main():
    summary = {"diffusers": diffusers.__version__, "torch": torch.__version__.split("+")[0], "variants": {}}
    for variant, config in VARIANTS.items():
        vdir = OUT / variant
        vdir.mkdir(parents=True, exist_ok=True)
        model = save_and_reload(build(config, SEED_MODEL[variant]), vdir / "model" / "transformer")
        tensors, cases = {}, {}
        for i, (name, case) in enumerate(CASES[variant].items()):
            out = run_case(model, case, SEED_IO[variant] + 10 * i, TIMESTEPS[name])
            prefix = "" if name == "main" else f"{name}."
            tensors.update({prefix + k: v for k, v in out.items()})
            cases[name] = dict(zip(("frames", "height", "width", "text_len"), case), timestep=TIMESTEPS[name])
        summary["variants"][variant] = {
            "config": dict(model.config),
            "cases": cases,
            "tensors": save_tensors(vdir / "transformer_io.safetensors", tensors, {"variant": variant}),
        }

    # ofs: the pipeline passes latents.new_full((1,), 2.0); vidlower takes one per batch row.
    odir = OUT / "transformer_ofs"
    odir.mkdir(parents=True, exist_ok=True)
    model = save_and_reload(build(OFS_VARIANT, SEED_MODEL["ofs"]), odir / "model")
    ofs = torch.full((1,), 2.0)
    out = run_case(model, OFS_CASE, SEED_IO["ofs"], TIMESTEPS["main"], ofs=ofs)
    with torch.no_grad():
        other = model(hidden_states=out["hidden_states"], encoder_hidden_states=out["encoder_hidden_states"],
                      timestep=out["timestep"], ofs=torch.full((1,), 3.0),
                      image_rotary_emb=(out["freqs_cos"], out["freqs_sin"])).sample
    assert (other - out["sample"]).abs().max() > 1e-3, "the output should depend on ofs"
    out["ofs"] = ofs
    summary["variants"]["transformer_ofs"] = {
        "config": dict(model.config),
        "cases": {"main": dict(zip(("frames", "height", "width", "text_len"), OFS_CASE), ofs=2.0)},
        "tensors": save_tensors(odir / "transformer_io.safetensors", out, {"variant": "transformer_ofs"}),
    }
    write_json(OUT / "transformer_io.json", summary)

    mine = [p for v in list(VARIANTS) for p in (OUT / v / "model" / "transformer").rglob("*") if p.is_file()]
    mine += [OUT / v / "transformer_io.safetensors" for v in VARIANTS]
    mine += [p for p in odir.rglob("*") if p.is_file()] + [OUT / "transformer_io.json"]
    total = sum(p.stat().st_size for p in mine)
    print(f"transformer goldens: {len(mine)} files, {total} bytes")
    assert total < 1_500_000


if __name__ == "__main__":
    sys.exit(main())
