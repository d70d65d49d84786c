#!/usr/bin/env bash
# Regenerates tests/fuzz/corpus/request/: valid Generate requests (text format below, encoded by
# protoc) with request_fuzzer's leading type byte (0: Llm GenerateRequest, 1: WorkerGenerateRequest).
set -euo pipefail
cd "$(dirname "$0")/../.."
out=tests/fuzz/corpus/request
mkdir -p "$out"

seed() {  # name type-byte message-type text
  { printf "\\x$2"; printf '%s' "$4" | protoc -I proto --encode="$3" saola/v1/worker.proto; } \
    >"$out/$1.seed"
}

seed prompt 00 saola.v1.GenerateRequest 'prompt: "The capital of France is" max_tokens: 8'
seed chat 00 saola.v1.GenerateRequest 'chat { messages { role: "system" content: "Be brief." } messages { role: "user" content: "Hi <|im_start|> there" } } sampling { temperature: 0.7 top_p: 0.9 top_k: 40 seed: 7 min_p: 0.05 repetition_penalty: 1.1 presence_penalty: 0.5 frequency_penalty: -0.5 logprobs: true top_logprobs: 3 } stop: "\n\n" stop_token_ids: 2 ignore_eos: true'
seed model 00 saola.v1.GenerateRequest 'model: "other" prompt: "x" max_tokens: 4294967295'
seed unicode 00 saola.v1.GenerateRequest 'prompt: "héllo wörld 日本語 🙂 \t\r\n  " cache { bypass: true semantic: true semantic_threshold: 0.9 }'
seed tokens 01 saola.v1.WorkerGenerateRequest 'request_id: "r1" tenant: "acme" prompt_token_ids: [1, 2, 3, 4, 5] max_tokens: 16 sampling { temperature: 0 } stop: "END"'
seed bad_tokens 01 saola.v1.WorkerGenerateRequest 'prompt_token_ids: [4294967295, 0] max_tokens: 1'
ls "$out"
