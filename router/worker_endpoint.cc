#include "router/worker_endpoint.h"

#include <algorithm>
#include <cstdio>

#include "absl/strings/str_format.h"
#include "grpc/health/v1/health.grpc.pb.h"
#include "router/tokenizer_proto.h"

namespace saola::router {
namespace {

using HealthResponse = grpc::health::v1::HealthCheckResponse;

std::chrono::system_clock::time_point DeadlineIn(absl::Duration d) {
  return absl::ToChronoTime(absl::Now() + d);
}

}  // namespace

WorkerEndpoint::WorkerEndpoint(int32_t id, std::string address, Listener* listener,
                               WorkerEndpointOptions options)
    : id_(id),
      address_(std::move(address)),
      listener_(listener),
      options_(options),
      breaker_(options.breaker) {
  grpc::ChannelArguments args;
  // Reconnect quickly after a worker restarts (gRPC's default backoff grows to 120 s).
  args.SetInt(GRPC_ARG_MAX_RECONNECT_BACKOFF_MS, 2000);
  args.SetInt(GRPC_ARG_INITIAL_RECONNECT_BACKOFF_MS, 100);
  args.SetInt(GRPC_ARG_MIN_RECONNECT_BACKOFF_MS, 100);
  args.SetMaxReceiveMessageSize(64 << 20);  // GetInfo carries the whole vocabulary
  channel_ = grpc::CreateCustomChannel(address_, grpc::InsecureChannelCredentials(), args);
  stub_ = saola::v1::Worker::NewStub(channel_);
}

WorkerEndpoint::~WorkerEndpoint() { Stop(); }

void WorkerEndpoint::Start() {
  threads_.emplace_back([this] { InfoAndStatsLoop(); });
  threads_.emplace_back([this] { HealthLoop(); });
  threads_.emplace_back([this] { KvEventsLoop(); });
}

void WorkerEndpoint::Stop() {
  {
    absl::MutexLock lock(&mu_);
    if (stopping_ && threads_.empty()) return;
    stopping_ = true;
    for (grpc::ClientContext* context : live_calls_) context->TryCancel();
  }
  for (std::thread& t : threads_) t.join();
  threads_.clear();
}

std::shared_ptr<const WorkerModel> WorkerEndpoint::model() const {
  absl::MutexLock lock(&mu_);
  return model_;
}

bool WorkerEndpoint::healthy() const {
  absl::MutexLock lock(&mu_);
  return healthy_;
}

bool WorkerEndpoint::Routable(absl::Time now) const {
  {
    absl::MutexLock lock(&mu_);
    if (!healthy_ || model_ == nullptr || stopping_) return false;
  }
  return breaker_.WouldAllow(now);
}

saola::v1::WorkerStats WorkerEndpoint::stats() const {
  absl::MutexLock lock(&mu_);
  return stats_;
}

bool WorkerEndpoint::SleepUnlessStopping(absl::Duration d) {
  absl::MutexLock lock(&mu_);
  mu_.AwaitWithTimeout(absl::Condition(&stopping_), d);
  return !stopping_;
}

bool WorkerEndpoint::Track(grpc::ClientContext* context) {
  absl::MutexLock lock(&mu_);
  if (stopping_) return false;
  live_calls_.push_back(context);
  return true;
}

void WorkerEndpoint::Untrack(grpc::ClientContext* context) {
  absl::MutexLock lock(&mu_);
  live_calls_.erase(std::remove(live_calls_.begin(), live_calls_.end(), context),
                    live_calls_.end());
}

void WorkerEndpoint::InfoAndStatsLoop() {
  absl::Duration backoff = options_.reconnect_min;
  bool warned = false;
  // GetInfo until it answers with a usable tokenizer.
  while (model() == nullptr) {
    grpc::ClientContext context;
    context.set_deadline(DeadlineIn(options_.rpc_timeout));
    context.set_wait_for_ready(true);
    if (!Track(&context)) return;
    saola::v1::WorkerInfo info;
    grpc::Status status = stub_->GetInfo(&context, saola::v1::GetInfoRequest(), &info);
    Untrack(&context);
    if (status.ok()) {
      absl::StatusOr<std::unique_ptr<model::Tokenizer>> tokenizer =
          TokenizerFromProto(info.tokenizer());
      if (tokenizer.ok()) {
        auto model = std::make_shared<WorkerModel>();
        info.clear_tokenizer();  // the tables live in the tokenizer now
        model->info = std::move(info);
        model->tokenizer = *std::move(tokenizer);
        absl::MutexLock lock(&mu_);
        model_ = std::move(model);
        break;
      }
      status = grpc::Status(grpc::StatusCode::INVALID_ARGUMENT,
                            std::string(tokenizer.status().message()));
    }
    if (!warned) {
      std::fprintf(stderr, "saola-router: worker %s: GetInfo failed (%s); retrying\n",
                   address_.c_str(), status.error_message().c_str());
      warned = true;
    }
    if (!SleepUnlessStopping(backoff)) return;
    backoff = std::min(backoff * 2, options_.reconnect_max);
  }
  while (SleepUnlessStopping(options_.stats_interval)) {
    grpc::ClientContext context;
    context.set_deadline(DeadlineIn(options_.rpc_timeout));
    if (!Track(&context)) return;
    saola::v1::WorkerStats stats;
    grpc::Status status = stub_->Stats(&context, saola::v1::StatsRequest(), &stats);
    Untrack(&context);
    if (status.ok()) {
      absl::MutexLock lock(&mu_);
      stats_ = std::move(stats);
    }
  }
}

void WorkerEndpoint::HealthLoop() {
  auto health = grpc::health::v1::Health::NewStub(channel_);
  absl::Duration backoff = options_.reconnect_min;
  for (;;) {
    grpc::ClientContext context;
    context.set_wait_for_ready(true);
    if (!Track(&context)) return;
    auto reader = health->Watch(&context, grpc::health::v1::HealthCheckRequest());
    HealthResponse response;
    while (reader->Read(&response)) {
      const bool serving = response.status() == HealthResponse::SERVING;
      absl::MutexLock lock(&mu_);
      if (serving != healthy_) {
        std::fprintf(stderr, "saola-router: worker %s is %s\n", address_.c_str(),
                     serving ? "SERVING" : "NOT_SERVING; ejected");
      }
      healthy_ = serving;
      backoff = options_.reconnect_min;
    }
    reader->Finish();
    Untrack(&context);
    {
      absl::MutexLock lock(&mu_);
      if (healthy_) {
        std::fprintf(stderr, "saola-router: worker %s: health watch broke; ejected\n",
                     address_.c_str());
      }
      healthy_ = false;
    }
    if (!SleepUnlessStopping(backoff)) return;
    backoff = std::min(backoff * 2, options_.reconnect_max);
  }
}

void WorkerEndpoint::KvEventsLoop() {
  absl::Duration backoff = options_.reconnect_min;
  for (;;) {
    grpc::ClientContext context;
    context.set_wait_for_ready(true);
    if (!Track(&context)) return;
    auto reader = stub_->KvEvents(&context, saola::v1::KvEventsRequest());
    saola::v1::KvEventBatch batch;
    bool have_sequence = false;
    uint64_t expected = 0;
    bool gap = false;
    while (reader->Read(&batch)) {
      if (have_sequence && !batch.reset() && batch.sequence() != expected) {
        gap = true;  // events were lost: what we know is stale; start over with a snapshot
        context.TryCancel();
        break;
      }
      have_sequence = true;
      expected = batch.sequence() + 1;
      backoff = options_.reconnect_min;
      listener_->OnKvEvents(id_, batch);
    }
    reader->Finish();
    Untrack(&context);
    if (have_sequence || gap) listener_->OnKvEventsLost(id_);
    if (!SleepUnlessStopping(backoff)) return;
    backoff = std::min(backoff * 2, options_.reconnect_max);
  }
}

}  // namespace saola::router
