"""Checks the Grafana dashboard and the Prometheus rules against what the binaries export.

  1. deploy/grafana/saola.json is a well-formed dashboard: unique panel ids, a Prometheus
     datasource and a non-empty query on every panel, panels inside the 24-column grid and not
     overlapping, every $variable defined.
  2. The chart's copies (deploy/helm/saola/files/) are identical to deploy/grafana/ and
     deploy/prometheus/.
  3. Every dashboard query is valid PromQL: they are written into a rule file that
     `promtool check rules` parses ($__rate_interval -> 5m, $namespace -> .*).
  4. Every saola_* series a dashboard or rule queries is in the /metrics text scraped from a live
     router and worker, with every label it matches on or groups by (Prometheus' target labels
     such as namespace and pod aside), and every label value it matches with = on is one the
     binaries produced; every recording rule (saola:...) a dashboard queries is defined.
Exit status 1 on any failure; each message names the file.
"""
import argparse
import json
import os
import re
import subprocess
import sys
import tempfile

import yaml

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
DASHBOARD = "deploy/grafana/saola.json"
RULES = "deploy/prometheus/saola-rules.yaml"
COPIES = {DASHBOARD: "deploy/helm/saola/files/saola-dashboard.json",
          RULES: "deploy/helm/saola/files/saola-rules.yaml"}
# Labels Prometheus attaches to every scraped series (Kubernetes service discovery), and le.
TARGET_LABELS = {"namespace", "pod", "instance", "job", "service", "container", "endpoint", "le"}
SERIES = re.compile(r"\b(saola_[a-zA-Z0-9_]+)\s*(\{[^}]*\})?")
RECORDED = re.compile(r"\b(saola:[a-zA-Z0-9_:]+)")
MATCHER = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)\s*(=~|!~|!=|=)\s*"((?:[^"\\]|\\.)*)"')
GROUPING = re.compile(r"\b(?:by|without)\s*\(([^)]*)\)")
EXPOSITION_LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')
PROMQL_WORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "bool", "offset"}

errors = []


def fail(where, message):
    errors.append(f"{where}: {message}")


def parse_exposition(paths):
    """{metric name: {label: set(values)}} from Prometheus text files."""
    series = {}
    for path in paths:
        with open(path) as f:
            for line in f:
                line = line.strip()
                if not line or line.startswith("#"):
                    continue
                m = re.match(r"([a-zA-Z_:][a-zA-Z0-9_:]*)(\{.*\})?\s", line)
                if not m:
                    fail(path, f"unparsable metrics line {line[:80]!r}")
                    continue
                labels = series.setdefault(m.group(1), {})
                for k, v in EXPOSITION_LABEL.findall(m.group(2) or ""):
                    labels.setdefault(k, set()).add(v)
    return series


def dashboard_queries(dash, where):
    """Checks the dashboard's structure; returns [(panel title, expr)]."""
    queries = []
    ids = set()
    cells = {}
    variables = {v["name"] for v in dash.get("templating", {}).get("list", [])}
    variables |= {"__rate_interval", "__interval", "__range"}
    for key in ("title", "uid", "panels", "schemaVersion"):
        if key not in dash:
            fail(where, f"no {key!r}")
    for v in dash.get("templating", {}).get("list", []):
        q = v.get("query")
        if isinstance(q, dict):
            q = q.get("query", "")
        if v.get("type") == "query" and q:
            inner = re.match(r"label_values\((.*),\s*[a-zA-Z_]+\)$", q)
            queries.append((f"variable {v['name']}", inner.group(1) if inner else q))
    for p in dash.get("panels", []):
        title = p.get("title", "?")
        if p.get("id") in ids:
            fail(where, f"panel {title!r}: duplicate id {p.get('id')}")
        ids.add(p.get("id"))
        g = p.get("gridPos", {})
        if not all(isinstance(g.get(k), int) for k in "hwxy") or g["x"] + g["w"] > 24:
            fail(where, f"panel {title!r}: gridPos {g} is outside the 24-column grid")
            continue
        for x in range(g["x"], g["x"] + g["w"]):
            for y in range(g["y"], g["y"] + g["h"]):
                if (x, y) in cells:
                    fail(where, f"panel {title!r} overlaps panel {cells[(x, y)]!r}")
                    break
                cells[(x, y)] = title
            else:
                continue
            break
        if p.get("type") == "row":
            continue
        ds = p.get("datasource", {})
        if ds.get("type") != "prometheus":
            fail(where, f"panel {title!r}: datasource is not Prometheus")
        if not p.get("targets"):
            fail(where, f"panel {title!r}: no queries")
        for t in p.get("targets", []):
            expr = t.get("expr", "")
            if not expr.strip():
                fail(where, f"panel {title!r}: empty query {t.get('refId')}")
                continue
            for var in re.findall(r"\$\{?([a-zA-Z_][a-zA-Z0-9_]*)", expr):
                if var not in variables:
                    fail(where, f"panel {title!r}: ${var} is not a dashboard variable")
            queries.append((f"panel {title!r}", expr))
    return queries


def rule_queries(rules, where):
    queries, recorded = [], set()
    for g in rules.get("groups", []):
        for r in g.get("rules", []):
            name = r.get("record") or r.get("alert")
            queries.append((f"rule {name}", str(r.get("expr", ""))))
            if "record" in r:
                recorded.add(r["record"])
    return queries, recorded


def promtool_parse(promtool, queries, where):
    """promtool check rules on a rule file holding every dashboard query."""
    rules = {"groups": [{"name": "dashboard", "rules": [
        {"record": f"dashboard:query_{i}",
         "expr": expr.replace("$__rate_interval", "5m").replace("$namespace", ".*")}
        for i, (_, expr) in enumerate(queries)]}]}
    with tempfile.NamedTemporaryFile("w", suffix=".yaml", delete=False) as f:
        yaml.safe_dump(rules, f)
        path = f.name
    try:
        r = subprocess.run([promtool, "check", "rules", path], capture_output=True, text=True)
        if r.returncode != 0:
            out = (r.stdout + r.stderr).replace(path, where)
            for i, (what, _) in enumerate(queries):
                out = out.replace(f"dashboard:query_{i}", what)
            fail(where, f"promtool rejects a query:\n{out.strip()}")
    finally:
        os.unlink(path)


def check_series(queries, exported, where, recorded):
    for what, expr in queries:
        names = set()
        for name, selector in SERIES.findall(expr):
            names.add(name)
            if name not in exported:
                fail(where, f"{what}: {name} is not exported by the router or the worker")
                continue
            labels = exported[name]
            for label, op, value in MATCHER.findall(selector or ""):
                if label in TARGET_LABELS:
                    continue
                if label not in labels:
                    fail(where, f"{what}: {name} has no label {label!r} (it has {sorted(labels)})")
                elif op == "=" and value not in labels[label]:
                    fail(where, f"{what}: {name}{{{label}={value!r}}} was not exported "
                                f"(values seen: {sorted(labels[label])})")
        known = set(TARGET_LABELS)
        for n in names:
            known |= set(exported.get(n, {}))
        if names:
            for group in GROUPING.findall(expr):
                for label in (l.strip() for l in group.split(",")):
                    if label and label not in known:
                        fail(where, f"{what}: groups by {label!r}, a label none of "
                                    f"{sorted(names)} has")
        for rec in RECORDED.findall(expr):
            if rec not in recorded:
                fail(where, f"{what}: recording rule {rec} is not defined in {RULES}")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--promtool", required=True)
    ap.add_argument("--metrics", nargs="+", required=True, help="scraped /metrics text files")
    args = ap.parse_args()
    os.chdir(ROOT)

    for src, copy in COPIES.items():
        with open(src, "rb") as a, open(copy, "rb") as b:
            if a.read() != b.read():
                fail(copy, f"differs from {src}; run: cp {src} {copy}")

    try:
        with open(DASHBOARD) as f:
            dash = json.load(f)
    except (OSError, json.JSONDecodeError) as e:
        fail(DASHBOARD, f"not valid JSON: {e}")
        dash = {}
    with open(RULES) as f:
        rules = yaml.safe_load(f)
    dq = dashboard_queries(dash, DASHBOARD)
    rq, recorded = rule_queries(rules, RULES)
    promtool_parse(args.promtool, dq, DASHBOARD)

    exported = parse_exposition(args.metrics)
    check_series(dq, exported, DASHBOARD, recorded)
    check_series(rq, exported, RULES, recorded)
    used = {n for _, e in dq + rq for n, _ in SERIES.findall(e)}
    print(f"check-deploy: {len(dq)} dashboard and {len(rq)} rule queries use {len(used)} saola_* "
          f"series; {len([n for n in used if n in exported])} of them exported by the live binaries")

    for e in errors:
        print(f"check-deploy: FAIL {e}", file=sys.stderr)
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
