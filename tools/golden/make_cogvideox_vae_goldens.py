#!/usr/bin/env python3
"""Golden files for vidlower's CogVideoX VAE decoder: diffusers 0.42.1's `AutoencoderKLCogVideoX.decode`
(untiled, and tiled with small tiles) of a tiny random VAE, on CPU in float32.

The tiny VAE has the real architecture (4 up blocks, so 8x spatial and 4x temporal compression) at toy
width: latent_channels 8, block_out_channels (8, 8, 8, 16) (the decoder's second up block narrows 16 -> 8,
so a `conv_shortcut` is exercised), layers_per_block 1, norm_num_groups 4; every parameter is re-drawn
(make_wan_goldens.rerandomize). The three checkpoints' VAEs differ only in `scaling_factor` (2b 1.15258426,
5b and 1.5-5B 0.7) and `invert_scale_latents` (1.5: true; read only by image-to-video's encode), neither
of which the decoder reads, so one set of weights serves all three: it is written to
tests/golden/cogvideox/cogvideox-2b/model/vae/, and the 5b and 1.5-5b `model/vae/` folders hold their own
config.json plus a relative symlink to that weights file.

Writes tests/golden/cogvideox/cogvideox-2b/vae_decode_io.safetensors + vae_decode.json:
  `latents_t{T}` [1, T, 8, 2, 3] (the transformer's layout), `z_t{T}` = latents.permute(0, 2, 1, 3, 4) /
  scaling_factor (what the pipeline passes to vae.decode), `sample_t{T}` = vae.decode(z).sample for T = 1..5
  (frame batches [1], [2], [3], [2, 2], [3, 2]: 1, 8, 9, 16, 17 frames);
  `z_tiled` [1, 8, 5, 7, 5] and `sample_tiled` = the tiled decode with enable_tiling(48, 40, 1/6, 0.2): 2 x 2
  tiles of latent shapes 6x5, 6x1, 2x5, 2x1, each decoded as frame batches [3, 2] from fresh caches.
  (1/6, not 0.1667: with 0.1667, int(6 * (1 - 0.1667)) = 4 latent rows between tiles but each tile keeps
  48 - int(48 * 0.1667) = 40 pixels, so diffusers assembles a video taller than the latents make; the script
  checks that, and vidlower refuses such knobs.)

Usage (from the repository root):
    tools/golden/.venv/bin/python tools/golden/make_cogvideox_vae_goldens.py
"""

import os
import shutil
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import make_wan_goldens as g  # noqa: E402  (fixes threads, determinism and the default dtype)
import torch  # noqa: E402
from diffusers import AutoencoderKLCogVideoX  # noqa: E402

GENERATOR = "tools/golden/make_cogvideox_vae_goldens.py"
g.GENERATOR = GENERATOR  # save_tensors records it
ROOT = g.REPO / "tests" / "golden" / "cogvideox"
SEED_VAE = 3301
SEED_Z = 3400

TINY = dict(latent_channels=8, block_out_channels=(8, 8, 8, 16), layers_per_block=1, norm_num_groups=4)
# The real configs' fields besides the architecture (diffusers' defaults are CogVideoX-2b's).
VARIANTS = {
    "cogvideox-2b": dict(scaling_factor=1.15258426),
    "cogvideox-5b": dict(scaling_factor=0.7),
    "cogvideox1.5-5b": dict(scaling_factor=0.7, invert_scale_latents=True),
}
WEIGHTS = "diffusion_pytorch_model.safetensors"

LATENT_HW = (2, 3)
FRAMES = (1, 2, 3, 4, 5)
TILED_SHAPE = (1, 8, 5, 7, 5)
TILING = dict(tile_sample_min_height=48, tile_sample_min_width=40, tile_overlap_factor_height=1 / 6,
              tile_overlap_factor_width=0.2)


def build_vae(variant):
    torch.manual_seed(SEED_VAE)
    vae = AutoencoderKLCogVideoX(**TINY, **VARIANTS[variant]).eval().float()
    assert vae.post_quant_conv is None
    # Small conv_out gain: the unclamped video stays O(1).
    g.rerandomize(vae, SEED_VAE, weight_gain=1.0, bias_std=0.05, norm_std=0.1, overrides={"decoder.conv_out": 0.8})
    return vae


def save_vaes():
    base = None
    for variant in VARIANTS:
        out = ROOT / variant / "model" / "vae"
        if out.exists():
            shutil.rmtree(out)
        vae = build_vae(variant)
        vae.save_pretrained(out, safe_serialization=True)
        if base is None:
            base = out
        else:
            (out / WEIGHTS).unlink()
            os.symlink(os.path.relpath(base / WEIGHTS, out), out / WEIGHTS)
            loaded = AutoencoderKLCogVideoX.from_pretrained(out)
            assert loaded.config.scaling_factor == VARIANTS[variant]["scaling_factor"]
            for (k, a), (_, b) in zip(sorted(loaded.state_dict().items()), sorted(vae.state_dict().items())):
                assert torch.equal(a, b), k
    return AutoencoderKLCogVideoX.from_pretrained(base).eval().float()


def bands(starts_latent, blend, ratio, extent):
    return sorted({p for s in starts_latent[1:] for p in range(s * ratio, s * ratio + blend) if p < extent})


def main():
    vae = save_vaes()
    sf = vae.config.scaling_factor
    tensors, summary = {}, {"generator": GENERATOR, "model": "tests/golden/cogvideox/cogvideox-2b/model/vae",
                            "config": {**TINY, "block_out_channels": list(TINY["block_out_channels"])}, "untiled": {}}
    with torch.no_grad():
        for i, t in enumerate(FRAMES):
            latents = g.randn((1, t, 8, *LATENT_HW), SEED_Z + i)
            z = latents.permute(0, 2, 1, 3, 4) / sf
            sample = vae.decode(z).sample
            g.check_nontrivial(f"sample_t{t}", sample)
            tensors[f"latents_t{t}"], tensors[f"z_t{t}"], tensors[f"sample_t{t}"] = latents, z.contiguous(), sample
            summary["untiled"][f"t{t}"] = {"z_seed": SEED_Z + i, "sample_shape": list(sample.shape)}

        # Tiled: diffusers' own geometry, re-derived to check the tiles really split both ways.
        z = g.randn(TILED_SHAPE, SEED_Z + 100)
        untiled = vae.decode(z).sample
        vae.enable_tiling(**TILING)
        tiled = vae.decode(z).sample
        assert tiled.shape == untiled.shape, (tiled.shape, untiled.shape)
        th, tw = vae.tile_latent_min_height, vae.tile_latent_min_width
        sh = int(th * (1 - vae.tile_overlap_factor_height))
        sw = int(tw * (1 - vae.tile_overlap_factor_width))
        bh = int(vae.tile_sample_min_height * vae.tile_overlap_factor_height)
        bw = int(vae.tile_sample_min_width * vae.tile_overlap_factor_width)
        rows, cols = list(range(0, TILED_SHAPE[3], sh)), list(range(0, TILED_SHAPE[4], sw))
        assert len(rows) >= 2 and len(cols) >= 2, (rows, cols)
        ratio = 8
        rb, cb = bands(rows, bh, ratio, tiled.shape[3]), bands(cols, bw, ratio, tiled.shape[4])
        in_rows = float((tiled - untiled)[:, :, :, rb, :].abs().max())
        in_cols = float((tiled - untiled)[:, :, :, :, cb].abs().max())
        assert in_rows > 1e-2 and in_cols > 1e-2, (in_rows, in_cols)
        g.check_nontrivial("sample_tiled", tiled)
        tensors["z_tiled"], tensors["sample_tiled"] = z, tiled
        summary["tiled"] = {
            "z_seed": SEED_Z + 100, "latent_shape": list(TILED_SHAPE), "sample_shape": list(tiled.shape),
            "enable_tiling": TILING, "latent_tile": [th, tw], "latent_stride": [sh, sw], "blend": [bh, bw],
            "latent_tile_rows": rows, "latent_tile_cols": cols, "tiles": len(rows) * len(cols),
            "max_abs_diff_vs_untiled_in_row_bands": in_rows, "max_abs_diff_vs_untiled_in_col_bands": in_cols,
            "max_abs_diff_vs_untiled": float((tiled - untiled).abs().max()),
        }

        # The overlap factor the task first suggested: diffusers' tiles then overlap the frame.
        vae.enable_tiling(tile_overlap_factor_height=0.1667)
        odd = vae.decode(z).sample
        assert odd.shape[3] != untiled.shape[3], odd.shape
        summary["factor_0_1667_sample_shape"] = list(odd.shape)
        vae.disable_tiling()

    out = ROOT / "cogvideox-2b"
    path = out / "vae_decode_io.safetensors"
    summary["tensors"] = g.save_tensors(path, tensors, meta={"generator": GENERATOR})
    g.write_json(out / "vae_decode.json", summary)
    sizes = {p.relative_to(g.REPO).as_posix(): p.stat().st_size for p in ROOT.rglob("*")
             if p.is_file() and not p.is_symlink() and ("vae" in p.name or "/vae/" in p.as_posix())}
    total = sum(sizes.values())
    for p, s in sorted(sizes.items()):
        print(f"{p}: {s} bytes")
    print(f"total {total} bytes; tiled {summary['tiled']['tiles']} tiles, bands diff {in_rows:.3e} / {in_cols:.3e}; "
          f"0.1667 gives {summary['factor_0_1667_sample_shape']} for {list(untiled.shape)}")
    assert total < 1_500_000, total


if __name__ == "__main__":
    sys.exit(main())
