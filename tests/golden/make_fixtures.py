#!/usr/bin/env python3
"""Writes Saola's golden parity fixtures from llama.cpp, the reference implementation.

    scripts/build-llama-cpp && python3 tests/golden/make_fixtures.py

Outputs, next to this file:
  tokenizer_cases.jsonl  one {"text", "ids"} per line: llama_tokenize(add_special=True,
                         parse_special=True) on the reference model's vocabulary.
  greedy_cases.json      prompts with their ids, 64 greedily generated ids (argmax of the raw
                         logits, no sampling, EOS does not stop) and the top-5 (id, logit) pairs of
                         every step's raw logits; step 0 is the prompt's last position.

llama.cpp is driven through the ctypes bindings of the llama-cpp-python sdist that
scripts/build-llama-cpp unpacks, loaded against the libllama.so it builds, so there is one build
of llama.cpp and the bindings match its headers exactly. Evaluation follows llama.cpp's own tools:
a fresh context per prompt, the whole prompt in one llama_decode (logits for its last position
only), then one token per llama_decode. Everything is deterministic: no randomness at all.
"""

import argparse
import ctypes
import hashlib
import json
import os
import subprocess
import sys
import types
import unicodedata
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent
MODEL = ROOT / "models" / "SmolLM2-135M-Instruct.Q4_1.gguf"
SDIST_VERSION = "0.3.36"
PKG_DIR = ROOT / "third_party_build" / f"llama_cpp_python-{SDIST_VERSION}"
LIB_DIR = ROOT / "third_party_build" / "llama.cpp-build" / "bin"

# Context settings for the greedy fixtures. Flash attention is off so that the reference is the
# plain path (KQ matmul, masked softmax, KQV matmul); make_fixtures --check-fa reports whether the
# greedy ids change with it on.
N_CTX = 1024
N_BATCH = 512
N_UBATCH = 512
N_THREADS = 2
N_GEN = 64
TOP_K = 5


def load_llama_cpp():
    """Imports the sdist's `llama_cpp` package bound to the libllama.so of scripts/build-llama-cpp."""
    if not (LIB_DIR / "libllama.so").exists() or not (PKG_DIR / "llama_cpp").is_dir():
        sys.exit("make_fixtures: llama.cpp is not built; run scripts/build-llama-cpp first")
    os.environ["LLAMA_CPP_LIB_PATH"] = str(LIB_DIR)
    # The package imports diskcache for a prompt cache that this script never uses; a stub keeps
    # the script free of that dependency.
    try:
        import diskcache  # noqa: F401
    except ImportError:
        sys.modules["diskcache"] = types.ModuleType("diskcache")
    sys.path.insert(0, str(PKG_DIR))
    import llama_cpp.llama_cpp as lc

    return lc


# --------------------------------------------------------------------------------------------
# Tokenizer strings
# --------------------------------------------------------------------------------------------


def tokenizer_texts():
    """Returns the deterministic list of strings whose token ids become tokenizer_cases.jsonl."""
    t = []

    # Edge cases: empty, single characters, whitespace only.
    t += ["", " ", "  ", "a", "A", "\n", "\t", "\r\n", ".", "0", "'", "\u00a0"]

    # Plain English.
    t += [
        "Hello",
        "Hello world",
        "Hello, world!",
        " Hello world",
        "hello world ",
        "The quick brown fox jumps over the lazy dog.",
        "THE QUICK BROWN FOX JUMPS OVER THE LAZY DOG",
        "tHe QuIcK bRoWn FoX",
        "The capital of France is Paris.",
        "I saw a saw that could saw saws.",
        "Once upon a time, in a land far, far away, there lived a small dragon who loved books.",
        "Machine learning models are trained on large datasets to recognize patterns.",
        "antidisestablishmentarianism",
        "supercalifragilisticexpialidocious",
        "Pneumonoultramicroscopicsilicovolcanoconiosis is a word.",
        "a b c d e f g h i j k l m n o p q r s t u v w x y z",
        "ABCDEFGHIJKLMNOPQRSTUVWXYZ",
        "abcdefghijklmnopqrstuvwxyz",
        "e-mail, co-operate, re-enter, well-being",
        "Mr. Smith went to Washington D.C. on Jan. 5th.",
        "U.S.A. vs. U.K.",
        "It was the best of times; it was the worst of times.",
    ]

    # Punctuation runs.
    t += [
        "Wait... what?!",
        "!!!???...",
        "(parentheses) [brackets] {braces} <angles>",
        "\"double\" 'single' `backtick`",
        "semi;colon:colon,comma.period",
        "--- *** ___ === +++ ~~~",
        "a--b__c..d",
        "@user #hashtag $100 %50 ^caret &amp *star",
        "\\backslash/slash|pipe",
        "\u201csmart quotes\u201d and \u2018single\u2019 \u2014 em dash \u2013 en dash \u2026",
        "\u00bfQu\u00e9? \u00a1S\u00ed!",
        "\u00ab guillemets \u00bb",
    ]

    # Contractions: the smollm pre-tokenizer matches 's 't 're 've 'm 'll 'd, lower case only.
    t += [
        "it's",
        "don't",
        "you're",
        "we've",
        "I'm",
        "they'll",
        "she'd",
        "IT'S",
        "DON'T",
        "YOU'RE",
        "WE'VE",
        "I'M",
        "THEY'LL",
        "SHE'D",
        "John'S car",
        "Don't you think it's time we'd've gone? I'm sure they'll say you're late.",
        "rock 'n' roll",
        "'s 't 're 've 'm 'll 'd",
        "''s",
        "it\u2019s (curly apostrophe)",
        "o'clock, ma'am, y'all",
        "'tis the season",
    ]

    # Digits: the smollm pre-tokenizer splits every digit.
    t += [
        "1",
        "12",
        "123",
        "1234",
        "12345678901234567890",
        "3.14159265358979323846",
        "-42",
        "+1 (555) 123-4567",
        "1,000,000",
        "1e-10",
        "0x1F 0b1010 0o777",
        "2024-01-15T10:30:00Z",
        "Version 2.0.1-rc3",
        "abc123def456",
        "I have 3 apples and 25 oranges.",
        "\u0661\u0662\u0663 Arabic-Indic digits",
        "\uff11\uff12\uff13 fullwidth digits",
        "\u00bd \u00bc \u00be \u2153 fractions",
        "\u2460\u2461\u2462 circled",
        "MMXXIV \u216b",
        "9" * 100,
    ]

    # Whitespace runs in every shape.
    t += [
        "  leading spaces",
        "trailing spaces  ",
        "   both   ",
        "multiple    spaces    between",
        "\ttab\tseparated\tvalues",
        "\t\t\tthree tabs",
        "line1\nline2\nline3",
        "line1\n\nline3",
        "\n\n\n",
        "windows\r\nline\r\nendings",
        "\r\n\r\n",
        "old mac\rline",
        " \t \n \r\n mixed",
        "trailing newline\n",
        "\nleading newline",
        "a \n b",
        "a\n b\n  c\n   d",
        " " * 16,
        "x" + " " * 7 + "y",
        "word\u00a0nbsp",
        "ideographic\u3000space",
        "em\u2003space thin\u2009space",
        "\u2028line separator\u2029paragraph separator",
        "\v\f vertical tab and form feed",
    ]

    # Unicode scripts.
    t += [
        # Chinese
        "\u4f60\u597d",
        "\u4f60\u597d\uff0c\u4e16\u754c\uff01",
        "\u6211\u7231\u5317\u4eac\u5929\u5b89\u95e8\u3002",
        "\u673a\u5668\u5b66\u4e60\u662f\u4eba\u5de5\u667a\u80fd\u7684\u4e00\u4e2a\u5206\u652f\u3002",
        "\u7e41\u9ad4\u4e2d\u6587\u6e2c\u8a66",
        # Japanese kana / kanji
        "\u3053\u3093\u306b\u3061\u306f",
        "\u30ab\u30bf\u30ab\u30ca",
        "\u65e5\u672c\u8a9e\u306e\u6587\u7ae0\u3067\u3059\u3002",
        "\u6771\u4eac\u30bf\u30ef\u30fc\u306f\u9ad8\u3044\u3067\u3059\u306d\uff01",
        "\uff8a\uff9d\uff76\uff78\uff76\uff80\uff76\uff85",
        # Korean hangul
        "\uc548\ub155\ud558\uc138\uc694",
        "\ud55c\uad6d\uc5b4\ub294 \uc544\ub984\ub2f5\uc2b5\ub2c8\ub2e4.",
        "\u1100\u1161\u11a8 conjoining jamo",
        # Vietnamese (NFC)
        "Ti\u1ebfng Vi\u1ec7t",
        "T\u00f4i y\u00eau Vi\u1ec7t Nam. Xin ch\u00e0o c\u00e1c b\u1ea1n!",
        "\u0110\u01b0\u1eddng ph\u1ed1 H\u00e0 N\u1ed9i r\u1ea5t \u0111\u00f4ng \u0111\u00fac.",
        # Arabic
        "\u0645\u0631\u062d\u0628\u0627",
        "\u0627\u0644\u0633\u0644\u0627\u0645 \u0639\u0644\u064a\u0643\u0645 \u0648\u0631\u062d\u0645\u0629 \u0627\u0644\u0644\u0647",
        "\u0643\u064e\u062a\u064e\u0628\u064e with harakat",
        # Hebrew
        "\u05e9\u05dc\u05d5\u05dd",
        "\u05e2\u05d1\u05e8\u05d9\u05ea \u05d4\u05d9\u05d0 \u05e9\u05e4\u05d4 \u05e9\u05de\u05d9\u05ea.",
        # Hindi / Devanagari
        "\u0928\u092e\u0938\u094d\u0924\u0947",
        "\u0939\u093f\u0928\u094d\u0926\u0940 \u092d\u093e\u0937\u093e \u092c\u0939\u0941\u0924 \u0938\u0941\u0902\u0926\u0930 \u0939\u0948\u0964",
        "\u0915\u094d\u0937\u0924\u094d\u0930\u093f\u092f",
        # Thai (no spaces between words)
        "\u0e2a\u0e27\u0e31\u0e2a\u0e14\u0e35",
        "\u0e20\u0e32\u0e29\u0e32\u0e44\u0e17\u0e22\u0e40\u0e1b\u0e47\u0e19\u0e20\u0e32\u0e29\u0e32\u0e17\u0e35\u0e48\u0e2a\u0e27\u0e22\u0e07\u0e32\u0e21",
        # Cyrillic
        "\u041f\u0440\u0438\u0432\u0435\u0442",
        "\u041f\u0440\u0438\u0432\u0435\u0442, \u043c\u0438\u0440! \u041a\u0430\u043a \u0434\u0435\u043b\u0430?",
        "\u0423\u043a\u0440\u0430\u0457\u043d\u0441\u044c\u043a\u0430 \u043c\u043e\u0432\u0430 \u0491\u0454\u0457",
        # Greek
        "\u0393\u03b5\u03b9\u03b1 \u03c3\u03bf\u03c5 \u039a\u03cc\u03c3\u03bc\u03b5",
        "\u03b1\u03b2\u03b3\u03b4\u03b5 \u0391\u0392\u0393\u0394\u0395 \u03c2\u03c3",
        # Others
        "\u10e5\u10d0\u10e0\u10d7\u10e3\u10da\u10d8 Georgian",
        "\u0540\u0561\u0575\u0565\u0580\u0565\u0576 Armenian",
        "\u12a0\u121b\u122d\u129b Amharic",
        "\u0ba4\u0bae\u0bbf\u0bb4\u0bcd Tamil",
        "\u09ac\u09be\u0982\u09b2\u09be Bengali",
        "Stra\u00dfe \u00e4\u00f6\u00fc \u00c4\u00d6\u00dc",
        "fa\u00e7ade na\u00efve caf\u00e9 r\u00e9sum\u00e9 co\u00f6perate",
        "\u0141\u00f3d\u017a \u017c\u00f3\u0142\u0107 Polish",
        "\u0130stanbul \u0131 T\u00fcrk\u00e7e",
        "\u00c5ngstr\u00f6m \u00f8 \u00e6",
        "mixed English \u4e2d\u6587 \u65e5\u672c\u8a9e \ud55c\uad6d\uc5b4 \u0627\u0644\u0639\u0631\u0628\u064a\u0629 \u05e2\u05d1\u05e8\u05d9\u05ea",
    ]

    # Emoji: single, modifiers, ZWJ sequences, flags, keycaps, variation selectors.
    t += [
        "\U0001f600",
        "\U0001f600\U0001f601\U0001f602",
        "I love pizza \U0001f355!",
        "\U0001f44d",
        "\U0001f44d\U0001f3fb \U0001f44d\U0001f3fc \U0001f44d\U0001f3fd \U0001f44d\U0001f3fe \U0001f44d\U0001f3ff",
        "\U0001f468\u200d\U0001f469\u200d\U0001f467\u200d\U0001f466 family",
        "\U0001f469\U0001f3fd\u200d\U0001f4bb coder",
        "\U0001f3f3\ufe0f\u200d\U0001f308 rainbow flag",
        "\U0001f1fa\U0001f1f8 \U0001f1ef\U0001f1f5 \U0001f1eb\U0001f1f7 flags",
        "\U0001f3f4\U000e0067\U000e0062\U000e0073\U000e0063\U000e0074\U000e007f Scotland",
        "\u2764\ufe0f \u2764 hearts",
        "1\ufe0f\u20e3 #\ufe0f\u20e3 keycaps",
        "\u263a\ufe0e text vs \u263a\ufe0f emoji",
        "\U0001f680\U0001f680\U0001f680\U0001f680\U0001f680",
        "emoji\U0001f389in\U0001f38amiddle",
    ]

    # Combining marks and normalization forms (the tokenizer does not normalize).
    t += [
        "e\u0301",
        "\u00e9",
        "cafe\u0301 vs caf\u00e9",
        "a\u0300\u0301\u0302\u0303\u0304 stacked",
        "Z\u0351\u036b\u0343\u036a\u0302\u036b\u033d\u034f\u0334\u0319\u0324\u031e\u0349\u035a\u032f\u031e\u0320\u034dalgo",
        "\u0e01\u0e34\u0e4a\u0e01 Thai marks",
    ]
    for s in ["Vi\u1ec7t Nam", "\uac00\ub098\ub2e4", "\u00c5ngstr\u00f6m", "\u1e9b\u0323"]:
        t.append(unicodedata.normalize("NFD", s))
    t.append(unicodedata.normalize("NFKC", "\ufb01le \u2460 \uff21\uff22\uff23"))
    t.append("\ufb01le \u2460 \uff21\uff22\uff23 (not NFKC)")

    # Zero-width and invisible characters.
    t += [
        "zero\u200bwidth\u200bspace",
        "zero\u200cwidth\u200dnon-joiner",
        "\ufeffBOM at start",
        "soft\u00adhyphen",
        "word\u2060joiner",
        "\u200e\u200fdirection marks\u202a\u202c",
        "\u034fCGJ",
    ]

    # Code.
    t += [
        "def hello():\n    print(\"Hello, world!\")\n",
        "for i in range(10):\n\tif i % 2 == 0:\n\t\tcontinue\n",
        "import numpy as np\nx = np.zeros((3, 4), dtype=np.float32)\n",
        "class Foo(Bar):\n    def __init__(self, *args, **kwargs):\n        super().__init__(*args, **kwargs)\n",
        "lambda x: x ** 2 if x >= 0 else -x",
        "#include <iostream>\n\nint main() {\n  std::cout << \"hi\" << std::endl;\n  return 0;\n}\n",
        "template <typename T>\nstd::vector<T> v{1, 2, 3};\nv.push_back(T{});",
        "auto p = std::make_unique<Foo>(); p->bar(); a::b::c<d<e>>();",
        "for (int i = 0; i < n; ++i) { sum += a[i] * b[i]; }",
        "x += 1; y -= 2; z *= 3; w /= 4; q %= 5; r <<= 1; s >>= 2; t != u && v || !w",
        "{\"name\": \"Saola\", \"version\": 1, \"tags\": [\"llm\", \"serving\"], \"ok\": true, \"n\": null}",
        "{\n  \"key\": \"value\",\n  \"nested\": {\"a\": [1, 2.5, -3e4]}\n}",
        "<!DOCTYPE html>\n<html><head><title>Test</title></head><body><p class=\"x\">Hi &amp; bye</p></body></html>",
        "<div id=\"main\" style=\"color: red;\">\n  <a href=\"https://example.com\">link</a>\n</div>",
        "SELECT id, name FROM users WHERE age > 21 ORDER BY name DESC;",
        "#!/bin/bash\nset -euo pipefail\necho \"$HOME\" | grep -v '^#' > /dev/null 2>&1",
        "fn main() -> Result<(), Box<dyn Error>> { let v: Vec<u8> = vec![]; Ok(()) }",
        "function f(a, b) { return a === b ? `${a}` : null; }",
        "    indented with four spaces\n        and eight",
        "// comment\n/* block\n   comment */\n# python comment\n-- sql comment",
        "\\frac{a}{b} + \\sqrt{x^2 + y^2} = \\sum_{i=0}^{n} x_i",
        "print('a'); print(\"b\"); print('''c''')",
        "0x7fffffff & ~0xFF | 0b1 ^ 0o7",
        "a[i][j] = b->c.d[e](f)",
    ]

    # Special-token text: parse_special=True turns control tokens into single ids.
    t += [
        "<|endoftext|>",
        "<|im_start|>",
        "<|im_end|>",
        "<|im_start|>user\nhi<|im_end|>",
        "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n<|im_start|>user\nWhat is 2+2?<|im_end|>\n<|im_start|>assistant\n",
        "before<|endoftext|>after",
        "before <|endoftext|> after",
        "text<|im_end|>\n<|im_start|>assistant\nreply",
        "<|im_start|><|im_end|>",
        "<|endoftext|><|endoftext|>",
        " <|im_start|> spaced ",
        "<|im_start|>user\n\u4f60\u597d\U0001f600<|im_end|>",
        "<file_sep><filename>main.py\nprint(1)",
        "<repo_name>saola<reponame>x<gh_stars>100",
        "<jupyter_start><jupyter_code>1+1<jupyter_output>2<jupyter_text>",
        "<issue_start>bug<issue_comment>fix<issue_closed>",
        "<empty_output>",
        # Near misses that must stay ordinary text.
        "<|im_start",
        "im_start|>",
        "<|im_starts|>",
        "<|IM_START|>",
        "< |im_start| >",
        "<<|im_end|>>",
        "<|unknown_special|>",
        "<|endoftext|",
        "<s> </s> <unk> [CLS] [SEP] [MASK]",
    ]

    # Invalid-looking or unusual text (all valid UTF-8).
    t += [
        "\ufffd replacement char",
        "\ufffd\ufffd\ufffd",
        "\x00 NUL in the middle",
        "\x01\x02\x03\x7f control chars",
        "\x1b[31mred\x1b[0m",
        "\U0010ffff max code point",
        "\ue000 private use \U000f0000",
        "\ufdd0 noncharacter \uffff",
        "\u202eright-to-left override",
        "\u0000\u0000",
        "\U0001d54f\U0001d552\U0001d55d\U0001d559 math alphanumerics",
        "\u24b6\u24b7\u24b8 enclosed",
    ]

    # Very long words and repeated characters.
    t += [
        "a" * 64,
        "ab" * 50,
        "A" * 40,
        "!" * 30,
        "\u4e2d" * 40,
        "\U0001f600" * 20,
        "Llanfairpwllgwyngyllgogerychwyrndrobwllllantysiliogogogoch",
        "hippopotomonstrosesquippedaliophobia" * 3,
        "-" * 80,
        "=" * 33 + "\n" + "=" * 33,
        "the " * 40,
        "mixedCaseCamelCaseIdentifierWithNumbers123And456",
        "snake_case_identifier_that_goes_on_and_on_and_on",
    ]

    # URLs, e-mail, paths.
    t += [
        "https://www.example.com/path/to/page?query=1&other=two#fragment",
        "http://localhost:8080/v1/chat/completions",
        "ftp://user:pass@ftp.example.org:21/files/data.tar.gz",
        "mailto:someone@example.com",
        "Visit https://huggingface.co/HuggingFaceTB/SmolLM2-135M-Instruct for details.",
        "/usr/local/bin/python3 C:\\Users\\Name\\Documents\\file.txt",
        "user.name+tag@sub.domain.co.uk",
        "https://\u4f8b\u3048.jp/\u30d1\u30b9",
    ]

    # Math and symbols.
    t += [
        "E = mc\u00b2",
        "\u2200x \u2208 \u211d, \u2203y : x < y",
        "\u222b\u2080\u00b9 x\u00b2 dx = \u2153",
        "\u2211 \u220f \u221a \u221e \u2248 \u2260 \u2264 \u2265 \u00b1 \u00d7 \u00f7",
        "\u03b1 + \u03b2 = \u03b3",
        "f(x) = 3x^2 + 2x - 1",
        "a\u2081 + a\u2082 + \u2026 + a\u2099",
        "\u2190 \u2191 \u2192 \u2193 \u21d2 \u21d4",
        "\u00a9 \u00ae \u2122 \u00a7 \u00b6 \u2020 \u2021",
        "$ \u20ac \u00a3 \u00a5 \u20b9 \u20bf",
        "\u2588\u2593\u2592\u2591 \u250c\u2500\u2510\u2502\u2514\u2518",
        "10 \u00b0C = 50 \u00b0F",
    ]

    # Mixed real-world snippets.
    t += [
        "Q: What's 2+2?\nA: It's 4.",
        "Dear Sir/Madam,\n\nI'm writing to inquire about the position.\n\nBest regards,\nJane",
        "- item one\n- item two\n  - nested item\n1. first\n2. second",
        "| col1 | col2 |\n|------|------|\n| a    | b    |",
        "**bold** _italic_ `code` ~~strike~~ [link](http://x.y)",
        "> quoted text\n>> nested quote",
        "TODO: fix this!!! (urgent) -- see #1234",
        "The price is $19.99 (was $24.99), a 20% discount!",
        "She said, \"I'll be there at 5:30 p.m.\"",
        "@everyone: meeting @ 3pm in room #4B",
        "\"\"\"Docstring.\"\"\"",
        "RT @user: check this out \U0001f449 https://t.co/abc123 #AI #ML",
    ]

    # Programmatic: every word of a pangram with each whitespace prefix, and digit groupings.
    for prefix in ["", " ", "  ", "\n", "\t"]:
        t.append(prefix + "jumps")
    for n in [7, 42, 777, 2048, 65536, 4294967296]:
        t.append(f"n={n}")
        t.append(f" {n:,}")

    seen = set()
    unique = []
    for s in t:
        if s not in seen:
            seen.add(s)
            unique.append(s)
    for s in unique:
        s.encode("utf-8")  # raises on lone surrogates
    return unique


# --------------------------------------------------------------------------------------------
# Greedy prompts
# --------------------------------------------------------------------------------------------

SYSTEM = "You are a helpful AI assistant named SmolLM, trained by Hugging Face"


def chatml(user, system=SYSTEM):
    return (
        f"<|im_start|>system\n{system}<|im_end|>\n"
        f"<|im_start|>user\n{user}<|im_end|>\n"
        "<|im_start|>assistant\n"
    )


def greedy_prompts():
    paragraph = (
        "The history of computing is a story of abstraction. Early machines were programmed by "
        "rewiring panels and flipping switches, and every program was tied to the hardware it ran "
        "on. Assembly languages gave names to instructions, compilers turned formulas into machine "
        "code, and operating systems hid the details of disks, memory and devices behind files and "
        "processes. Each layer let programmers think about bigger problems while trusting the layer "
        "below. Today, a single line of code can train a neural network on thousands of processors, "
        "yet underneath it all, the same simple operations still move bits from one place to another. "
        "In the next chapter, we will"
    )
    return [
        ("capital_of_france", "The capital of France is"),
        ("counting", "1, 2, 3, 4, 5,"),
        ("python_code", "def fibonacci(n):\n    \"\"\"Return the n-th Fibonacci number.\"\"\"\n"),
        ("shopping_list", "Shopping list:\n- apples\n- bread\n-"),
        ("paragraph", paragraph),
        ("french", "Il \u00e9tait une fois, dans un petit village au bord de la mer,"),
        ("chinese", "\u4eca\u5929\u7684\u5929\u6c14\u5f88\u597d\uff0c\u6211\u4eec"),
        ("chat_greeting", chatml("Hi! Who are you?")),
        ("chat_math", chatml("What is 17 times 23? Show your steps.")),
        ("chat_code", chatml("Write a Python function that reverses a string.")),
        ("chat_list", chatml("List three tips for better sleep.")),
        ("chat_custom_system", chatml("Translate 'good morning' into Spanish.",
                                      system="You are a concise translator.")),
        ("chat_multi_turn",
         chatml("What is the tallest mountain?")
         + "Mount Everest is the tallest mountain above sea level.<|im_end|>\n"
         "<|im_start|>user\nHow tall is it?<|im_end|>\n<|im_start|>assistant\n"),
        ("single_token", "Hello"),
    ]


# --------------------------------------------------------------------------------------------
# llama.cpp driver
# --------------------------------------------------------------------------------------------


class LogCapture:
    """Collects llama.cpp's log lines so that the interesting ones can be reported."""

    def __init__(self, lc, echo):
        self.lines = []
        self.echo = echo

        def callback(level, text, user_data):
            s = text.decode("utf-8", errors="replace")
            self.lines.append(s)
            if self.echo:
                sys.stderr.write(s)

        self.callback = lc.llama_log_callback(callback)  # kept alive by self
        lc.llama_log_set(self.callback, ctypes.c_void_p())


class Oracle:
    def __init__(self, lc, model_path, flash_attn):
        self.lc = lc
        lc.llama_backend_init()
        mparams = lc.llama_model_default_params()
        mparams.n_gpu_layers = 0
        self.model = lc.llama_model_load_from_file(str(model_path).encode(), mparams)
        if not self.model:
            sys.exit(f"make_fixtures: failed to load {model_path}")
        self.vocab = lc.llama_model_get_vocab(self.model)
        self.n_vocab = lc.llama_vocab_n_tokens(self.vocab)
        self.flash_attn = flash_attn

    def tokenize(self, text):
        data = text.encode("utf-8")
        cap = len(data) + 8
        buf = (self.lc.llama_token * cap)()
        n = self.lc.llama_tokenize(self.vocab, data, len(data), buf, cap, True, True)
        if n < 0:
            raise RuntimeError(f"llama_tokenize needs {-n} tokens for {text!r}")
        return list(buf[:n])

    def context_params(self):
        lc = self.lc
        p = lc.llama_context_default_params()
        p.n_ctx = N_CTX
        p.n_batch = N_BATCH
        p.n_ubatch = N_UBATCH
        p.n_seq_max = 1
        p.n_threads = N_THREADS
        p.n_threads_batch = N_THREADS
        p.flash_attn_type = (lc.LLAMA_FLASH_ATTN_TYPE_ENABLED if self.flash_attn
                             else lc.LLAMA_FLASH_ATTN_TYPE_DISABLED)
        p.no_perf = True
        return p

    def greedy(self, prompt_ids):
        """Greedy decoding; returns (ids, top5 per step). Step 0 = the prompt's last position."""
        import numpy as np

        lc = self.lc
        ctx = lc.llama_init_from_model(self.model, self.context_params())
        if not ctx:
            raise RuntimeError("llama_init_from_model failed")
        try:
            ids, top = [], []
            tokens = (lc.llama_token * len(prompt_ids))(*prompt_ids)
            batch = lc.llama_batch_get_one(tokens, len(prompt_ids))
            for step in range(N_GEN):
                rc = lc.llama_decode(ctx, batch)
                if rc != 0:
                    raise RuntimeError(f"llama_decode returned {rc} at step {step}")
                ptr = lc.llama_get_logits_ith(ctx, -1)
                logits = np.ctypeslib.as_array(ptr, shape=(self.n_vocab,)).copy()
                # Ties break towards the lower id, both for argmax and for the top-5 order.
                order = np.lexsort((np.arange(self.n_vocab), -logits))[:TOP_K]
                top.append([[int(i), float(str(logits[i]))] for i in order])
                nxt = int(order[0])
                assert nxt == int(np.argmax(logits))
                ids.append(nxt)
                if step + 1 < N_GEN:
                    one = (lc.llama_token * 1)(nxt)
                    batch = lc.llama_batch_get_one(one, 1)
                    tokens = one  # keep the buffer alive until llama_decode has read it
            return ids, top
        finally:
            lc.llama_free(ctx)

    def close(self):
        self.lc.llama_model_free(self.model)
        self.lc.llama_backend_free()


def sha256_of(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def llama_cpp_commit():
    try:
        return subprocess.check_output(
            ["git", "-C", str(PKG_DIR / "vendor" / "llama.cpp"), "rev-parse", "HEAD"],
            text=True, stderr=subprocess.DEVNULL).strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def interesting_log_lines(lines):
    keys = ("buffer size", "repack", "AMX", "CPU_", "flash_attn", "n_ctx", "type q4_1",
            "type q8_0", "type f32", "type f16", "file type", "causal_attn", "n_ubatch")
    return [s.rstrip() for s in lines if any(k in s for k in keys)]


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", type=Path, default=MODEL)
    ap.add_argument("--out-dir", type=Path, default=HERE)
    ap.add_argument("--verbose", action="store_true", help="echo llama.cpp's log")
    ap.add_argument("--check-fa", action="store_true",
                    help="also run the greedy cases with flash attention on and report differences")
    args = ap.parse_args()

    lc = load_llama_cpp()
    log = LogCapture(lc, args.verbose)
    oracle = Oracle(lc, args.model, flash_attn=False)

    texts = tokenizer_texts()
    tok_path = args.out_dir / "tokenizer_cases.jsonl"
    with open(tok_path, "w", encoding="utf-8", newline="\n") as f:
        for text in texts:
            f.write(json.dumps({"text": text, "ids": oracle.tokenize(text)}, ensure_ascii=False))
            f.write("\n")
    print(f"make_fixtures: {len(texts)} tokenizer cases -> {tok_path}")

    cases = []
    for name, prompt in greedy_prompts():
        prompt_ids = oracle.tokenize(prompt)
        ids, top = oracle.greedy(prompt_ids)
        cases.append({"name": name, "prompt": prompt, "prompt_ids": prompt_ids, "ids": ids,
                      "top5": top})
        print(f"make_fixtures: greedy {name}: {len(prompt_ids)} prompt tokens")

    system_info = lc.llama_print_system_info().decode()
    header = {
        "model": args.model.name,
        "model_sha256": sha256_of(args.model),
        "settings": {
            "llama_cpp_python_sdist": f"llama-cpp-python=={SDIST_VERSION}",
            "llama_cpp_commit": llama_cpp_commit(),
            "llama_version": (lc.llama_version() or b"").decode(),
            "build": "Release, shared libs, CPU only, GGML_NATIVE=ON with AMX compiled out "
                     "(scripts/build-llama-cpp)",
            "system_info": system_info.strip(),
            "n_ctx": N_CTX,
            "n_batch": N_BATCH,
            "n_ubatch": N_UBATCH,
            "n_threads": N_THREADS,
            "n_threads_batch": N_THREADS,
            "flash_attn": "disabled (llama-bench's default, auto, turns it on for the CPU)",
            "type_k": "f16",
            "type_v": "f16",
            "n_gpu_layers": 0,
            "tokenize": "llama_tokenize(add_special=true, parse_special=true); add_bos=false",
            "evaluation": "fresh context per case; whole prompt in one llama_decode, then one "
                          "token per llama_decode",
            "sampling": "argmax of raw logits (ties -> lower id); no penalties; EOS does not stop",
            "n_gen": N_GEN,
            "top_k_recorded": TOP_K,
            "top5_step0": "logits at the prompt's last position",
            "logit_format": "float32 printed with the shortest decimal that round-trips",
        },
        "cases": cases,
    }
    greedy_path = args.out_dir / "greedy_cases.json"
    with open(greedy_path, "w", encoding="utf-8", newline="\n") as f:
        f.write(dump_greedy(header))
    print(f"make_fixtures: {len(cases)} greedy cases -> {greedy_path}")
    print("make_fixtures: llama.cpp system info: " + system_info.strip())
    for s in interesting_log_lines(log.lines):
        print("make_fixtures: llama.cpp log: " + s)

    if args.check_fa:
        oracle.flash_attn = True
        worst = 0.0
        for case in cases:
            ids, top = oracle.greedy(case["prompt_ids"])
            first_diff = next((k for k, (a, b) in enumerate(zip(case["ids"], ids)) if a != b), None)
            # Steps up to the first differing id share their context, so their logits compare.
            n_same = N_GEN if first_diff is None else first_diff + 1
            diffs = []
            for ref_step, fa_step in zip(case["top5"][:n_same], top[:n_same]):
                fa_logits = dict((i, v) for i, v in fa_step)
                diffs += [abs(v - fa_logits[i]) for i, v in ref_step if i in fa_logits]
            d = max(diffs, default=0.0)
            worst = max(worst, d)
            status = "identical" if first_diff is None else f"differ from step {first_diff}"
            print(f"make_fixtures: flash-attn on, {case['name']}: ids {status}; "
                  f"max |top-5 logit diff| {d:.4g}")
        print(f"make_fixtures: flash-attn on: max top-5 logit diff {worst:.4g}")
    oracle.close()


def dump_greedy(obj):
    """JSON with one case field per line and one top-5 step per line: small diffs, easy review."""
    out = ["{"]
    for key in ("model", "model_sha256", "settings"):
        out.append(f"  {json.dumps(key)}: {json.dumps(obj[key], ensure_ascii=False)},")
    out.append('  "cases": [')
    for ci, case in enumerate(obj["cases"]):
        out.append("    {")
        for key in ("name", "prompt", "prompt_ids", "ids"):
            out.append(f"      {json.dumps(key)}: {json.dumps(case[key], ensure_ascii=False)},")
        out.append('      "top5": [')
        steps = [json.dumps(s, separators=(",", ":")) for s in case["top5"]]
        out.append(",\n".join("        " + s for s in steps))
        out.append("      ]")
        out.append("    }" + ("," if ci + 1 < len(obj["cases"]) else ""))
    out.append("  ]")
    out.append("}")
    text = "\n".join(out) + "\n"
    json.loads(text)  # the hand-built layout must stay valid JSON
    return text


if __name__ == "__main__":
    main()
