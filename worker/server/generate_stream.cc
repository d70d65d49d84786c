#include "worker/server/generate_stream.h"

#include <atomic>

namespace saola::server {
namespace {

saola::v1::FinishReason ToProto(engine::FinishReason reason) {
  switch (reason) {
    case engine::FinishReason::kStop:
      return saola::v1::STOP;
    case engine::FinishReason::kLength:
      return saola::v1::LENGTH;
    case engine::FinishReason::kNone:
      break;
  }
  return saola::v1::FINISH_REASON_UNSPECIFIED;
}

saola::v1::GenerateResponse ToProto(const engine::RequestOutput& out) {
  saola::v1::GenerateResponse msg;
  msg.set_text(out.text);
  for (int32_t id : out.token_ids) msg.add_token_ids(static_cast<uint32_t>(id));
  for (const engine::SampledToken& t : out.logprobs) {
    saola::v1::TokenLogprob* lp = msg.add_logprobs();
    lp->set_token_id(static_cast<uint32_t>(t.id));
    lp->set_logprob(t.logprob);
    for (const auto& [id, logprob] : t.top) {
      saola::v1::TopLogprob* top = lp->add_top();
      top->set_token_id(static_cast<uint32_t>(id));
      top->set_logprob(logprob);
    }
  }
  if (out.finished) {
    saola::v1::Finish* finish = msg.mutable_finish();
    finish->set_reason(ToProto(out.reason));
    finish->set_cache_source(saola::v1::NONE);
    finish->set_stop(out.matched_stop);
    finish->mutable_usage()->set_prompt_tokens(out.usage.prompt_tokens);
    finish->mutable_usage()->set_completion_tokens(out.usage.completion_tokens);
    finish->mutable_usage()->set_cached_prompt_tokens(out.usage.cached_prompt_tokens);
  }
  return msg;
}

}  // namespace

grpc::Status ToGrpcStatus(const absl::Status& status) {
  return grpc::Status(static_cast<grpc::StatusCode>(status.code()),
                      std::string(status.message()));
}

// Push holds the lock while it calls into the stream, so OnDone (which detaches) cannot delete
// the stream meanwhile. The mutex is recursive because gRPC may run OnDone inline, on the engine
// thread, inside the Finish that Push led to.
class GenerateStream::Sink final : public engine::RequestSink {
 public:
  explicit Sink(GenerateStream* stream) : stream_(stream) {}
  void Push(engine::RequestOutput output) override {
    std::lock_guard lock(mu_);
    if (stream_ != nullptr) stream_->Enqueue(std::move(output));  // may delete the stream
  }
  void Detach() {
    std::lock_guard lock(mu_);
    stream_ = nullptr;
  }

 private:
  std::recursive_mutex mu_;
  GenerateStream* stream_;
};

GenerateStream* GenerateStream::Start(engine::Engine& engine, engine::RequestSpec spec,
                                      const std::function<void()>& on_rejected) {
  static std::atomic<uint64_t> next_id{1};
  if (spec.id.empty()) spec.id = "req-" + std::to_string(next_id.fetch_add(1));
  auto* stream = new GenerateStream(engine, spec.id);
  const absl::Status submitted = engine.Submit(std::move(spec), stream->sink_);
  if (!submitted.ok()) {
    if (on_rejected) on_rejected();
    {
      std::lock_guard lock(stream->mu_);
      stream->ended_ = true;
      stream->final_status_ = ToGrpcStatus(submitted);
    }
    stream->Pump();
  }
  return stream;
}

GenerateStream::GenerateStream(engine::Engine& engine, std::string id)
    : engine_(engine),
      id_(std::move(id)),
      sink_(std::make_shared<Sink>(this)) {}

void GenerateStream::Enqueue(engine::RequestOutput output) {
  {
    std::lock_guard lock(mu_);
    if (ended_) return;
    if (!output.error.ok()) {
      // A failed request ends with its status; text already streamed stays streamed.
      ended_ = true;
      final_status_ = ToGrpcStatus(output.error);
      pending_.clear();
    } else {
      pending_.push_back(ToProto(output));
      if (output.finished) ended_ = true;
    }
  }
  Pump();
}

// gRPC may run a reaction (OnWriteDone, OnDone) inline in StartWrite or Finish, so both are
// called without mu_ held: the decision is taken under the lock, the call made after it.
void GenerateStream::Pump() {
  enum class Action { kNone, kWrite, kFinish } action = Action::kNone;
  grpc::Status status;
  {
    std::lock_guard lock(mu_);
    if (writing_ || finish_called_) return;
    if (!pending_.empty()) {
      in_flight_ = std::move(pending_.front());
      pending_.pop_front();
      writing_ = true;
      action = Action::kWrite;
    } else if (ended_) {
      finish_called_ = true;
      status = final_status_;
      action = Action::kFinish;
    }
  }
  if (action == Action::kWrite) StartWrite(&in_flight_);
  if (action == Action::kFinish) Finish(status);
}

void GenerateStream::OnWriteDone(bool ok) {
  bool abort = false;
  {
    std::lock_guard lock(mu_);
    writing_ = false;
    if (!ok) {
      // The client is gone: stop the request; the engine's last output is then dropped.
      pending_.clear();
      if (!ended_) {
        ended_ = true;
        final_status_ = grpc::Status(grpc::StatusCode::CANCELLED, "the client went away");
        abort = true;
      }
    }
  }
  if (abort) engine_.Abort(id_);
  Pump();
}

void GenerateStream::OnCancel() {
  // Frees the request's blocks on the engine's next turn; its failure output then finishes the
  // call (or, if it had already ended, the pending writes fail and finish it).
  engine_.Abort(id_, absl::CancelledError("cancelled by the client"));
}

void GenerateStream::OnDone() {
  sink_->Detach();
  delete this;
}

}  // namespace saola::server

namespace saola::server {
namespace {

class RejectedStream final : public grpc::ServerWriteReactor<saola::v1::GenerateResponse> {
 public:
  explicit RejectedStream(const grpc::Status& status) { Finish(status); }
  void OnDone() override { delete this; }
};

}  // namespace

grpc::ServerWriteReactor<saola::v1::GenerateResponse>* RejectGenerate(const grpc::Status& status) {
  return new RejectedStream(status);
}

engine::Clock::time_point EngineDeadline(const grpc::CallbackServerContext& context) {
  const auto deadline = context.deadline();
  if (deadline >= std::chrono::system_clock::time_point::max() - std::chrono::hours(24 * 365)) {
    return engine::Clock::time_point::max();
  }
  const auto left = deadline - std::chrono::system_clock::now();
  return engine::Clock::now() + std::chrono::duration_cast<engine::Clock::duration>(left);
}

}  // namespace saola::server
