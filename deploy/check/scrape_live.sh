#!/usr/bin/env bash
# Starts a real saola-worker (the reference model, CPU) and saola-router (exact cache on a private
# redis-server, semantic cache on) on loopback with port 0, sends a few requests through the
# router with the `saola` client (the same prompt twice so the exact cache hits, once more with a
# full stop so the semantic cache can answer), then writes both /metrics texts.
#   deploy/check/scrape_live.sh BIN_DIR OUT_DIR
# Writes OUT_DIR/router.metrics and OUT_DIR/worker.metrics; every process it starts is stopped on
# exit. Run from the repository root.
set -euo pipefail
bin=$1
out=$2
mkdir -p "$out"
model=models/SmolLM2-135M-Instruct.Q4_1.gguf
embedder=models/all-MiniLM-L6-v2

pids=()
cleanup() {
  local p
  for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
}
trap cleanup EXIT

# wait_listening LOG PID NAME: prints "PORT METRICS_PORT" from the binary's listening line.
wait_listening() {
  local log=$1 pid=$2 name=$3 line=""
  for _ in $(seq 1 600); do
    line=$(sed -n 's/^.*listening port=\([0-9]*\) metrics_port=\([0-9]*\).*/\1 \2/p' "$log")
    [ -n "$line" ] && { echo "$line"; return 0; }
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  echo "check-deploy: $name did not start:" >&2
  cat "$log" >&2
  return 1
}

"$bin/saola-worker" serve --model "$model" --host 127.0.0.1 --port 0 --metrics-port 0 \
  --threads 1 --kv-cache-mb 64 --drain-seconds 1 >"$out/worker.log" 2>&1 &
pids+=($!)
read -r worker_port worker_metrics < <(wait_listening "$out/worker.log" "${pids[-1]}" saola-worker)

# A private redis-server on a free port, as the chart runs one for the routers.
cache_args=()
if command -v redis-server >/dev/null 2>&1; then
  redis_port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
  redis-server --bind 127.0.0.1 --port "$redis_port" --save "" --appendonly no \
    >"$out/redis.log" 2>&1 &
  pids+=($!)
  cache_args=(--redis "redis://127.0.0.1:$redis_port")
fi

"$bin/saola-router" serve --workers "127.0.0.1:$worker_port" --host 127.0.0.1 --port 0 \
  --metrics-port 0 --semantic-cache --semantic-model-dir "$embedder" --drain-seconds 1 \
  "${cache_args[@]}" >"$out/router.log" 2>&1 &
pids+=($!)
read -r router_port router_metrics < <(wait_listening "$out/router.log" "${pids[-1]}" saola-router)

prompt="Once upon a time"
# Requests opt in to the semantic cache where the client has the flag.
semantic=()
if "$bin/saola" --help 2>&1 | grep -q -- "--semantic"; then
  semantic=(--semantic)
else
  touch "$out/semantic-not-exercised"
  echo "check-deploy: this saola client has no --semantic: the semantic cache is not exercised" >&2
fi
generate() {  # generate PROMPT FLAGS...
  local text=$1
  shift
  "$bin/saola" generate --target "127.0.0.1:$router_port" --prompt "$text" --temperature 0 \
    --ignore-eos --timeout-seconds 60 "${semantic[@]}" --json "$@"
}
# call NAME ARGS...: one request, retried while the router is still finding its worker (or the
# shared 2 cores are busy); on the last failure prints the client's error and both servers' logs.
call() {
  local name=$1 attempt
  shift
  for attempt in $(seq 1 100); do
    generate "$@" >"$out/$name.json" 2>"$out/$name.err" && return 0
    sleep 0.3
  done
  echo "check-deploy: request '$name' through the router failed:" >&2
  cat "$out/$name.err" "$out/router.log" "$out/worker.log" >&2
  return 1
}
call first "$prompt" --max-tokens 4     # worker answers, the caches are written
call second "$prompt" --max-tokens 4    # exact cache hit
call third "$prompt." --max-tokens 4    # other tokens: exact miss; semantic hit where opted in
# The router refreshes cache and worker gauges periodically: let one refresh pass.
sleep 1.5
curl -sSf "http://127.0.0.1:$router_metrics/metrics" >"$out/router.metrics"
curl -sSf "http://127.0.0.1:$worker_metrics/metrics" >"$out/worker.metrics"
echo "check-deploy: scraped router (port $router_port) and worker (port $worker_port) after 3 requests: $(
  tr '\n' ' ' <"$out/second.json" | grep -o '"cache_source": *"[a-z]*"' | head -1), $(
  tr '\n' ' ' <"$out/third.json" | grep -o '"cache_source": *"[a-z]*"' | head -1)"
