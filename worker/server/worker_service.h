// saola.v1.Worker: the router's view of this worker (token-level Generate with a tenant, GetInfo,
// Stats, KvEvents, Abort).
#pragma once

#include "saola/v1/worker.grpc.pb.h"
#include "worker/engine/engine.h"
#include "worker/server/metrics.h"
#include "worker/server/request_builder.h"
#include "worker/server/seed_source.h"

namespace saola::server {

class WorkerService final : public saola::v1::Worker::CallbackService {
 public:
  WorkerService(engine::Engine& engine, ServedModel model, saola::v1::WorkerInfo info,
                WorkerMetrics* metrics);

  grpc::ServerWriteReactor<saola::v1::GenerateResponse>* Generate(
      grpc::CallbackServerContext* context,
      const saola::v1::WorkerGenerateRequest* request) override;
  grpc::ServerUnaryReactor* GetInfo(grpc::CallbackServerContext* context,
                                    const saola::v1::GetInfoRequest* request,
                                    saola::v1::WorkerInfo* response) override;
  grpc::ServerUnaryReactor* Stats(grpc::CallbackServerContext* context,
                                  const saola::v1::StatsRequest* request,
                                  saola::v1::WorkerStats* response) override;
  grpc::ServerWriteReactor<saola::v1::KvEventBatch>* KvEvents(
      grpc::CallbackServerContext* context, const saola::v1::KvEventsRequest* request) override;
  grpc::ServerUnaryReactor* Abort(grpc::CallbackServerContext* context,
                                  const saola::v1::AbortRequest* request,
                                  saola::v1::AbortResponse* response) override;

 private:
  engine::Engine& engine_;
  ServedModel model_;
  saola::v1::WorkerInfo info_;
  WorkerMetrics* metrics_;
  SeedSource seeds_;
};

/// The tokenizer as GetInfo sends it (from the spec as read from the file, merges included).
saola::v1::Tokenizer TokenizerToProto(const model::TokenizerSpec& spec);

}  // namespace saola::server
