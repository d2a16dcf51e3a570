#!/usr/bin/env python3
"""Golden files for vidlower's `--lora`: LoRAs merged into each family's tiny golden transformer.

For Wan, CogVideoX and HunyuanVideo-1.5, makes two small random LoRAs over the attention and
feed-forward linears of the tiny golden transformer, saves them as diffusers does, loads them back
through diffusers' own path (the family's `lora_state_dict` where the pipeline has a LoRA mixin, then
`transformer.load_lora_adapter`, as `load_lora_weights` does), fuses them (`set_adapters` +
`fuse_lora`) and records the transformer's output on fixed inputs:

  tests/golden/<family>/lora/lora_a.safetensors   diffusers format (`save_lora_weights`): keys
      `transformer.<module>.lora_A.weight` / `lora_B.weight`, rank 4, with diffusers'
      `lora_adapter_metadata` header (lora_alpha 8, so alpha / r = 2)
  tests/golden/<family>/lora/lora_b.safetensors   a second spelling, rank 2:
      Wan: the original (non-diffusers) style `diffusion_model.blocks.N.self_attn.q.lora_down.weight`,
           `lora_up.weight` and `.alpha` (alpha 1: alpha / r = 0.5), converted by diffusers'
           `_convert_non_diffusers_wan_lora_to_diffusers`;
      CogVideoX, HunyuanVideo-1.5: diffusers' older spelling `transformer.<module>.lora.down.weight` /
           `lora.up.weight`, no alpha (diffusers: alpha = r)
  tests/golden/<family>/lora/io.safetensors       the forward inputs (diffusers' argument names, what
      `vidlower exec --inputs` takes), `sample` (no LoRA), `sample_one` (lora_a at 0.7) and
      `sample_two` (lora_a at 0.7 and lora_b at 1.3), all f32

HunyuanVideo15Pipeline has no LoRA mixin in diffusers 0.42.1; its transformer is a PeftAdapterMixin, so
`transformer.load_lora_adapter(file, prefix="transformer", use_safetensors=True)` is what a user would call
(without `use_safetensors=True`, diffusers 0.42.1 reads the file without its metadata header, so alpha = r).

Usage (from the repository root; needs `peft`, e.g. `pip install --target /tmp/py peft --no-deps` and
PYTHONPATH=/tmp/py):
    tools/golden/.venv/bin/python tools/golden/make_lora_goldens.py
See tools/golden/README_lora.md. Seeded, CPU, float32, diffusers 0.42.1, peft 0.21.
"""

import os
import sys
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("DIFFUSERS_VERBOSITY", "error")

import torch  # noqa: E402
from safetensors.torch import load_file, save_file  # noqa: E402

from diffusers import CogVideoXTransformer3DModel, WanTransformer3DModel  # noqa: E402
from diffusers.loaders.lora_pipeline import (  # noqa: E402
    CogVideoXLoraLoaderMixin,
    WanLoraLoaderMixin,
)

REPO = Path(__file__).resolve().parents[2]
GOLDEN = REPO / "tests" / "golden"
sys.path.insert(0, str(Path(__file__).resolve().parent))
import make_hunyuanvideo15_transformer_goldens as hy  # noqa: E402

torch.set_num_threads(1)
torch.use_deterministic_algorithms(True)

SCALE_A, SCALE_B = 0.7, 1.3
# Linear layers a LoRA trainer targets: attention projections and the feed-forward.
TARGETS = ("to_q", "to_k", "to_v", "to_out.0", "add_q_proj", "add_k_proj", "add_v_proj", "to_add_out",
           "net.0.proj", "net.2")


def targets(model):
    """Names of the linear layers the LoRAs cover, in module order."""
    return [n for n, m in model.named_modules()
            if isinstance(m, torch.nn.Linear) and n.split(".", 1)[0] in ("blocks", "transformer_blocks")
            and any(n.endswith("." + t) for t in TARGETS)]


def random_lora(model, rank, seed):
    """{module: (A [r, in], B [out, r])}, scaled so the merged delta is a few percent of W."""
    g = torch.Generator().manual_seed(seed)
    out = {}
    for name in targets(model):
        lin = model.get_submodule(name)
        a = torch.randn(rank, lin.in_features, generator=g) / lin.in_features ** 0.5
        b = torch.randn(lin.out_features, rank, generator=g) * 0.2 * lin.weight.std().item()
        out[name] = (a, b)
    return out


def save_diffusers_format(path, lora, rank, alpha, mixin):
    """`save_lora_weights` with the adapter metadata, as a trainer saving with diffusers writes it."""
    layers = {}
    for name, (a, b) in lora.items():
        layers[f"{name}.lora_A.weight"] = a.contiguous()
        layers[f"{name}.lora_B.weight"] = b.contiguous()
    meta = {"r": rank, "lora_alpha": alpha, "target_modules": sorted(lora)}
    mixin.save_lora_weights(str(path.parent), transformer_lora_layers=layers, transformer_lora_adapter_metadata=meta,
                            weight_name=path.name, safe_serialization=True)


WAN_ORIGINAL = {"attn1": "self_attn", "attn2": "cross_attn", "to_q": "q", "to_k": "k", "to_v": "v", "to_out.0": "o",
                "ffn.net.0.proj": "ffn.0", "ffn.net.2": "ffn.2"}


def wan_original_name(name):
    """blocks.0.attn1.to_out.0 -> blocks.0.self_attn.o (the Wan repository's module names)."""
    for ours in ("ffn.net.0.proj", "ffn.net.2"):
        if name.endswith(ours):
            return name[: -len(ours)] + WAN_ORIGINAL[ours]
    block, attn, proj = name.split(".", 2)[1], name.split(".")[2], name.split(".", 3)[3]
    return f"blocks.{block}.{WAN_ORIGINAL[attn]}.{WAN_ORIGINAL[proj]}"


def save_second(path, lora, family, alpha):
    t = {}
    for name, (a, b) in lora.items():
        if family == "wan":
            o = "diffusion_model." + wan_original_name(name)
            t[f"{o}.lora_down.weight"], t[f"{o}.lora_up.weight"] = a.contiguous(), b.contiguous()
            t[f"{o}.alpha"] = torch.tensor(float(alpha))
        else:
            t[f"transformer.{name}.lora.down.weight"] = a.contiguous()
            t[f"transformer.{name}.lora.up.weight"] = b.contiguous()
    save_file(t, str(path), metadata={"format": "pt"})


def load_into(model, path, adapter, mixin):
    """What `pipe.load_lora_weights(path, adapter_name=...)` does for the transformer."""
    if mixin is None:
        # use_safetensors=True: without it `load_lora_adapter` skips the safetensors branch of
        # `_fetch_state_dict` and so drops the `lora_adapter_metadata` header (alpha = r).
        model.load_lora_adapter(str(path), prefix="transformer", adapter_name=adapter, use_safetensors=True)
        return
    state, meta = mixin.lora_state_dict(str(path), return_lora_metadata=True)
    model.load_lora_adapter(state, prefix="transformer", adapter_name=adapter, metadata=meta)


def fused_sample(make_model, files, scales, mixin, forward):
    model = make_model()
    for i, f in enumerate(files):
        load_into(model, f, f"l{i}", mixin)
    model.set_adapters([f"l{i}" for i in range(len(files))], weights=list(scales))
    model.fuse_lora(adapter_names=[f"l{i}" for i in range(len(files))])
    model.unload_lora()  # keeps the fused weights, drops the adapters: a plain model
    with torch.no_grad():
        return forward(model)


def family_cases():
    wan_dir = GOLDEN / "wan" / "model" / "transformer"
    wan_io = load_file(str(GOLDEN / "wan" / "transformer_io.safetensors"))
    wan_in = {k: wan_io[k] for k in ("hidden_states", "timestep", "encoder_hidden_states")}

    cog_dir = GOLDEN / "cogvideox" / "cogvideox-5b" / "model" / "transformer"
    cog_io = load_file(str(GOLDEN / "cogvideox" / "cogvideox-5b" / "transformer_io.safetensors"))
    cog_in = {k: cog_io[k] for k in ("hidden_states", "timestep", "encoder_hidden_states")}
    cog_rope = (cog_io["freqs_cos"], cog_io["freqs_sin"])

    hy_dir = GOLDEN / "hunyuanvideo15" / "hunyuanvideo1.5-480p-t2v" / "model" / "transformer"
    hy_io = load_file(str(GOLDEN / "hunyuanvideo15" / "transformer" / "transformer_io.safetensors"))
    hy_names = ("hidden_states", "timestep", "encoder_hidden_states", "encoder_attention_mask",
                "encoder_hidden_states_2", "encoder_attention_mask_2")
    hy_in = {k: hy_io[k] for k in hy_names}
    image_embeds = torch.zeros((2, hy.VISION_NUM_SEMANTIC_TOKENS, hy.TINY_CONFIG["image_embed_dim"]))

    def hy_forward(m):
        kw = dict(hy_in)
        for k in ("encoder_attention_mask", "encoder_attention_mask_2"):
            kw[k] = kw[k].to(torch.int64)
        return m(**kw, image_embeds=image_embeds, return_dict=False)[0]

    return [
        ("wan", lambda: WanTransformer3DModel.from_pretrained(str(wan_dir)).eval().float(), WanLoraLoaderMixin,
         wan_in, lambda m: m(**wan_in, return_dict=False)[0]),
        ("cogvideox", lambda: CogVideoXTransformer3DModel.from_pretrained(str(cog_dir)).eval().float(),
         CogVideoXLoraLoaderMixin, cog_in, lambda m: m(**cog_in, image_rotary_emb=cog_rope, return_dict=False)[0]),
        ("hunyuanvideo15", lambda: hy.load_tiny_transformer(hy_dir), None, hy_in, hy_forward),
    ]


def main():
    total = 0
    for family, make_model, mixin, inputs, forward in family_cases():
        out = GOLDEN / family / "lora"
        out.mkdir(parents=True, exist_ok=True)
        base = make_model()
        lora_a = random_lora(base, 4, 1)
        lora_b = random_lora(base, 2, 2)
        fa, fb = out / "lora_a.safetensors", out / "lora_b.safetensors"
        save_diffusers_format(fa, lora_a, 4, 8, mixin or WanLoraLoaderMixin)
        save_second(fb, lora_b, family, 1.0)
        with torch.no_grad():
            sample = forward(base)
        one = fused_sample(make_model, [fa], [SCALE_A], mixin, forward)
        two = fused_sample(make_model, [fa, fb], [SCALE_A, SCALE_B], mixin, forward)
        d1 = ((one - sample).abs().max() / sample.abs().max()).item()
        d2 = ((two - one).abs().max() / sample.abs().max()).item()
        assert d1 > 1e-2 and d2 > 1e-2, f"{family}: the LoRAs barely change the output ({d1}, {d2})"
        io = {k: v.contiguous() for k, v in inputs.items()}
        io.update(sample=sample.contiguous(), sample_one=one.contiguous(), sample_two=two.contiguous())
        save_file(io, str(out / "io.safetensors"), metadata={"scale_a": str(SCALE_A), "scale_b": str(SCALE_B)})
        size = sum(p.stat().st_size for p in out.iterdir())
        total += size
        print(f"{family}: {len(lora_a)} modules; output change lora_a {d1:.3f}, + lora_b {d2:.3f}; {size} bytes")
    assert total < 1_000_000, total


if __name__ == "__main__":
    sys.exit(main())
