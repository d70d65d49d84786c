// One public Generate call through the router:
//
//   validate ─▶ tenant ─▶ chat template + tokenize ─▶ exact cache ─▶ semantic cache ─▶ route
//      │ INVALID_ARGUMENT   │ UNAUTHENTICATED             │ hit: replay   │ hit: replay     │
//      ▼                    ▼                             ▼               ▼                 ▼
//   finish              finish                       finish (EXACT)  finish (SEMANTIC)  WorkerCall
//
// The steps up to routing block for milliseconds (a Redis round trip, an embedding), so they run
// on the router's executor, never on gRPC's callback threads. A WorkerCall (worker_call.h)
// streams the worker's answer back and, after a clean finish (stop or length; never after a
// cancel or an error), writes the caches. A worker that fails before the first message is
// replaced by another (up to RouterContext::max_attempts workers); once a message has reached
// the client the call is never retried. The client's deadline is the worker call's deadline,
// and a client cancel cancels the worker call, which frees its KV blocks on the worker.
#pragma once

#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_set.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "cache/exact/request_fingerprint.h"
#include "common/ordered_writer.h"
#include "grpcpp/grpcpp.h"
#include "router/router_context.h"
#include "router/semantic_key.h"
#include "saola/v1/llm.pb.h"

namespace saola::router {

class RouterGenerateStream;

/// What one call's steps share. Outlives the server stream when needed (a cache write after the
/// client is gone); the stream is reached only through `stream`, which detaches when gRPC
/// deletes it.
struct CallState {
  CallState(RouterContext& context, saola::v1::GenerateRequest request);
  ~CallState() { ctx.live_calls.fetch_sub(1); }

  RouterContext& ctx;
  const saola::v1::GenerateRequest request;
  const absl::Time start = absl::Now();
  std::optional<std::chrono::system_clock::time_point> deadline;
  std::multimap<std::string, std::string> metadata;
  std::shared_ptr<StreamHandle<RouterGenerateStream>> stream;

  // Set by the pipeline before routing.
  std::string tenant;
  std::shared_ptr<const WorkerModel> model;
  std::vector<int32_t> prompt_ids;
  std::vector<uint64_t> block_hashes;
  bool cacheable = false;                              // deterministic and not bypassed
  std::optional<cache::RequestFingerprint> fingerprint;  // when the exact cache is on
  std::optional<SemanticKey> semantic_key;             // when the semantic cache is on
  std::vector<float> embedding;                        // the lookup's, reused by the write
  absl::flat_hash_set<int32_t> failed_workers;
  int attempts = 0;

  /// Queues a message for the client; `last` ends the call with OK once written.
  void Send(saola::v1::GenerateResponse message, bool last);
  /// Ends the call with `status` and records it (first end wins).
  void Finish(const grpc::Status& status, const char* cache_source = "none");
  /// Records an OK end (the last message was sent with Send(..., true)).
  void Succeeded(const char* cache_source);
  bool cancelled();
  void Cancel();
  /// The worker call's context, so Cancel reaches it (cancelled at once if already cancelled).
  void SetClientContext(std::shared_ptr<grpc::ClientContext> context);

 private:
  void Record(const char* cache_source, grpc::StatusCode code);
  absl::Mutex mu_;
  bool cancelled_ ABSL_GUARDED_BY(mu_) = false;
  bool recorded_ ABSL_GUARDED_BY(mu_) = false;
  std::shared_ptr<grpc::ClientContext> client_context_ ABSL_GUARDED_BY(mu_);
};

/// The server side of one call; gRPC deletes it in OnDone.
class RouterGenerateStream final : public OrderedWriter<saola::v1::GenerateResponse> {
 public:
  RouterGenerateStream(RouterContext& ctx, grpc::CallbackServerContext* context,
                       const saola::v1::GenerateRequest* request);

  bool Send(saola::v1::GenerateResponse message, bool last) {
    return Write(std::move(message), last);
  }
  void Fail(grpc::Status status) { End(std::move(status)); }

  void OnCancel() override;
  void OnDone() override;

 private:
  void OnClientGone() override;
  std::shared_ptr<CallState> state_;
};

/// Picks a worker (skipping those that failed this call) and starts a WorkerCall on it; ends
/// the call with UNAVAILABLE when none is left.
void Dispatch(std::shared_ptr<CallState> state);

/// The gRPC status code's name, for metrics labels ("OK", "INVALID_ARGUMENT", ...).
const char* StatusCodeName(grpc::StatusCode code);

}  // namespace saola::router
