#include "router/worker_call.h"

#include <atomic>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"

namespace saola::router {
namespace {

std::string NextRequestId() {
  static std::atomic<uint64_t> counter{0};
  static const uint64_t boot = static_cast<uint64_t>(absl::ToUnixNanos(absl::Now()));
  return absl::StrFormat("router-%x-%d", boot, counter.fetch_add(1));
}

bool CleanFinish(const saola::v1::GenerateResponse& last) {
  return last.has_finish() && (last.finish().reason() == saola::v1::STOP ||
                               last.finish().reason() == saola::v1::LENGTH);
}

// Writes a finished response to the caches. Runs on the executor.
void WriteCaches(std::shared_ptr<CallState> state,
                 std::vector<saola::v1::GenerateResponse> messages) {
  saola::v1::CachedResponse response;
  for (auto& m : messages) *response.add_messages() = std::move(m);
  response.set_created_unix_seconds(absl::ToUnixSeconds(absl::Now()));
  RouterContext& ctx = state->ctx;
  if (ctx.exact != nullptr && state->fingerprint.has_value()) {
    ctx.exact->Store(*state->fingerprint, response);
  }
  if (ctx.semantic != nullptr && state->semantic_key.has_value()) {
    ctx.semantic->Insert(state->semantic_key->partition, state->semantic_key->text,
                         std::move(state->embedding), std::move(response));
  }
}

}  // namespace

void WorkerCall::Start(std::shared_ptr<CallState> state, std::unique_ptr<WorkerLease> lease) {
  (new WorkerCall(std::move(state), std::move(lease)))->Begin();
}

WorkerCall::WorkerCall(std::shared_ptr<CallState> state, std::unique_ptr<WorkerLease> lease)
    : state_(std::move(state)),
      lease_(std::move(lease)),
      context_(std::make_shared<grpc::ClientContext>()) {
  const saola::v1::GenerateRequest& r = state_->request;
  request_.set_request_id(NextRequestId());
  request_.set_tenant(state_->tenant);
  request_.mutable_prompt_token_ids()->Add(state_->prompt_ids.begin(), state_->prompt_ids.end());
  *request_.mutable_sampling() = r.sampling();
  *request_.mutable_stop() = r.stop();
  request_.set_max_tokens(r.max_tokens());
  request_.set_ignore_eos(r.ignore_eos());
  *request_.mutable_stop_token_ids() = r.stop_token_ids();
  request_.set_model(r.model());
  if (state_->deadline.has_value()) context_->set_deadline(*state_->deadline);
}

void WorkerCall::Begin() {
  state_->SetClientContext(context_);
  lease_->endpoint().stub().async()->Generate(context_.get(), &request_, this);
  StartRead(&message_);
  StartCall();
}

void WorkerCall::OnReadDone(bool ok) {
  if (!ok) return;  // OnDone follows
  const absl::Time now = absl::Now();
  RouterMetrics& metrics = *state_->ctx.metrics;
  if (!forwarded_) {
    metrics.OnFirstToken(absl::ToDoubleSeconds(now - state_->start));
  } else {
    metrics.OnInterToken(absl::ToDoubleSeconds(now - last_message_));
  }
  last_message_ = now;
  forwarded_ = true;
  const bool last = message_.has_finish();
  finished_ |= last;
  if (state_->cacheable) collected_.push_back(message_);
  state_->Send(std::move(message_), last);
  message_.Clear();
  StartRead(&message_);
}

void WorkerCall::OnDone(const grpc::Status& status) {
  const grpc::StatusCode code = status.error_code();
  // UNAVAILABLE is the transport's verdict (unreachable, connection dropped) or the worker
  // draining: the worker is at fault. Anything else is an answer from a live worker.
  if (code == grpc::StatusCode::UNAVAILABLE) {
    lease_->Failed();
  } else {
    lease_->Succeeded();
  }
  const int32_t worker_id = lease_->endpoint().id();
  const std::string address = lease_->endpoint().address();
  lease_.reset();  // the worker's load drops now, before any retry picks again

  if (status.ok()) {
    if (!finished_) {
      state_->Finish(grpc::Status(grpc::StatusCode::INTERNAL,
                                  absl::StrCat("worker ", address, " ended without finishing")));
    } else {
      state_->Succeeded("none");
      if (state_->cacheable && !collected_.empty() && CleanFinish(collected_.back()) &&
          !state_->cancelled()) {
        state_->ctx.executor->Post(
            [state = state_, messages = std::move(collected_)]() mutable {
              WriteCaches(std::move(state), std::move(messages));
            });
      }
    }
  } else {
    const bool retryable = code == grpc::StatusCode::UNAVAILABLE ||
                           code == grpc::StatusCode::RESOURCE_EXHAUSTED;
    if (!forwarded_ && retryable && !state_->cancelled() &&
        state_->attempts < state_->ctx.max_attempts) {
      state_->failed_workers.insert(worker_id);
      state_->ctx.metrics->OnRetry();
      state_->ctx.executor->Post([state = state_] { Dispatch(state); });
    } else if (forwarded_ && code == grpc::StatusCode::UNAVAILABLE) {
      state_->Finish(grpc::Status(
          code, absl::StrCat("worker ", address, " failed after the response started (",
                             status.error_message(), "); not retried")));
    } else {
      state_->Finish(status);
    }
  }
  delete this;
}

}  // namespace saola::router
