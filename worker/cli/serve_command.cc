// `saola-worker serve`: the gRPC worker. Loads the model, starts the engine, serves saola.v1.Llm,
// saola.v1.Worker, health and reflection on --port and Prometheus metrics on --metrics-port, and
// drains on SIGTERM or SIGINT.
//
// With --tp-size N it is rank 0 of a tensor-parallel shard group (worker/parallel/shard_group.h):
// it starts N-1 more processes, one per rank, and its engine runs every step on all of them. If
// the group breaks (a rank dies or hangs), the requests in flight fail with UNAVAILABLE naming the
// rank, health turns NOT_SERVING, and the process exits 1 with that message, so the router ejects
// it and Kubernetes restarts the pod. --kv-cache-mb is per rank (each holds its KV heads of the
// same blocks); --threads is for the whole group (each rank gets --threads / N, at least 1).
//
// Once listening it prints one line on stdout that scripts and tests wait for:
//   saola-worker: listening port=P metrics_port=M model=NAME
#include <csignal>
#include <cstdio>
#include <mutex>
#include <filesystem>
#include <pthread.h>
#include <unistd.h>

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
  TensorParallelArgs tp;
  Device device = Device::kCpu;
};

// The first reason the shard group broke: health turns NOT_SERVING at once (before the engine
// fails the requests in flight), and the main thread is woken (SIGUSR1) to stop the worker.
class GroupFailure {
 public:
  void Report(const absl::Status& status) {
    {
      std::lock_guard lock(mu_);
      if (!status_.ok()) return;
      status_ = status;
      if (server_ != nullptr) server_->SetNotServing();
    }
    kill(getpid(), SIGUSR1);
  }
  /// Once the server runs (a failure before that is applied now); null once it has drained.
  void AttachServer(server::WorkerServer* server) {
    std::lock_guard lock(mu_);
    server_ = server;
    if (server_ != nullptr && !status_.ok()) server_->SetNotServing();
  }
  absl::Status status() const {
    std::lock_guard lock(mu_);
    return status_;
  }

 private:
  mutable std::mutex mu_;
  absl::Status status_;
  server::WorkerServer* server_ = nullptr;
};

absl::StatusOr<ServeArgs> ParseServeArgs(const std::vector<std::string>& args) {
  auto flags = Flags::Parse(args,
                            {"model", "host", "port", "metrics-port", "threads", "served-model-name",
                             "kv-cache-mb", "max-batch-tokens", "max-running", "max-waiting",
                             "block-size", "drain-seconds", "tp-size", "tp-timeout-seconds",
                             "device"},
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
  auto tp = ParseTensorParallelArgs(*flags);
  if (!tp.ok()) return tp.status();
  a.tp = *tp;
  auto device = ParseDevice(*flags);
  if (!device.ok()) return device.status();
  a.device = *device;
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
  sigaddset(&signals, SIGUSR1);  // GroupFailure
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);

  auto args = ParseServeArgs(raw_args);
  if (!args.ok()) return Fail(args.status());
  GroupFailure group_failure;  // outlives the group and the engine that report to it
  auto report = [&group_failure](const absl::Status& s) { group_failure.Report(s); };
  auto loaded = OpenModelForTensorParallel(args->model_path, args->threads,
                                           args->engine.max_batch_tokens, args->tp, report,
                                           args->device);
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
  args->engine.step_runner = loaded->group.get();
  args->engine.on_runner_broken = report;

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
  group_failure.AttachServer(server->get());
  tokenizer_spec = model::TokenizerSpec{};  // GetInfo keeps its own copy

  std::printf("saola-worker: listening port=%d metrics_port=%d model=%s\n", (*server)->port(),
              metrics.port(), args->served_name.c_str());
  std::fflush(stdout);
  std::fprintf(stderr,
               "saola-worker: %s on %s:%d, %d KV blocks of %d tokens (%lld MiB), "
               "max %d tokens per step, %d threads, %d tensor-parallel ranks\n",
               args->served_name.c_str(), args->host.c_str(), (*server)->port(),
               args->engine.num_kv_blocks, args->engine.block_size,
               static_cast<long long>(args->kv_cache_mb), args->engine.max_batch_tokens,
               args->threads, args->tp.tp_size);

  int signal = 0;
  sigwait(&signals, &signal);
  if (signal == SIGUSR1) {
    // The shard group broke: nothing can run any more. Fail what is in flight (the engine has, or
    // will as soon as its step returns), stop the ranks that are left, and exit non-zero.
    const absl::Status failure = group_failure.status();
    std::fprintf(stderr, "saola-worker: NOT_SERVING: %s; exiting\n",
                 std::string(failure.message()).c_str());
    // Requests in flight fail at their next step, with the message naming the rank (the group
    // answers every step at once once broken); wait for that rather than failing them here with
    // a vaguer "shutting down".
    (*engine)->WaitIdle(engine::Clock::now() + absl::ToChronoSeconds(args->tp.timeout));
    (*server)->Drain(std::chrono::milliseconds(0));
    group_failure.AttachServer(nullptr);
    loaded->group->Stop();
    return 1;
  }
  std::fprintf(stderr, "saola-worker: %s, draining for up to %d s\n",
               signal == SIGTERM ? "SIGTERM" : "SIGINT", args->drain_seconds);
  (*server)->Drain(std::chrono::seconds(args->drain_seconds));
  group_failure.AttachServer(nullptr);  // the engine has stopped; the group may still report
  std::fprintf(stderr, "saola-worker: stopped\n");
  return 0;
}

}  // namespace saola::cli
