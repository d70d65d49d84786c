// The router's call to one worker for one request (gRPC callback client API): forwards each
// message the worker streams to the client, collects them for the caches when the request is
// cacheable, and on the end decides between finishing the client's call, retrying on another
// worker (only before anything reached the client), and writing the caches (only after a clean
// finish). Deletes itself when gRPC is done with it.
#pragma once

#include <memory>
#include <vector>

#include "grpcpp/grpcpp.h"
#include "router/generate_call.h"
#include "saola/v1/worker.grpc.pb.h"

namespace saola::router {

class WorkerCall final : public grpc::ClientReadReactor<saola::v1::GenerateResponse> {
 public:
  static void Start(std::shared_ptr<CallState> state, std::unique_ptr<WorkerLease> lease);

  void OnReadDone(bool ok) override;
  void OnDone(const grpc::Status& status) override;

 private:
  WorkerCall(std::shared_ptr<CallState> state, std::unique_ptr<WorkerLease> lease);
  void Begin();

  std::shared_ptr<CallState> state_;
  std::unique_ptr<WorkerLease> lease_;
  std::shared_ptr<grpc::ClientContext> context_;
  saola::v1::WorkerGenerateRequest request_;
  saola::v1::GenerateResponse message_;
  bool forwarded_ = false;    // something reached the client: never retry
  bool finished_ = false;     // the message carrying `finish` arrived
  absl::Time last_message_;
  std::vector<saola::v1::GenerateResponse> collected_;  // for the caches
};

}  // namespace saola::router
