#!/usr/bin/env python3
"""Golden files for vidlower's Wan 2.1 text-to-video re-implementation.

Builds a tiny random diffusers-format WanPipeline (tokenizer, UMT5 text encoder, WanTransformer3DModel,
AutoencoderKLWan, UniPCMultistepScheduler), saves it under tests/golden/wan/model/, and records the
inputs and outputs of each component, of the UniPC scheduler and of a 3-step pipeline run, all on CPU in
float32 with diffusers 0.42.1 / transformers 5.23.0. See tools/golden/README.md for the file contents.

Usage (from the repository root):
    tools/golden/.venv/bin/python tools/golden/make_wan_goldens.py [--stage model|scheduler|pipeline|all]

`model` must have been run once before `scheduler` / `pipeline` (they load tests/golden/wan/model/).
Everything is seeded; a re-run on the same library versions reproduces the files bit for bit.
"""

import argparse
import json
import math
import os
import shutil
import sys
from pathlib import Path

os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("DIFFUSERS_VERBOSITY", "error")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")

import numpy as np  # noqa: E402
import torch  # noqa: E402
from safetensors.torch import save_file  # noqa: E402

import diffusers  # noqa: E402
import transformers  # noqa: E402
from diffusers import AutoencoderKLWan, UniPCMultistepScheduler, WanPipeline, WanTransformer3DModel  # noqa: E402
from diffusers.pipelines.wan.pipeline_wan import prompt_clean  # noqa: E402
from transformers import AutoTokenizer, PreTrainedTokenizerFast, UMT5Config, UMT5EncoderModel  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
OUT = REPO / "tests" / "golden" / "wan"
MODEL_DIR = OUT / "model"
GENERATOR = "tools/golden/make_wan_goldens.py"

torch.set_num_threads(1)  # fixed reduction order: bit-reproducible files
torch.use_deterministic_algorithms(True)
torch.set_default_dtype(torch.float32)

# ----------------------------------------------------------------------------------------------------------
# Tiny configs
# ----------------------------------------------------------------------------------------------------------
TRANSFORMER_CONFIG = dict(
    patch_size=(1, 2, 2),
    num_attention_heads=2,
    attention_head_dim=12,
    in_channels=16,
    out_channels=16,
    text_dim=32,
    freq_dim=32,
    ffn_dim=48,
    num_layers=2,
    cross_attn_norm=True,
    qk_norm="rms_norm_across_heads",
    eps=1e-6,
    rope_max_seq_len=32,
)
VAE_CONFIG = dict(
    base_dim=8,
    z_dim=16,
    dim_mult=[1, 2, 4, 4],
    num_res_blocks=1,
    attn_scales=[],
    temperal_downsample=[False, True, True],
)
SCHEDULER_CONFIG = dict(
    prediction_type="flow_prediction",
    use_flow_sigmas=True,
    num_train_timesteps=1000,
    flow_shift=3.0,
)
TEXT_ENCODER_CONFIG = dict(
    d_model=32,
    d_kv=8,
    num_heads=4,
    d_ff=64,
    num_layers=2,
    relative_attention_num_buckets=32,
    relative_attention_max_distance=128,
    feed_forward_proj="gated-gelu",
    dropout_rate=0.0,
)
TOKENIZER_VOCAB_SIZE = 400

SEED_TRANSFORMER = 1001
SEED_VAE = 1002
SEED_TEXT_ENCODER = 1003
SEED_IO_TRANSFORMER = 2001
SEED_IO_VAE = 2002
SEED_SCHEDULER = 3001
SEED_PIPELINE = 4001

# Prompt-like corpus for the tiny Unigram tokenizer.
CORPUS = [
    "A cat walks on the grass in the morning sun, realistic style.",
    "A dog runs along a sandy beach as waves crash on the shore.",
    "A cat and a dog baking a cake together in a kitchen.",
    "The cat is carefully measuring flour, while the dog is stirring the batter with a wooden spoon.",
    "The kitchen is cozy, with sunlight streaming through the window.",
    "A red car drives fast down a wet city street at night, neon lights reflecting on the road.",
    "Aerial view of a green forest with a winding river, cinematic drone shot.",
    "A woman in a blue dress dances slowly in an empty ballroom.",
    "Close-up of a hummingbird drinking nectar from a bright red flower, slow motion.",
    "Two astronauts float inside a space station, Earth visible through the window.",
    "A small boat sails across a calm lake at sunset, golden light on the water.",
    "Snow falls gently on a quiet village street lined with wooden houses.",
    "A chef slices fresh vegetables on a cutting board in a busy restaurant kitchen.",
    "A panda eats bamboo while sitting in a lush green forest.",
    "Time-lapse of clouds moving over a mountain range, dramatic lighting.",
    "An old man plays the violin on a street corner as people walk by.",
    "A child blows soap bubbles in a sunny park, bubbles drifting in the wind.",
    "A horse gallops across an open field, dust rising behind it.",
    "Rain drops fall on a window, the city blurred in the background.",
    "A robot walks through a futuristic city with tall glass towers.",
    "A cup of coffee on a wooden table, steam rising slowly in the morning light.",
    "Waves crash against rocky cliffs under a stormy sky.",
    "A butterfly lands on a purple flower in a summer garden.",
    "A train moves through a snowy mountain pass, smoke trailing behind.",
    "Fireworks explode over a river at night, colors reflected in the water.",
    "A skateboarder performs a jump in an empty skate park, slow motion.",
    "A group of friends laugh around a campfire under the stars.",
    "A jellyfish glows as it drifts through dark blue water.",
    "A street market full of colorful fruit and busy shoppers.",
    "A golden retriever catches a frisbee in a grassy backyard.",
    "Bright tones, overexposed, static, blurred details, subtitles, style, works, paintings, images.",
    "Worst quality, low quality, JPEG compression residue, ugly, incomplete, extra fingers.",
    "Poorly drawn hands, poorly drawn faces, deformed, disfigured, misshapen limbs, fused fingers.",
    "Still picture, messy background, three legs, many people in the background, walking backwards.",
    "A lighthouse stands on a cliff as the sun sets behind the sea.",
    "A barista pours milk into a latte, making a heart shape.",
    "Leaves fall from a tall tree in an autumn park, warm colors everywhere.",
    "A tiger walks slowly through tall grass, watching the camera.",
    "A pianist plays a grand piano on a dimly lit stage.",
    "An eagle soars above a deep canyon, wings spread wide.",
    "A busy crossing in Tokyo at night, people with umbrellas in the rain.",
    "A turtle swims over a coral reef full of bright fish.",
    "A candle flickers on a dark table, shadows dancing on the wall.",
    "A girl reads a book under a large oak tree on a windy day.",
    "A mountain biker rides down a rocky trail, camera following behind.",
    "Hot air balloons rise over green hills in the early morning.",
    "A cat sleeps on a sunny windowsill, its tail moving slightly.",
    "Water flows over smooth stones in a clear mountain stream.",
    "A dancer spins on a rooftop with the city skyline behind her.",
    "A slow pan across a quiet library with tall shelves of old books.",
    "Wow! Is this real? Yes; it is 100% real: a \"quoted\" line & a 'single' one (really).",
    "At 3:45 pm, 2 cats and 7 dogs ran 10 meters -- fast! Then 6, 8 or 9 more joined.",
    "Caf\u00e9 cr\u00e8me and a na\u00efve fa\u00e7ade: a French street scene, Paris in 4K.",
]

# ----------------------------------------------------------------------------------------------------------
# Helpers
# ----------------------------------------------------------------------------------------------------------


def stats(t):
    t = torch.as_tensor(t)
    if t.dtype in (torch.int64, torch.int32, torch.bool):
        return {"shape": list(t.shape), "dtype": str(t.dtype).replace("torch.", ""), "min": int(t.min()),
                "max": int(t.max())}
    tf = t.double()
    return {
        "shape": list(t.shape),
        "dtype": str(t.dtype).replace("torch.", ""),
        "min": float(tf.min()),
        "max": float(tf.max()),
        "mean": float(tf.mean()),
        "std": float(tf.std()) if t.numel() > 1 else 0.0,
        "mean_abs": float(tf.abs().mean()),
    }


def save_tensors(path, tensors, meta=None):
    tensors = {k: v.detach().contiguous().clone() for k, v in tensors.items()}
    # one metadata key: safetensors writes the metadata map in hash order, which would make files differ
    info = {"generator": GENERATOR, "diffusers": diffusers.__version__, "transformers": transformers.__version__,
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
    assert t.abs().max() > 1e-3, f"{name}: (near) zero"


def fan_in(p):
    return int(np.prod(p.shape[1:])) if p.ndim > 1 else p.shape[0]


@torch.no_grad()
def rerandomize(module, seed, *, weight_gain=1.0, bias_std=0.1, norm_std=0.1, table_std=0.2, overrides=None):
    """Replace every parameter with non-degenerate random values.

    norm scales (1-D `*norm*.weight`, VAE `gamma`) -> 1 + N(0, norm_std); biases -> N(0, bias_std);
    `scale_shift_table` -> N(0, table_std); matrices / conv kernels -> N(0, (gain / sqrt(fan_in))^2).
    `overrides`: {substring: gain} for kernels whose name contains the substring.
    """
    g = torch.Generator().manual_seed(seed)
    for name, p in sorted(module.named_parameters(), key=lambda kv: kv[0]):
        r = torch.randn(p.shape, generator=g, dtype=torch.float32)
        leaf = name.rsplit(".", 1)[-1]
        if leaf == "gamma" or ("norm" in name and leaf == "weight" and p.ndim == 1):
            v = 1.0 + norm_std * r
        elif leaf == "bias":
            v = bias_std * r
        elif "scale_shift_table" in name:
            v = table_std * r
        else:
            gain = weight_gain
            for key, gv in (overrides or {}).items():
                if key in name:
                    gain = gv
            v = r * (gain / math.sqrt(fan_in(p)))
        p.copy_(v.to(p.dtype))


# ----------------------------------------------------------------------------------------------------------
# Stage 1: model directory + component IO
# ----------------------------------------------------------------------------------------------------------


def build_tokenizer():
    """A tiny T5-style Unigram tokenizer.

    tokenizers' UnigramTrainer is not deterministic (hash-map order, even single-threaded), so the vocabulary
    is derived here by a deterministic count-based procedure: every character of the normalized corpus, plus
    the most useful recurring substrings of the Metaspace-split words (count * (len - 1), ties by piece; a
    substring is skipped when a one-character extension of it is as frequent),
    each scored log(count / total) like a unigram LM. The result is a standard `Unigram` tokenizer.json.
    """
    from collections import Counter

    from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, processors

    # Like a SentencePiece (T5) normalizer: NMT whitespace/control mapping, NFKC, collapse spaces, strip.
    normalizer = normalizers.Sequence(
        [normalizers.Nmt(), normalizers.NFKC(), normalizers.Replace(Regex(" {2,}"), " "), normalizers.Strip()]
    )
    pre_tokenizer = pre_tokenizers.Metaspace(replacement="\u2581", prepend_scheme="always", split=True)

    words = Counter()
    for line in CORPUS:
        for w, _ in pre_tokenizer.pre_tokenize_str(normalizer.normalize_str(line)):
            words[w] += 1
    chars, subs = Counter(), Counter()
    for w, c in words.items():
        for ch in w:
            chars[ch] += c
        for i in range(len(w)):
            for j in range(i + 2, min(len(w), i + 12) + 1):
                subs[w[i:j]] += c
    specials = ["<pad>", "</s>", "<unk>"]
    n_pieces = TOKENIZER_VOCAB_SIZE - len(specials) - len(chars)
    alphabet = sorted(chars)

    def closed(p, c):  # drop a piece when a one-character extension of it occurs just as often
        return not any(subs.get(p + ch) == c or subs.get(ch + p) == c for ch in alphabet)

    ranked = sorted((kv for kv in subs.items() if kv[1] >= 2 and closed(*kv)),
                    key=lambda kv: (-kv[1] * (len(kv[0]) - 1), kv[0]))
    pieces = dict(ranked[:n_pieces])
    pieces.update(chars)
    total = sum(pieces.values())
    scored = sorted(((p, round(math.log(c / total), 6)) for p, c in pieces.items()), key=lambda ps: (-ps[1], ps[0]))
    vocab = [(t, 0.0) for t in specials] + scored

    tok = Tokenizer(models.Unigram(vocab, unk_id=2, byte_fallback=False))
    tok.normalizer = normalizer
    tok.pre_tokenizer = pre_tokenizer
    tok.decoder = decoders.Metaspace(replacement="\u2581", prepend_scheme="always", split=True)
    tok.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in specials])
    assert tok.token_to_id("<pad>") == 0 and tok.token_to_id("</s>") == 1 and tok.token_to_id("<unk>") == 2
    tok.post_processor = processors.TemplateProcessing(
        single="$A </s>", pair="$A </s> $B </s>", special_tokens=[("</s>", 1)]
    )
    hf = PreTrainedTokenizerFast(
        tokenizer_object=tok, pad_token="<pad>", eos_token="</s>", unk_token="<unk>", model_max_length=512,
        padding_side="right", truncation_side="right",
    )
    return hf


def build_text_encoder(vocab_size):
    cfg = UMT5Config(vocab_size=vocab_size, **TEXT_ENCODER_CONFIG)
    torch.manual_seed(SEED_TEXT_ENCODER)
    te = UMT5EncoderModel(cfg).eval().float()
    # Keep transformers' T5 init (random normal, q scaled by 1/sqrt(d_model*d_kv)), but make the RMS-norm
    # scales non-trivial and the relative position bias large enough to matter.
    g = torch.Generator().manual_seed(SEED_TEXT_ENCODER)
    with torch.no_grad():
        for name, p in sorted(te.named_parameters(), key=lambda kv: kv[0]):
            if "layer_norm" in name:
                p.copy_(1.0 + 0.1 * torch.randn(p.shape, generator=g))
            elif "relative_attention_bias" in name:
                p.copy_(0.5 * torch.randn(p.shape, generator=g))
    return te


def build_transformer():
    torch.manual_seed(SEED_TRANSFORMER)
    tr = WanTransformer3DModel(**TRANSFORMER_CONFIG).eval().float()
    rerandomize(tr, SEED_TRANSFORMER, weight_gain=1.0, bias_std=0.1, norm_std=0.1, table_std=0.2)
    return tr


def build_vae():
    torch.manual_seed(SEED_VAE)
    vae = AutoencoderKLWan(**VAE_CONFIG).eval().float()
    # Gains keep the decoded video mostly inside the final clamp to [-1, 1].
    rerandomize(vae, SEED_VAE, weight_gain=1.0, bias_std=0.05, norm_std=0.1,
                overrides={"decoder.conv_out": 0.8})
    return vae


def tokenize_like_pipeline(tokenizer, text, max_length):
    return tokenizer(text, padding="max_length", max_length=max_length, truncation=True,
                     add_special_tokens=True, return_attention_mask=True)


def stage_model():
    if MODEL_DIR.exists():
        shutil.rmtree(MODEL_DIR)
    OUT.mkdir(parents=True, exist_ok=True)

    tokenizer = build_tokenizer()
    vocab_size = len(tokenizer)
    text_encoder = build_text_encoder(vocab_size)
    transformer = build_transformer()
    vae = build_vae()
    scheduler = UniPCMultistepScheduler(**SCHEDULER_CONFIG)
    pipe = WanPipeline(tokenizer=tokenizer, text_encoder=text_encoder, vae=vae, scheduler=scheduler,
                       transformer=transformer)
    pipe.save_pretrained(str(MODEL_DIR), safe_serialization=True)

    # Everything below runs on the pipeline as loaded back from disk.
    pipe = WanPipeline.from_pretrained(str(MODEL_DIR), dtype=torch.float32)
    pipe.set_progress_bar_config(disable=True)
    for name, a, b in (("transformer", transformer, pipe.transformer), ("vae", vae, pipe.vae),
                       ("text_encoder", text_encoder, pipe.text_encoder)):
        sa, sb = a.state_dict(), b.state_dict()
        for k in sa:
            assert torch.equal(sa[k], sb[k]), f"{name}.{k} changed on save/load"
    tok2 = AutoTokenizer.from_pretrained(str(MODEL_DIR / "tokenizer"))
    assert tok2.pad_token_id == 0 and tok2.eos_token_id == 1 and tok2.unk_token_id == 2
    tokenizer = pipe.tokenizer
    tj = (MODEL_DIR / "tokenizer" / "tokenizer.json").stat().st_size
    assert tj < 50_000, f"tokenizer.json is {tj} bytes"

    summary = {"diffusers": diffusers.__version__, "transformers": transformers.__version__,
               "torch": torch.__version__.split("+")[0], "tokenizer_vocab_size": vocab_size,
               "text_encoder_attn_implementation": pipe.text_encoder.config._attn_implementation,
               "files": {}}

    # ---- tokenizer cases --------------------------------------------------------------------------------
    long_prompt = ("A cat and a dog baking a cake together in a kitchen, the cat is carefully measuring "
                   "flour while the dog is stirring the batter with a wooden spoon.")
    cases_in = [
        ("A cat walks on the grass, realistic style.", 16),
        ("", 16),
        ("Wow!!! A red car... speeding -- fast?! (slow-motion); 50% off: \"quotes\" & 'single'", 48),
        ("Caf\u00e9 cr\u00e8me, na\u00efve fa\u00e7ade \u2014 \u6771\u4eac\u306e\u591c\u666f \U0001F303 "
         "\uff26\uff35\uff2c\uff2c \ufb01ne \u201ccurly\u201d &amp; caf\u00e9", 48),
        ("  Two   spaces\tand\nnewlines  here ", 24),
        (long_prompt, 8),
        (long_prompt, 16),
    ]
    cases = []
    for text, L in cases_in:
        enc = tokenize_like_pipeline(tokenizer, text, L)
        clean = prompt_clean(text)
        enc_c = tokenize_like_pipeline(tokenizer, clean, L)
        cases.append({
            "text": text,
            "max_length": L,
            "input_ids": list(enc["input_ids"]),
            "attention_mask": list(enc["attention_mask"]),
            "tokens": tokenizer.convert_ids_to_tokens(enc["input_ids"]),
            "clean_text": clean,
            "clean_input_ids": list(enc_c["input_ids"]),
            "clean_attention_mask": list(enc_c["attention_mask"]),
        })
    assert any(2 in c["input_ids"] for c in cases), "no <unk> case"
    assert cases[5]["attention_mask"] == [1] * 8 and cases[5]["input_ids"][-1] == 1, "truncation case"
    write_json(OUT / "tokenizer_cases.json", cases)

    # ---- text encoder -----------------------------------------------------------------------------------
    te_prompts = ["A cat walks on the grass.",
                  "A small boat sails across a calm lake at sunset, golden light on the water and snow."]
    enc = tokenizer(te_prompts, padding="max_length", max_length=16, truncation=True, add_special_tokens=True,
                    return_attention_mask=True, return_tensors="pt")
    ids, mask = enc.input_ids, enc.attention_mask
    assert mask[0].sum() < 16 and mask[1].sum() == 16, mask
    with torch.no_grad():
        lhs = pipe.text_encoder(ids, mask).last_hidden_state
    check_nontrivial("text_encoder", lhs)
    summary["files"]["text_encoder_io.safetensors"] = {
        "prompts": te_prompts,
        "tensors": save_tensors(OUT / "text_encoder_io.safetensors",
                                {"input_ids": ids, "attention_mask": mask, "last_hidden_state": lhs}),
    }

    # ---- encode_prompt ----------------------------------------------------------------------------------
    ep = {"prompt": "A cat and a dog in a cozy kitchen.",
          "negative_prompt": "static, blurred",
          "do_classifier_free_guidance": True, "num_videos_per_prompt": 1, "max_sequence_length": 16}
    with torch.no_grad():
        pe, ne = pipe.encode_prompt(ep["prompt"], ep["negative_prompt"], do_classifier_free_guidance=True,
                                    num_videos_per_prompt=1, max_sequence_length=16, device=torch.device("cpu"))
    ids_p = tokenize_like_pipeline(tokenizer, prompt_clean(ep["prompt"]), 16)
    ids_n = tokenize_like_pipeline(tokenizer, prompt_clean(ep["negative_prompt"]), 16)
    ep["prompt_input_ids"] = list(ids_p["input_ids"])
    ep["prompt_seq_len"] = int(sum(ids_p["attention_mask"]))
    ep["negative_prompt_input_ids"] = list(ids_n["input_ids"])
    ep["negative_prompt_seq_len"] = int(sum(ids_n["attention_mask"]))
    assert ep["prompt_seq_len"] < 16 and ep["negative_prompt_seq_len"] < 16, ep
    assert torch.all(pe[0, ep["prompt_seq_len"]:] == 0) and torch.all(ne[0, ep["negative_prompt_seq_len"]:] == 0)
    check_nontrivial("prompt_embeds", pe)
    check_nontrivial("negative_prompt_embeds", ne)
    ep["tensors"] = save_tensors(OUT / "encode_prompt_io.safetensors",
                                 {"prompt_embeds": pe, "negative_prompt_embeds": ne})
    write_json(OUT / "encode_prompt.json", ep)

    # ---- transformer ------------------------------------------------------------------------------------
    sched = UniPCMultistepScheduler.from_config(pipe.scheduler.config)
    sched.set_timesteps(3)
    ts_all = sched.timesteps
    # two different scheduler timesteps (the pipeline passes t.expand(B): same dtype, int64)
    timestep = torch.stack([ts_all[0], ts_all[2]])
    assert timestep.dtype == torch.int64
    hs = randn((2, 16, 3, 4, 6), SEED_IO_TRANSFORMER)
    ehs = torch.cat([pe, ne], dim=0)
    with torch.no_grad():
        sample = pipe.transformer(hidden_states=hs, timestep=timestep, encoder_hidden_states=ehs,
                                  return_dict=True).sample
        sample_f32 = pipe.transformer(hidden_states=hs, timestep=timestep.float(), encoder_hidden_states=ehs,
                                      return_dict=True).sample
    assert torch.equal(sample, sample_f32), "int64 and f32 timesteps should agree"
    # each batch row must depend on its own timestep and text
    with torch.no_grad():
        s_swapped_t = pipe.transformer(hidden_states=hs, timestep=timestep.flip(0), encoder_hidden_states=ehs).sample
    assert (s_swapped_t - sample).abs().max() > 1e-3
    check_nontrivial("transformer.sample", sample)
    summary["files"]["transformer_io.safetensors"] = {
        "timestep_values": [int(x) for x in timestep],
        "timestep_source": "UniPC(flow_shift=3).set_timesteps(3).timesteps[[0, 2]]; int64 like the pipeline",
        "encoder_hidden_states_source": "cat([prompt_embeds, negative_prompt_embeds]) from encode_prompt_io",
        "tensors": save_tensors(OUT / "transformer_io.safetensors", {
            "hidden_states": hs, "timestep": timestep, "timestep_f32": timestep.float(),
            "encoder_hidden_states": ehs, "sample": sample}),
    }

    # ---- VAE decode -------------------------------------------------------------------------------------
    def unscale(latents):
        # exactly WanPipeline.__call__ before vae.decode
        mean = torch.tensor(pipe.vae.config.latents_mean).view(1, pipe.vae.config.z_dim, 1, 1, 1)
        std_inv = 1.0 / torch.tensor(pipe.vae.config.latents_std).view(1, pipe.vae.config.z_dim, 1, 1, 1)
        return latents / std_inv + mean

    lat = randn((1, 16, 3, 4, 4), SEED_IO_VAE)
    lat_tall = randn((1, 16, 2, 6, 4), SEED_IO_VAE + 1)
    z, z_tall = unscale(lat), unscale(lat_tall)
    with torch.no_grad():
        out = pipe.vae.decode(z).sample
        out_tall = pipe.vae.decode(z_tall).sample
    assert out.shape == (1, 3, 9, 32, 32) and out_tall.shape == (1, 3, 5, 48, 32), (out.shape, out_tall.shape)
    check_nontrivial("vae.sample", out)
    check_nontrivial("vae.sample_tall", out_tall)
    clamp_frac = float(((out.abs() >= 1.0).double().mean()))
    clamp_frac_tall = float(((out_tall.abs() >= 1.0).double().mean()))
    assert clamp_frac < 0.1, clamp_frac
    summary["files"]["vae_decode_io.safetensors"] = {
        "z_source": "randn latents (also stored as latents / latents_tall), then latents / (1/latents_std) + latents_mean",
        "fraction_clamped": clamp_frac, "fraction_clamped_tall": clamp_frac_tall,
        "tensors": save_tensors(OUT / "vae_decode_io.safetensors", {
            "latents": lat, "z": z, "sample": out, "latents_tall": lat_tall, "z_tall": z_tall,
            "sample_tall": out_tall}),
    }
    write_json(OUT / "model_io.json", summary)
    print(json.dumps({k: {kk: (vv.get("min"), vv.get("max")) for kk, vv in v["tensors"].items()}
                      for k, v in summary["files"].items()}, indent=1))
    print("tokenizer vocab", vocab_size, "tokenizer.json bytes", tj, "vae clamp fraction", clamp_frac,
          clamp_frac_tall)


# ----------------------------------------------------------------------------------------------------------
# Stage 2: UniPC scheduler
# ----------------------------------------------------------------------------------------------------------


def stage_scheduler():
    base = UniPCMultistepScheduler.from_pretrained(str(MODEL_DIR / "scheduler"))
    assert base.config.flow_shift == 3.0 and base.config.use_flow_sigmas
    tensors, info = {}, {"scheduler_config": dict(base.config), "runs": {}}

    def schedule(flow_shift, n, prefix):
        s = UniPCMultistepScheduler.from_config(base.config, flow_shift=flow_shift)
        s.set_timesteps(n)
        assert s.timesteps.dtype == torch.int64 and s.sigmas.dtype == torch.float32
        tensors[f"{prefix}timesteps_{n}"] = s.timesteps.clone()
        tensors[f"{prefix}sigmas_{n}"] = s.sigmas.clone()
        return s

    for n in (3, 5, 10, 50):
        schedule(3.0, n, "")
        schedule(5.0, n, "shift5_")

    def run(flow_shift, n, prefix, seed):
        s = schedule(flow_shift, n, "" if flow_shift == 3.0 else "shift5_")
        s.set_begin_index(0)  # as WanPipeline does
        sample = randn((1, 4, 2, 2, 2), seed)
        tensors[f"{prefix}sample_0"] = sample
        steps = []
        for i, t in enumerate(s.timesteps):
            mo = randn((1, 4, 2, 2, 2), seed + 100 + i)
            will_correct = i > 0 and s.last_sample is not None
            corrector_order = s.this_order if will_correct else None
            prev = s.step(mo, t, sample, return_dict=True).prev_sample
            tensors[f"{prefix}model_output_{i}"] = mo
            tensors[f"{prefix}prev_sample_{i}"] = prev
            # debug aid: the sample after this step's UniC corrector (= sample_i where no corrector ran)
            tensors[f"{prefix}corrected_sample_{i}"] = s.last_sample
            steps.append({"i": i, "timestep": int(t), "sigma": float(s.sigmas[i]),
                          "sigma_next": float(s.sigmas[i + 1]), "step_index_after": int(s.step_index),
                          "predictor_order": int(s.this_order), "corrector_applied": bool(will_correct),
                          "corrector_order": corrector_order})
            check_nontrivial(f"{prefix}prev_sample_{i}", prev)
            sample = prev
        info["runs"][prefix.rstrip("_")] = {"flow_shift": flow_shift, "num_inference_steps": n,
                                            "timesteps": [int(x) for x in s.timesteps],
                                            "sigmas": [float(x) for x in s.sigmas], "steps": steps,
                                            "latent_shape": [1, 4, 2, 2, 2], "sample_seed": seed,
                                            "model_output_seeds": [seed + 100 + i for i in range(n)]}

    run(3.0, 5, "n5_", SEED_SCHEDULER)
    run(3.0, 3, "n3_", SEED_SCHEDULER + 1000)
    run(5.0, 5, "shift5_n5_", SEED_SCHEDULER + 2000)
    info["tensors"] = save_tensors(OUT / "scheduler_unipc.safetensors", tensors)
    write_json(OUT / "scheduler_unipc.json", info)
    for n in (3, 5, 10):
        print(n, tensors[f"timesteps_{n}"].tolist(), [round(x, 6) for x in tensors[f"sigmas_{n}"].tolist()])
    print("shift5 5", tensors["shift5_timesteps_5"].tolist())


# ----------------------------------------------------------------------------------------------------------
# Stage 3: 3-step pipeline
# ----------------------------------------------------------------------------------------------------------


def stage_pipeline():
    from safetensors.torch import load_file

    pipe = WanPipeline.from_pretrained(str(MODEL_DIR), dtype=torch.float32)
    pipe.set_progress_bar_config(disable=True)
    emb = load_file(str(OUT / "encode_prompt_io.safetensors"))
    pe, ne = emb["prompt_embeds"], emb["negative_prompt_embeds"]
    args = dict(height=32, width=48, num_frames=9, num_inference_steps=3, guidance_scale=5.0,
                max_sequence_length=16, num_videos_per_prompt=1)
    flow_shift = pipe.scheduler.config.flow_shift
    latents = randn((1, 16, 3, 4, 6), SEED_PIPELINE)

    record = {}

    def hook(module, inputs, kwargs, output):
        record.setdefault("calls", []).append({
            "hidden_states": kwargs["hidden_states"].clone(), "timestep": kwargs["timestep"].clone(),
            "encoder_hidden_states": kwargs["encoder_hidden_states"].clone(), "out": output[0].clone()})

    step_latents = []

    def on_step_end(p, i, t, cb):
        step_latents.append(cb["latents"].clone())
        return {}

    h = pipe.transformer.register_forward_hook(hook, with_kwargs=True)
    with torch.no_grad():
        lat_out = pipe(prompt_embeds=pe, negative_prompt_embeds=ne, latents=latents.clone(), output_type="latent",
                       callback_on_step_end=on_step_end, **args).frames
    h.remove()
    calls = record["calls"]
    assert len(calls) == 6, len(calls)  # cond + uncond per step: CFG really ran

    with torch.no_grad():
        lat_g1 = pipe(prompt_embeds=pe, negative_prompt_embeds=ne, latents=latents.clone(), output_type="latent",
                      **{**args, "guidance_scale": 1.0}).frames
        video = pipe(prompt_embeds=pe, negative_prompt_embeds=ne, latents=latents.clone(), output_type="np",
                     **args).frames
    video = torch.from_numpy(np.ascontiguousarray(video))
    cfg_diff = float((lat_out - lat_g1).abs().max())
    assert cfg_diff > 1e-2, f"guidance 5 vs 1 differ by only {cfg_diff}"
    assert video.shape == (1, 9, 32, 48, 3) and video.dtype == torch.float32, (video.shape, video.dtype)

    # what the pipeline hands to vae.decode, and the raw decoder output, for staged checks
    with torch.no_grad():
        mean = torch.tensor(pipe.vae.config.latents_mean).view(1, 16, 1, 1, 1)
        std_inv = 1.0 / torch.tensor(pipe.vae.config.latents_std).view(1, 16, 1, 1, 1)
        z = lat_out / std_inv + mean
        decoded = pipe.vae.decode(z).sample
    video_check = (decoded * 0.5 + 0.5).clamp(0, 1).permute(0, 2, 3, 4, 1)
    assert torch.equal(video_check, video), "video != postprocess(vae.decode(z))"
    check_nontrivial("latents_out", lat_out)
    check_nontrivial("video", video, min_std=1e-2)

    tensors = {"latents": latents, "prompt_embeds": pe, "negative_prompt_embeds": ne, "latents_out": lat_out,
               "latents_out_guidance1": lat_g1, "vae_input": z, "decoded": decoded, "video": video}
    timesteps = []
    for i in range(3):
        cond, unc = calls[2 * i], calls[2 * i + 1]
        assert torch.equal(cond["hidden_states"], unc["hidden_states"])
        tensors[f"timestep_{i}"] = cond["timestep"]
        tensors[f"noise_pred_cond_{i}"] = cond["out"]
        tensors[f"noise_pred_uncond_{i}"] = unc["out"]
        tensors[f"latents_step_{i}"] = step_latents[i]
        timesteps.append(int(cond["timestep"][0]))
        assert (cond["out"] - unc["out"]).abs().max() > 1e-3
    assert torch.equal(step_latents[-1], lat_out)
    info = {
        "pipeline_args": {**args, "flow_shift": flow_shift, "output_type": ["latent", "np"],
                          "prompt": None, "negative_prompt": None,
                          "prompt_embeds": "encode_prompt_io.safetensors:prompt_embeds",
                          "negative_prompt_embeds": "encode_prompt_io.safetensors:negative_prompt_embeds",
                          "latents_seed": SEED_PIPELINE},
        "latent_shape": list(latents.shape),
        "timesteps": timesteps,
        "timestep_dtype": str(calls[0]["timestep"].dtype).replace("torch.", ""),
        "max_abs_diff_guidance5_vs_guidance1": cfg_diff,
        "video_fraction_at_0_or_1": float(((video == 0) | (video == 1)).double().mean()),
        "tensors": save_tensors(OUT / "pipeline_3step.safetensors", tensors),
    }
    write_json(OUT / "pipeline_3step.json", info)
    print(json.dumps({k: (v["min"], v["max"]) for k, v in info["tensors"].items()}, indent=1))
    print("timesteps", timesteps, "cfg diff", cfg_diff, "video frac at bounds", info["video_fraction_at_0_or_1"])


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--stage", choices=["model", "scheduler", "pipeline", "all"], default="all")
    a = ap.parse_args()
    if a.stage in ("model", "all"):
        stage_model()
    if a.stage in ("scheduler", "all"):
        stage_scheduler()
    if a.stage in ("pipeline", "all"):
        stage_pipeline()
    total = sum(f.stat().st_size for f in OUT.rglob("*") if f.is_file())
    print(f"total size of {OUT.relative_to(REPO)}: {total} bytes")
    assert total < 5_000_000


if __name__ == "__main__":
    sys.exit(main())
