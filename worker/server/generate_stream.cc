#include "worker/server/generate_stream.h"

#include <atomic>

#include "worker/server/metrics.h"

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

// The engine's side of the stream: forwards outputs while the stream exists.
class GenerateStream::Sink final : public engine::RequestSink {
 public:
  explicit Sink(std::shared_ptr<StreamHandle<GenerateStream>> handle)
      : handle_(std::move(handle)) {}
  void Push(engine::RequestOutput output) override {
    handle_->With([&](GenerateStream& stream) { stream.Enqueue(std::move(output)); });
  }

 private:
  std::shared_ptr<StreamHandle<GenerateStream>> handle_;
};

GenerateStream* GenerateStream::Start(engine::Engine& engine, engine::RequestSpec spec,
                                      const std::function<void()>& on_rejected) {
  static std::atomic<uint64_t> next_id{1};
  if (spec.id.empty()) spec.id = "saola-req-" + std::to_string(next_id.fetch_add(1));
  auto* stream = new GenerateStream(engine, spec.id);
  const absl::Status submitted =
      engine.Submit(std::move(spec), std::make_shared<Sink>(stream->handle_));
  if (!submitted.ok()) {
    if (on_rejected) on_rejected();
    stream->End(ToGrpcStatus(submitted));
  }
  return stream;
}

GenerateStream::GenerateStream(engine::Engine& engine, std::string id)
    : engine_(engine),
      id_(std::move(id)),
      handle_(std::make_shared<StreamHandle<GenerateStream>>(this)) {}

void GenerateStream::Enqueue(engine::RequestOutput output) {
  // A failed request ends with its status; text already streamed stays streamed.
  if (!output.error.ok()) {
    End(ToGrpcStatus(output.error));
  } else {
    Write(ToProto(output), /*last=*/output.finished);
  }
}

void GenerateStream::OnClientGone() { engine_.Abort(id_); }

void GenerateStream::OnCancel() {
  // Frees the request's blocks on the engine's next turn; its failure output then finishes the
  // call (or, if it had already ended, the pending writes fail and finish it).
  engine_.Abort(id_, absl::CancelledError("cancelled by the client"));
}

void GenerateStream::OnDone() {
  handle_->Detach();
  delete this;
}

namespace {

class RejectedStream final : public grpc::ServerWriteReactor<saola::v1::GenerateResponse> {
 public:
  explicit RejectedStream(const grpc::Status& status) { Finish(status); }
  void OnDone() override { delete this; }
};

// The engine deadline for a call: its gRPC deadline, if it has one.
engine::Clock::time_point EngineDeadline(const grpc::CallbackServerContext& context) {
  const auto deadline = context.deadline();
  if (deadline >= std::chrono::system_clock::time_point::max() - std::chrono::hours(24 * 365)) {
    return engine::Clock::time_point::max();
  }
  const auto left = deadline - std::chrono::system_clock::now();
  return engine::Clock::now() + std::chrono::duration_cast<engine::Clock::duration>(left);
}

}  // namespace

grpc::ServerWriteReactor<saola::v1::GenerateResponse>* ServeGenerate(
    engine::Engine& engine, grpc::CallbackServerContext& context,
    absl::StatusOr<engine::RequestSpec> spec, WorkerMetrics* metrics) {
  if (!spec.ok()) {
    if (metrics) metrics->OnRejected();
    return new RejectedStream(ToGrpcStatus(spec.status()));
  }
  spec->deadline = EngineDeadline(context);
  return GenerateStream::Start(engine, *std::move(spec), [metrics] {
    if (metrics) metrics->OnRejected();
  });
}

}  // namespace saola::server
