#!/usr/bin/env python3
"""Serving benchmark: saola-worker serve (gRPC) against llama.cpp's llama-server (HTTP).

    python3 bench/serve_bench.py [--model PATH] [--concurrency 1,8,32] [--requests-per-level N]
                                 [--output-tokens 128] [--skip-llama] [--only a|b|c] [--dry-run]

Starts each server itself (free ports, waits until it answers, kills it on exit, Ctrl-C and errors
included), drives it with closed-loop streams (each of C client threads sends its next request as
soon as its previous one finishes) and measures, back to back in one run:

(a) Throughput and latency at each concurrency C (default 1, 8, 32), on a fresh server per level
    with C slots (llama-server --parallel C; saola --max-running C) and the same KV capacity
    (C x --ctx-per-slot tokens; saola's --kv-cache-mb is computed from the GGUF's shapes). Every
    request has its own prompt: a seeded, deterministic text of 100-400 tokens (words that are one
    token each), the same for both servers, no two alike, so no prefix cache can help; llama-server
    gets "cache_prompt": false and --cache-ram 0 as well. Greedy (temperature 0), --output-tokens
    tokens with ignore_eos. Reported: aggregate output tokens/s (all output tokens / wall time of
    the level), TTFT (request sent -> first token arrives; mean, p50, p99), inter-token latency
    (gap between token arrivals, a message carrying k tokens counting k gaps of 1/k; mean, p50,
    p99), end-to-end latency, and the ratios saola / llama-server. It also checks that every
    request got exactly --output-tokens tokens and how many greedy outputs agree token for token.
(b) Prefix cache: a --system-tokens (1,000) token shared system prompt followed by --questions
    (32) different short questions, --prefix-concurrency (1) at a time, --prefix-output-tokens
    (16) tokens each. TTFT with the prefix cache and without: saola on a server started normally
    and on one started with --no-prefix-cache (when saola-worker does not accept that flag yet,
    "without" gives each question a distinct opening line before the system prompt, so no prefix
    can match, and says so); llama-server with "cache_prompt": true and then false. One warm-up
    request precedes each series (it fills the cache for the "with" series).
(c) KV waste: during saola's 32-stream level, scrapes its Prometheus endpoint (--metrics-port)
    every 0.25 s and reports each saola_kv_* series (min, mean, max while busy). Tolerant: when the
    worker exports no such series it says so and goes on.

The load generator shares the CPU with the server (2 cores here): it is kept light (threads that
block on sockets), and the same client runs against both servers. Timings taken while other
processes compete for the cores are noise; compare only runs taken back to back.

Python packages (grpcio, grpcio-tools; pinned in bench/requirements.txt) are installed from PyPI
into third_party_build/bench-venv on first use, and the script re-runs itself there. The gRPC
stubs are generated from proto/saola/v1/llm.proto into a temporary directory at each run.
Exits 1 when a server failed to start or answer (after printing what it has), 130 on Ctrl-C.
"""

import argparse
import atexit
import hashlib
import json
import math
import os
import queue
import random
import re
import shlex
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_MODEL = ROOT / "models" / "SmolLM2-135M-Instruct.Q4_1.gguf"
DEFAULT_WORKER = ROOT / "build" / "bin" / "saola-worker"
DEFAULT_LLAMA_SERVER = ROOT / "third_party_build" / "llama.cpp-build" / "bin" / "llama-server"
VENV = ROOT / "third_party_build" / "bench-venv"
REQUIREMENTS = ROOT / "bench" / "requirements.txt"
PROTO_DIR = ROOT / "proto"

READY_TIMEOUT_S = 180
REQUEST_TIMEOUT_S = 900
METRICS_PERIOD_S = 0.25


def log(msg):
    print(f"serve_bench: {msg}", file=sys.stderr, flush=True)


# ---------------------------------------------------------------------------------------------
# Python environment: a venv with grpcio, created on first use; the script re-executes itself in it.


def ensure_venv_and_reexec():
    """Re-runs this script under third_party_build/bench-venv, creating or updating it first."""
    python = VENV / "bin" / "python3"
    if Path(sys.prefix).resolve() == VENV.resolve():
        return
    want = hashlib.sha256(REQUIREMENTS.read_bytes()).hexdigest()
    stamp = VENV / "saola-requirements.sha256"
    if not python.exists() or not stamp.exists() or stamp.read_text().strip() != want:
        log(f"setting up {VENV} (pip install -r {REQUIREMENTS.relative_to(ROOT)})")
        if not python.exists():
            subprocess.run([sys.executable, "-m", "venv", str(VENV)], check=True)
        subprocess.run([str(python), "-m", "pip", "install", "--quiet",
                        "--disable-pip-version-check", "-r", str(REQUIREMENTS)], check=True)
        stamp.write_text(want + "\n")
    os.execv(str(python), [str(python), str(Path(__file__).resolve())] + sys.argv[1:])


# ---------------------------------------------------------------------------------------------
# Model shapes, for sizing saola's KV cache like llama-server's -c.

_GGUF_SCALARS = {0: "<B", 1: "<b", 2: "<H", 3: "<h", 4: "<I", 5: "<i", 6: "<f", 7: "<?", 10: "<Q",
                 11: "<q", 12: "<d"}
_GGUF_STRING, _GGUF_ARRAY = 8, 9


def read_gguf_metadata(path):
    """The GGUF header's scalar key/value pairs (arrays are skipped)."""
    with open(path, "rb") as f:
        def read(fmt):
            return struct.unpack(fmt, f.read(struct.calcsize(fmt)))[0]

        def read_str():
            return f.read(read("<Q")).decode("utf-8", "replace")

        def skip_value(vtype):
            if vtype == _GGUF_STRING:
                f.seek(read("<Q"), 1)
            elif vtype == _GGUF_ARRAY:
                item_type, count = read("<I"), read("<Q")
                if item_type in _GGUF_SCALARS:
                    f.seek(struct.calcsize(_GGUF_SCALARS[item_type]) * count, 1)
                else:
                    for _ in range(count):
                        skip_value(item_type)
            else:
                f.seek(struct.calcsize(_GGUF_SCALARS[vtype]), 1)

        if f.read(4) != b"GGUF":
            raise ValueError(f"{path} is not a GGUF file")
        read("<I")  # version
        read("<Q")  # tensor count
        meta = {}
        for _ in range(read("<Q")):
            key, vtype = read_str(), read("<I")
            if vtype in _GGUF_SCALARS:
                meta[key] = read(_GGUF_SCALARS[vtype])
            elif vtype == _GGUF_STRING:
                meta[key] = read_str()
            else:
                skip_value(vtype)
        return meta


def kv_bytes_per_token(model):
    """F16 K and V bytes per token over all layers, or None when the header lacks the shapes."""
    try:
        meta = read_gguf_metadata(model)
        arch = meta["general.architecture"]
        n_layer = meta[f"{arch}.block_count"]
        n_head = meta[f"{arch}.attention.head_count"]
        n_head_kv = meta.get(f"{arch}.attention.head_count_kv", n_head)
        n_embd = meta[f"{arch}.embedding_length"]
        k_dim = meta.get(f"{arch}.attention.key_length", n_embd // n_head)
        v_dim = meta.get(f"{arch}.attention.value_length", n_embd // n_head)
        return n_layer * n_head_kv * (k_dim + v_dim) * 2
    except (OSError, ValueError, KeyError, struct.error) as e:
        log(f"cannot read the model's KV shapes ({e}); saola keeps its default --kv-cache-mb")
        return None


# ---------------------------------------------------------------------------------------------
# Workloads: deterministic texts built from words that SmolLM2's tokenizer (GPT-2 style BPE, 49k
# tokens) encodes as one token each after a space, so words + full stops ~ tokens. The servers
# report the real prompt token counts, which are printed.

WORDS = """the of and to in is was for on that with as by at from his it an were are which be this
has or had first one their its new after but who not they have her she two been other when there
all during into school time may years more most only over city some world would where later up such
used many can state about national out known university united then made however year three under
team well people part since long life both between film new city through game she own work series
music house number water day high early still four large great local name public family group north
south west east power river home land house small best war second system government general back
area line side major place often called five support back road right old main body light field
season because area old body form early until among end village following album while several
played last based age level center report death along within without order around make good team
short law city music market point water sea blue red green open free full low money book
story""".split()
WORDS = list(dict.fromkeys(WORDS))  # the list above repeats a few; keep each once, in order

QUESTION_TEMPLATES = [
    "What is the {a} of the {b}?", "Why does the {a} change the {b}?",
    "How many {a} are in the {b}?", "Where is the {a} near the {b}?",
    "Who built the {a} by the {b}?", "When did the {a} reach the {b}?",
    "Which {a} is best for the {b}?", "Can the {a} support the {b}?",
]


def word_text(rng, n_tokens):
    """Sentences of 6-16 words, about n_tokens tokens (one per word, one per full stop)."""
    out, used = [], 0
    while used < n_tokens:
        n = min(rng.randint(6, 16), max(1, n_tokens - used - 1))
        words = [rng.choice(WORDS) for _ in range(n)]
        out.append(" ".join(words) + ".")
        used += n + 1
    text = " ".join(out)
    return text[0].upper() + text[1:]


def make_prompts(seed, count, min_tokens, max_tokens):
    """`count` distinct prompts of min..max tokens (uniform), the same on every run."""
    rng = random.Random(seed)
    prompts, seen = [], set()
    while len(prompts) < count:
        text = word_text(rng, rng.randint(min_tokens, max_tokens))
        key = text[:200]  # distinct openings: not even a prefix block is shared
        if key not in seen:
            seen.add(key)
            prompts.append(text)
    return prompts


def make_prefix_workload(seed, system_tokens, num_questions):
    """(system prompt, [question prompts]) for part (b); question 0 is the warm-up."""
    rng = random.Random(seed + 1)
    system = ("You are a helpful assistant. Use the notes below to answer the question.\n\n"
              + word_text(rng, system_tokens - 16))
    questions, seen = [], set()
    while len(questions) < num_questions + 1:
        q = rng.choice(QUESTION_TEMPLATES).format(a=rng.choice(WORDS), b=rng.choice(WORDS))
        if q not in seen:
            seen.add(q)
            questions.append(q)
    return system, [f"{system}\n\nQuestion: {q}\nAnswer:" for q in questions]


def distinct_openings(prompts, seed):
    """Each prompt behind its own short opening line, so no two share a prefix."""
    rng = random.Random(seed + 2)
    return [f"Session {i}: {' '.join(rng.choice(WORDS) for _ in range(4))}.\n{p}"
            for i, p in enumerate(prompts)]


# ---------------------------------------------------------------------------------------------
# Server processes: started in their own process group, killed at exit whatever happens.

_LIVE = []
_LIVE_LOCK = threading.Lock()


def _set_parent_death_signal():
    try:
        import ctypes
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """A server process; `stop()` (also run at exit) kills its whole process group."""

    def __init__(self, name, cmd, log_dir):
        self.name, self.cmd = name, cmd
        self.log_path = Path(log_dir) / f"{name}.log"
        self.proc = None

    def start(self):
        log(f"starting {self.name}: {shlex.join(self.cmd)}")
        log_file = open(self.log_path, "wb")
        self.proc = subprocess.Popen(self.cmd, stdout=log_file, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL, start_new_session=True,
                                     preexec_fn=_set_parent_death_signal, cwd=ROOT)
        log_file.close()
        with _LIVE_LOCK:
            _LIVE.append(self)

    def wait_ready(self, probe):
        """Calls probe() until it returns True; raises when the process dies or time runs out."""
        deadline = time.monotonic() + READY_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited with {self.proc.returncode}:\n"
                                   f"{self.log_tail()}")
            if probe():
                return
            time.sleep(0.2)
        raise RuntimeError(f"{self.name} not ready after {READY_TIMEOUT_S} s:\n{self.log_tail()}")

    def log_tail(self, n=3000):
        try:
            return self.log_path.read_bytes()[-n:].decode("utf-8", "replace")
        except OSError:
            return ""

    def stop(self):
        if self.proc is None or self.proc.poll() is not None:
            return
        for sig, wait_s in ((signal.SIGTERM, 5), (signal.SIGKILL, 5)):
            try:
                os.killpg(self.proc.pid, sig)
            except ProcessLookupError:
                return
            try:
                self.proc.wait(wait_s)
                return
            except subprocess.TimeoutExpired:
                continue

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()
        with _LIVE_LOCK:
            if self in _LIVE:
                _LIVE.remove(self)


def stop_all_servers():
    with _LIVE_LOCK:
        live = list(_LIVE)
    for server in live:
        server.stop()


def _on_signal(signum, _frame):
    raise KeyboardInterrupt(f"signal {signum}")


# ---------------------------------------------------------------------------------------------
# Clients. Each generate() returns a RequestResult; a failure is recorded, never raised.


@dataclass
class RequestResult:
    index: int = 0
    t_start: float = 0.0
    chunks: list = field(default_factory=list)  # (arrival time, number of tokens)
    token_ids: list = field(default_factory=list)
    prompt_tokens: int = None
    cached_tokens: int = None
    error: str = None

    @property
    def num_tokens(self):
        return sum(n for _, n in self.chunks)

    @property
    def ttft(self):
        return self.chunks[0][0] - self.t_start if self.chunks else None

    @property
    def e2e(self):
        return self.chunks[-1][0] - self.t_start if self.chunks else None

    def inter_token_gaps(self):
        gaps = []
        for (t0, _), (t1, n) in zip(self.chunks, self.chunks[1:]):
            gaps.extend([(t1 - t0) / n] * n)
        return gaps


class LlamaClient:
    """llama-server's /completion with "stream": true (server-sent events, one per token)."""

    name = "llama-server"

    def __init__(self, port, cache_prompt=False):
        self.port, self.cache_prompt = port, cache_prompt

    def ready(self):
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/health", timeout=2) as r:
                return r.status == 200
        except (urllib.error.URLError, OSError):
            return False

    def generate(self, prompt, max_tokens, result):
        import http.client
        body = json.dumps({"prompt": prompt, "n_predict": max_tokens, "stream": True,
                           "ignore_eos": True, "temperature": 0, "cache_prompt": self.cache_prompt})
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=REQUEST_TIMEOUT_S)
        try:
            result.t_start = time.perf_counter()
            conn.request("POST", "/completion", body, {"Content-Type": "application/json"})
            resp = conn.getresponse()
            if resp.status != 200:
                result.error = f"HTTP {resp.status}: {resp.read()[:300]!r}"
                return
            while True:
                line = resp.readline()
                if not line:
                    break
                if not line.startswith(b"data: "):
                    continue
                now = time.perf_counter()
                event = json.loads(line[6:])
                if "error" in event:
                    result.error = str(event["error"])[:300]
                    return
                tokens = event.get("tokens") or []
                if not tokens and event.get("content") and not event.get("stop"):
                    tokens = [None]  # a server that does not send ids: one token per event
                if tokens:
                    result.chunks.append((now, len(tokens)))
                    result.token_ids.extend(tokens)
                if event.get("stop"):
                    timings = event.get("timings", {})
                    result.prompt_tokens = event.get("tokens_evaluated", timings.get("prompt_n"))
                    result.cached_tokens = timings.get("cache_n")
                    break
        except (OSError, ValueError) as e:
            result.error = f"{type(e).__name__}: {e}"
        finally:
            conn.close()


class SaolaClient:
    """saola.v1.Llm/Generate over gRPC; stubs generated from proto/ at run time."""

    name = "saola"
    _modules = None

    @classmethod
    def modules(cls):
        if cls._modules is None:
            from grpc_tools import protoc
            out = tempfile.mkdtemp(prefix="saola-bench-stubs-")
            atexit.register(shutil.rmtree, out, ignore_errors=True)
            rc = protoc.main(["grpc_tools.protoc", f"-I{PROTO_DIR}", f"--python_out={out}",
                              f"--grpc_python_out={out}",
                              str(PROTO_DIR / "saola" / "v1" / "llm.proto")])
            if rc != 0:
                raise RuntimeError("grpc_tools.protoc failed on proto/saola/v1/llm.proto")
            sys.path.insert(0, out)
            import grpc
            from saola.v1 import llm_pb2, llm_pb2_grpc
            cls._modules = (grpc, llm_pb2, llm_pb2_grpc)
        return cls._modules

    def __init__(self, port):
        grpc, self.pb, pb_grpc = self.modules()
        self.grpc = grpc
        self.channel = grpc.insecure_channel(f"127.0.0.1:{port}")
        self.stub = pb_grpc.LlmStub(self.channel)

    def ready(self):
        try:
            self.stub.ListModels(self.pb.ListModelsRequest(), timeout=2)
            return True
        except self.grpc.RpcError as e:
            return e.code() == self.grpc.StatusCode.UNIMPLEMENTED

    def generate(self, prompt, max_tokens, result):
        request = self.pb.GenerateRequest(
            prompt=prompt, sampling=self.pb.SamplingParams(temperature=0.0),
            max_tokens=max_tokens, ignore_eos=True)
        try:
            result.t_start = time.perf_counter()
            for msg in self.stub.Generate(request, timeout=REQUEST_TIMEOUT_S):
                now = time.perf_counter()
                if msg.token_ids:
                    result.chunks.append((now, len(msg.token_ids)))
                    result.token_ids.extend(msg.token_ids)
                if msg.HasField("finish"):
                    result.prompt_tokens = msg.finish.usage.prompt_tokens
                    result.cached_tokens = msg.finish.usage.cached_prompt_tokens
        except self.grpc.RpcError as e:
            result.error = f"{e.code().name}: {e.details()}"

    def close(self):
        self.channel.close()


# ---------------------------------------------------------------------------------------------
# Load generation and statistics.


@dataclass
class Run:
    results: list  # RequestResult per prompt, in prompt order
    wall_s: float  # first request sent -> last token received
    client_cpu_s: float  # CPU time this load generator used meanwhile (it shares the cores)


def run_closed_loop(client, prompts, concurrency, max_tokens):
    """Sends every prompt, `concurrency` at a time."""
    cpu0 = time.process_time()
    work = queue.Queue()
    for i, p in enumerate(prompts):
        work.put((i, p))
    results = [RequestResult(index=i) for i in range(len(prompts))]
    start = threading.Barrier(concurrency)

    def worker():
        start.wait()
        while True:
            try:
                i, p = work.get_nowait()
            except queue.Empty:
                return
            client.generate(p, max_tokens, results[i])

    threads = [threading.Thread(target=worker, daemon=True) for _ in range(concurrency)]
    for t in threads:
        t.start()
    for t in threads:
        while t.is_alive():
            t.join(0.5)  # short joins keep Ctrl-C responsive
    ok = [r for r in results if r.error is None and r.chunks]
    wall = max(r.e2e + r.t_start for r in ok) - min(r.t_start for r in ok) if ok else None
    return Run(results, wall, time.process_time() - cpu0)


def percentile(values, q):
    """Linear interpolation between closest ranks; None for no values."""
    if not values:
        return None
    v = sorted(values)
    pos = (len(v) - 1) * q / 100
    lo, hi = math.floor(pos), math.ceil(pos)
    return v[lo] + (v[hi] - v[lo]) * (pos - lo)


def dist(values):
    if not values:
        return {"mean": None, "p50": None, "p99": None}
    return {"mean": sum(values) / len(values), "p50": percentile(values, 50),
            "p99": percentile(values, 99)}


def summarize(run, expected_tokens):
    results, wall = run.results, run.wall_s
    ok = [r for r in results if r.error is None and r.chunks]
    out_tokens = sum(r.num_tokens for r in ok)
    return {
        "requests": len(results),
        "errors": [r.error for r in results if r.error is not None]
        + [f"request {r.index}: no tokens" for r in results if r.error is None and not r.chunks],
        "wrong_length": sum(1 for r in ok if r.num_tokens != expected_tokens),
        "output_tokens": out_tokens,
        "wall_s": wall,
        "output_tokens_per_s": out_tokens / wall if wall else None,
        "ttft_s": dist([r.ttft for r in ok]),
        "itl_s": dist([g for r in ok for g in r.inter_token_gaps()]),
        "e2e_s": dist([r.e2e for r in ok]),
        "prompt_tokens": dist([r.prompt_tokens for r in ok if r.prompt_tokens is not None]),
        "cached_prompt_tokens": sum(r.cached_tokens or 0 for r in ok),
        "client_cpu_share": run.client_cpu_s / wall if wall else None,
    }


class MetricsSampler:
    """Scrapes a Prometheus endpoint in the background, keeping the saola_kv* series."""

    LINE = re.compile(r"^([A-Za-z_:][A-Za-z0-9_:]*)(\{[^}]*\})?\s+(\S+)")

    def __init__(self, port, prefix="saola_kv"):
        self.url, self.prefix = f"http://127.0.0.1:{port}/metrics", prefix
        self.samples = {}  # series -> [values]
        self.scrapes = self.failures = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def scrape(self):
        try:
            with urllib.request.urlopen(self.url, timeout=2) as r:
                text = r.read().decode("utf-8", "replace")
        except (urllib.error.URLError, OSError):
            self.failures += 1
            return None
        series = {}
        for line in text.splitlines():
            m = self.LINE.match(line)
            if m and m.group(1).startswith(self.prefix):
                try:
                    series[m.group(1) + (m.group(2) or "")] = float(m.group(3))
                except ValueError:
                    pass
        return series

    def _loop(self):
        while True:
            series = self.scrape()
            if series is not None:
                self.scrapes += 1
                for k, v in series.items():
                    self.samples.setdefault(k, []).append(v)
            if self._stop.wait(METRICS_PERIOD_S):
                return

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()

    def report(self):
        return {k: {"min": min(v), "mean": sum(v) / len(v), "max": max(v), "samples": len(v)}
                for k, v in sorted(self.samples.items())}


# ---------------------------------------------------------------------------------------------
# Server command lines.


class Plan:
    """Builds both servers' command lines from the options, and knows saola's flags."""

    def __init__(self, args):
        self.args = args
        self.kv_bytes = kv_bytes_per_token(args.model) if args.model.exists() else None
        self.saola_available = args.saola_worker.exists()
        self._saola_flags = {}
        if self.saola_available and not args.dry_run:
            out = self._saola_serve(["--help"])
            if out is None or "unknown command" in out:
                log(f"{args.saola_worker} has no serve command yet; skipping saola")
                self.saola_available = False

    def _saola_serve(self, extra):
        """Output of `saola-worker serve EXTRA` (no model: it exits at once), None on failure."""
        try:
            proc = subprocess.run([str(self.args.saola_worker), "serve"] + extra,
                                  capture_output=True, text=True, timeout=20)
            return proc.stdout + proc.stderr
        except (OSError, subprocess.TimeoutExpired):
            return None

    def saola_has(self, flag):
        """Whether saola-worker serve accepts `flag`: asked once with the flag and no model,
        rejected when it answers "unknown flag" (or "unrecognized arguments"). Assumed yes in a
        dry run."""
        if self.args.dry_run:
            return True
        if flag not in self._saola_flags:
            value = [] if flag.startswith("--no-") else ["127.0.0.1" if flag == "--host" else "1"]
            out = self._saola_serve([flag] + value) or ""
            self._saola_flags[flag] = not re.search(
                r"(unknown|unrecognized) (flag|option|argument)[^\n]*" + re.escape(flag), out)
        return self._saola_flags[flag]

    def saola_cmd(self, port, metrics_port, slots, ctx_per_slot, no_prefix_cache=False):
        a = self.args
        cmd = [str(a.saola_worker), "serve", "--model", str(a.model), "--port", str(port),
               "--metrics-port", str(metrics_port), "--threads", str(a.threads)]
        optional = [("--host", "127.0.0.1"), ("--max-running", slots), ("--drain-seconds", 2)]
        if self.kv_bytes:
            optional.append(("--kv-cache-mb",
                             math.ceil(slots * ctx_per_slot * self.kv_bytes / 2**20)))
        if a.max_batch_tokens:
            optional.append(("--max-batch-tokens", a.max_batch_tokens))
        for flag, value in optional:
            if self.saola_has(flag):
                cmd += [flag, str(value)]
            else:
                log(f"saola-worker serve does not accept {flag}; not passing it")
        if no_prefix_cache:
            cmd.append("--no-prefix-cache")
        return cmd + shlex.split(a.saola_args)

    def llama_cmd(self, port, slots, ctx_per_slot, prompt_cache_ram=False):
        a = self.args
        cmd = [str(a.llama_server), "-m", str(a.model), "--host", "127.0.0.1", "--port", str(port),
               "--parallel", str(slots), "-c", str(slots * ctx_per_slot),
               "--threads", str(a.threads), "--threads-batch", str(a.threads),
               "-fa", a.llama_fa, "--cont-batching", "--no-webui", "--metrics"]
        if not prompt_cache_ram:
            cmd += ["--cache-ram", "0"]
        return cmd + shlex.split(a.llama_args)


def start_saola(plan, log_dir, label, slots, ctx_per_slot, no_prefix_cache=False):
    port, metrics_port = free_port(), free_port()
    server = Server(f"saola-{label}", plan.saola_cmd(port, metrics_port, slots, ctx_per_slot,
                                                     no_prefix_cache), log_dir)
    server.start()
    client = SaolaClient(port)
    server.wait_ready(client.ready)
    return server, client, metrics_port


def start_llama(plan, log_dir, label, slots, ctx_per_slot, cache_prompt):
    """llama-server; with cache_prompt it also keeps its default host-RAM prompt cache."""
    port = free_port()
    server = Server(f"llama-{label}", plan.llama_cmd(port, slots, ctx_per_slot,
                                                     prompt_cache_ram=cache_prompt), log_dir)
    server.start()
    client = LlamaClient(port, cache_prompt=cache_prompt)
    server.wait_ready(client.ready)
    return server, client


def warm_up(client, prompt, max_tokens=8):
    r = RequestResult()
    client.generate(prompt, max_tokens, r)
    if r.error:
        raise RuntimeError(f"{client.name} warm-up request failed: {r.error}")


# ---------------------------------------------------------------------------------------------
# (a) throughput and latency per concurrency level, with (c) riding on saola's 32-stream level.


def level_prompts(args, all_prompts, level_index):
    n = requests_for(args, args.concurrency[level_index])
    start = sum(requests_for(args, c) for c in args.concurrency[:level_index])
    return all_prompts[start:start + n]


def requests_for(args, concurrency):
    return args.requests_per_level or max(2 * concurrency, 8)


def run_part_a(args, plan, log_dir, kv_report):
    total = sum(requests_for(args, c) for c in args.concurrency)
    prompts = make_prompts(args.seed, total, args.min_prompt_tokens, args.max_prompt_tokens)
    warm = make_prompts(args.seed + 99, 1, 32, 32)[0]
    rows = []
    for li, c in enumerate(args.concurrency):
        ps = level_prompts(args, prompts, li)
        row = {"concurrency": c}
        if plan.saola_available:
            row["saola"] = attempt("saola", run_saola_level, args, plan, log_dir, c, ps, warm,
                                   kv_report)
        if not args.skip_llama:
            row["llama-server"] = attempt("llama-server", run_llama_level, args, plan, log_dir,
                                          c, ps, warm)
        row["greedy_agreement"] = greedy_agreement(row)
        rows.append(row)
        print_level(args, row, flush=True)
    return rows


FAILURES = []


def attempt(name, fn, *args):
    """fn(*args), or None after logging why when the server fails to start or warm up."""
    try:
        return fn(*args)
    except RuntimeError as e:
        log(f"{name} failed, going on without it: {e}")
        FAILURES.append(name)
        return None


def run_saola_level(args, plan, log_dir, c, prompts, warm, kv_report):
    server, client, metrics_port = start_saola(plan, log_dir, f"c{c}", c, args.ctx_per_slot)
    with server:
        warm_up(client, warm)
        sample_kv = kv_report is not None and c == args.kv_concurrency
        log(f"saola: {len(prompts)} requests at concurrency {c}")
        if sample_kv:
            with MetricsSampler(metrics_port) as sampler:
                run = run_closed_loop(client, prompts, c, args.output_tokens)
            kv_report.update(concurrency=c, series=sampler.report(), scrapes=sampler.scrapes,
                             failures=sampler.failures)
        else:
            run = run_closed_loop(client, prompts, c, args.output_tokens)
        client.close()
    out = summarize(run, args.output_tokens)
    out["_token_ids"] = [r.token_ids for r in run.results]
    return out


def run_llama_level(args, plan, log_dir, c, prompts, warm):
    server, client = start_llama(plan, log_dir, f"c{c}", c, args.ctx_per_slot, cache_prompt=False)
    with server:
        warm_up(client, warm)
        log(f"llama-server: {len(prompts)} requests at concurrency {c}")
        run = run_closed_loop(client, prompts, c, args.output_tokens)
    out = summarize(run, args.output_tokens)
    out["_token_ids"] = [r.token_ids for r in run.results]
    return out


def greedy_agreement(row):
    """How many requests produced the same token ids on both servers (greedy decoding)."""
    if not row.get("saola") or not row.get("llama-server"):
        return None
    a, b = row["saola"]["_token_ids"], row["llama-server"]["_token_ids"]
    same = sum(1 for x, y in zip(a, b) if x and x == y)
    differ = {k: next((i for i, (u, v) in enumerate(zip(x, y)) if u != v), min(len(x), len(y)))
              for k, (x, y) in enumerate(zip(a, b)) if x != y}
    return {"identical": same, "requests": len(a),
            "first_divergence": differ,  # request index -> first token that differs
            "median_first_divergence": percentile(list(differ.values()), 50) if differ else None}


def run_kv_only(args, plan, log_dir):
    """Part (c) alone: saola at --kv-concurrency streams, sampling its metrics."""
    c = args.kv_concurrency
    prompts = make_prompts(args.seed, requests_for(args, c), args.min_prompt_tokens,
                           args.max_prompt_tokens)
    kv_report = {}
    warm = make_prompts(args.seed + 99, 1, 32, 32)[0]
    run_saola_level(args, plan, log_dir, c, prompts, warm, kv_report)
    return kv_report


# ---------------------------------------------------------------------------------------------
# (b) prefix cache.


def run_part_b(args, plan, log_dir):
    """{"saola": {"with": stats, "without": stats, "note"?}, "llama-server": {...}}."""
    _, prompts = make_prefix_workload(args.seed, args.system_tokens, args.questions)
    warm, questions = prompts[0], prompts[1:]
    out = {}
    if plan.saola_available:
        out["saola"] = {}
        has_flag = plan.saola_has("--no-prefix-cache")
        if not has_flag:
            out["saola"]["note"] = ("saola-worker serve does not accept --no-prefix-cache: "
                                    "'without' used prompts with distinct openings")
            log(out["saola"]["note"])
        for mode in ("with", "without"):
            series = questions
            if mode == "without" and not has_flag:
                series = distinct_openings(questions, args.seed)
            out["saola"][mode] = attempt("saola", run_prefix_series, args, plan, log_dir, "saola",
                                         mode, warm, series, mode == "without" and has_flag)
    if not args.skip_llama:
        out["llama-server"] = {
            mode: attempt("llama-server", run_prefix_series, args, plan, log_dir,
                          "llama-server", mode, warm, questions, mode == "with")
            for mode in ("with", "without")}
    return out


def run_prefix_series(args, plan, log_dir, name, mode, warm, series, flag):
    """One (b) series on a fresh server; `flag` is saola's --no-prefix-cache or llama's
    cache_prompt."""
    slots, ctx = args.prefix_concurrency, args.prefix_ctx_per_slot
    if name == "saola":
        server, client, _ = start_saola(plan, log_dir, f"prefix-{mode}", slots, ctx, flag)
    else:
        server, client = start_llama(plan, log_dir, f"prefix-{mode}", slots, ctx, flag)
    with server:
        warm_up(client, warm)
        run = run_closed_loop(client, series, slots, args.prefix_output_tokens)
        if name == "saola":
            client.close()
    return summarize(run, args.prefix_output_tokens)


# ---------------------------------------------------------------------------------------------
# Printing.


def ms(x):
    return "n/a" if x is None else f"{x * 1e3:.1f}"


def num(x, spec="{:.1f}"):
    return "n/a" if x is None else spec.format(x)


def ratio(a, b):
    return None if a is None or b is None or b == 0 else a / b


def triple(d, fmt):
    return "/".join(fmt(d[k]) for k in ("mean", "p50", "p99"))


def print_level(args, row, flush=False):
    c = row["concurrency"]
    print(f"\n== (a) concurrency {c}: {args.output_tokens} output tokens per request, greedy, "
          f"ignore_eos ==")
    print(f"{'server':14}{'req':>5}{'out tok/s':>11}{'TTFT ms mean/p50/p99':>25}"
          f"{'ITL ms mean/p50/p99':>23}{'E2E s mean/p50/p99':>23}{'prompt tok':>12}"
          f"{'client CPU':>12}")
    for name in ("saola", "llama-server"):
        s = row.get(name)
        if not s:
            continue
        print(f"{name:14}{s['requests']:>5}{num(s['output_tokens_per_s']):>11}"
              f"{triple(s['ttft_s'], ms):>25}{triple(s['itl_s'], ms):>23}"
              f"{triple(s['e2e_s'], lambda x: num(x, '{:.2f}')):>23}"
              f"{num(s['prompt_tokens']['mean'], '{:.0f}'):>12}"
              f"{num(s['client_cpu_share'], '{:.0%}'):>12}")
        problems = []
        if s["errors"]:
            problems.append(f"{len(s['errors'])} failed, first: {s['errors'][0]}")
        if s["wrong_length"]:
            problems.append(f"{s['wrong_length']} with other than {args.output_tokens} tokens")
        if s["cached_prompt_tokens"]:
            problems.append(f"{s['cached_prompt_tokens']} prompt tokens came from a cache")
        for p in problems:
            print(f"{'':14}! {p}")
    s, l = row.get("saola"), row.get("llama-server")
    if s and l:
        print(f"saola / llama-server: tokens/s "
              f"{num(ratio(s['output_tokens_per_s'], l['output_tokens_per_s']), '{:.2f}x')}, "
              f"TTFT mean {num(ratio(s['ttft_s']['mean'], l['ttft_s']['mean']), '{:.2f}x')}, "
              f"TTFT p50 {num(ratio(s['ttft_s']['p50'], l['ttft_s']['p50']), '{:.2f}x')}, "
              f"ITL mean {num(ratio(s['itl_s']['mean'], l['itl_s']['mean']), '{:.2f}x')}")
        g = row["greedy_agreement"]
        differ = ", ".join(f"request {k} at token {v}"
                           for k, v in list(g["first_divergence"].items())[:4])
        print(f"greedy outputs identical on both: {g['identical']}/{g['requests']}"
              + (f" (first divergence: {differ}{', ...' if len(g['first_divergence']) > 4 else ''})"
                 if differ else ""))
    if flush:
        sys.stdout.flush()


def print_summary_a(rows):
    print("\n== (a) summary: saola / llama-server ==")
    print(f"{'streams':>8}{'saola tok/s':>13}{'llama tok/s':>13}{'tok/s ratio':>13}"
          f"{'saola TTFT ms':>15}{'llama TTFT ms':>15}{'TTFT ratio':>12}")
    for row in rows:
        s, l = row.get("saola") or {}, row.get("llama-server") or {}
        st, lt = s.get("output_tokens_per_s"), l.get("output_tokens_per_s")
        sf = s.get("ttft_s", {}).get("mean")
        lf = l.get("ttft_s", {}).get("mean")
        print(f"{row['concurrency']:>8}{num(st):>13}{num(lt):>13}"
              f"{num(ratio(st, lt), '{:.2f}x'):>13}{ms(sf):>15}{ms(lf):>15}"
              f"{num(ratio(sf, lf), '{:.2f}x'):>12}")


def print_part_b(args, out):
    print(f"\n== (b) prefix cache: ~{args.system_tokens}-token system prompt + {args.questions} "
          f"questions, {args.prefix_concurrency} at a time, {args.prefix_output_tokens} tokens ==")
    print(f"{'server':14}{'cache':>9}{'TTFT ms mean/p50/p99':>25}{'prompt tok':>12}"
          f"{'cached tok/req':>16}")
    for name in ("saola", "llama-server"):
        if name not in out:
            continue
        for mode in ("with", "without"):
            s = out[name][mode]
            if s is None:
                print(f"{name:14}{mode:>9}  failed (see the log above)")
                continue
            n_ok = s["requests"] - len(s["errors"])
            print(f"{name:14}{mode:>9}{triple(s['ttft_s'], ms):>25}"
                  f"{num(s['prompt_tokens']['mean'], '{:.0f}'):>12}"
                  f"{num(s['cached_prompt_tokens'] / n_ok if n_ok else None, '{:.0f}'):>16}")
            if s["errors"]:
                print(f"{'':14}! {len(s['errors'])} failed, first: {s['errors'][0]}")
        r = ratio(mean_ttft(out, name, "without"), mean_ttft(out, name, "with"))
        print(f"{name:14}TTFT without / with cache: {num(r, '{:.2f}x')}")
        if out[name].get("note"):
            print(f"{'':14}note: {out[name]['note']}")
    if "saola" in out and "llama-server" in out:
        r = ratio(mean_ttft(out, "saola", "with"), mean_ttft(out, "llama-server", "with"))
        print(f"saola / llama-server TTFT with cache: {num(r, '{:.2f}x')}")


def mean_ttft(out, name, mode):
    s = out.get(name, {}).get(mode)
    return s and s["ttft_s"]["mean"]


def print_part_c(report):
    print(f"\n== (c) saola KV cache metrics at {report.get('concurrency', '?')} streams ==")
    series = report.get("series") or {}
    if not series:
        print(f"skipped: no saola_kv* series on the metrics endpoint "
              f"({report.get('scrapes', 0)} scrapes, {report.get('failures', 0)} failed)")
        return
    print(f"{'series':60}{'min':>12}{'mean':>12}{'max':>12}")
    for k, v in series.items():
        print(f"{k:60}{v['min']:>12.4g}{v['mean']:>12.4g}{v['max']:>12.4g}")
    waste = [k for k in series if re.search(r"wast|frag", k)]
    if waste:
        print("KV waste: " + ", ".join(f"{k} mean {series[k]['mean']:.4g}" for k in waste))


# ---------------------------------------------------------------------------------------------


def parse_args():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter,
                                 epilog=__doc__.split("\n\n", 2)[2])
    ap.add_argument("--model", type=Path, default=DEFAULT_MODEL)
    ap.add_argument("--saola-worker", type=Path, default=DEFAULT_WORKER)
    ap.add_argument("--llama-server", type=Path, default=DEFAULT_LLAMA_SERVER)
    ap.add_argument("--concurrency", default="1,8,32", help="stream counts for (a)")
    ap.add_argument("--requests-per-level", type=int, default=0,
                    help="requests at each level (default: max(2 x concurrency, 8))")
    ap.add_argument("--output-tokens", type=int, default=128)
    ap.add_argument("--min-prompt-tokens", type=int, default=100)
    ap.add_argument("--max-prompt-tokens", type=int, default=400)
    ap.add_argument("--ctx-per-slot", type=int, default=1024,
                    help="KV tokens per stream in (a): llama-server -c = slots x this; saola "
                         "--kv-cache-mb holds as many tokens")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seed", type=int, default=1234)
    ap.add_argument("--skip-llama", action="store_true")
    ap.add_argument("--skip-saola", action="store_true")
    ap.add_argument("--only", choices=("a", "b", "c"))
    ap.add_argument("--system-tokens", type=int, default=1000, help="(b) shared prefix length")
    ap.add_argument("--questions", type=int, default=32, help="(b) questions after the prefix")
    ap.add_argument("--prefix-concurrency", type=int, default=1)
    ap.add_argument("--prefix-output-tokens", type=int, default=16)
    ap.add_argument("--prefix-ctx-per-slot", type=int, default=2048)
    ap.add_argument("--kv-concurrency", type=int, default=32, help="(c) streams")
    ap.add_argument("--max-batch-tokens", type=int, default=0,
                    help="saola --max-batch-tokens (default: the server's own)")
    ap.add_argument("--llama-fa", default="off", choices=("on", "off", "auto"),
                    help="llama-server -fa (default off: saola's attention is llama.cpp's "
                         "non-flash path)")
    ap.add_argument("--saola-args", default="", help="extra saola-worker serve arguments")
    ap.add_argument("--llama-args", default="", help="extra llama-server arguments")
    ap.add_argument("--json-out", type=Path, help="also write every number here")
    ap.add_argument("--keep-logs", action="store_true", help="keep the servers' logs")
    ap.add_argument("--dry-run", action="store_true",
                    help="print the server commands and the workload, run nothing")
    args = ap.parse_args()
    args.concurrency = [int(c) for c in args.concurrency.split(",") if c]
    if args.skip_saola:
        args.saola_worker = Path("/nonexistent/saola-worker")
    return args


def print_dry_run(args, plan):
    parts = [args.only] if args.only else ["a", "b", "c"]
    print(f"model {args.model}; threads {args.threads}; KV bytes/token "
          f"{plan.kv_bytes or 'unknown'}; parts {','.join(parts)}")
    if "a" in parts:
        for c in args.concurrency:
            n = requests_for(args, c)
            print(f"\n(a) concurrency {c}: {n} requests, prompts {args.min_prompt_tokens}-"
                  f"{args.max_prompt_tokens} tokens, {args.output_tokens} output tokens")
            if plan.saola_available:
                print("  " + shlex.join(plan.saola_cmd("PORT", "MPORT", c, args.ctx_per_slot)))
            if not args.skip_llama:
                print("  " + shlex.join(plan.llama_cmd("PORT", c, args.ctx_per_slot)))
                print('  POST /completion {"prompt": ..., "n_predict": %d, "stream": true, '
                      '"ignore_eos": true, "temperature": 0, "cache_prompt": false}'
                      % args.output_tokens)
    if "b" in parts:
        print(f"\n(b) ~{args.system_tokens}-token system prompt + {args.questions} questions, "
              f"{args.prefix_concurrency} at a time, {args.prefix_output_tokens} tokens")
        s, q = args.prefix_concurrency, args.prefix_ctx_per_slot
        if plan.saola_available:
            print("  with:    " + shlex.join(plan.saola_cmd("PORT", "MPORT", s, q)))
            print("  without: " + shlex.join(plan.saola_cmd("PORT", "MPORT", s, q, True)))
        if not args.skip_llama:
            print("  with:    " + shlex.join(plan.llama_cmd("PORT", s, q, prompt_cache_ram=True))
                  + '  ("cache_prompt": true)')
            print("  without: " + shlex.join(plan.llama_cmd("PORT", s, q))
                  + '  ("cache_prompt": false)')
    if "c" in parts:
        print(f"\n(c) saola_kv* series from http://127.0.0.1:MPORT/metrics every "
              f"{METRICS_PERIOD_S} s during saola's {args.kv_concurrency}-stream run")
    if not plan.saola_available:
        print(f"\nsaola: {args.saola_worker} not found; it would be skipped")


def main():
    args = parse_args()
    if not args.dry_run:
        ensure_venv_and_reexec()
    if not args.model.exists():
        sys.exit(f"serve_bench: model {args.model} not found (run scripts/fetch-models)")
    plan = Plan(args)
    if args.dry_run:
        print_dry_run(args, plan)
        return 0
    if not args.skip_llama and not args.llama_server.exists():
        log("llama-server is missing; running scripts/build-llama-cpp")
        subprocess.run([str(ROOT / "scripts" / "build-llama-cpp")], check=False)
        if not args.llama_server.exists():
            sys.exit(f"serve_bench: no llama-server at {args.llama_server}")
    if not plan.saola_available:
        log(f"saola-worker serve is not available ({args.saola_worker}); measuring "
            "llama-server alone")
    atexit.register(stop_all_servers)
    signal.signal(signal.SIGINT, _on_signal)  # also when started with SIGINT ignored
    signal.signal(signal.SIGTERM, _on_signal)
    signal.signal(signal.SIGHUP, _on_signal)
    log_dir = tempfile.mkdtemp(prefix="saola-serve-bench-")
    summary = {"settings": {k: str(v) if isinstance(v, Path) else v
                            for k, v in vars(args).items()}}
    parts = [args.only] if args.only else ["a", "b", "c"]
    t0 = time.monotonic()
    try:
        kv_report = {} if "c" in parts and plan.saola_available else None
        if "a" in parts:
            rows = run_part_a(args, plan, log_dir, kv_report)
            print_summary_a(rows)
            summary["a"] = [{k: ({kk: vv for kk, vv in v.items() if kk != "_token_ids"}
                                 if isinstance(v, dict) and "_token_ids" in v else v)
                             for k, v in row.items()} for row in rows]
        if "b" in parts:
            summary["b"] = run_part_b(args, plan, log_dir)
            print_part_b(args, summary["b"])
        if "c" in parts:
            if not plan.saola_available:
                print("\n== (c) skipped: saola-worker serve is not available ==")
            else:
                if not kv_report:
                    kv_report = attempt("saola", run_kv_only, args, plan, log_dir) or {}
                print_part_c(kv_report)
                summary["c"] = kv_report
    except KeyboardInterrupt:
        log("interrupted; stopping the servers")
        return 130
    except RuntimeError as e:
        log(f"failed: {e}")
        return 1
    finally:
        stop_all_servers()
        if args.keep_logs:
            log(f"server logs kept in {log_dir}")
        else:
            shutil.rmtree(log_dir, ignore_errors=True)
    log(f"done in {time.monotonic() - t0:.0f} s")
    if args.json_out:
        args.json_out.write_text(json.dumps(summary, indent=2) + "\n")
    if FAILURES:
        log(f"incomplete: {', '.join(sorted(set(FAILURES)))} failed at least once")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
