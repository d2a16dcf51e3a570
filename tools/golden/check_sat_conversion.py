"""diffusers loads what `vidlower convert sat` writes, and it computes what the original does.

Keep the converted folders of the SAT round-trip test, then load them with diffusers and run them
next to the golden CogVideoX-2b model they were made from (transformer forward on the golden
inputs, VAE decode of the golden latents); prints the largest differences (0 expected: the
conversion moves tensors bit for bit, and 2b's sincos table depends on the actual size only).

    VIDLOWER_KEEP_SAT_CONVERSION=/tmp/sat_converted cargo test --features mlir --test convert_sat sat_2b
    tools/golden/.venv/bin/python tools/golden/check_sat_conversion.py /tmp/sat_converted
"""

import sys
from pathlib import Path

import torch
from diffusers import AutoencoderKLCogVideoX, CogVideoXTransformer3DModel
from safetensors.torch import load_file

GOLDEN = Path(__file__).resolve().parents[2] / "tests/golden/cogvideox/cogvideox-2b"


def main():
    converted = Path(sys.argv[1])
    ours = CogVideoXTransformer3DModel.from_pretrained(converted / "transformer")
    original = CogVideoXTransformer3DModel.from_pretrained(GOLDEN / "model/transformer")
    io = load_file(GOLDEN / "transformer_io.safetensors")
    args = dict(hidden_states=io["hidden_states"], encoder_hidden_states=io["encoder_hidden_states"],
                timestep=io["timestep"], return_dict=False)
    with torch.no_grad():
        a, b = ours(**args)[0], original(**args)[0]
    print(f"transformer: converted vs original max |diff| {(a - b).abs().max().item()}")
    vae, vae_original = (AutoencoderKLCogVideoX.from_pretrained(p) for p in (converted / "vae", GOLDEN / "model/vae"))
    z = load_file(GOLDEN / "vae_decode_io.safetensors")["z_t3"]
    with torch.no_grad():
        da, db = vae.decode(z).sample, vae_original.decode(z).sample
    print(f"vae decode: converted vs original max |diff| {(da - db).abs().max().item()} {tuple(da.shape)}")
    if (a - b).abs().max().item() != 0 or (da - db).abs().max().item() != 0:
        sys.exit("the converted model differs from the original")


if __name__ == "__main__":
    main()
