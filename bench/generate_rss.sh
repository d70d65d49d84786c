#!/usr/bin/env bash
# Peak resident memory of `saola-worker generate` at a 2k-token context (a ~1.9k-token prompt plus
# 128 generated tokens), next to the model file size. Target: peak RSS <= file + 64 MiB.
set -euo pipefail
cd "$(dirname "$0")/.."
model=${1:-models/SmolLM2-135M-Instruct.Q4_1.gguf}
bin=${SAOLA_BIN:-build/bin}/saola-worker
[ -x "$bin" ] || { echo "generate_rss: build first (scripts/build)" >&2; exit 1; }

# About 1,920 tokens of ordinary English text: with 128 generated tokens, a 2k context.
sentence="The quick brown fox jumps over the lazy dog while the farmer counts his sheep in the field. "
prompt=$(for _ in $(seq 1 101); do printf '%s' "$sentence"; done)

log=$(mktemp)
trap 'rm -f "$log"' EXIT
/usr/bin/time -v "$bin" generate --model "$model" --prompt "$prompt" --max-tokens 128 \
  --ignore-eos --threads 2 --json >"$log.out" 2>"$log"
prompt_tokens=$(python3 -c 'import json,sys; print(len(json.loads(open(sys.argv[1]).read().strip().splitlines()[-1])["prompt_ids"]))' "$log.out")
rm -f "$log.out"
rss_kib=$(awk -F: '/Maximum resident set size/ {gsub(/ /, "", $2); print $2}' "$log")
file_kib=$(( $(stat -c %s "$model") / 1024 ))
python3 - "$rss_kib" "$file_kib" "$prompt_tokens" <<'PY'
import sys
rss, file, prompt = (int(x) for x in sys.argv[1:])
over = (rss - file) / 1024
print(f"context {prompt + 128} tokens ({prompt} prompt + 128 generated)")
print(f"peak RSS {rss / 1024:.1f} MiB, model file {file / 1024:.1f} MiB, "
      f"overhead {over:.1f} MiB (target <= 64 MiB): {'OK' if over <= 64 else 'OVER'}")
PY
