#!/usr/bin/env bash
# Weight upload speed on a random-weights checkpoint shaped like Wan2.1-T2V-1.3B's transformer
# (its config with fewer blocks: LAYERS=8 is 0.8 GB in bf16, 30 is the whole 2.8 GB), stored in
# STORED (bf16), uploaded as the graph dtype DTYPE (bf16: the mapped path; f32: the converting
# one). Prints a plain read of the file from the page cache, the old one-weight-at-a-time upload
# and the fast upload, in GB/s with ratios. The weights are written once and deleted after.
# LORA_RANK=r: also a random rank-r LoRA on every attention and FFN linear of the blocks (10 per
# block, as a full fine-tune LoRA has; written with python3's numpy + safetensors) is passed with
# `--lora`: the fast upload is then timed with the merge and without it, in the same run.
#   scripts/bench_upload.sh [LAYERS] [STORED] [DTYPE] [extra vidlower bench flags, e.g. --plugin cuda]
set -euo pipefail
LAYERS=${1:-8}; STORED=${2:-bf16}; DTYPE=${3:-$STORED}; shift $(( $# < 3 ? $# : 3 ))
VIDLOWER=${VIDLOWER:-vidlower}
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
mkdir -p "$dir/transformer"
echo '{"_class_name": "WanPipeline", "_diffusers_version": "0.42.1"}' > "$dir/model_index.json"
cat > "$dir/transformer/config.json" <<JSON
{"_class_name": "WanTransformer3DModel", "patch_size": [1, 2, 2], "num_attention_heads": 12,
 "attention_head_dim": 128, "in_channels": 16, "out_channels": 16, "text_dim": 4096, "freq_dim": 256,
 "ffn_dim": 8960, "num_layers": $LAYERS, "cross_attn_norm": true, "qk_norm": "rms_norm_across_heads",
 "eps": 1e-06, "image_dim": null, "added_kv_proj_dim": null, "rope_max_seq_len": 1024}
JSON
# The sizes only shape the graph the weight list comes from; weights do not depend on them.
if [ -n "${LORA_RANK:-}" ]; then
  python3 - "$dir/lora.safetensors" "$LAYERS" "$LORA_RANK" <<'PY'
import sys
import numpy as np
from safetensors.numpy import save_file
path, layers, r = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
shapes = {f"attn{a}.{m}": (1536, 1536) for a in (1, 2) for m in ("to_q", "to_k", "to_v", "to_out.0")}
shapes.update({"ffn.net.0.proj": (8960, 1536), "ffn.net.2": (1536, 8960)})
rng = np.random.default_rng(0)
tensors = {}
for i in range(layers):
    for m, (out, inp) in shapes.items():
        key = f"transformer.blocks.{i}.{m}"
        tensors[f"{key}.lora_A.weight"] = rng.standard_normal((r, inp), dtype=np.float32) * 0.01
        tensors[f"{key}.lora_B.weight"] = rng.standard_normal((out, r), dtype=np.float32) * 0.01
save_file(tensors, path)
PY
  set -- --lora "$dir/lora.safetensors" "$@"
fi
"$VIDLOWER" bench --upload --model-dir "$dir" --component transformer --random-weights "$STORED" \
  --dtype "$DTYPE" --height 64 --width 64 --frames 5 "$@"
