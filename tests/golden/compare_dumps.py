#!/usr/bin/env python3
"""Compares a llama.cpp tensor dump (dump_llama_tensors) with Saola's (dump_saola_tensors).

    python3 tests/golden/compare_dumps.py LLAMA_DIR SAOLA_DIR [--all]

For each tensor Saola wrote, in graph order, compares the rows both dumps have (llama.cpp keeps
only the output rows after the last layer's attention, so the last rows are compared), printing
the number of differing floats and the largest absolute difference. Stops at the first tensor
that differs unless --all.
"""
import os
import sys

import numpy as np

ORDER = ["embd"]
for l in range(64):
    ORDER += [f"attn_norm-{l}", f"Qcur-{l}", f"Kcur-{l}", f"Vcur-{l}", f"Qcur-{l}.2", f"Kcur-{l}.2",
              f"kqv_out-{l}", f"attn_out-{l}", f"ffn_inp-{l}", f"ffn_norm-{l}", f"ffn_gate-{l}",
              f"ffn_up-{l}", f"ffn_swiglu-{l}", f"ffn_out-{l}", f"l_out-{l}"]
ORDER += ["result_norm", "result_output", "logits"]


def main():
    ref, ours = sys.argv[1], sys.argv[2]
    show_all = "--all" in sys.argv
    for name in ORDER:
        a_path, b_path = f"{ref}/{name}.f32", f"{ours}/{name}.f32"
        if not (os.path.exists(a_path) and os.path.exists(b_path)):
            continue
        a = np.fromfile(a_path, dtype=np.float32)
        b = np.fromfile(b_path, dtype=np.float32)
        n = min(a.size, b.size)
        a, b = a[a.size - n:], b[b.size - n:]
        diff = (a.view(np.uint32) != b.view(np.uint32))
        nd = int(diff.sum())
        mx = float(np.abs(a.astype(np.float64) - b).max()) if n else 0.0
        print(f"{name:16s} {n:8d} floats  {nd:8d} differ  max |diff| {mx:.3g}")
        if nd and not show_all:
            idx = np.nonzero(diff)[0][:5]
            for i in idx:
                print(f"    [{i}] llama {a[i]!r} saola {b[i]!r}")
            return


main()
