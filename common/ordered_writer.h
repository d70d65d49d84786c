// A server-streaming reactor that writes messages produced on another thread (the engine's), in
// order, with one write in flight at a time, and finishes the call once its last message is out.
// GenerateStream and KvEventStream build on it.
//
// gRPC may run a reaction (OnWriteDone, OnDone) inline inside StartWrite or Finish, so those
// two are always called without mu_ held: the decision is taken under the lock, the call made
// after it.
#pragma once

#include <cstddef>
#include <deque>
#include <mutex>
#include <utility>

#include "grpcpp/grpcpp.h"

namespace saola {

template <typename Message>
class OrderedWriter : public grpc::ServerWriteReactor<Message> {
 public:
  void OnWriteDone(bool ok) override {
    bool gone = false;
    {
      std::lock_guard lock(mu_);
      writing_ = false;
      if (!ok) {
        pending_.clear();
        if (!ended_) {
          ended_ = true;
          final_status_ = grpc::Status(grpc::StatusCode::CANCELLED, "the client went away");
          gone = true;
        }
      }
    }
    if (gone) OnClientGone();
    Pump();
  }

 protected:
  /// Queues `message`; with `last`, the call finishes with OK once it is written. Returns false
  /// (queuing nothing) when the call has ended or `max_pending` messages already wait.
  bool Write(Message message, bool last = false, size_t max_pending = SIZE_MAX) {
    {
      std::lock_guard lock(mu_);
      if (ended_ || pending_.size() >= max_pending) return false;
      pending_.push_back(std::move(message));
      if (last) ended_ = true;
    }
    Pump();
    return true;
  }

  /// Drops what is queued and finishes the call with `status` once the write in flight is done.
  /// No-op once the call has ended.
  void End(grpc::Status status) {
    {
      std::lock_guard lock(mu_);
      if (ended_) return;
      ended_ = true;
      final_status_ = std::move(status);
      pending_.clear();
    }
    Pump();
  }

  /// Called once when a write fails because the client is gone (the call then ends CANCELLED).
  virtual void OnClientGone() {}

 private:
  void Pump() {
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
    if (action == Action::kWrite) this->StartWrite(&in_flight_);
    if (action == Action::kFinish) this->Finish(status);
  }

  std::mutex mu_;
  std::deque<Message> pending_;
  Message in_flight_;
  bool writing_ = false;
  bool ended_ = false;  // no more messages will be queued
  bool finish_called_ = false;
  grpc::Status final_status_;
};

}  // namespace saola

namespace saola {

/// How the engine thread reaches a stream that gRPC may delete at any moment (in OnDone): the
/// stream detaches its handle in OnDone, and With() runs only while it is attached, holding the
/// lock so the stream cannot go meanwhile. The mutex is recursive because gRPC may run OnDone
/// inline, on the engine thread, inside a Finish that With() led to.
template <typename Stream>
class StreamHandle {
 public:
  explicit StreamHandle(Stream* stream) : stream_(stream) {}
  template <typename F>
  void With(F&& f) {
    std::lock_guard lock(mu_);
    if (stream_ != nullptr) f(*stream_);  // may delete the stream (and detach)
  }
  void Detach() {
    std::lock_guard lock(mu_);
    stream_ = nullptr;
  }

 private:
  std::recursive_mutex mu_;
  Stream* stream_;
};

}  // namespace saola
