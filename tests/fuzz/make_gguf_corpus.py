#!/usr/bin/env python3
"""Writes the GGUF fuzzer's seed corpus into tests/fuzz/corpus/gguf/ (committed output).

Valid files are written by the reference `gguf` Python package (pip install gguf), so they also
cross-check the C++ reader against an independent writer (gguf_test parses every valid_* file
and expects every bad_* file to fail). Near-valid bad_* files are small edits of valid ones.
Every file stays under 4 KiB so the fuzzer mutates them quickly. Deterministic: running it again
rewrites the same bytes.

    python3 tests/fuzz/make_gguf_corpus.py
"""
import os
import struct
import tempfile

import numpy as np
from gguf import GGMLQuantizationType, GGUFValueType, GGUFWriter

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "corpus", "gguf")
HEADER_BYTES = 24  # magic, version, tensor count, kv count


def write_with(build, arch="llama"):
    """Runs build(writer) on a GGUFWriter and returns the file's bytes."""
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "f.gguf")
        writer = GGUFWriter(path, arch)
        build(writer)
        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_tensors_to_file()
        writer.close()
        with open(path, "rb") as f:
            return f.read()


def minimal(w):
    w.add_name("minimal")


def tiny_llama(w):
    rng = np.random.default_rng(1)
    w.add_block_count(1)
    w.add_context_length(64)
    w.add_embedding_length(32)
    w.add_head_count(2)
    w.add_rope_freq_base(10000.0)
    w.add_bool("tokenizer.ggml.add_bos_token", True)
    w.add_tokenizer_model("gpt2")
    w.add_token_list(["<s>", "</s>", "a", "b", "ab"])
    w.add_token_types([3, 3, 1, 1, 1])
    w.add_token_merges(["a b"])
    w.add_uint8("test.u8", 200)
    w.add_int8("test.i8", -5)
    w.add_uint16("test.u16", 60000)
    w.add_int16("test.i16", -300)
    w.add_int32("test.i32", -70000)
    w.add_uint64("test.u64", 1 << 40)
    w.add_int64("test.i64", -(1 << 40))
    w.add_float64("test.f64", 0.125)
    w.add_array("test.floats", [0.5, 1.5])
    w.add_tensor("norm.weight", rng.standard_normal(32).astype(np.float32))
    w.add_tensor("proj.weight", rng.standard_normal((2, 32)).astype(np.float16))
    q8 = rng.integers(0, 256, size=(2, 34), dtype=np.uint8)
    q8[:, 1] = 0x20  # f16 scale of moderate size
    w.add_tensor("q8.weight", q8, raw_dtype=GGMLQuantizationType.Q8_0)
    q41 = rng.integers(0, 256, size=(1, 40), dtype=np.uint8)
    w.add_tensor("q41.weight", q41, raw_dtype=GGMLQuantizationType.Q4_1)


def aligned_64(w):
    w.add_custom_alignment(64)
    w.add_tensor("a", np.arange(3, dtype=np.float32))
    w.add_tensor("b", np.arange(5, dtype=np.float32))


def k_quants(w):
    rng = np.random.default_rng(2)
    w.add_tensor("q4k", rng.integers(0, 256, size=(1, 144), dtype=np.uint8),
                 raw_dtype=GGMLQuantizationType.Q4_K)
    w.add_tensor("q6k", rng.integers(0, 256, size=(1, 210), dtype=np.uint8),
                 raw_dtype=GGMLQuantizationType.Q6_K)
    w.add_tensor("bf16", rng.integers(0, 256, size=(1, 8), dtype=np.uint8),
                 raw_dtype=GGMLQuantizationType.BF16)


def set_version(data, version):
    return data[:4] + struct.pack("<I", version) + data[8:]


def first_tensor_info_offset(data):
    """Offset of the first tensor info: skips the header and every key/value."""
    pos = HEADER_BYTES
    (num_kv,) = struct.unpack_from("<Q", data, 16)
    sizes = {0: 1, 1: 1, 2: 2, 3: 2, 4: 4, 5: 4, 6: 4, 7: 1, 10: 8, 11: 8, 12: 8}

    def skip_value(pos, vtype):
        if vtype == GGUFValueType.STRING:
            (n,) = struct.unpack_from("<Q", data, pos)
            return pos + 8 + n
        if vtype == GGUFValueType.ARRAY:
            etype, count = struct.unpack_from("<IQ", data, pos)
            pos += 12
            for _ in range(count):
                pos = skip_value(pos, etype)
            return pos
        return pos + sizes[vtype]

    for _ in range(num_kv):
        (n,) = struct.unpack_from("<Q", data, pos)
        pos += 8 + n
        (vtype,) = struct.unpack_from("<I", data, pos)
        pos = skip_value(pos + 4, vtype)
    return pos


def tensor_field_offsets(data):
    """(type offset, data-offset offset) of the first tensor info."""
    pos = first_tensor_info_offset(data)
    (n,) = struct.unpack_from("<Q", data, pos)
    pos += 8 + n
    (n_dims,) = struct.unpack_from("<I", data, pos)
    pos += 4 + 8 * n_dims
    return pos, pos + 4


def patch(data, offset, fmt, value):
    return data[:offset] + struct.pack(fmt, value) + data[offset + struct.calcsize(fmt):]


def main():
    os.makedirs(OUT, exist_ok=True)
    for name in os.listdir(OUT):
        os.remove(os.path.join(OUT, name))
    files = {
        "valid_minimal.gguf": write_with(minimal),
        "valid_tiny_llama.gguf": write_with(tiny_llama),
        "valid_aligned_64.gguf": write_with(aligned_64),
        "valid_k_quants.gguf": write_with(k_quants),
    }
    files["valid_v2.gguf"] = set_version(files["valid_tiny_llama.gguf"], 2)

    tiny = files["valid_tiny_llama.gguf"]
    type_at, offset_at = tensor_field_offsets(tiny)
    files["bad_v1.gguf"] = set_version(tiny, 1)
    files["bad_truncated.gguf"] = tiny[: len(tiny) - 200]
    files["bad_tensor_type.gguf"] = patch(tiny, type_at, "<I", 13)  # Q5_K: unsupported
    files["bad_offset.gguf"] = patch(tiny, offset_at, "<Q", 1 << 20)
    files["bad_misaligned.gguf"] = patch(tiny, offset_at, "<Q", 4)
    files["bad_huge_kv_count.gguf"] = patch(tiny, 16, "<Q", 1 << 60)
    files["bad_huge_tensor_count.gguf"] = patch(tiny, 8, "<Q", 1 << 60)
    # A nested array: one key whose array elements are arrays.
    files["bad_nested_array.gguf"] = (
        b"GGUF" + struct.pack("<IQQ", 3, 0, 1) + struct.pack("<Q", 1) + b"k"
        + struct.pack("<IIQ", 9, 9, 1) + struct.pack("<IQI", 4, 1, 7))
    # The same key twice.
    kv = struct.pack("<Q", 1) + b"k" + struct.pack("<II", 4, 1)
    files["bad_duplicate_key.gguf"] = b"GGUF" + struct.pack("<IQQ", 3, 0, 2) + kv + kv

    for name, data in sorted(files.items()):
        assert len(data) < 4096, (name, len(data))
        # Seeds are named .seed, not .gguf: they are fuzzer inputs, not models.
        name = name.removesuffix(".gguf") + ".seed"
        with open(os.path.join(OUT, name), "wb") as f:
            f.write(data)
        print(f"{name}: {len(data)} bytes")


if __name__ == "__main__":
    main()
