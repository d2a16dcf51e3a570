#!/usr/bin/env python3
"""Golden files for vidlower's tiled Wan VAE decode: diffusers 0.42.1's `AutoencoderKLWan.tiled_decode`
(`enable_tiling` with small tiles) of the tiny golden VAE in tests/golden/wan/model/vae, on CPU in float32.

Each case decodes random `z` [1, 16, T, h, w] (what the pipeline passes to `vae.decode`) with sample tiles
small enough that the tiny latent splits into several overlapping tiles with smaller edge tiles, and checks
that the tiled result really differs from the untiled decode (so a test comparing against it would catch
an untiled path). Writes tests/golden/wan/vae_tiled_decode_io.safetensors and vae_tiled_decode.json.

Usage (from the repository root, after make_wan_goldens.py --stage model):
    tools/golden/.venv/bin/python tools/golden/make_wan_tiled_vae_goldens.py
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import make_wan_goldens as g  # noqa: E402  (also fixes threads, determinism and the default dtype)
import torch  # noqa: E402
from diffusers import AutoencoderKLWan  # noqa: E402

GENERATOR = "tools/golden/make_wan_tiled_vae_goldens.py"
SEED = 2102

# name: latent shape, sample tile (height, width), sample stride (height, width).
CASES = {
    # 6 x 8 latents, 4 x 4 latent tiles every 3: rows 4, 3 and columns 4, 4, 2 (edge tiles on both
    # axes), 8 pixels blended.
    "grid": ((1, 16, 2, 6, 8), (32, 32), (24, 24)),
    # Height equal to one tile (tiled only because of the width), yet a second row of height 1 starts
    # at the stride; non-square tiles, 24-pixel horizontal blend cut to the 8-pixel last column.
    "wide": ((1, 16, 2, 4, 9), (32, 40), (24, 16)),
}


def tile_starts(extent, stride):
    return list(range(0, extent, stride))


def main():
    vae = AutoencoderKLWan.from_pretrained(g.MODEL_DIR / "vae").eval().float()
    ratio = vae.spatial_compression_ratio
    tensors, summary = {}, {"generator": GENERATOR, "model": "tests/golden/wan/model/vae", "cases": {}}
    for i, (name, (shape, tile, stride)) in enumerate(CASES.items()):
        z = g.randn(shape, SEED + i)
        with torch.no_grad():
            vae.enable_tiling(tile_sample_min_height=tile[0], tile_sample_min_width=tile[1],
                              tile_sample_stride_height=stride[0], tile_sample_stride_width=stride[1])
            tiled = vae.decode(z).sample
            vae.disable_tiling()
            untiled = vae.decode(z).sample
        assert tiled.shape == untiled.shape, (tiled.shape, untiled.shape)
        g.check_nontrivial(f"sample_{name}", tiled)
        diff = float((tiled - untiled).abs().max())
        assert diff > 1e-2, f"{name}: the tiled decode equals the untiled one (max diff {diff})"
        rows, cols = tile_starts(shape[3], stride[0] // ratio), tile_starts(shape[4], stride[1] // ratio)
        summary["cases"][name] = {
            "z_seed": SEED + i, "latent_shape": list(shape), "sample_shape": list(tiled.shape),
            "tile_sample_min": list(tile), "tile_sample_stride": list(stride),
            "latent_tile_rows": rows, "latent_tile_cols": cols, "tiles": len(rows) * len(cols),
            "max_abs_diff_vs_untiled": diff,
            "fraction_clamped": float((tiled.abs() >= 1.0).double().mean()),
        }
        tensors[f"z_{name}"], tensors[f"sample_{name}"] = z, tiled
    path = g.OUT / "vae_tiled_decode_io.safetensors"
    summary["tensors"] = g.save_tensors(path, tensors, meta={"generator": GENERATOR})
    g.write_json(g.OUT / "vae_tiled_decode.json", summary)
    size = path.stat().st_size
    assert size < 1_000_000, size
    for name, c in summary["cases"].items():
        print(name, c["sample_shape"], c["tiles"], "tiles, max |tiled - untiled|", c["max_abs_diff_vs_untiled"],
              "clamped", c["fraction_clamped"])
    print(f"{path.relative_to(g.REPO)}: {size} bytes")


if __name__ == "__main__":
    sys.exit(main())
