"""Reads deploy/docker/*.Dockerfile and checks the rules that matter for Saola's images, beyond
what hadolint checks (scripts/check-deploy runs hadolint too). No Docker engine runs here, so the
images are not built; this is what can be checked by reading:
  - multi-stage: at least two FROM, the binaries reach the last stage through COPY --from;
  - every base image has a fixed tag or digest (never `latest` or none);
  - the last stage switches to a non-root USER;
  - the last stage has a HEALTHCHECK, and a `Health:` comment says how Kubernetes probes it;
  - ENTRYPOINT in exec (JSON) form, so SIGTERM reaches the binary and it drains;
  - no ADD of URLs; a <name>.Dockerfile.dockerignore keeps build trees and models out of the
    context;
  - the worker's last stage is NVIDIA's CUDA runtime image.
Exit status 1 on any failure; each message names the file and line.
"""
import glob
import json
import os
import re
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
errors = []


def instructions(path):
    """[(line number, INSTRUCTION, arguments)] with continuation lines joined."""
    out, buf, start = [], "", 0
    with open(path) as f:
        for n, raw in enumerate(f, 1):
            line = raw.rstrip("\n")
            if not buf and (not line.strip() or line.lstrip().startswith("#")):
                continue
            if not buf:
                start = n
            if line.endswith("\\"):
                buf += line[:-1] + " "
                continue
            buf += line
            word, _, rest = buf.strip().partition(" ")
            out.append((start, word.upper(), rest.strip()))
            buf = ""
    return out


def check(path):
    rel = os.path.relpath(path, ROOT)
    def fail(line, message):
        errors.append(f"{rel}:{line}: {message}")
    text = open(path).read()
    ins = instructions(path)
    froms = [(n, a) for n, i, a in ins if i == "FROM"]
    if len(froms) < 2:
        fail(1, "not multi-stage (one FROM): build in one stage, run in another")
    for n, a in froms:
        image = a.split()[0]
        if "@sha256:" in image:
            continue
        tag = image.rsplit(":", 1)[1] if ":" in image.split("/")[-1] else ""
        if not tag or tag == "latest" or "$" in image:
            fail(n, f"base image {image!r} needs a fixed tag")
    last_from = froms[-1][0] if froms else 0
    final = [(n, i, a) for n, i, a in ins if n >= last_from]
    users = [(n, a) for n, i, a in final if i == "USER"]
    if not users:
        fail(last_from, "the last stage never sets USER: the image would run as root")
    elif users[-1][1].split(":")[0] in ("root", "0"):
        fail(users[-1][0], "the last stage runs as root")
    if not any(i == "COPY" and "--from=" in a for _, i, a in final):
        fail(last_from, "the last stage copies nothing from a build stage")
    if not any(i == "HEALTHCHECK" for _, i, _ in final):
        fail(last_from, "the last stage has no HEALTHCHECK")
    if not re.search(r"^#.*Health:", text, re.M):
        fail(1, "no '# Health:' comment saying how the container's health is probed")
    entry = [(n, a) for n, i, a in final if i == "ENTRYPOINT"]
    if not entry:
        fail(last_from, "no ENTRYPOINT")
    else:
        try:
            if not isinstance(json.loads(entry[-1][1]), list):
                raise ValueError
        except ValueError:
            fail(entry[-1][0], "ENTRYPOINT must be exec form (a JSON array) so signals reach the binary")
    for n, i, a in ins:
        if i == "ADD" and re.search(r"https?://", a):
            fail(n, "ADD of a URL: fetch with a checked download in a RUN instead")
    if os.path.basename(path).startswith("worker") and froms:
        if not re.match(r"nvidia/cuda:[0-9.]+-(cudnn-)?runtime-", froms[-1][1]):
            fail(froms[-1][0], "the worker must run on NVIDIA's CUDA runtime image")
    ignore = path + ".dockerignore"
    if not os.path.exists(ignore):
        fail(1, f"no {os.path.relpath(ignore, ROOT)}: the build context would hold build trees and models")
    else:
        patterns = {l.strip() for l in open(ignore) if l.strip() and not l.startswith("#")}
        for needed in ("build*", "models", ".git"):
            if needed not in patterns:
                errors.append(f"{os.path.relpath(ignore, ROOT)}: does not exclude {needed}")


def main():
    files = sorted(glob.glob(os.path.join(ROOT, "deploy/docker/*.Dockerfile")))
    if len(files) < 2:
        errors.append("deploy/docker: want router.Dockerfile and worker.Dockerfile")
    for path in files:
        check(path)
    for e in errors:
        print(f"check-deploy: FAIL {e}", file=sys.stderr)
    if not errors:
        print(f"check-deploy: {len(files)} Dockerfiles: multi-stage, pinned bases, non-root, "
              "HEALTHCHECK, exec ENTRYPOINT")
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
