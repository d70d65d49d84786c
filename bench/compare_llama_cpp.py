#!/usr/bin/env python3
"""Compares Saola's CPU prefill and decode speed with llama.cpp's on the same GGUF file.

    python3 bench/compare_llama_cpp.py [--model PATH] [--llama-bench PATH] [--threads 2]

Runs back to back, on the same model, with the same thread count:
  saola    build/bin/saola-worker bench --model M --prompt-tokens P --gen-tokens G --threads T --json
           which prints one JSON line {"prefill_tokens_per_s": X, "decode_tokens_per_s": Y};
           it runs --saola-reps times (default 3) and the median of each rate is taken.
  llama    llama-bench -m M -p P -n G -t T -r R -o json (llama-bench repeats R times itself and
           reports the mean); built by scripts/build-llama-cpp when missing.
  membw    build/bin/saola-membw --threads T, this machine's memory read bandwidth.

Then prints prefill and decode tokens/s for both, the ratios saola/llama.cpp, and the memory
bandwidth decode achieves: bytes read per token (about the GGUF file size, since every weight
tensor is read once per token; SmolLM2 ties its output to the embedding table, so that is read in
full too) times decode tokens/s, next to the machine's measured bandwidth. Exits 1 when a
measurement is missing (for example saola-worker is not built yet), after printing what it has.
"""

import argparse
import json
import shlex
import statistics
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_MODEL = ROOT / "models" / "SmolLM2-135M-Instruct.Q4_1.gguf"
DEFAULT_LLAMA_BENCH = ROOT / "third_party_build" / "llama.cpp-build" / "bin" / "llama-bench"
DEFAULT_WORKER = ROOT / "build" / "bin" / "saola-worker"
DEFAULT_MEMBW = ROOT / "build" / "bin" / "saola-membw"


def log(msg):
    print(f"compare_llama_cpp: {msg}", file=sys.stderr, flush=True)


def last_json_line(text, required_keys):
    """The last line of `text` that is a JSON object holding every key in required_keys."""
    for line in reversed(text.splitlines()):
        line = line.strip()
        if not line.startswith("{"):
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError:
            continue
        if all(k in obj for k in required_keys):
            return obj
    return None


def run_saola(args):
    """Median prefill and decode tokens/s over args.saola_reps runs, or None when unavailable."""
    if not args.saola_worker.exists():
        log(f"saola-worker is not built ({args.saola_worker} is missing): run scripts/build; "
            "reporting llama.cpp alone")
        return None
    cmd = [str(args.saola_worker), "bench", "--model", str(args.model),
           "--prompt-tokens", str(args.prompt_tokens), "--gen-tokens", str(args.gen_tokens),
           "--threads", str(args.threads), "--json"]
    keys = ("prefill_tokens_per_s", "decode_tokens_per_s")
    runs = []
    for rep in range(args.saola_reps):
        log(f"saola run {rep + 1}/{args.saola_reps}: {' '.join(cmd)}")
        proc = subprocess.run(cmd, capture_output=True, text=True)
        result = last_json_line(proc.stdout, keys)
        if proc.returncode != 0 or result is None:
            log(f"saola-worker bench failed (exit {proc.returncode}); its output:\n"
                f"{proc.stdout[-2000:]}{proc.stderr[-2000:]}")
            return None
        runs.append(result)
    return {
        "prefill": statistics.median(r["prefill_tokens_per_s"] for r in runs),
        "decode": statistics.median(r["decode_tokens_per_s"] for r in runs),
        "runs": runs,
    }


def ensure_llama_bench(path):
    if path.exists():
        return True
    if path != DEFAULT_LLAMA_BENCH:
        log(f"llama-bench not found at {path}")
        return False
    log("llama-bench is missing; running scripts/build-llama-cpp")
    subprocess.run([str(ROOT / "scripts" / "build-llama-cpp")], check=False)
    return path.exists()


def run_llama_bench(args):
    """llama-bench's mean prefill and decode tokens/s plus its settings, or None."""
    if not ensure_llama_bench(args.llama_bench):
        return None
    cmd = [str(args.llama_bench), "-m", str(args.model), "-p", str(args.prompt_tokens),
           "-n", str(args.gen_tokens), "-t", str(args.threads), "-r", str(args.llama_reps),
           "-o", "json"] + shlex.split(args.llama_bench_args)
    log(f"llama.cpp: {' '.join(cmd)}")
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        log(f"llama-bench failed (exit {proc.returncode}):\n{proc.stderr[-3000:]}")
        return None
    tests = json.loads(proc.stdout)
    out = {"tests": tests}
    for t in tests:
        if t["n_prompt"] > 0 and t["n_gen"] == 0:
            out["prefill"] = t["avg_ts"]
        elif t["n_gen"] > 0 and t["n_prompt"] == 0:
            out["decode"] = t["avg_ts"]
    first = tests[0] if tests else {}
    out["settings"] = {k: first.get(k) for k in (
        "build_commit", "cpu_info", "backends", "model_type", "model_size", "n_batch", "n_ubatch",
        "n_threads", "type_k", "type_v", "flash_attn", "repack")}
    return out


def run_membw(args):
    if not args.membw.exists():
        log(f"saola-membw is not built ({args.membw} is missing): run scripts/build")
        return None
    cmd = [str(args.membw), "--threads", str(args.threads), "--mib", str(args.membw_mib)]
    log(f"memory bandwidth: {' '.join(cmd)}")
    proc = subprocess.run(cmd, capture_output=True, text=True)
    result = last_json_line(proc.stdout, ("read_gb_per_s",))
    if proc.returncode != 0 or result is None:
        log(f"saola-membw failed (exit {proc.returncode}): {proc.stderr[-1000:]}")
        return None
    return result


def fmt(x, spec="{:9.1f}"):
    return "      n/a" if x is None else spec.format(x)


def ratio(a, b):
    return None if a is None or b is None or b == 0 else a / b


def print_table(args, saola, llama, membw):
    model_bytes = args.model.stat().st_size
    s_pre = saola and saola["prefill"]
    s_dec = saola and saola["decode"]
    l_pre = llama and llama.get("prefill")
    l_dec = llama and llama.get("decode")

    def gbs(dec):
        return None if dec is None else model_bytes * dec / 1e9

    print()
    print(f"model    {args.model.name} ({model_bytes / 1e6:.1f} MB)")
    print(f"threads  {args.threads}   prompt {args.prompt_tokens} tokens   "
          f"generate {args.gen_tokens} tokens")
    if llama:
        print(f"llama.cpp {json.dumps(llama['settings'])}")
    print()
    print(f"{'':24}{'saola':>12}{'llama.cpp':>12}{'saola/llama':>14}")
    print(f"{'prefill tok/s':24}{fmt(s_pre):>12}{fmt(l_pre):>12}"
          f"{fmt(ratio(s_pre, l_pre), '{:9.2f}x'):>14}")
    print(f"{'decode tok/s':24}{fmt(s_dec):>12}{fmt(l_dec):>12}"
          f"{fmt(ratio(s_dec, l_dec), '{:9.2f}x'):>14}")
    print(f"{'decode GB/s (weights)':24}{fmt(gbs(s_dec), '{:9.2f}'):>12}"
          f"{fmt(gbs(l_dec), '{:9.2f}'):>12}")
    mem = membw and membw["read_gb_per_s"]
    if mem:
        print(f"{'share of machine GB/s':24}{fmt(ratio(gbs(s_dec), mem), '{:8.0%} '):>12}"
              f"{fmt(ratio(gbs(l_dec), mem), '{:8.0%} '):>12}")
        print(f"\nmachine read bandwidth {mem:.2f} GB/s (saola-membw: {args.threads} threads, "
              f"{membw['buffer_mib']} MiB, best of {membw['reps']}; median "
              f"{membw['median_read_gb_per_s']:.2f})")
    else:
        print("\nmachine read bandwidth: n/a")
    return {
        "model": args.model.name, "model_bytes": model_bytes, "threads": args.threads,
        "prompt_tokens": args.prompt_tokens, "gen_tokens": args.gen_tokens,
        "saola": saola, "llama_cpp": llama and {k: v for k, v in llama.items() if k != "tests"},
        "membw": membw,
    }


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", type=Path, default=DEFAULT_MODEL)
    ap.add_argument("--llama-bench", type=Path, default=DEFAULT_LLAMA_BENCH)
    ap.add_argument("--saola-worker", type=Path, default=DEFAULT_WORKER)
    ap.add_argument("--membw", type=Path, default=DEFAULT_MEMBW)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--prompt-tokens", type=int, default=512)
    ap.add_argument("--gen-tokens", type=int, default=128)
    ap.add_argument("--saola-reps", type=int, default=3)
    ap.add_argument("--llama-reps", type=int, default=5, help="llama-bench -r")
    ap.add_argument("--llama-bench-args", default="",
                    help="extra llama-bench arguments, e.g. '-fa 0' (its default is -fa auto, "
                         "which is on for the CPU)")
    ap.add_argument("--membw-mib", type=int, default=2048,
                    help="saola-membw buffer size; keep it well above the last-level cache")
    ap.add_argument("--json-out", type=Path, help="also write the results here as JSON")
    args = ap.parse_args()
    if not args.model.exists():
        sys.exit(f"compare_llama_cpp: model {args.model} not found (run scripts/fetch-models)")

    saola = run_saola(args)
    llama = run_llama_bench(args)
    membw = run_membw(args)
    summary = print_table(args, saola, llama, membw)
    if args.json_out:
        args.json_out.write_text(json.dumps(summary, indent=2) + "\n")
    missing = [name for name, v in (("saola", saola), ("llama.cpp", llama), ("membw", membw))
               if v is None]
    if missing:
        log(f"incomplete: no result from {', '.join(missing)}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
