// `saola-worker serve`: the gRPC worker. Loads the model, starts the engine, serves saola.v1.Llm,
// saola.v1.Worker, health and reflection on --port and Prometheus metrics on --metrics-port, and
// drains on SIGTERM or SIGINT.
//
// Once listening it prints one line on stdout that scripts and tests wait for:
//   saola-worker: listening port=P metrics_port=M model=NAME
#include <csignal>
#include <cstdio>
#include <filesystem>
#include <pthread.h>

#include "absl/strings/str_format.h"
#include "worker/cli/commands.h"
#include "common/flags.h"
#include "worker/cli/loaded_model.h"
#include "worker/engine/engine.h"
#include "worker/model/kv_cache.h"
#include "worker/server/metrics.h"
#include "worker/server/worker_server.h"

namespace saola::cli {
namespace {

struct ServeArgs {
  std::string model_path;
  std::string host = "0.0.0.0";
  int port = 0;
  int metrics_port = -1;  // -1: no metrics endpoint
  int threads = 0;
  std::string served_name;
  int64_t kv_cache_mb = 1024;
  engine::Engine::Options engine;
  int drain_seconds = 30;
};

absl::StatusOr<ServeArgs> ParseServeArgs(const std::vector<std::string>& args) {
  auto flags = Flags::Parse(args,
                            {"model", "host", "port", "metrics-port", "threads", "served-model-name",
                             "kv-cache-mb", "max-batch-tokens", "max-running", "max-waiting",
                             "block-size", "drain-seconds"},
                            {"no-prefix-cache"});
  if (!flags.ok()) return flags.status();
  ServeArgs a;
  auto model = flags->String("model");
  if (!model.ok()) return model.status();
  a.model_path = *model;
  if (flags->Has("host")) a.host = *flags->String("host");
  auto port = flags->Int("port", 0, 0, 65535);
  if (!port.ok()) return port.status();
  a.port = static_cast<int>(*port);
  auto metrics_port = flags->Int("metrics-port", -1, -1, 65535);
  if (!metrics_port.ok()) return metrics_port.status();
  a.metrics_port = static_cast<int>(*metrics_port);
  auto threads = flags->Int("threads", DefaultThreads(), 1, 1024);
  if (!threads.ok()) return threads.status();
  a.threads = static_cast<int>(*threads);
  a.served_name = flags->Has("served-model-name")
                      ? *flags->String("served-model-name")
                      : std::filesystem::path(a.model_path).stem().string();
  auto kv_mb = flags->Int("kv-cache-mb", 1024, 1, 1 << 20);
  if (!kv_mb.ok()) return kv_mb.status();
  a.kv_cache_mb = *kv_mb;
  // 128 by measurement (bench/serve_bench.py, 32 streams, 2 cores): the same or better tokens/s
  // than 256 and 512, and half their inter-token p99, since a step with a prefill chunk is shorter.
  auto batch = flags->Int("max-batch-tokens", 128, 3, 16384);
  if (!batch.ok()) return batch.status();
  a.engine.max_batch_tokens = static_cast<int32_t>(*batch);
  auto running = flags->Int("max-running", 64, 1, 4096);
  if (!running.ok()) return running.status();
  a.engine.max_running = static_cast<int32_t>(*running);
  auto waiting = flags->Int("max-waiting", 256, 0, 1 << 20);
  if (!waiting.ok()) return waiting.status();
  a.engine.max_waiting = static_cast<int32_t>(*waiting);
  auto block = flags->Int("block-size", 16, 1, 1024);
  if (!block.ok()) return block.status();
  a.engine.block_size = static_cast<int32_t>(*block);
  auto drain = flags->Int("drain-seconds", 30, 0, 86400);
  if (!drain.ok()) return drain.status();
  a.drain_seconds = static_cast<int>(*drain);
  a.engine.prefix_cache = !flags->Bool("no-prefix-cache");
  return a;
}

}  // namespace

int RunServe(const std::vector<std::string>& raw_args) {
  // Block the shutdown signals in every thread (threads inherit the mask): this thread waits for
  // them with sigwait once the server runs.
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGTERM);
  sigaddset(&signals, SIGINT);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);

  auto args = ParseServeArgs(raw_args);
  if (!args.ok()) return Fail(args.status());
  auto loaded = OpenModel(args->model_path, /*with_weights=*/true, args->threads,
                          args->engine.max_batch_tokens);
  if (!loaded.ok()) return Fail(loaded.status());
  auto tokenizer_spec = model::LoadTokenizerSpec(*loaded->file);
  if (!tokenizer_spec.ok()) return Fail(tokenizer_spec.status());

  const size_t block_bytes = model::KvCacheStorage::BytesPerBlock(
      loaded->model->KvShape(1, args->engine.block_size));
  const int64_t blocks = (args->kv_cache_mb << 20) / static_cast<int64_t>(block_bytes);
  if (blocks < 1 || blocks > (1 << 30)) {
    return Fail(absl::InvalidArgumentError(absl::StrFormat(
        "--kv-cache-mb: %d MiB holds %d blocks of %d bytes", args->kv_cache_mb, blocks,
        block_bytes)));
  }
  args->engine.num_kv_blocks = static_cast<int32_t>(blocks);

  server::WorkerMetrics metrics;
  if (args->metrics_port >= 0) {
    if (absl::Status s = metrics.Serve(args->host, args->metrics_port); !s.ok()) return Fail(s);
  }
  auto engine = engine::Engine::Create(*loaded->model, *loaded->backend, *loaded->tokenizer,
                                       args->engine, &metrics);
  if (!engine.ok()) return Fail(engine.status());
  const saola::v1::ModelCard card = server::MakeModelCard(
      args->served_name, *loaded->file, loaded->model->config(), (*engine)->context_limit());
  auto server = server::WorkerServer::Start(
      {.host = args->host, .port = args->port}, **engine,
      *loaded->tokenizer, *tokenizer_spec, card, &metrics);
  if (!server.ok()) return Fail(server.status());
  tokenizer_spec = model::TokenizerSpec{};  // GetInfo keeps its own copy

  std::printf("saola-worker: listening port=%d metrics_port=%d model=%s\n", (*server)->port(),
              metrics.port(), args->served_name.c_str());
  std::fflush(stdout);
  std::fprintf(stderr,
               "saola-worker: %s on %s:%d, %d KV blocks of %d tokens (%lld MiB), "
               "max %d tokens per step, %d threads\n",
               args->served_name.c_str(), args->host.c_str(), (*server)->port(),
               args->engine.num_kv_blocks, args->engine.block_size,
               static_cast<long long>(args->kv_cache_mb), args->engine.max_batch_tokens,
               args->threads);

  int signal = 0;
  sigwait(&signals, &signal);
  std::fprintf(stderr, "saola-worker: %s, draining for up to %d s\n",
               signal == SIGTERM ? "SIGTERM" : "SIGINT", args->drain_seconds);
  (*server)->Drain(std::chrono::seconds(args->drain_seconds));
  std::fprintf(stderr, "saola-worker: stopped\n");
  return 0;
}

}  // namespace saola::cli
