#include "router/generate_call.h"

#include "absl/strings/str_format.h"
#include "common/block_hash.h"
#include "router/worker_call.h"
#include "worker/server/request_builder.h"

namespace saola::router {
namespace {

grpc::Status ToGrpc(const absl::Status& status) {
  return grpc::Status(static_cast<grpc::StatusCode>(status.code()),
                      std::string(status.message()));
}

double SecondsSince(absl::Time t) { return absl::ToDoubleSeconds(absl::Now() - t); }

// Streams a cached response as if it were generated now. The replay keeps the original stream's
// message boundaries, text and token ids; only the final message changes: it says which cache
// answered and counts this request's prompt.
void Replay(CallState& state, const saola::v1::CachedResponse& cached,
            saola::v1::CacheSource source, const char* source_name) {
  const int n = cached.messages_size();
  for (int i = 0; i < n; ++i) {
    saola::v1::GenerateResponse message = cached.messages(i);
    const bool last = i + 1 == n;
    if (last) {
      saola::v1::Finish* finish = message.mutable_finish();
      finish->set_cache_source(source);
      finish->mutable_usage()->set_prompt_tokens(static_cast<uint32_t>(state.prompt_ids.size()));
    }
    state.Send(std::move(message), last);
  }
  state.Succeeded(source_name);
}

// Validates and tokenizes the request; fills the state's tenant, model and prompt.
grpc::Status Prepare(CallState& state) {
  absl::StatusOr<std::string> tenant = state.ctx.api_keys->Resolve(state.metadata);
  if (!tenant.ok()) return ToGrpc(tenant.status());
  state.tenant = *std::move(tenant);
  state.model = state.ctx.pool->model();
  if (state.model == nullptr) {
    return grpc::Status(grpc::StatusCode::UNAVAILABLE, "no worker is ready yet");
  }
  const saola::v1::GenerateRequest& request = state.request;
  const saola::v1::ModelCard& card = state.model->info.model();
  if (request.cache().has_semantic_threshold()) {
    const float t = request.cache().semantic_threshold();
    if (!(t > 0 && t <= 1)) {
      return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT,
                          absl::StrFormat("cache.semantic_threshold: must be in (0, 1], got %g", t));
    }
  }
  server::ServedModel served{card.id(), static_cast<int32_t>(card.context_length()),
                             state.model->tokenizer.get()};
  // The seed given here is never used: the worker draws its own for a request without one.
  absl::StatusOr<engine::RequestSpec> spec = server::BuildRequestSpec(request, served, 0);
  if (!spec.ok()) return ToGrpc(spec.status());
  state.prompt_ids = std::move(spec->prompt);
  state.block_hashes =
      FullBlockHashes(state.tenant, state.prompt_ids, state.model->info.kv_block_size());
  state.cacheable = !request.cache().bypass() && cache::IsDeterministic(request.sampling());
  return grpc::Status::OK;
}

// Validation, then the caches, then routing. Runs on the executor.
void Run(std::shared_ptr<CallState> state) {
  if (state->cancelled()) return state->Finish(grpc::Status::CANCELLED);
  if (grpc::Status status = Prepare(*state); !status.ok()) return state->Finish(status);
  RouterContext& ctx = state->ctx;
  const std::string& model_name = state->model->info.model().id();
  if (state->cacheable && ctx.exact != nullptr) {
    state->fingerprint =
        cache::FingerprintRequest(state->tenant, model_name, state->prompt_ids, state->request);
    const absl::Time t0 = absl::Now();
    std::optional<saola::v1::CachedResponse> hit = ctx.exact->Lookup(*state->fingerprint);
    ctx.metrics->OnCacheLookup("exact", SecondsSince(t0));
    if (hit.has_value() && hit->messages_size() > 0) {
      return Replay(*state, *hit, saola::v1::EXACT, "exact");
    }
  }
  // Only requests that opt in read or write the semantic cache: an answer is offered to
  // paraphrases only by clients that accept paraphrased answers, and the embedding (milliseconds
  // of CPU) is computed only for them.
  if (state->cacheable && ctx.semantic != nullptr && state->request.cache().semantic()) {
    state->semantic_key = BuildSemanticKey(state->tenant, model_name, state->request);
    const float threshold = state->request.cache().has_semantic_threshold()
                                ? state->request.cache().semantic_threshold()
                                : ctx.semantic_threshold;
    const absl::Time t0 = absl::Now();
    std::optional<cache::SemanticHit> hit =
        ctx.semantic->Lookup(state->semantic_key->partition, state->semantic_key->text,
                             threshold, &state->embedding);
    ctx.metrics->OnCacheLookup("semantic", SecondsSince(t0));
    if (hit.has_value() && hit->response.messages_size() > 0) {
      ctx.metrics->OnSemanticHit(hit->similarity);
      return Replay(*state, hit->response, saola::v1::SEMANTIC, "semantic");
    }
  }
  Dispatch(std::move(state));
}

}  // namespace

const char* StatusCodeName(grpc::StatusCode code) {
  switch (code) {
    case grpc::StatusCode::OK: return "OK";
    case grpc::StatusCode::CANCELLED: return "CANCELLED";
    case grpc::StatusCode::INVALID_ARGUMENT: return "INVALID_ARGUMENT";
    case grpc::StatusCode::DEADLINE_EXCEEDED: return "DEADLINE_EXCEEDED";
    case grpc::StatusCode::RESOURCE_EXHAUSTED: return "RESOURCE_EXHAUSTED";
    case grpc::StatusCode::UNAVAILABLE: return "UNAVAILABLE";
    case grpc::StatusCode::UNAUTHENTICATED: return "UNAUTHENTICATED";
    case grpc::StatusCode::INTERNAL: return "INTERNAL";
    default: return "OTHER";
  }
}

CallState::CallState(RouterContext& context, saola::v1::GenerateRequest request)
    : ctx(context), request(std::move(request)) {
  ctx.live_calls.fetch_add(1);
}

void CallState::Send(saola::v1::GenerateResponse message, bool last) {
  stream->With([&](RouterGenerateStream& s) { s.Send(std::move(message), last); });
}

void CallState::Finish(const grpc::Status& status, const char* cache_source) {
  stream->With([&](RouterGenerateStream& s) { s.Fail(status); });
  Record(cache_source, status.error_code());
}

void CallState::Succeeded(const char* cache_source) { Record(cache_source, grpc::StatusCode::OK); }

void CallState::Record(const char* cache_source, grpc::StatusCode code) {
  {
    absl::MutexLock lock(&mu_);
    if (recorded_) return;
    recorded_ = true;
  }
  ctx.metrics->OnRequestDone(cache_source, StatusCodeName(code), SecondsSince(start));
}

bool CallState::cancelled() {
  absl::MutexLock lock(&mu_);
  return cancelled_;
}

void CallState::Cancel() {
  std::shared_ptr<grpc::ClientContext> context;
  {
    absl::MutexLock lock(&mu_);
    cancelled_ = true;
    context = client_context_;
  }
  if (context != nullptr) context->TryCancel();
}

void CallState::SetClientContext(std::shared_ptr<grpc::ClientContext> context) {
  bool cancel_now = false;
  {
    absl::MutexLock lock(&mu_);
    client_context_ = context;
    cancel_now = cancelled_;
  }
  if (cancel_now) context->TryCancel();
}

RouterGenerateStream::RouterGenerateStream(RouterContext& ctx,
                                           grpc::CallbackServerContext* context,
                                           const saola::v1::GenerateRequest* request)
    : state_(std::make_shared<CallState>(ctx, *request)) {
  state_->stream = std::make_shared<StreamHandle<RouterGenerateStream>>(this);
  for (const auto& [key, value] : context->client_metadata()) {
    state_->metadata.emplace(std::string(key.data(), key.size()),
                             std::string(value.data(), value.size()));
  }
  const gpr_timespec raw = context->raw_deadline();
  if (gpr_time_cmp(raw, gpr_inf_future(raw.clock_type)) != 0) state_->deadline = context->deadline();
  ctx.executor->Post([state = state_] { Run(state); });
}

void RouterGenerateStream::OnCancel() {
  state_->Cancel();
  Fail(grpc::Status(grpc::StatusCode::CANCELLED, "cancelled by the client"));
}

void RouterGenerateStream::OnClientGone() { state_->Cancel(); }

void RouterGenerateStream::OnDone() {
  state_->stream->Detach();
  delete this;
}

void Dispatch(std::shared_ptr<CallState> state) {
  if (state->cancelled()) return state->Finish(grpc::Status::CANCELLED);
  routing::RouteRequest route{state->tenant, state->block_hashes};
  absl::StatusOr<std::unique_ptr<WorkerLease>> lease =
      state->ctx.pool->Acquire(route, state->failed_workers);
  if (!lease.ok()) return state->Finish(ToGrpc(lease.status()));
  state->ctx.metrics->OnRouted((*lease)->decision().reason);
  ++state->attempts;
  WorkerCall::Start(std::move(state), *std::move(lease));
}

}  // namespace saola::router
