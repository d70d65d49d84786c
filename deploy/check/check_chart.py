"""Renders deploy/helm/saola offline with Helm's own engine and checks what comes out.

For each values case (the defaults, presets/cpu.yaml, presets/gpu-tp2.yaml, and one with every
optional part on) it:
  1. validates the values against values.schema.json and renders the chart (helm-python-sdk binds
     Helm v4's Go SDK, so `include`, `tpl`, `required`, `toYaml`, `fail` are Helm's own);
  2. validates every rendered manifest against the Kubernetes JSON schemas in strict mode
     (kubernetes-validate; unknown fields are errors) for each Kubernetes version in --kube, and
     the Prometheus Operator kinds against deploy/check/schemas/;
  3. checks the chart's own rules: non-root pods, resources on every container, gRPC probes,
     a termination grace above the drain time, GPUs per worker pod = tensorParallelSize;
  4. with --bin-dir, starts the real saola-router and saola-worker with each distinct set of
     rendered args (deploy/check/run_rendered.py), so a flag or value they refuse fails here.
It also runs `helm lint --strict` and renders values that must be refused (schema or `fail`).
Rendered manifests are written under --out for a person to read. Exit status 1 on any failure;
each message names the file.
"""
import argparse
import copy
import json
import os
import sys

import helm_python as helm
import jsonschema
import kubernetes_validate
import yaml

import run_rendered

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
CHART = os.path.join(ROOT, "deploy/helm/saola")
PRESETS = os.path.join(ROOT, "deploy/helm/presets")
CRD_SCHEMAS = {
    ("monitoring.coreos.com/v1", "ServiceMonitor"): "servicemonitor.json",
    ("monitoring.coreos.com/v1", "PrometheusRule"): "prometheusrule.json",
}
# Rendered for GPU values, left out when the binary is started here: --device=cuda needs a GPU,
# and --tp-size=N needs a model whose heads split N ways (the reference model has 9).
WORKER_GPU_FLAGS = {"device", "tp-size"}

errors = []


def fail(where, message):
    errors.append(f"{where}: {message}")


def load_yaml(path):
    with open(path) as f:
        return yaml.safe_load(f) or {}


def all_on():
    """Every optional part on: API keys, semantic cache, PVC weights, monitoring CRDs."""
    v = load_yaml(os.path.join(PRESETS, "gpu-tp2.yaml"))
    v = copy.deepcopy(v)
    v["router"]["apiKeys"] = {"enabled": True, "keys": [{"key": "k1", "tenant": "team-a"}]}
    v["redis"] = {"persistence": {"enabled": True, "size": "1Gi"}}
    v["worker"]["prefixCache"] = False
    v["worker"]["threads"] = 8
    return v


def cases():
    return [
        ("values.yaml (defaults)", {}),
        ("presets/cpu.yaml", load_yaml(os.path.join(PRESETS, "cpu.yaml"))),
        ("presets/gpu-tp2.yaml", load_yaml(os.path.join(PRESETS, "gpu-tp2.yaml"))),
        ("all optional parts on", all_on()),
        ("download to a PVC per pod, external Redis",
         {"worker": {"model": {"download": {"persistentSize": "1Gi"}}},
          "redis": {"enabled": False, "externalUrl": "redis://redis.cache:6379/2"}}),
    ]


# Values the chart must refuse, and the part of the message that says why.
MUST_FAIL = [
    ({"worker": {"tensorParallelSize": 2}}, "needs worker.gpu.enabled"),
    ({"worker": {"tensorParallelSize": "2"}}, "tensorParallelSize"),
    ({"router": {"image": {"tag": "latest"}}}, "/router/image/tag"),
    ({"router": {"policy": "random"}}, "/router/policy"),
    ({"worker": {"model": {"source": "pvc"}}}, "needs worker.model.pvc.claimName"),
    ({"redis": {"externalUrl": "redis://x:6379"}}, "not both"),
    ({"routr": {}}, "routr"),
]


def flags_of(args, where):
    if not args or args[0] != "serve":
        fail(where, f"args must start with 'serve', got {args[:1]}")
        return {}
    flags = {}
    for a in args[1:]:
        if not a.startswith("--"):
            fail(where, f"argument {a!r} is not a --flag=value")
            continue
        name, _, value = a[2:].partition("=")
        flags[name] = value
    return flags


def expand_env(args, env):
    """Replaces $(VAR) as the kubelet does, from the container's ConfigMap."""
    out = []
    for a in args:
        for k, v in env.items():
            a = a.replace(f"$({k})", v)
        out.append(a)
    return out


def secret_files(spec, main, secrets):
    """{path in the container: content} for the Secret volumes the main container mounts."""
    files = {}
    volumes = {v["name"]: v for v in spec.get("volumes", [])}
    for m in main.get("volumeMounts", []):
        secret = volumes.get(m["name"], {}).get("secret")
        if secret and secret["secretName"] in secrets:
            for key, content in secrets[secret["secretName"]].items():
                files[f"{m['mountPath']}/{key}"] = content
    return files


def check_pod(doc, where, values, configmaps, secrets, bin_dir, tried):
    spec = doc["spec"]["template"]["spec"]
    kind_name = f"{doc['kind']}/{doc['metadata']['name']}"
    psc = spec.get("securityContext", {})
    if not psc.get("runAsNonRoot"):
        fail(where, f"{kind_name}: pod securityContext.runAsNonRoot is not true")
    if spec.get("automountServiceAccountToken") is not False:
        fail(where, f"{kind_name}: automountServiceAccountToken should be false")
    for c in spec.get("initContainers", []) + spec["containers"]:
        cn = f"{kind_name} container {c['name']}"
        if ":" not in c["image"] or c["image"].endswith(":latest"):
            fail(where, f"{cn}: image {c['image']!r} has no fixed tag")
        if not c.get("resources", {}).get("requests"):
            fail(where, f"{cn}: no resource requests")
        if not c.get("resources", {}).get("limits", {}).get("memory"):
            fail(where, f"{cn}: no memory limit")
        sc = c.get("securityContext", {})
        if sc.get("allowPrivilegeEscalation") is not False or not sc.get("readOnlyRootFilesystem"):
            fail(where, f"{cn}: securityContext must forbid privilege escalation and make / read-only")
    main = spec["containers"][0]
    component = doc["metadata"]["labels"].get("app.kubernetes.io/component")
    if component not in ("router", "worker"):
        return
    for probe in ("readinessProbe", "livenessProbe"):
        if probe not in main:
            fail(where, f"{kind_name}: no {probe}")
    if "grpc" not in main.get("readinessProbe", {}):
        fail(where, f"{kind_name}: readiness must be the gRPC health check")
    env = {}
    for source in main.get("envFrom", []):
        name = source.get("configMapRef", {}).get("name")
        if name not in configmaps:
            fail(where, f"{kind_name}: envFrom ConfigMap {name} is not rendered")
            continue
        env.update(configmaps[name])
    args = expand_env(main.get("args", []), env)
    if any("$(" in a for a in args):
        fail(where, f"{kind_name}: unresolved $(VAR) in {args}")
    flags = flags_of(args, f"{where} {kind_name}")
    if bin_dir:
        binary = os.path.join(bin_dir, f"saola-{component}")
        # The GPU flags are left out: no GPU here (WORKER_GPU_FLAGS).
        run_args = [a for a in args if a[2:].partition("=")[0] not in WORKER_GPU_FLAGS]
        key = (binary, tuple(run_args))
        if key not in tried:
            tried[key] = run_rendered.try_args(binary, run_args,
                                               files=secret_files(spec, main, secrets))
            ok, message = tried[key]
            if not ok:
                fail(where, f"{kind_name}: saola-{component} refuses the rendered args: {message}")
            else:
                print(f"check-deploy:   saola-{component} with the rendered args of {kind_name}: {message}")
    drain = int(flags.get("drain-seconds", "30"))
    grace = spec.get("terminationGracePeriodSeconds", 30)
    pre_stop = main.get("lifecycle", {}).get("preStop", {}).get("sleep", {}).get("seconds", 0)
    if grace <= drain + pre_stop:
        fail(where, f"{kind_name}: terminationGracePeriodSeconds {grace} must exceed preStop "
                    f"{pre_stop} s + drain {drain} s")
    if component == "router":
        if values["router"]["semanticCache"]["enabled"] != ("semantic-cache" in flags):
            fail(where, f"{kind_name}: --semantic-cache does not follow router.semanticCache.enabled")
        return
    if "startupProbe" not in main:
        fail(where, f"{kind_name}: no startupProbe (model loading)")
    w = values["worker"]
    tp = int(w["tensorParallelSize"])
    gpu_on = bool(w["gpu"]["enabled"])
    res = main["resources"]
    gpu_name = w["gpu"]["resourceName"]
    for part in ("requests", "limits"):
        gpus = res.get(part, {}).get(gpu_name)
        if gpu_on and str(gpus) != str(tp):
            fail(where, f"{kind_name}: {part} {gpu_name}={gpus!r}, want tensorParallelSize {tp}")
        if not gpu_on and gpus is not None:
            fail(where, f"{kind_name}: asks for GPUs with worker.gpu.enabled=false")
    if (tp > 1) != ("tp-size" in flags) or (tp > 1 and flags["tp-size"] != str(tp)):
        fail(where, f"{kind_name}: --tp-size must be passed exactly when tensorParallelSize > 1")
    if gpu_on != (flags.get("device") == "cuda"):
        fail(where, f"{kind_name}: --device=cuda must be passed exactly when worker.gpu.enabled")
    mounts = {m["mountPath"] for m in main.get("volumeMounts", [])}
    for path in ("/models", "/dev/shm"):
        if path not in mounts:
            fail(where, f"{kind_name}: nothing mounted at {path}")


def validate_doc(doc, where, kube_versions):
    api_kind = (doc.get("apiVersion"), doc.get("kind"))
    if api_kind in CRD_SCHEMAS:
        with open(os.path.join(HERE, "schemas", CRD_SCHEMAS[api_kind])) as f:
            schema = json.load(f)
        try:
            jsonschema.validate(doc, schema)
        except jsonschema.ValidationError as e:
            fail(where, f"{doc['kind']}/{doc['metadata']['name']}: {e.message} at "
                        f"{'/'.join(map(str, e.absolute_path))}")
        return
    for version in kube_versions:
        try:
            kubernetes_validate.validate(doc, version, strict=True)
        except kubernetes_validate.ValidationError as e:
            fail(where, f"Kubernetes {version} {doc.get('kind')}/{doc['metadata'].get('name')}: "
                        f"{e.message} at {'/'.join(map(str, e.path))}")
        except kubernetes_validate.SchemaNotFoundError as e:
            fail(where, f"Kubernetes {version}: no schema for {doc.get('apiVersion')} {doc.get('kind')}")


def render_case(label, values, out_dir, kube_versions, bin_dir, tried):
    slug = "".join(ch if ch.isalnum() else "-" for ch in label).strip("-")
    with helm.Chart.load(CHART) as chart:
        try:
            chart.validate_schema(values)
            merged = chart.merge_values(values)
            manifests = chart.render(values, name="saola", namespace="llm", is_install=True)
        except helm.HelmError as e:
            fail(f"deploy/helm/saola ({label})", f"render failed: {e}")
            return 0
    os.makedirs(os.path.join(out_dir, slug), exist_ok=True)
    count = 0
    kinds = set()
    pods = []
    configmaps = {}
    secrets = {}
    for path, text in sorted(manifests.items()):
        where = f"deploy/helm/{path} ({label})"
        with open(os.path.join(out_dir, slug, os.path.basename(path)), "w") as f:
            f.write(text)
        if path.endswith("NOTES.txt"):
            if "port-forward" not in text:
                fail(where, "NOTES.txt does not say how to reach the router")
            continue
        try:
            docs = [d for d in yaml.safe_load_all(text) if d]
        except yaml.YAMLError as e:
            fail(where, f"rendered YAML does not parse: {e}")
            continue
        for doc in docs:
            count += 1
            kinds.add(doc.get("kind"))
            validate_doc(doc, where, kube_versions)
            if doc.get("kind") in ("Deployment", "StatefulSet"):
                pods.append((doc, where))
            if doc.get("kind") == "ConfigMap":
                configmaps[doc["metadata"]["name"]] = doc.get("data", {})
            if doc.get("kind") == "Secret":
                secrets[doc["metadata"]["name"]] = doc.get("stringData", {})
    for doc, where in pods:
        check_pod(doc, where, merged, configmaps, secrets, bin_dir, tried)
    for kind in ("Deployment", "StatefulSet", "Service", "ConfigMap", "NetworkPolicy"):
        if kind not in kinds:
            fail(f"deploy/helm/saola ({label})", f"no {kind} rendered")
    return count


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", required=True)
    ap.add_argument("--kube", default="1.30.0,1.37.0")
    ap.add_argument("--bin-dir", help="start saola-router/saola-worker from here with the rendered args")
    args = ap.parse_args()
    kube_versions = args.kube.split(",")

    report = helm.lint(CHART, strict=True)
    for m in report.get("messages", []):
        if m["severity"] >= 2:
            fail(f"deploy/helm/saola/{m['path']}", f"helm lint: {m['error']}")
    for e in report.get("errors", []):
        fail("deploy/helm/saola", f"helm lint: {e}")

    total = 0
    tried = {}
    for label, values in cases():
        n = render_case(label, values, args.out, kube_versions, args.bin_dir, tried)
        print(f"check-deploy: rendered {label}: {n} manifests valid for Kubernetes "
              f"{', '.join(kube_versions)}")
        total += n

    for values, why in MUST_FAIL:
        with helm.Chart.load(CHART) as chart:
            try:
                chart.render(values, name="saola", namespace="llm", is_install=True)
                fail("deploy/helm/saola/values.schema.json",
                     f"values {json.dumps(values)} rendered but must be refused ({why})")
            except helm.HelmError as e:
                if why not in str(e):
                    fail("deploy/helm/saola", f"values {json.dumps(values)} refused for another "
                                              f"reason than {why!r}: {e}")
    print(f"check-deploy: {len(MUST_FAIL)} bad values refused")

    for e in errors:
        print(f"check-deploy: FAIL {e}", file=sys.stderr)
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
