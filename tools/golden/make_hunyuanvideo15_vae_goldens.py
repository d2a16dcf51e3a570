#!/usr/bin/env python3
"""Golden files for vidlower's HunyuanVideo-1.5 VAE decoder: diffusers 0.42.1's
`AutoencoderKLHunyuanVideo15.decode` (untiled, and tiled with small tiles) of a tiny random VAE, on CPU in
float32, with per-block intermediates.

The tiny VAE keeps the real architecture (5 blocks: 16x spatial compression, the first two decoder
upsamplers also doubling time, so 4x temporal; mid-block causal attention; `upsample_match_channel`) at toy
width: latent_channels 8 (the tiny transformer's output), block_out_channels (4, 4, 8, 8, 16) (so the
decoder's `conv_in` shortcut repeats each latent channel 2x and the upsamplers' shortcuts repeat 2x, 4x and
8x), layers_per_block 1 (2 resnets per up block). Every parameter is re-drawn (make_wan_goldens.rerandomize).
The whole VAE (encoder too, so `from_pretrained` loads it) is written to
tests/golden/hunyuanvideo15/hunyuanvideo1.5-480p-t2v/model/vae/.

diffusers decodes the whole latent video in one decoder call (no frame batches, no caches), so each case is
one `vae.decode(z)`. Writes tests/golden/hunyuanvideo15/vae/vae_decode_io.safetensors + vae_decode.json:
  `latents_{name}` (the transformer's output layout [B, C, T, h, w]), `z_{name}` = latents / scaling_factor
  (what the pipeline passes to vae.decode; no shift), `sample_{name}` = vae.decode(z).sample, for
  t3 [1, 8, 3, 4, 6] (9 frames 64x96), t2 [1, 8, 2, 2, 3] (5 frames 32x48), t1 [1, 8, 1, 2, 2] (1 frame);
  `t2.<block>`: t2's decoder intermediates (`decoder.conv_in`: conv_in(z) + the repeated z, what the mid
  block takes; `decoder.mid_block`; `decoder.up_blocks.{0..3}`), so a failure points at a block;
  `z_tiled` [1, 8, 2, 3, 3] and `sample_tiled`: enable_tiling(32, 32, 2, 2, 0.5) (2x2 latent tiles every
  latent pixel, 16 pixels blended): 3x3 tiles of latent shapes 2x2, 2x1, 1x2, 1x1.

Usage (from the repository root):
    tools/golden/.venv/bin/python tools/golden/make_hunyuanvideo15_vae_goldens.py
"""

import shutil
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import make_wan_goldens as g  # noqa: E402  (fixes threads, determinism and the default dtype)
import torch  # noqa: E402
from diffusers import AutoencoderKLHunyuanVideo15  # noqa: E402

GENERATOR = "tools/golden/make_hunyuanvideo15_vae_goldens.py"
g.GENERATOR = GENERATOR  # save_tensors records it
ROOT = g.REPO / "tests" / "golden" / "hunyuanvideo15"
MODEL = ROOT / "hunyuanvideo1.5-480p-t2v" / "model" / "vae"
IO = ROOT / "vae"
SEED_VAE = 5101
SEED_Z = 5200

# The real 480p t2v VAE is __init__'s defaults: block_out_channels (128, 256, 512, 1024, 1024), latent 32,
# layers_per_block 2, 16x / 4x compression, scaling_factor 1.03682.
TINY = dict(latent_channels=8, block_out_channels=(4, 4, 8, 8, 16), layers_per_block=1)
CASES = {"t3": (1, 8, 3, 4, 6), "t2": (1, 8, 2, 2, 3), "t1": (1, 8, 1, 2, 2)}
PROBED = "t2"
TILED_SHAPE = (1, 8, 2, 3, 3)
TILING = dict(tile_sample_min_height=32, tile_sample_min_width=32, tile_latent_min_height=2,
              tile_latent_min_width=2, tile_overlap_factor=0.5)


def build_vae():
    torch.manual_seed(SEED_VAE)
    vae = AutoencoderKLHunyuanVideo15(**TINY).eval().float()
    # Small conv_out gain keeps the (unclamped) video O(1).
    g.rerandomize(vae, SEED_VAE, weight_gain=1.0, bias_std=0.05, norm_std=0.1, overrides={"decoder.conv_out": 0.8})
    if MODEL.exists():
        shutil.rmtree(MODEL)
    vae.save_pretrained(MODEL, safe_serialization=True)
    return AutoencoderKLHunyuanVideo15.from_pretrained(MODEL).eval().float()


def probe(vae, z):
    """vae.decode(z) with the decoder's block outputs captured."""
    seen, hooks = {}, []
    dec = vae.decoder
    hooks.append(dec.mid_block.register_forward_pre_hook(lambda m, a: seen.__setitem__("decoder.conv_in", a[0].clone())))
    hooks.append(dec.mid_block.register_forward_hook(lambda m, a, o: seen.__setitem__("decoder.mid_block", o.clone())))
    for i, block in enumerate(dec.up_blocks[:-1]):
        hooks.append(block.register_forward_hook(
            lambda m, a, o, i=i: seen.__setitem__(f"decoder.up_blocks.{i}", o.clone())))
    sample = vae.decode(z).sample
    for h in hooks:
        h.remove()
    return sample, seen


def main():
    vae = build_vae()
    sf = vae.config.scaling_factor
    tensors = {}
    summary = {"generator": GENERATOR, "model": MODEL.relative_to(g.REPO).as_posix(),
               "config": {**TINY, "block_out_channels": list(TINY["block_out_channels"])}, "untiled": {}}
    with torch.no_grad():
        for i, (name, shape) in enumerate(CASES.items()):
            latents = g.randn(shape, SEED_Z + i)
            z = latents / sf
            sample, blocks = probe(vae, z)
            t = shape[2]
            assert sample.shape == (1, 3, 1 + 4 * (t - 1), 16 * shape[3], 16 * shape[4]), sample.shape
            g.check_nontrivial(f"sample_{name}", sample)
            tensors[f"latents_{name}"], tensors[f"z_{name}"], tensors[f"sample_{name}"] = latents, z, sample
            summary["untiled"][name] = {"z_seed": SEED_Z + i, "sample_shape": list(sample.shape)}
            if name == PROBED:
                for k, v in blocks.items():
                    g.check_nontrivial(f"{name}.{k}", v)
                    tensors[f"{name}.{k}"] = v
                summary["untiled"][name]["blocks"] = {k: list(v.shape) for k, v in blocks.items()}

        # Tiled: diffusers' own geometry, re-derived to check the tiles really split both ways.
        z = g.randn(TILED_SHAPE, SEED_Z + 100)
        untiled = vae.decode(z).sample
        vae.enable_tiling(**TILING)
        tiled = vae.decode(z).sample
        vae.disable_tiling()
        assert tiled.shape == untiled.shape, (tiled.shape, untiled.shape)
        th, tw = vae.tile_latent_min_height, vae.tile_latent_min_width
        sh, sw = int(th * (1 - vae.tile_overlap_factor)), int(tw * (1 - vae.tile_overlap_factor))
        bh, bw = int(vae.tile_sample_min_height * vae.tile_overlap_factor), int(vae.tile_sample_min_width * vae.tile_overlap_factor)
        rows, cols = list(range(0, TILED_SHAPE[3], sh)), list(range(0, TILED_SHAPE[4], sw))
        assert len(rows) >= 2 and len(cols) >= 2, (rows, cols)
        diff = float((tiled - untiled).abs().max())
        assert diff > 1e-2, f"the tiled decode equals the untiled one (max diff {diff})"
        g.check_nontrivial("sample_tiled", tiled)
        tensors["z_tiled"], tensors["sample_tiled"] = z, tiled
        summary["tiled"] = {
            "z_seed": SEED_Z + 100, "latent_shape": list(TILED_SHAPE), "sample_shape": list(tiled.shape),
            "enable_tiling": TILING, "latent_tile": [th, tw], "latent_stride": [sh, sw], "blend": [bh, bw],
            "keep": [vae.tile_sample_min_height - bh, vae.tile_sample_min_width - bw],
            "latent_tile_rows": rows, "latent_tile_cols": cols, "tiles": len(rows) * len(cols),
            "max_abs_diff_vs_untiled": diff,
        }

    IO.mkdir(parents=True, exist_ok=True)
    summary["tensors"] = g.save_tensors(IO / "vae_decode_io.safetensors", tensors, meta={"generator": GENERATOR})
    g.write_json(IO / "vae_decode.json", summary)
    sizes = {p.relative_to(g.REPO).as_posix(): p.stat().st_size for p in [*MODEL.iterdir(), *IO.iterdir()]}
    for p, s in sorted(sizes.items()):
        print(f"{p}: {s} bytes")
    print(f"total {sum(sizes.values())} bytes; tiled {summary['tiled']['tiles']} tiles, max diff vs untiled {diff:.3e}")
    weights = MODEL / "diffusion_pytorch_model.safetensors"
    assert weights.stat().st_size < 1_000_000, weights.stat().st_size


if __name__ == "__main__":
    sys.exit(main())
