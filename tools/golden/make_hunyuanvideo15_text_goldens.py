#!/usr/bin/env python3
"""Golden files for vidlower's HunyuanVideo-1.5 text side: Qwen2.5-VL (text model) + Qwen2 tokenizer with its chat
template, and ByT5 (`T5EncoderModel`) + `ByT5Tokenizer` for the glyph texts.

Builds a tiny byte-level BPE tokenizer in Qwen2's format (trained deterministically with the `tokenizers` library on
the prompt corpus of make_wan_goldens.py), a tiny random `Qwen2_5_VLTextModel` and a tiny random ByT5
`T5EncoderModel`, saves them as the `tokenizer/`, `text_encoder/`, `tokenizer_2/`, `text_encoder_2/` folders of
tests/golden/hunyuanvideo15/hunyuanvideo1.5-480p-t2v/model/ (save_pretrained, diffusers' pipeline layout), writes the
same tokenizer as the built-in tiny preset's (frontends/src/hunyuanvideo15/tiny/tokenizer/: tokenizer.json +
tokenizer_config.json with the chat template inside), and records what transformers 5.23.0 / diffusers 0.42.1
compute with them (CPU, float32):

    tests/golden/hunyuanvideo15/text/qwen_tokenizer_cases.json  `_get_mllm_prompt_embeds`' tokenization (chat template,
                                                                pad/truncate to max_length + 108) per prompt
    tests/golden/hunyuanvideo15/text/byt5_tokenizer_cases.json  ByT5Tokenizer(text, padding="max_length", ...) on tricky
                                                                strings; extract_glyph_texts on prompts
    tests/golden/hunyuanvideo15/text/qwen_encoder_io.safetensors Qwen2_5_VLTextModel hidden_states (all entries),
                                                                right- and left-padded rows
    tests/golden/hunyuanvideo15/text/byt5_encoder_io.safetensors T5EncoderModel (ByT5) with a mask
    tests/golden/hunyuanvideo15/text/encode_prompt_io.safetensors HunyuanVideo15Pipeline.encode_prompt for a prompt
                                                                with glyph text and one without
    tests/golden/hunyuanvideo15/text/text_goldens.json          versions, system message, shapes, notes

Usage (from the repository root):
    tools/golden/.venv/bin/python tools/golden/make_hunyuanvideo15_text_goldens.py

See tools/golden/README_hunyuanvideo15_text.md.
"""

import ast
import hashlib
import inspect
import json
import math
import os
import shutil
import sys
from pathlib import Path
from types import SimpleNamespace

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("DIFFUSERS_VERBOSITY", "error")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")

import torch  # noqa: E402
from safetensors.torch import save_file  # noqa: E402

import diffusers  # noqa: E402
import tokenizers  # noqa: E402
import transformers  # noqa: E402
from diffusers.pipelines.hunyuan_video1_5 import pipeline_hunyuan_video1_5 as hv15  # noqa: E402
from tokenizers import Regex, Tokenizer, models, normalizers, pre_tokenizers, trainers  # noqa: E402
from transformers import (  # noqa: E402
    AutoTokenizer,
    ByT5Tokenizer,
    Qwen2_5_VLTextConfig,
    Qwen2_5_VLTextModel,
    Qwen2Tokenizer,
    T5Config,
    T5EncoderModel,
)
from transformers.models.qwen2.tokenization_qwen2 import PRETOKENIZE_REGEX  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from make_wan_goldens import CORPUS as WAN_CORPUS  # noqa: E402  (the same prompt-like corpus)
from make_wan_goldens import rerandomize  # noqa: E402

torch.use_deterministic_algorithms(True)
torch.set_num_threads(1)
torch.set_default_dtype(torch.float32)

REPO = Path(__file__).resolve().parents[2]
OUT = REPO / "tests" / "golden" / "hunyuanvideo15"
MODEL = OUT / "hunyuanvideo1.5-480p-t2v" / "model"
TEXT = OUT / "text"
TINY_TOKENIZER = REPO / "frontends" / "src" / "hunyuanvideo15" / "tiny" / "tokenizer"
GENERATOR = "tools/golden/make_hunyuanvideo15_text_goldens.py"

SEED_QWEN = 6101
SEED_BYT5 = 6102
BPE_VOCAB = 600  # byte alphabet (256) + merges
SPECIAL_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|vision_start|>", "<|vision_end|>",
                  "<|image_pad|>", "<|video_pad|>"]
QWEN_VOCAB = 640  # the tokenizer's 607 ids, rounded up to a multiple of 64

QWEN_CONFIG = dict(
    vocab_size=QWEN_VOCAB,
    hidden_size=32,
    num_hidden_layers=4,
    num_attention_heads=4,
    num_key_value_heads=2,
    intermediate_size=64,
    rms_norm_eps=1e-6,
    max_position_embeddings=2048,
    bos_token_id=BPE_VOCAB,  # <|endoftext|>, as Qwen2.5-VL's 151643
    eos_token_id=BPE_VOCAB + 2,  # <|im_end|>, as Qwen2.5-VL's 151645
    rope_parameters={"rope_type": "default", "rope_theta": 1000000.0, "mrope_section": [1, 1, 2]},
)
BYT5_CONFIG = dict(
    vocab_size=384,
    d_model=24,
    d_kv=8,
    num_heads=3,
    d_ff=48,
    num_layers=2,
    num_decoder_layers=2,
    relative_attention_num_buckets=32,
    relative_attention_max_distance=128,
    feed_forward_proj="gated-gelu",
    layer_norm_epsilon=1e-6,
    dropout_rate=0.0,
    tie_word_embeddings=False,  # as google/byt5-small
)

# Qwen2.5-VL's chat template (the Instruct models' tokenizer_config.json / chat_template.json). The text-only path
# renders "<|im_start|>system\n...<|im_end|>\n<|im_start|>user\n...<|im_end|>\n<|im_start|>assistant\n".
QWEN25_VL_CHAT_TEMPLATE = (
    "{% set image_count = namespace(value=0) %}{% set video_count = namespace(value=0) %}"
    "{% for message in messages %}{% if loop.first and message['role'] != 'system' %}"
    "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n{% endif %}"
    "<|im_start|>{{ message['role'] }}\n{% if message['content'] is string %}{{ message['content'] }}<|im_end|>\n"
    "{% else %}{% for content in message['content'] %}"
    "{% if content['type'] == 'image' or 'image' in content or 'image_url' in content %}"
    "{% set image_count.value = image_count.value + 1 %}{% if add_vision_id %}Picture {{ image_count.value }}: "
    "{% endif %}<|vision_start|><|image_pad|><|vision_end|>"
    "{% elif content['type'] == 'video' or 'video' in content %}{% set video_count.value = video_count.value + 1 %}"
    "{% if add_vision_id %}Video {{ video_count.value }}: {% endif %}<|vision_start|><|video_pad|><|vision_end|>"
    "{% elif 'text' in content %}{{ content['text'] }}{% endif %}{% endfor %}<|im_end|>\n{% endif %}{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)

LONG_PROMPT = (
    "A panda, dressed in a small, red jacket and a tiny hat, sits on a wooden stool in a serene bamboo forest. "
    "The panda's fluffy paws strum a miniature acoustic guitar, producing soft, melodic tunes. Nearby, a few other "
    "pandas gather, watching curiously and some clapping in rhythm. Sunlight filters through the tall bamboo, "
    "casting a gentle glow on the scene. The panda's face is expressive, showing concentration and joy as it plays. "
)

EXTRA_CORPUS = [
    "A neon sign reads \"OPEN 24 HOURS\" above the door, and a poster says \u201cWelcome home\u201d.",
    "Caf\u00e9 cr\u00e8me br\u00fbl\u00e9e at the \u00e9cole. \u6771\u4eac\u306e\u591c\u666f, \u5317\u4eac\u7684\u96ea\u3002",
    "Numbers 0 1 2 3 4 5 6 7 8 9, 2024-05-17, 3.14159 and 42%.",
    LONG_PROMPT,
]

# Prompts for the Qwen side (chat template + pad/truncate), with tokenizer_max_length (the pipeline's is 1000).
QWEN_CASES = [
    ("A cat walks on the grass, realistic", 1000),
    ("", 1000),  # format_text_input turns "" into " "
    ("A neon sign that reads \"OPEN\" flickers; a poster says \u201cWelcome\u201d and \u201cWelcome\u201d again.", 1000),
    ("Caf\u00e9 cr\u00e8me, na\u00efve fa\u00e7ade \u2014 \u6771\u4eac\u306e\u591c\u666f \U0001F303\U0001F431 e\u0301cole "
     "(NFC composes e + U+0301)", 1000),
    ("Two  spaces,\ttab,\nnewline\r\nand   trailing   ", 1000),
    ("special tokens in text: <|im_end|> <|endoftext|> <|im_start|>user", 1000),
    (LONG_PROMPT * 8, 1000),  # longer than 1000 + 108 tokens: truncated, the chat tail is cut off
    ("A cat walks on the grass, realistic", 40),  # a shorter max length (40 + 108)
    (LONG_PROMPT, 20),  # truncated inside the system prefix + prompt at 20 + 108
]

# Glyph extraction (extract_glyph_texts): quotes, curly quotes, duplicates, none.
GLYPH_PROMPTS = [
    "A cat walks on the grass, realistic",
    "A sign that reads \"OPEN\".",
    "A neon sign \"OPEN 24 HOURS\" and a poster \u201cWelcome home\u201d, with \"OPEN 24 HOURS\" again.",
    "Only \u201ccurly\u201d and \u201ccurly\u201d quotes.",
    "One \"duplicate\" only once.",
    "Empty quotes \"\" and \"x\".",
    "Unbalanced \"quote and \u201cother.",
    "Across lines \"a\nb\" then \"c\".",
    "Mixed \"a\u201d and \u201cb\" pairs \"c\".",
    "\u4e2d\u6587 \u201c\u4f60\u597d\u4e16\u754c\u201d \u548c \"\u6c49\u5b57\"",
    "",
]

# ByT5 tokenizer cases: (text, max_length).
BYT5_CASES = [
    ("Text \"OPEN\". ", 256),
    ("", 256),
    ("", 8),
    ("Text \"\u4f60\u597d\u4e16\u754c\". Text \"caf\u00e9 \U0001F303\". ", 256),
    ("a" * 300, 256),  # > 256 bytes: truncated to 255 bytes + </s>
    ("\u00e9" * 200, 256),  # 400 bytes: cut inside a 2-byte character
    ("abcdefghij", 8),  # truncated to 7 + </s>
    ("abc", 4),
    ("abc", 3),
    ("x" * 255, 256),
    ("x" * 256, 256),
    ("ends with eos</s>", 32),  # a literal </s> is the eos token; no second one is added
    ("a </s>  b <pad> c <unk>d<extra_id_0> e <extra_id_124>", 64),  # added tokens, stripped around <pad>/</s>/<unk>
    ("tab\tnewline\nnul\u0000del\u007f", 32),
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
    return {"shape": list(t.shape), "dtype": str(t.dtype).replace("torch.", ""), "min": float(tf.min()),
            "max": float(tf.max()), "mean": float(tf.mean()), "std": float(tf.std()) if t.numel() > 1 else 0.0}


def versions():
    return {"diffusers": diffusers.__version__, "transformers": transformers.__version__,
            "torch": torch.__version__.split("+")[0], "tokenizers": tokenizers.__version__}


def save_tensors(path, tensors, meta=None):
    tensors = {k: v.detach().contiguous().clone() for k, v in tensors.items()}
    info = {"generator": GENERATOR, **versions(), **(meta or {})}
    save_file(tensors, str(path), metadata={"info": json.dumps(info, sort_keys=True)})
    return {k: stats(v) for k, v in tensors.items()}


def write_json(path, obj):
    with open(path, "w", encoding="utf-8") as f:
        json.dump(obj, f, indent=1, ensure_ascii=False)
        f.write("\n")


def check_nontrivial(name, t, min_std=1e-3):
    t = t.detach().double()
    assert torch.isfinite(t).all(), f"{name}: non-finite values"
    assert t.std() > min_std, f"{name}: (near) constant, std {float(t.std())}"


def pipeline_system_message():
    """`self.system_message` as HunyuanVideo15Pipeline.__init__ assigns it (parsed from the source, since the pipeline
    cannot be built without a VAE), checked against `_get_mllm_prompt_embeds`' default."""
    # The whole module's source: dedenting the method's source would change the literal's continuation lines.
    for node in ast.walk(ast.parse(inspect.getsource(hv15))):
        if isinstance(node, ast.Assign) and ast.unparse(node.targets[0]) == "self.system_message":
            msg = ast.literal_eval(node.value)
            break
    default = inspect.signature(hv15.HunyuanVideo15Pipeline._get_mllm_prompt_embeds).parameters["system_message"]
    assert msg == default.default, "the pipeline's two system messages differ"
    return msg


# ----------------------------------------------------------------------------------------------------------
# Tokenizers
# ----------------------------------------------------------------------------------------------------------


def train_bpe(corpus):
    """Byte-level BPE merges in Qwen2's pre-tokenization (NFC, Qwen2's split regex, ByteLevel without its regex).
    The trainer is deterministic (merges ranked by count, ties by pair)."""
    t = Tokenizer(models.BPE())
    t.normalizer = normalizers.NFC()
    t.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(PRETOKENIZE_REGEX), behavior="isolated", invert=False),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
    ])
    trainer = trainers.BpeTrainer(vocab_size=BPE_VOCAB, min_frequency=2, show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), special_tokens=[])
    t.train_from_iterator(corpus, trainer=trainer)
    j = json.loads(t.to_str())
    return j["model"]["vocab"], [tuple(m) if isinstance(m, list) else tuple(m.split(" ")) for m in j["model"]["merges"]]


def build_qwen_tokenizer(system_message):
    corpus = [system_message] + list(WAN_CORPUS) + EXTRA_CORPUS
    vocab, merges = train_bpe(corpus)
    vocab = dict(sorted(vocab.items(), key=lambda kv: kv[1]))
    assert list(vocab.values()) == list(range(len(vocab))), "BPE ids are not dense"
    for t in SPECIAL_TOKENS:
        vocab[t] = len(vocab)
    tok = Qwen2Tokenizer(vocab=vocab, merges=list(merges), errors="replace",
                         model_max_length=131072, clean_up_tokenization_spaces=False)
    tok.add_special_tokens({"additional_special_tokens": SPECIAL_TOKENS[1:]})
    tok.chat_template = QWEN25_VL_CHAT_TEMPLATE
    assert len(tok) == len(vocab) <= QWEN_VOCAB, (len(tok), len(vocab))
    for t in SPECIAL_TOKENS:
        assert tok.convert_tokens_to_ids(t) == vocab[t], t
    return tok


def save_qwen_tokenizer(tok):
    d = MODEL / "tokenizer"
    tok.save_pretrained(str(d))
    # The built-in tiny preset's folder: tokenizer.json and tokenizer_config.json with the chat template inside (as
    # Qwen2.5-VL's own repository ships it).
    if TINY_TOKENIZER.exists():
        shutil.rmtree(TINY_TOKENIZER)
    TINY_TOKENIZER.mkdir(parents=True)
    shutil.copy(d / "tokenizer.json", TINY_TOKENIZER / "tokenizer.json")
    cfg = json.loads((d / "tokenizer_config.json").read_text())
    cfg["chat_template"] = QWEN25_VL_CHAT_TEMPLATE
    write_json(TINY_TOKENIZER / "tokenizer_config.json", cfg)
    return sorted(p.name for p in d.iterdir())


def mllm_tokenize(tok, prompts, system_message, tokenizer_max_length=1000, crop_start=108):
    """The tokenization of HunyuanVideo15Pipeline._get_mllm_prompt_embeds."""
    messages = hv15.format_text_input(prompts, system_message)
    out = tok.apply_chat_template(messages, add_generation_prompt=True, tokenize=True, return_dict=True,
                                  padding="max_length", max_length=tokenizer_max_length + crop_start, truncation=True,
                                  return_tensors="pt")
    rendered = tok.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    return out.input_ids, out.attention_mask, rendered


def qwen_tokenizer_cases(tok, tiny_tok, system_message):
    cases = []
    for prompt, max_len in QWEN_CASES:
        ids, mask, rendered = mllm_tokenize(tok, [prompt], system_message, max_len)
        ids2, mask2, rendered2 = mllm_tokenize(tiny_tok, [prompt], system_message, max_len)
        assert torch.equal(ids, ids2) and torch.equal(mask, mask2) and rendered == rendered2, prompt
        cases.append({"prompt": prompt, "tokenizer_max_length": max_len, "crop_start": 108, "rendered": rendered[0],
                      "real_tokens": int(mask.sum()), "input_ids": ids[0].tolist(),
                      "attention_mask": mask[0].tolist()})
    assert any(c["real_tokens"] == c["tokenizer_max_length"] + 108 for c in cases if c["tokenizer_max_length"] == 1000)
    return cases


def byt5_cases(tok2):
    cases = []
    for text, max_len in BYT5_CASES:
        enc = tok2(text, padding="max_length", max_length=max_len, truncation=True, add_special_tokens=True)
        cases.append({"text": text, "max_length": max_len, "input_ids": enc.input_ids,
                      "attention_mask": enc.attention_mask, "tokens": tok2.convert_ids_to_tokens(enc.input_ids)})
    glyphs = [{"prompt": p, "glyph_text": hv15.extract_glyph_texts(p)} for p in GLYPH_PROMPTS]
    return cases, glyphs


# ----------------------------------------------------------------------------------------------------------
# Encoders
# ----------------------------------------------------------------------------------------------------------


def build_qwen():
    cfg = Qwen2_5_VLTextConfig(**QWEN_CONFIG)
    torch.manual_seed(SEED_QWEN)
    m = Qwen2_5_VLTextModel(cfg).eval().float()
    rerandomize(m, SEED_QWEN, bias_std=0.3)
    return m


def build_byt5():
    cfg = T5Config(**BYT5_CONFIG)
    torch.manual_seed(SEED_BYT5)
    te = T5EncoderModel(cfg).eval().float()
    g = torch.Generator().manual_seed(SEED_BYT5)
    with torch.no_grad():
        for name, p in sorted(te.named_parameters(), key=lambda kv: kv[0]):
            if "layer_norm" in name:
                p.copy_(1.0 + 0.1 * torch.randn(p.shape, generator=g))
            elif "relative_attention_bias" in name:
                p.copy_(0.5 * torch.randn(p.shape, generator=g))
    return te


def plain_rope_check(model, seq_len):
    """For text-only input the three mrope rows are the same positions, so the recomposed cos/sin equal plain 1-D
    RoPE's (rotate-half layout: the half-table repeated)."""
    rot = model.rotary_emb
    x = torch.zeros(1, seq_len, 8)
    pos = torch.arange(seq_len).view(1, 1, -1).expand(3, 1, -1)
    cos, sin = rot(x, pos)
    inv = rot.inv_freq
    freqs = torch.arange(seq_len).float()[:, None] * inv[None]
    emb = torch.cat([freqs, freqs], -1)
    assert torch.equal(cos[0], emb.cos()) and torch.equal(sin[0], emb.sin()), "mrope != 1-D rope for text"
    return inv


def qwen_encoder_io(qwen, tok, system_message):
    """Per-entry hidden_states on a right-padded row (as the pipeline) and a left-padded row (the same tokens)."""
    s = 48
    ids, mask, _ = mllm_tokenize(tok, ["A cat"], system_message, tokenizer_max_length=1000)
    real = ids[0][mask[0].bool()][-(s - 12):]  # the tail: the prompt and the generation prompt
    n = real.numel()
    pad = tok.pad_token_id
    right = torch.cat([real, torch.full((s - n,), pad)])
    left = torch.cat([torch.full((s - n,), pad), real])
    ids = torch.stack([right, left])
    mask = torch.stack([torch.cat([torch.ones(n), torch.zeros(s - n)]),
                        torch.cat([torch.zeros(s - n), torch.ones(n)])]).long()
    with torch.no_grad():
        out = qwen(input_ids=ids, attention_mask=mask, output_hidden_states=True)
        hs = out.hidden_states
        qwen.config._attn_implementation = "eager"
        eager = qwen(input_ids=ids, attention_mask=mask, output_hidden_states=True).hidden_states
        qwen.config._attn_implementation = "sdpa"
    assert len(hs) == QWEN_CONFIG["num_hidden_layers"] + 1
    assert torch.equal(hs[-1], out.last_hidden_state)
    real_rows = mask.bool()
    notes = {}
    for i, (a, b) in enumerate(zip(hs, eager)):
        notes[f"hidden_states_{i}_sdpa_vs_eager_real_tokens_max_abs"] = float((a - b)[real_rows].abs().max())
        notes[f"hidden_states_{i}_sdpa_vs_eager_padded_tokens_max_abs"] = float((a - b)[~real_rows].abs().max())
    for i, h in enumerate(hs):
        check_nontrivial(f"hidden_states_{i}", h)
    tensors = {"input_ids": ids, "attention_mask": mask, **{f"hidden_states_{i}": h for i, h in enumerate(hs)}}
    return tensors, notes, n


def bf16_error(model, reference, forward):
    """max |bf16 - f32| / (1 + |f32|) of torch's own bf16 run (the metric the Rust tests use): what bf16 costs."""
    import copy
    m = copy.deepcopy(model).to(torch.bfloat16)
    with torch.no_grad():
        y = forward(m).double()
    return float(((y - reference.double()).abs() / (1 + reference.double().abs())).max())


def main():
    TEXT.mkdir(parents=True, exist_ok=True)
    for sub in ("tokenizer", "text_encoder", "tokenizer_2", "text_encoder_2"):
        if (MODEL / sub).exists():
            shutil.rmtree(MODEL / sub)
    system_message = pipeline_system_message()
    summary = {**versions(), "generator": GENERATOR, "system_message": system_message, "files": {}}

    # ---- tokenizers ----------------------------------------------------------------------------------------------
    tok = build_qwen_tokenizer(system_message)
    summary["tokenizer_files"] = save_qwen_tokenizer(tok)
    tok = AutoTokenizer.from_pretrained(str(MODEL / "tokenizer"))
    tiny_tok = AutoTokenizer.from_pretrained(str(TINY_TOKENIZER))
    assert tok.padding_side == "right" and tok.truncation_side == "right", (tok.padding_side, tok.truncation_side)
    summary["tokenizer_class"] = type(tok).__name__
    summary["tokenizer_len"] = len(tok)
    summary["pad_token_id"] = tok.pad_token_id
    write_json(TEXT / "qwen_tokenizer_cases.json", qwen_tokenizer_cases(tok, tiny_tok, system_message))

    tok2 = ByT5Tokenizer()
    tok2.save_pretrained(str(MODEL / "tokenizer_2"))
    tok2 = AutoTokenizer.from_pretrained(str(MODEL / "tokenizer_2"))
    summary["tokenizer_2_class"] = type(tok2).__name__
    summary["tokenizer_2_len"] = len(tok2)
    cases, glyphs = byt5_cases(tok2)
    write_json(TEXT / "byt5_tokenizer_cases.json", {"tokenizer": cases, "glyph_texts": glyphs})

    # ---- Qwen2.5-VL text model -------------------------------------------------------------------------------------
    qwen = build_qwen()
    qwen.save_pretrained(str(MODEL / "text_encoder"), safe_serialization=True)
    qwen = Qwen2_5_VLTextModel.from_pretrained(str(MODEL / "text_encoder"), dtype=torch.float32).eval()
    summary["text_encoder_attn_implementation"] = qwen.config._attn_implementation
    inv_freq = plain_rope_check(qwen, 64)
    tensors, notes, n = qwen_encoder_io(qwen, tok, system_message)
    notes["torch_bf16_hidden_states_2_max_rel_err_vs_f32"] = bf16_error(
        qwen, tensors["hidden_states_2"], lambda m: m(input_ids=tensors["input_ids"],
                                                   attention_mask=tensors["attention_mask"],
                                                   output_hidden_states=True).hidden_states[2])
    tensors["inv_freq"] = inv_freq
    summary["files"]["qwen_encoder_io.safetensors"] = {
        "rows": f"row 0: {n} real tokens then padding (right); row 1: the same tokens left-padded",
        "hidden_states": "hidden_states_i = output_hidden_states=True entry i: 0 embeddings, i the input of layer i"
                         " (= output of layer i-1), last = final normed output",
        "inv_freq": "Qwen2_5_VLRotaryEmbedding.inv_freq (f32)",
        **notes,
        "tensors": save_tensors(TEXT / "qwen_encoder_io.safetensors", tensors),
    }

    # ---- ByT5 ------------------------------------------------------------------------------------------------------
    byt5 = build_byt5()
    byt5.save_pretrained(str(MODEL / "text_encoder_2"), safe_serialization=True)
    byt5 = T5EncoderModel.from_pretrained(str(MODEL / "text_encoder_2"), dtype=torch.float32).eval()
    texts = ["Text \"OPEN 24 HOURS\". Text \"Welcome home\". ", "Text \"\u4f60\u597d\". "]
    enc = tok2(texts, padding="max_length", max_length=48, truncation=True, add_special_tokens=True,
               return_tensors="pt")
    with torch.no_grad():
        out = byt5(input_ids=enc.input_ids, attention_mask=enc.attention_mask.float(), output_hidden_states=True)
        out_int = byt5(input_ids=enc.input_ids, attention_mask=enc.attention_mask)
    assert torch.equal(out.last_hidden_state, out_int.last_hidden_state), "a float mask differs from an int one"
    check_nontrivial("byt5 last_hidden_state", out.last_hidden_state)
    byt5_bf16 = bf16_error(byt5, out.last_hidden_state, lambda m: m(
        input_ids=enc.input_ids, attention_mask=enc.attention_mask.float()).last_hidden_state)
    summary["files"]["byt5_encoder_io.safetensors"] = {
        "texts": texts,
        "note": "T5EncoderModel(input_ids, attention_mask=mask.float()) as _get_byt5_prompt_embeds calls it",
        "torch_bf16_last_hidden_state_max_rel_err_vs_f32": byt5_bf16,
        "tensors": save_tensors(TEXT / "byt5_encoder_io.safetensors", {
            "input_ids": enc.input_ids, "attention_mask": enc.attention_mask,
            "last_hidden_state": out.last_hidden_state,
            **{f"hidden_states_{i}": h for i, h in enumerate(out.hidden_states)}}),
    }

    # ---- encode_prompt ---------------------------------------------------------------------------------------------
    prompts = ["A neon sign that reads \"OPEN 24 HOURS\" glows above a \u201ccaf\u00e9\u201d door at night.",
               "A cat walks on the grass, realistic"]
    pipe = SimpleNamespace(
        tokenizer=tok, text_encoder=qwen, tokenizer_2=tok2, text_encoder_2=byt5,
        tokenizer_max_length=1000, tokenizer_2_max_length=256, prompt_template_encode_start_idx=108,
        system_message=system_message, _execution_device=torch.device("cpu"),
        _get_mllm_prompt_embeds=hv15.HunyuanVideo15Pipeline._get_mllm_prompt_embeds,
        _get_byt5_prompt_embeds=hv15.HunyuanVideo15Pipeline._get_byt5_prompt_embeds,
    )
    with torch.no_grad():
        pe, pm, pe2, pm2 = hv15.HunyuanVideo15Pipeline.encode_prompt(
            pipe, prompts, device=torch.device("cpu"), batch_size=len(prompts), num_videos_per_prompt=1)
    ids, mask, _ = mllm_tokenize(tok, prompts, system_message)
    glyph_ids = tok2(hv15.extract_glyph_texts(prompts[0]), padding="max_length", max_length=256, truncation=True,
                     add_special_tokens=True, return_tensors="pt")
    assert pm2[1].sum() == 0 and pe2[1].abs().sum() == 0, "no glyph text: zero embeddings and mask"
    check_nontrivial("prompt_embeds", pe)
    check_nontrivial("prompt_embeds_2", pe2[0])
    summary["files"]["encode_prompt_io.safetensors"] = {
        "prompts": prompts,
        "glyph_texts": [hv15.extract_glyph_texts(p) for p in prompts],
        "call": "HunyuanVideo15Pipeline.encode_prompt(prompts, batch_size=2, num_videos_per_prompt=1) with the tiny"
                " components; masks are returned as float32 (the text encoder's dtype)",
        "tensors": save_tensors(TEXT / "encode_prompt_io.safetensors", {
            "qwen_input_ids": ids, "qwen_attention_mask": mask, "byt5_input_ids": glyph_ids.input_ids,
            "prompt_embeds": pe, "prompt_embeds_mask": pm, "prompt_embeds_2": pe2, "prompt_embeds_mask_2": pm2}),
    }
    write_json(TEXT / "text_goldens.json", summary)

    files = [p for p in list(MODEL.rglob("*")) + list(TEXT.rglob("*")) + list(TINY_TOKENIZER.rglob("*"))
             if p.is_file() and any(s in p.parts for s in ("text", "tokenizer", "text_encoder", "tokenizer_2",
                                                           "text_encoder_2"))]
    total = sum(p.stat().st_size for p in files)
    print(json.dumps({"qwen_tokenizer_len": len(tok), "bytes": total,
                      "sha256": {str(p.relative_to(REPO)): hashlib.sha256(p.read_bytes()).hexdigest()[:12]
                                 for p in sorted(files)}}, indent=1, ensure_ascii=False))
    assert total < 1_500_000, total


if __name__ == "__main__":
    sys.exit(main())
