#!/usr/bin/env bash
# Peak memory of stage 3 (the Wan 2.1 VAE decode: real config, base_dim 96, z_dim 16, random
# weights) on the CPU plugin, untiled and with --vae-tiling (diffusers' 256/192 tiles).
#
#   scripts/measure_vae_tiling_memory.sh [LATENT_FRAMES=2] [HEIGHT=480] [WIDTH=832] [MODES="untiled tiled"]
#
# The model directory is the tiny golden pipeline (tests/golden/wan/model) with its vae/ replaced
# by diffusers' default AutoencoderKLWan (the Wan 2.1 VAE config) at its random init, made once
# with tools/golden/.venv. The latents are randn [1, 16, T, H/8, W/8]. Each mode runs
# `vidlower stage3` under /usr/bin/time -v with --no-cache (compile included, as a first run)
# and prints the stage's summary and the process's peak RSS; the RSS is also sampled every 5 s
# into $WORK/rss_<mode>_<T>x<H>x<W>.log (unix time, kB) to show when the peak is reached.
# Per-step buffers do not depend on T; the decoded frames (f32, [1, 3, 1 + 4 (T - 1), H, W]) grow
# linearly with it. TIMEOUT=<seconds> stops a run early (GNU time still reports its peak so far).
#
# Measured (2-core dev machine, CPU plugin, other jobs running; T=2 -> 5 frames at 480x832, f32):
#   untiled: peak RSS 12,015,060 kB (11.5 GiB); decode 1126 s
#   tiled (15 tiles, 4 shapes, 256/192): peak RSS 3,745,148 kB (3.6 GiB); decode 1040 s
# 81 frames add the frames buffer, 3 x 480 x 832 x 4 B = 4.8 MB per frame (388 MB at 81): untiled
# held once while stepping (~12.4 GB), tiled as the frame plus two rows of 5 tiles of
# [3, 81, 256, 256] f32 (388 + 637 MB, ~4.8 GB): estimates, not runs.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
T=${1:-2}
H=${2:-480}
W=${3:-832}
MODES=${4:-untiled tiled}
WORK=${VIDLOWER_MEASURE_DIR:-/tmp/vidlower_vae_memory}
PY=${PYTHON:-$ROOT/tools/golden/.venv/bin/python}
VIDLOWER=${VIDLOWER:-$ROOT/target/debug/vidlower}
[ -x "$VIDLOWER" ] || { echo "no vidlower binary at $VIDLOWER (cargo build, or set VIDLOWER)" >&2; exit 1; }

mkdir -p "$WORK"
"$PY" - "$ROOT" "$WORK" "$T" "$H" "$W" <<'EOF'
import json, shutil, sys
from pathlib import Path
import torch
from safetensors.torch import save_file
from diffusers import AutoencoderKLWan

root, work, t, h, w = Path(sys.argv[1]), Path(sys.argv[2]), *map(int, sys.argv[3:6])
model = work / "model"
if not (model / "vae" / "diffusion_pytorch_model.safetensors").is_file():
    shutil.rmtree(model, ignore_errors=True)
    shutil.copytree(root / "tests/golden/wan/model", model)
    shutil.rmtree(model / "vae")
    torch.manual_seed(0)
    AutoencoderKLWan().save_pretrained(model / "vae")  # diffusers' defaults: the Wan 2.1 VAE
inp = work / f"in_{t}x{h}x{w}"
inp.mkdir(exist_ok=True)
g = torch.Generator().manual_seed(0)
latents = torch.randn(1, 16, t, h // 8, w // 8, generator=g)
save_file({"latents": latents}, str(inp / "stage2_latents.safetensors"))
cfg = {"prompt": "memory measurement", "negative_prompt": "", "model_id": str(model), "max_sequence_length": 16,
       "height": h, "width": w, "frames": 1 + 4 * (t - 1)}
(inp / "generation_config.json").write_text(json.dumps(cfg, indent=2))
print(f"latents {list(latents.shape)} in {inp}")
EOF

IN="$WORK/in_${T}x${H}x${W}"
for mode in $MODES; do
    flags=()
    [ "$mode" = tiled ] && flags=(--vae-tiling)
    log="$WORK/stage3_${mode}_${T}x${H}x${W}.log"
    limit=()
    [ -n "${TIMEOUT:-}" ] && limit=(timeout -s INT "$TIMEOUT")
    "${limit[@]}" /usr/bin/time -v "$VIDLOWER" stage3 --model-dir "$WORK/model" --input-dir "$IN" --no-cache "${flags[@]}" >"$log" 2>&1 &
    run=$!
    rss="$WORK/rss_${mode}_${T}x${H}x${W}.log"
    : >"$rss"
    while kill -0 "$run" 2>/dev/null; do
        pid=$(pgrep -n -f "vidlower stage3 --model-dir $WORK/model --input-dir $IN" || true)
        [ -n "$pid" ] && echo "$(date +%s) $(ps -o rss= -p "$pid" || true)" >>"$rss"
        sleep 5
    done
    status=0
    wait "$run" || status=$?
    echo "== $mode, $T latent frames at ${H}x${W} (exit status $status; RSS samples in $rss)"
    grep -E "^stage 3: vae" "$log"
    grep -E "Maximum resident set size|Elapsed \(wall clock\)" "$log"
done
