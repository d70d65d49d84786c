"""Starts the real saola-router / saola-worker with the arguments the chart rendered, to prove
the binaries accept them (flag names and values), not just a list of flags kept by hand.

The pod's paths are mapped to this checkout (/models/F -> models/F, the router image's MiniLM
directory -> models/all-MiniLM-L6-v2, a mounted Secret's file -> a temporary copy of the
rendered content) and the listen address to 127.0.0.1 on port 0. A binary
that prints its `listening` line accepted everything and is stopped with SIGTERM. One that exits
first has refused its arguments, unless the only reason is a model file this checkout does not
have (the GPU example's weights), which is reported as not started.
"""
import os
import re
import signal
import subprocess
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
IMAGE_MINILM = "/opt/saola/models/all-MiniLM-L6-v2"


def localize(args, files):
    out = []
    for a in args:
        name, eq, value = a.partition("=")
        if value in files:
            a = f"{name}={files[value]}"
        elif name in ("--port", "--metrics-port"):
            a = f"{name}=0"
        elif name == "--host":
            a = "--host=127.0.0.1"
        elif name == "--model" and value.startswith("/models/"):
            a = f"--model={os.path.join(ROOT, 'models', value[len('/models/'):])}"
        elif name == "--semantic-model-dir" and value == IMAGE_MINILM:
            a = f"--semantic-model-dir={os.path.join(ROOT, 'models/all-MiniLM-L6-v2')}"
        elif name == "--drain-seconds":
            a = "--drain-seconds=1"   # parsed either way; stops quickly here
        out.append(a)
    return out


def try_args(binary, args, files=None, timeout=60.0):
    """Returns (ok, message): ok is False when the binary refused the arguments. files maps
    container paths (a mounted Secret's keys) to their content, written to temporary files."""
    with tempfile.TemporaryDirectory() as tmp, tempfile.TemporaryFile("w+") as log:
        local = {}
        for i, (path, content) in enumerate((files or {}).items()):
            local[path] = os.path.join(tmp, f"file{i}")
            with open(local[path], "w") as f:
                f.write(content)
        cmd = [binary] + localize(args, local)
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, text=True, cwd=ROOT)
        try:
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                exited = proc.poll() is not None
                log.seek(0)
                text = log.read()
                if re.search(r"listening port=\d+", text):
                    return True, "started"
                if exited:
                    if re.search(r"gguf: no such file: \S*/models/", text):
                        return True, "parsed; not started (model file not in this checkout)"
                    return False, f"exited {proc.returncode}: {text.strip()[-400:]}"
                time.sleep(0.05)
            return False, f"neither listening nor exited in {timeout:.0f} s: {text[-400:]}"
        finally:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
