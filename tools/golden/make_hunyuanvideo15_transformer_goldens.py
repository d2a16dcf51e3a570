#!/usr/bin/env python3
"""Golden files for vidlower's HunyuanVideo15Transformer3DModel (HunyuanVideo-1.5 480p text-to-video).

Builds a tiny random `HunyuanVideo15Transformer3DModel` whose config is the real 480p t2v checkpoint's
`transformer/config.json` with only the sizes scaled down, saves it (diffusers format, safetensors) to
tests/golden/hunyuanvideo15/hunyuanvideo1.5-480p-t2v/model/transformer/, and records, for two video sizes
at batch 2 (cond/uncond rows with different masks), the model's inputs as `HunyuanVideo15Pipeline` builds
them for text-to-video, its output and per-block outputs (forward hooks) in
tests/golden/hunyuanvideo15/transformer/transformer_io.safetensors. CPU, float32, diffusers 0.42.1.
See tools/golden/README_hunyuanvideo15_xfmr.md.

One deviation from stock diffusers, forced by the golden size budget: `HunyuanVideo15ByT5TextProjection`
is built with a hidden width of BYT5_HIDDEN (diffusers hard-codes 2048, and a 2048 x 2048 f32 `linear_2`
alone is 16 MB). The width is written to config.json as `byt5_projection_hidden_size` (vidlower reads it,
default 2048; diffusers ignores the unknown key). Load this checkpoint in Python with
`load_tiny_transformer(dir)` below, not `from_pretrained` (which would build the 2048-wide module).

Usage (from the repository root):
    tools/golden/.venv/bin/python tools/golden/make_hunyuanvideo15_transformer_goldens.py

Everything is seeded; a re-run on the same library versions reproduces the files bit for bit.
"""

import copy
import json
import math
import os
import shutil
import sys
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("DIFFUSERS_VERBOSITY", "error")

import numpy as np  # noqa: E402
import torch  # noqa: E402
from safetensors.torch import load_file, save_file  # noqa: E402

import diffusers  # noqa: E402
from diffusers import HunyuanVideo15Transformer3DModel  # noqa: E402
from diffusers.models.transformers.transformer_hunyuan_video15 import (  # noqa: E402
    HunyuanVideo15ByT5TextProjection,
)

REPO = Path(__file__).resolve().parents[2]
OUT = REPO / "tests" / "golden" / "hunyuanvideo15"
MODEL_DIR = OUT / "hunyuanvideo1.5-480p-t2v" / "model" / "transformer"
IO_DIR = OUT / "transformer"
GENERATOR = "tools/golden/make_hunyuanvideo15_transformer_goldens.py"

torch.set_num_threads(1)  # fixed reduction order: bit-reproducible files
torch.use_deterministic_algorithms(True)
torch.set_default_dtype(torch.float32)

# ----------------------------------------------------------------------------------------------------------
# Config: hunyuanvideo-community/HunyuanVideo-1.5-480p_t2v transformer/config.json, sizes scaled down
# ----------------------------------------------------------------------------------------------------------
# The real one: in_channels 65 (32 latent + 32 cond latent + 1 mask), out_channels 32, 16 heads x 128,
# 54 layers, 2 refiner layers, mlp_ratio 4, patch 1 x 1, qk_norm rms_norm, text_embed_dim 3584 (Qwen2.5-VL
# 7B), text_embed_2_dim 1472 (ByT5-small), image_embed_dim 1152 (SigLIP), rope_theta 256, rope_axes_dim
# (16, 56, 56), target_size 640 (480p), task_type t2v, use_meanflow false.
TINY_CONFIG = dict(
    in_channels=17,  # 2 * 8 latent channels + 1 mask channel (the tiny VAE has 8 latent channels)
    out_channels=8,
    num_attention_heads=2,
    attention_head_dim=16,
    num_layers=2,
    num_refiner_layers=1,
    mlp_ratio=4.0,
    patch_size=1,
    patch_size_t=1,
    qk_norm="rms_norm",
    text_embed_dim=32,  # the tiny Qwen2.5-VL's hidden size
    text_embed_2_dim=24,  # the tiny ByT5's d_model
    image_embed_dim=16,
    rope_theta=256.0,
    rope_axes_dim=(4, 6, 6),  # sums to attention_head_dim, as (16, 56, 56) sums to 128
    target_size=640,
    task_type="t2v",
    use_meanflow=False,
)
BYT5_HIDDEN = 64  # diffusers: 2048 (see the module docstring)
LATENT_CHANNELS = 8
VISION_NUM_SEMANTIC_TOKENS = 729  # HunyuanVideo15Pipeline.vision_num_semantic_tokens

# Two cases: (latent frames, height, width, MLLM text length, ByT5 text length) and per batch row
# (cond, uncond) the valid MLLM tokens and valid ByT5 tokens (None: no quoted text in the prompt, so the
# pipeline passes all-zero ByT5 embeddings with an all-zero mask).
CASES = {
    "main": dict(size=(3, 4, 6, 20, 12), mllm_valid=(7, 4), byt5_valid=(5, None), timestep=937.5),
    "resized": dict(size=(2, 6, 4, 16, 8), mllm_valid=(16, 3), byt5_valid=(None, 8), timestep=312.25),
}
SEED_MODEL = 7301
SEED_IO = {"main": 7401, "resized": 7411}


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
    """Every parameter re-drawn: 1-D norm scales 1 + N(0, 0.1^2), biases N(0, 0.1^2), matrices and the
    embedding table N(0, 1/fan_in) (the table N(0, 1)). So no gate or modulation is zero."""
    g = torch.Generator().manual_seed(seed)
    for name, p in sorted(module.named_parameters(), key=lambda kv: kv[0]):
        r = torch.randn(p.shape, generator=g, dtype=torch.float32)
        leaf = name.rsplit(".", 1)[-1]
        if "norm" in name and leaf == "weight" and p.ndim == 1:
            v = 1.0 + 0.1 * r
        elif leaf == "bias":
            v = 0.1 * r
        elif name == "cond_type_embed.weight":
            v = r
        else:
            v = r / math.sqrt(int(np.prod(p.shape[1:])))
        p.copy_(v)


def with_small_byt5_projection(model):
    """The tiny model's ByT5 projection, BYT5_HIDDEN wide instead of diffusers' fixed 2048."""
    cfg = model.config
    inner = cfg.num_attention_heads * cfg.attention_head_dim
    model.context_embedder_2 = HunyuanVideo15ByT5TextProjection(cfg.text_embed_2_dim, BYT5_HIDDEN, inner)
    return model


def build(seed):
    torch.manual_seed(seed)
    model = with_small_byt5_projection(HunyuanVideo15Transformer3DModel(**TINY_CONFIG)).eval().float()
    rerandomize(model, seed)
    return model


def load_tiny_transformer(model_dir):
    """The tiny checkpoint as a diffusers model (what `from_pretrained` would give if it knew the ByT5
    projection width): for pipeline goldens built on this transformer."""
    model_dir = Path(model_dir)
    config = json.loads((model_dir / "config.json").read_text())
    hidden = config.pop("byt5_projection_hidden_size")
    assert hidden == BYT5_HIDDEN
    kwargs = {k: v for k, v in config.items() if not k.startswith("_")}
    model = with_small_byt5_projection(HunyuanVideo15Transformer3DModel(**kwargs)).eval().float()
    state = load_file(str(model_dir / "diffusion_pytorch_model.safetensors"))
    model.load_state_dict(state, strict=True)
    return model


def save_and_reload(model, model_dir):
    if model_dir.exists():
        shutil.rmtree(model_dir)
    model.save_pretrained(str(model_dir), safe_serialization=True)
    config_path = model_dir / "config.json"
    config = json.loads(config_path.read_text())
    config["byt5_projection_hidden_size"] = BYT5_HIDDEN
    write_json(config_path, dict(sorted(config.items())))
    loaded = load_tiny_transformer(model_dir)
    sa, sb = model.state_dict(), loaded.state_dict()
    assert sa.keys() == sb.keys()
    for k in sa:
        assert torch.equal(sa[k], sb[k]), f"{k} changed on save/load"
    return loaded


def text_order(mllm_mask, byt5_mask):
    """Per batch row, diffusers' text token order without the image tokens, as indices into vidlower's
    text sequence cat([ByT5 tokens, MLLM tokens]): [valid ByT5, valid MLLM, (729 image tokens, all masked
    in t2v and left out here), invalid ByT5, invalid MLLM] (`HunyuanVideo15Transformer3DModel.forward`)."""
    rows = []
    l2 = byt5_mask.shape[1]
    for m, m2 in zip(mllm_mask.bool(), byt5_mask.bool()):
        idx2 = torch.arange(l2)
        idx = l2 + torch.arange(m.shape[0])
        rows.append(torch.cat([idx2[m2], idx[m], idx2[~m2], idx[~m]]))
    return torch.stack(rows)


def inputs(case, seed):
    """The transformer's inputs as `HunyuanVideo15Pipeline.__call__` builds them for text-to-video."""
    frames, height, width, text_len, text_len_2 = case["size"]
    latents = randn((2, LATENT_CHANNELS, frames, height, width), seed)
    cond_latents = torch.zeros_like(latents)  # prepare_cond_latents_and_mask: zeros for t2v
    mask_concat = torch.zeros((2, 1, frames, height, width))
    hidden_states = torch.cat([latents, cond_latents, mask_concat], dim=1)
    # timestep = t.expand(B).to(latent dtype): the flow-matching sigma * 1000, a float
    timestep = torch.full((2,), case["timestep"], dtype=torch.float32)
    # MLLM hidden states: every position non-zero (padding positions too, as the encoder gives them)
    prompt_embeds = randn((2, text_len, TINY_CONFIG["text_embed_dim"]), seed + 1)
    prompt_mask = torch.zeros((2, text_len), dtype=torch.int64)
    for row, n in enumerate(case["mllm_valid"]):
        prompt_mask[row, :n] = 1
    # ByT5: glyph text -> encoder output (non-zero everywhere) and its mask; none -> zeros, zero mask
    prompt_embeds_2 = torch.zeros((2, text_len_2, TINY_CONFIG["text_embed_2_dim"]))
    prompt_mask_2 = torch.zeros((2, text_len_2), dtype=torch.int64)
    for row, n in enumerate(case["byt5_valid"]):
        if n is not None:
            prompt_embeds_2[row] = randn((text_len_2, TINY_CONFIG["text_embed_2_dim"]), seed + 2 + row)
            prompt_mask_2[row, :n] = 1
    image_embeds = torch.zeros((2, VISION_NUM_SEMANTIC_TOKENS, TINY_CONFIG["image_embed_dim"]))
    return dict(hidden_states=hidden_states, timestep=timestep, encoder_hidden_states=prompt_embeds,
                encoder_attention_mask=prompt_mask, encoder_hidden_states_2=prompt_embeds_2,
                encoder_attention_mask_2=prompt_mask_2, image_embeds=image_embeds)


def run(model, kw):
    with torch.no_grad():
        return model(**kw, return_dict=False)[0]


def run_case(model, case, seed):
    kw = inputs(case, seed)
    captured = {}
    hooks = [model.context_embedder.register_forward_hook(
        lambda m, a, out: captured.__setitem__("context_embedder", out))]
    for i, block in enumerate(model.transformer_blocks):
        def pre(m, args, i=i):
            captured[f"mask.{i}"] = args[3]

        def post(m, args, out, i=i):
            captured[f"transformer_blocks.{i}.hidden_states"] = out[0]
            captured[f"transformer_blocks.{i}.encoder_hidden_states"] = out[1]
        hooks += [block.register_forward_pre_hook(pre), block.register_forward_hook(post)]
    sample = run(model, kw)
    for h in hooks:
        h.remove()

    frames, height, width, text_len, text_len_2 = case["size"]
    assert sample.shape == (2, TINY_CONFIG["out_channels"], frames, height, width)
    check_nontrivial("sample", sample)
    order = text_order(kw["encoder_attention_mask"], kw["encoder_attention_mask_2"])
    out = {k: v for k, v in kw.items() if k != "image_embeds"}
    # vidlower takes the masks as float 0/1 (the pipeline's are int64)
    out["encoder_attention_mask"] = kw["encoder_attention_mask"].float()
    out["encoder_attention_mask_2"] = kw["encoder_attention_mask_2"].float()
    out["sample"] = sample
    out["context_embedder"] = captured["context_embedder"]
    out["text_order"] = order
    for i in range(len(model.transformer_blocks)):
        out[f"transformer_blocks.{i}.hidden_states"] = captured[f"transformer_blocks.{i}.hidden_states"]
        text = captured[f"transformer_blocks.{i}.encoder_hidden_states"]
        mask = captured[f"mask.{i}"]
        rows, kept = [], []
        for b in range(2):
            n_valid = int(kw["encoder_attention_mask"][b].sum() + kw["encoder_attention_mask_2"][b].sum())
            keep = torch.cat([torch.arange(n_valid),
                              torch.arange(n_valid + VISION_NUM_SEMANTIC_TOKENS, text.shape[1])])
            # the image tokens (between the valid and the invalid text) are all masked in t2v
            assert not mask[b, n_valid:n_valid + VISION_NUM_SEMANTIC_TOKENS].any()
            # the mask of the kept rows is the input masks in this order
            ours = torch.cat([kw["encoder_attention_mask_2"][b], kw["encoder_attention_mask"][b]]).bool()
            assert torch.equal(mask[b, keep], ours[order[b]]), "text_order does not follow diffusers' reordering"
            rows.append(text[b, keep])
        check_nontrivial(f"block {i} text", torch.stack(rows))
        out[f"transformer_blocks.{i}.encoder_hidden_states"] = torch.stack(rows)
    cos, sin = model.rope(kw["hidden_states"])
    out["freqs_cos"], out["freqs_sin"] = cos, sin  # [tokens, head_dim], each pair's value repeated

    # The masks do what they should: a masked MLLM token's value changes nothing, a valid one does.
    poked = dict(kw)
    poked["encoder_hidden_states"] = kw["encoder_hidden_states"].clone()
    poked["encoder_hidden_states"][1, -1] += 5.0  # row 1 always has padding at the end
    assert torch.equal(run(model, poked), sample), "a masked MLLM token changed the output"
    poked["encoder_hidden_states"][1, 0] += 5.0
    assert (run(model, poked) - sample)[1].abs().max() > 1e-3, "a valid MLLM token should matter"

    # For the record: diffusers' own bf16 run against its f32 output. The pipeline casts the timestep to
    # the latents' dtype (`t.expand(B).to(latent_model_input.dtype)`), so in bf16 it is rounded too.
    # (A copy: `.to(bfloat16)` rounds the parameters in place.)
    bf16 = copy.deepcopy(model).to(torch.bfloat16)
    kw16 = {k: (v.to(torch.bfloat16) if v.is_floating_point() else v) for k, v in kw.items()}
    err16 = float(((run(bf16, kw16).float() - sample).abs() / (1 + sample.abs())).max())
    return out, err16


def main():
    model = save_and_reload(build(SEED_MODEL), MODEL_DIR)
    reference = copy.deepcopy(model.state_dict())
    IO_DIR.mkdir(parents=True, exist_ok=True)
    tensors, cases = {}, {}
    for name, case in CASES.items():
        out, err16 = run_case(model, case, SEED_IO[name])
        print(f"{name}: diffusers bf16 vs f32 max rel err {err16:.3e}")
        prefix = "" if name == "main" else f"{name}."
        tensors.update({prefix + k: v for k, v in out.items()})
        cases[name] = dict(case, size=dict(zip(("frames", "height", "width", "text_len", "text_len_2"),
                                               case["size"])), diffusers_bf16_max_rel_err=err16)
    for k, v in model.state_dict().items():
        assert torch.equal(v, reference[k]), f"{k} changed while running the cases"
    summary = {
        "diffusers": diffusers.__version__,
        "torch": torch.__version__.split("+")[0],
        "config": dict(model.config),
        "byt5_projection_hidden_size": BYT5_HIDDEN,
        "cases": cases,
        "tensors": save_tensors(IO_DIR / "transformer_io.safetensors", tensors),
    }
    write_json(IO_DIR / "transformer_io.json", summary)

    mine = [p for p in MODEL_DIR.rglob("*") if p.is_file()] + [p for p in IO_DIR.rglob("*") if p.is_file()]
    total = sum(p.stat().st_size for p in mine)
    print(f"transformer goldens: {len(mine)} files, {total} bytes")
    assert total < 1_000_000


if __name__ == "__main__":
    sys.exit(main())
