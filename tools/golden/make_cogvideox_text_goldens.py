#!/usr/bin/env python3
"""Golden files for vidlower's CogVideoX text side: the T5 tokenizer from `spiece.model` and the T5 v1.1 encoder.

Builds a tiny SentencePiece Unigram model (a `ModelProto` written by hand, see `build_spm_model`) and a tiny
random `T5EncoderModel` (T5 v1.1: gated-gelu, relative attention bias in layer 0 only), saves them as the
`tokenizer/` and `text_encoder/` folders of every tiny CogVideoX variant under tests/golden/cogvideox/<variant>/model/,
and records what transformers 5.23.0 / diffusers 0.42.1 compute with them (CPU, float32, fixed seeds):

    tests/golden/cogvideox/tokenizer_cases.json        T5Tokenizer from spiece.model and from tokenizer.json,
                                                       and SentencePiece itself, on unicode/whitespace/long prompts
    tests/golden/cogvideox/tokenizer_json/             the same tokenizer saved as tokenizer.json (a second load path)
    tests/golden/cogvideox/text_encoder_io.safetensors T5EncoderModel as CogVideoX calls it (no mask) and masked
    tests/golden/cogvideox/encode_prompt_io.safetensors CogVideoXPipeline.encode_prompt (CFG, max_sequence_length 16)
    tests/golden/cogvideox/text_goldens.json           shapes/ranges of the above, prompts, library versions

Usage (from the repository root):
    tools/golden/.venv/bin/python tools/golden/make_cogvideox_text_goldens.py

Everything is seeded; a re-run on the same library versions reproduces the files bit for bit. The other CogVideoX
components (transformer, VAE, scheduler) are other scripts' files; this one writes only the text side.
See tools/golden/README_cogvideox_text.md.
"""

import hashlib
import json
import math
import os
import shutil
import sys
import tempfile
from collections import Counter
from pathlib import Path

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("DIFFUSERS_VERBOSITY", "error")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")

import sentencepiece as spm  # noqa: E402
import torch  # noqa: E402
from safetensors.torch import save_file  # noqa: E402
from sentencepiece import sentencepiece_model_pb2 as spm_pb2  # noqa: E402

import diffusers  # noqa: E402
import tokenizers  # noqa: E402
import transformers  # noqa: E402
from diffusers import CogVideoXPipeline  # noqa: E402
from transformers import T5Config, T5EncoderModel, T5Tokenizer  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from make_wan_goldens import CORPUS as WAN_CORPUS  # noqa: E402  (the same prompt-like corpus)

REPO = Path(__file__).resolve().parents[2]
OUT = REPO / "tests" / "golden" / "cogvideox"
VARIANTS = ["cogvideox-2b", "cogvideox-5b", "cogvideox1.5-5b"]
GENERATOR = "tools/golden/make_cogvideox_text_goldens.py"

torch.set_num_threads(1)  # fixed reduction order: bit-reproducible files
torch.use_deterministic_algorithms(True)
torch.set_default_dtype(torch.float32)

SEED_TEXT_ENCODER = 5003
SPM_PIECES = 420  # SentencePiece pieces incl. <pad> </s> <unk>; the tokenizer adds 100 <extra_id_N>
MAX_LENGTH = 226  # CogVideoX's max_sequence_length
TEXT_ENCODER_CONFIG = dict(
    d_model=32,
    d_kv=8,
    num_heads=4,
    d_ff=64,
    num_layers=2,
    num_decoder_layers=2,
    relative_attention_num_buckets=32,
    relative_attention_max_distance=128,
    feed_forward_proj="gated-gelu",
    layer_norm_epsilon=1e-6,
    dropout_rate=0.0,
    tie_word_embeddings=False,  # as google/t5-v1_1-xxl
)

# Prompts with characters the NMT-NFKC charsmap rewrites, so they become pieces of the vocabulary too.
EXTRA_CORPUS = [
    "Caf\u00e9 cr\u00e8me br\u00fbl\u00e9e at the \u00e9cole, a na\u00efve gar\u00e7on smiles. \u00c9t\u00e9 \u00e0 Paris.",
    "\u6771\u4eac\u306e\u591c\u666f, \u6e0b\u8c37\u306e\u4ea4\u5dee\u70b9\u3092\u6b69\u304f\u4eba\u3005\u3002 \u5317\u4eac\u7684\u96ea\u3002",
    "Numbers 0 1 2 3 4 5 6 7 8 9, 2024-05-17, 3.14159, 1,000,000 and 42%.",
    "Symbols: @ # $ * + = / \\ | ~ ^ _ [ ] { } < > ( ) ` ... -- !? ;",
]
CORPUS = list(WAN_CORPUS) + EXTRA_CORPUS

LONG_PROMPT = (
    "A panda, dressed in a small, red jacket and a tiny hat, sits on a wooden stool in a serene bamboo forest. "
    "The panda's fluffy paws strum a miniature acoustic guitar, producing soft, melodic tunes. Nearby, a few other "
    "pandas gather, watching curiously and some clapping in rhythm. Sunlight filters through the tall bamboo, "
    "casting a gentle glow on the scene. The panda's face is expressive, showing concentration and joy as it plays. "
    "The background includes a small, flowing stream and vibrant green foliage, enhancing the peaceful and magical "
    "atmosphere of this unique musical performance. "
)

# (text, max_length). CogVideoX tokenizes raw prompts (no cleaning) with padding="max_length", truncation=True.
TOKENIZER_CASES = [
    ("A cat walks on the grass, realistic style.", 16),
    ("", 16),
    ("", MAX_LENGTH),
    ("Wow!!! A red car... speeding -- fast?! (slow-motion); 50% off: \"quotes\" & 'single' {x} [y] <z>", 48),
    ("Caf\u00e9 cr\u00e8me, na\u00efve fa\u00e7ade \u2014 \u6771\u4eac\u306e\u591c\u666f \U0001F303\U0001F431 "
     "\uff26\uff35\uff2c\uff2c\uff57\uff49\uff44\uff54\uff48 \ufb01ne \ufb02ow \u201ccurly\u201d \u2018q\u2019 caf\u00e9", 64),
    ("decomposed: e\u0301cole, n\u0303, \u212b \u2460 \u00bd x\u00b2 \u2122 \u2026 \u00a0nbsp\u00a0 zero\u200bwidth", 48),
    ("  Two   spaces\tand\nnewlines\r\n here \u3000ideographic\u2003em ", 32),
    ("digits 0123456789 3.14 2,000,000 1/2 -7 +8 #9 $10 10:45pm 2024-12-04", 40),
    ("special tokens in text: </s> <pad> <unk> <extra_id_0> <extra_id_99>x", 32),
    ("\u00bfQu\u00e9? \u00a1S\u00ed! \u00ab\u00bb \u2039\u203a \u201e\u201f \u00b7 \u2022 \u00a7 \u00b6 \u00a9 \u00ae \u00b0", 40),
    ("tab\tsep\u0001ctrl\u007f del \u200dzwj \ufeffbom", 32),
    (LONG_PROMPT * 2, MAX_LENGTH),
    (LONG_PROMPT, 8),
    (LONG_PROMPT, 16),
    ("x", 1),
]


# ----------------------------------------------------------------------------------------------------------
# Helpers (as make_wan_goldens.py)
# ----------------------------------------------------------------------------------------------------------


def stats(t):
    t = torch.as_tensor(t)
    if t.dtype in (torch.int64, torch.int32, torch.bool):
        return {"shape": list(t.shape), "dtype": str(t.dtype).replace("torch.", ""), "min": int(t.min()),
                "max": int(t.max())}
    tf = t.double()
    return {"shape": list(t.shape), "dtype": str(t.dtype).replace("torch.", ""), "min": float(tf.min()),
            "max": float(tf.max()), "mean": float(tf.mean()), "std": float(tf.std()) if t.numel() > 1 else 0.0}


def versions():
    return {"diffusers": diffusers.__version__, "transformers": transformers.__version__,
            "torch": torch.__version__.split("+")[0], "tokenizers": tokenizers.__version__,
            "sentencepiece": spm.__version__}


def save_tensors(path, tensors, meta=None):
    tensors = {k: v.detach().contiguous().clone() for k, v in tensors.items()}
    info = {"generator": GENERATOR, **versions(), **(meta or {})}
    save_file(tensors, str(path), metadata={"info": json.dumps(info, sort_keys=True)})
    return {k: stats(v) for k, v in tensors.items()}


def write_json(path, obj):
    with open(path, "w", encoding="utf-8") as f:
        json.dump(obj, f, indent=2, ensure_ascii=False)
        f.write("\n")


def check_nontrivial(name, t, min_std=1e-3):
    t = t.detach().double()
    assert torch.isfinite(t).all(), f"{name}: non-finite values"
    assert t.std() > min_std, f"{name}: (near) constant, std {float(t.std())}"


# ----------------------------------------------------------------------------------------------------------
# The SentencePiece model
# ----------------------------------------------------------------------------------------------------------


def nmt_nfkc_charsmap():
    """The `precompiled_charsmap` SentencePiece compiles into every `nmt_nfkc` model (T5's normalizer).

    It is a fixed table built into the sentencepiece library (NFKC plus the NMT whitespace/control rules),
    independent of the training data; the easiest way to get its bytes is to train a throwaway model on a few
    lines and copy them from its normalizer_spec. Only those bytes are kept (training itself is not guaranteed
    deterministic, the table is): the sha256 is recorded in the summary.
    """
    with tempfile.TemporaryDirectory() as d:
        text = os.path.join(d, "corpus.txt")
        with open(text, "w", encoding="utf-8") as f:
            f.write("\n".join(WAN_CORPUS[:8]))
        spm.SentencePieceTrainer.train(input=text, model_prefix=os.path.join(d, "throwaway"), vocab_size=60,
                                       model_type="unigram", normalization_rule_name="nmt_nfkc",
                                       hard_vocab_limit=False, num_threads=1, minloglevel=2)
        proto = spm_pb2.ModelProto()
        with open(os.path.join(d, "throwaway.model"), "rb") as f:
            proto.ParseFromString(f.read())
    assert proto.normalizer_spec.name == "nmt_nfkc"
    return bytes(proto.normalizer_spec.precompiled_charsmap)


def build_spm_model(charsmap):
    """A T5-style SentencePiece Unigram `ModelProto`, written field by field.

    The vocabulary is derived deterministically from CORPUS as make_wan_goldens.py does (SentencePiece's trainer
    is not guaranteed deterministic): the corpus is normalised with the charsmap (SentencePiece's own normaliser,
    through a charsmap-only model), split into Metaspace words; every character is a piece, plus the recurring
    substrings of the words ranked by count x (len - 1) (a substring is skipped when a one-character extension of
    it occurs as often), each scored log(count / total) like a unigram LM. Pieces 0..2 are T5's <pad> </s> <unk>
    with T5's trainer_spec ids (pad 0, eos 1, unk 2, no bos).
    """
    # SentencePiece's normaliser with this charsmap, via a model that holds only the charsmap and the metas.
    probe = spm_pb2.ModelProto()
    for piece, kind in (("<pad>", 3), ("</s>", 3), ("<unk>", 2)):
        probe.pieces.add(piece=piece, score=0.0, type=kind)
    probe.pieces.add(piece="\u2581", score=-1.0, type=1)
    fill_specs(probe, charsmap, vocab_size=4)
    sp = spm.SentencePieceProcessor(model_proto=probe.SerializeToString())

    words = Counter()
    for line in CORPUS:
        normalized = sp.normalize(line)  # NMT-NFKC, extra whitespace removed, dummy prefix: "▁A▁cat..."
        for w in normalized.replace(" ", "\u2581").split("\u2581"):
            if w:
                words["\u2581" + w] += 1
    chars, subs = Counter(), Counter()
    for w, c in words.items():
        for ch in w:
            chars[ch] += c
        for i in range(len(w)):
            for j in range(i + 2, min(len(w), i + 12) + 1):
                subs[w[i:j]] += c
    specials = [("<pad>", 3), ("</s>", 3), ("<unk>", 2)]
    n_pieces = SPM_PIECES - len(specials) - len(chars)
    assert n_pieces > 100, n_pieces
    alphabet = sorted(chars)

    def closed(p, c):  # drop a piece when a one-character extension of it occurs just as often
        return not any(subs.get(p + ch) == c or subs.get(ch + p) == c for ch in alphabet)

    ranked = sorted((kv for kv in subs.items() if kv[1] >= 2 and closed(*kv)),
                    key=lambda kv: (-kv[1] * (len(kv[0]) - 1), kv[0]))
    pieces = dict(ranked[:n_pieces])
    pieces.update(chars)
    total = sum(pieces.values())
    scored = sorted(((p, round(math.log(c / total), 6)) for p, c in pieces.items()), key=lambda ps: (-ps[1], ps[0]))

    proto = spm_pb2.ModelProto()
    for piece, kind in specials:
        proto.pieces.add(piece=piece, score=0.0, type=kind)
    for piece, score in scored:
        proto.pieces.add(piece=piece, score=score, type=1)  # NORMAL
    fill_specs(proto, charsmap, vocab_size=len(proto.pieces))
    assert len(proto.pieces) == SPM_PIECES, len(proto.pieces)
    return proto


def fill_specs(proto, charsmap, vocab_size):
    """trainer_spec / normalizer_spec as in T5's spiece.model (the fields that matter, set explicitly)."""
    t = proto.trainer_spec
    t.model_type = spm_pb2.TrainerSpec.UNIGRAM
    t.vocab_size = vocab_size
    t.character_coverage = 1.0
    t.split_by_whitespace = True
    t.byte_fallback = False
    t.unk_id, t.bos_id, t.eos_id, t.pad_id = 2, -1, 1, 0
    t.unk_piece, t.bos_piece, t.eos_piece, t.pad_piece = "<unk>", "<s>", "</s>", "<pad>"
    t.unk_surface = " \u2047 "
    n = proto.normalizer_spec
    n.name = "nmt_nfkc"
    n.precompiled_charsmap = charsmap
    n.add_dummy_prefix = True
    n.remove_extra_whitespaces = True
    n.escape_whitespaces = True


# ----------------------------------------------------------------------------------------------------------
# Tokenizer folders and cases
# ----------------------------------------------------------------------------------------------------------


def save_tokenizer_dir(proto, out_dir):
    """`T5Tokenizer.save_pretrained` of the tokenizer loaded from `spiece.model`, less the tokenizer.json it also
    writes: a released CogVideoX `tokenizer/` folder has spiece.model and the json configs only."""
    with tempfile.TemporaryDirectory() as d:
        with open(os.path.join(d, "spiece.model"), "wb") as f:
            f.write(proto.SerializeToString())
        tok = T5Tokenizer.from_pretrained(d, model_max_length=MAX_LENGTH, legacy=True)
        tok.save_pretrained(str(out_dir))
    if (out_dir / "tokenizer.json").exists():
        (out_dir / "tokenizer.json").unlink()
    if not (out_dir / "spiece.model").exists():
        with open(out_dir / "spiece.model", "wb") as f:
            f.write(proto.SerializeToString())
    return sorted(p.name for p in out_dir.iterdir())


def tokenize_like_pipeline(tok, text, max_length):
    # CogVideoXPipeline._get_t5_prompt_embeds (return_attention_mask for the masked golden; the pipeline ignores it)
    enc = tok(text, padding="max_length", max_length=max_length, truncation=True, add_special_tokens=True,
              return_attention_mask=True)
    return list(enc["input_ids"]), list(enc["attention_mask"])


def sentencepiece_like_pipeline(sp, text, max_length, pad_id, eos_id):
    """transformers 4.x's slow T5Tokenizer (legacy): SentencePiece's ids, truncated to leave room for </s>,
    </s> appended, right-padded. Texts with special-token strings are not comparable (the slow tokenizer split
    them out first) and are recorded as None."""
    ids = sp.encode(text)[: max_length - 1] + [eos_id]
    mask = [1] * len(ids)
    return ids + [pad_id] * (max_length - len(ids)), mask + [0] * (max_length - len(ids))


def tokenizer_cases(tok_spm, tok_json, sp):
    cases, disagreements = [], []
    for text, max_length in TOKENIZER_CASES:
        ids, mask = tokenize_like_pipeline(tok_spm, text, max_length)
        ids_json, mask_json = tokenize_like_pipeline(tok_json, text, max_length)
        assert (ids, mask) == (ids_json, mask_json), f"spiece.model and tokenizer.json disagree on {text!r}"
        case = {"text": text, "max_length": max_length, "input_ids": ids, "attention_mask": mask,
                "tokens": tok_spm.convert_ids_to_tokens(ids)}
        if "<" not in text:
            sp_ids, sp_mask = sentencepiece_like_pipeline(sp, text, max_length, tok_spm.pad_token_id,
                                                          tok_spm.eos_token_id)
            case["sentencepiece_input_ids"] = sp_ids
            if sp_ids != ids:
                disagreements.append(text)
        cases.append(case)
    # the batch call the pipeline makes gives the same rows
    batch = tok_spm([t for t, _ in TOKENIZER_CASES], padding="max_length", max_length=24, truncation=True,
                    add_special_tokens=True)
    for (text, _), row in zip(TOKENIZER_CASES, batch["input_ids"]):
        assert list(row) == tokenize_like_pipeline(tok_spm, text, 24)[0]
    assert any(2 in c["input_ids"] for c in cases), "no <unk> case"
    assert any(c["attention_mask"] == [1] * c["max_length"] and c["max_length"] == MAX_LENGTH for c in cases)
    return cases, disagreements


# ----------------------------------------------------------------------------------------------------------
# The text encoder
# ----------------------------------------------------------------------------------------------------------


def build_text_encoder(vocab_size):
    cfg = T5Config(vocab_size=vocab_size, **TEXT_ENCODER_CONFIG)
    torch.manual_seed(SEED_TEXT_ENCODER)
    te = T5EncoderModel(cfg).eval().float()
    # Keep transformers' T5 init (random normal, q scaled by 1/sqrt(d_model*d_kv)), but make the RMS-norm
    # scales non-trivial and the relative position bias large enough to matter (as make_wan_goldens.py).
    g = torch.Generator().manual_seed(SEED_TEXT_ENCODER)
    with torch.no_grad():
        for name, p in sorted(te.named_parameters(), key=lambda kv: kv[0]):
            if "layer_norm" in name:
                p.copy_(1.0 + 0.1 * torch.randn(p.shape, generator=g))
            elif "relative_attention_bias" in name:
                p.copy_(0.5 * torch.randn(p.shape, generator=g))
    return te


def main():
    charsmap = nmt_nfkc_charsmap()
    proto = build_spm_model(charsmap)
    sp = spm.SentencePieceProcessor(model_proto=proto.SerializeToString())
    summary = {**versions(), "generator": GENERATOR,
               "charsmap": {"bytes": len(charsmap), "sha256": hashlib.sha256(charsmap).hexdigest()},
               "spm_pieces": len(proto.pieces), "files": {}}

    OUT.mkdir(parents=True, exist_ok=True)
    for variant in VARIANTS:
        for sub in ("tokenizer", "text_encoder"):
            d = OUT / variant / "model" / sub
            if d.exists():
                shutil.rmtree(d)
    first = OUT / VARIANTS[0] / "model" / "tokenizer"
    summary["tokenizer_files"] = save_tokenizer_dir(proto, first)
    for variant in VARIANTS[1:]:
        shutil.copytree(first, OUT / variant / "model" / "tokenizer")

    # The pipeline's tokenizer, as from_pretrained loads it from spiece.model; and the same saved as tokenizer.json.
    tok = T5Tokenizer.from_pretrained(str(first))
    json_dir = OUT / "tokenizer_json"
    if json_dir.exists():
        shutil.rmtree(json_dir)
    tok.save_pretrained(str(json_dir))
    for extra in ("spiece.model",):
        if (json_dir / extra).exists():
            (json_dir / extra).unlink()
    tok_json = T5Tokenizer.from_pretrained(str(json_dir))
    vocab_size = len(tok)
    assert vocab_size == SPM_PIECES + 100 and tok.pad_token_id == 0 and tok.eos_token_id == 1 and tok.unk_token_id == 2
    assert tok.convert_tokens_to_ids("<extra_id_0>") == vocab_size - 1
    summary["tokenizer_vocab_size"] = vocab_size

    cases, disagreements = tokenizer_cases(tok, tok_json, sp)
    summary["sentencepiece_disagrees_on"] = disagreements
    write_json(OUT / "tokenizer_cases.json", cases)

    # ---- text encoder ---------------------------------------------------------------------------------------
    te = build_text_encoder(vocab_size)
    first_te = OUT / VARIANTS[0] / "model" / "text_encoder"
    te.save_pretrained(str(first_te), safe_serialization=True)
    for variant in VARIANTS[1:]:
        shutil.copytree(first_te, OUT / variant / "model" / "text_encoder")
    te = T5EncoderModel.from_pretrained(str(first_te), dtype=torch.float32).eval()
    summary["text_encoder_attn_implementation"] = te.config._attn_implementation

    prompts = ["A cat walks on the grass.",
               "A small boat sails across a calm lake at sunset, golden light on the water and snow."]
    enc = tok(prompts, padding="max_length", max_length=16, truncation=True, add_special_tokens=True,
              return_attention_mask=True, return_tensors="pt")
    ids, mask = enc.input_ids, enc.attention_mask
    assert mask[0].sum() < 16 and mask[1].sum() == 16, mask
    with torch.no_grad():
        unmasked = te(ids)[0]  # CogVideoXPipeline: text_encoder(text_input_ids)[0], no attention mask
        out = te(ids, attention_mask=mask, output_hidden_states=True)
    masked, hidden = out.last_hidden_state, out.hidden_states
    check_nontrivial("last_hidden_state", unmasked)
    diff = float((unmasked[0] - masked[0]).abs().max())
    assert diff > 1e-3, f"the mask changes the padded row by only {diff}"
    assert torch.equal(unmasked[1], masked[1]), "a full row must not depend on the mask"
    summary["files"]["text_encoder_io.safetensors"] = {
        "prompts": prompts,
        "hidden_states": f"{len(hidden)} entries from output_hidden_states=True (masked run)",
        "tensors": save_tensors(OUT / "text_encoder_io.safetensors", {
            "input_ids": ids, "attention_mask": mask, "last_hidden_state": unmasked,
            "last_hidden_state_masked": masked, **{f"hidden_states_{i}": h for i, h in enumerate(hidden)}}),
    }

    # ---- encode_prompt --------------------------------------------------------------------------------------
    pipe = CogVideoXPipeline(tokenizer=tok, text_encoder=te, vae=None, transformer=None, scheduler=None)
    ep = {"prompt": "A cat and a dog in a cozy kitchen.", "negative_prompt": "static, blurred",
          "do_classifier_free_guidance": True, "num_videos_per_prompt": 1, "max_sequence_length": 16}
    with torch.no_grad():
        pe, ne = pipe.encode_prompt(ep["prompt"], ep["negative_prompt"], do_classifier_free_guidance=True,
                                    num_videos_per_prompt=1, max_sequence_length=16, device=torch.device("cpu"))
    ep["prompt_input_ids"] = tokenize_like_pipeline(tok, ep["prompt"], 16)[0]
    ep["negative_prompt_input_ids"] = tokenize_like_pipeline(tok, ep["negative_prompt"], 16)[0]
    assert 0 in ep["prompt_input_ids"] and 0 in ep["negative_prompt_input_ids"], ep
    check_nontrivial("prompt_embeds", pe)
    check_nontrivial("negative_prompt_embeds", ne)
    ep["tensors"] = save_tensors(OUT / "encode_prompt_io.safetensors",
                                 {"prompt_embeds": pe, "negative_prompt_embeds": ne}, meta={
                                     k: v for k, v in ep.items() if not k.endswith("input_ids")})
    summary["files"]["encode_prompt_io.safetensors"] = ep
    write_json(OUT / "text_goldens.json", summary)

    mine = [p for v in VARIANTS for sub in ("tokenizer", "text_encoder") for p in (OUT / v / "model" / sub).rglob("*")]
    mine += list(json_dir.rglob("*")) + [OUT / n for n in ("tokenizer_cases.json", "text_encoder_io.safetensors",
                                                           "encode_prompt_io.safetensors", "text_goldens.json")]
    files = [p for p in mine if p.is_file()]
    total = sum(p.stat().st_size for p in files)
    # The three variants' folders are identical files: git stores each once.
    unique = sum({hashlib.sha256(p.read_bytes()).hexdigest(): p.stat().st_size for p in files}.values())
    print(json.dumps({"vocab": vocab_size, "sentencepiece_disagrees_on": disagreements, "bytes": total,
                      "unique_bytes": unique}, indent=1, ensure_ascii=False))
    assert unique < 1_500_000, unique


if __name__ == "__main__":
    sys.exit(main())
