#include "router/worker_pool.h"

#include <cstdio>

namespace saola::router {

WorkerLease::WorkerLease(std::shared_ptr<WorkerEndpoint> endpoint,
                         routing::RouteDecision decision)
    : endpoint_(std::move(endpoint)), decision_(std::move(decision)) {
  endpoint_->in_flight.fetch_add(1);
}

WorkerLease::~WorkerLease() { endpoint_->in_flight.fetch_sub(1); }

void WorkerLease::Succeeded() { endpoint_->breaker().RecordSuccess(); }

void WorkerLease::Failed() { endpoint_->breaker().RecordFailure(absl::Now()); }

WorkerPool::WorkerPool(WorkerPoolOptions options, routing::RoutingPolicy* policy)
    : options_(std::move(options)), policy_(policy) {}

WorkerPool::~WorkerPool() { Stop(); }

void WorkerPool::Start() {
  Reconcile(ResolveWorkerTargets(options_.targets));
  bool any_dns = false;
  for (const WorkerTarget& t : options_.targets) any_dns |= t.dns;
  if (any_dns) refresh_thread_ = std::thread([this] { RefreshLoop(); });
}

void WorkerPool::Stop() {
  std::map<std::string, std::shared_ptr<WorkerEndpoint>> endpoints;
  {
    absl::MutexLock lock(&mu_);
    stopping_ = true;
    endpoints.swap(endpoints_);
  }
  if (refresh_thread_.joinable()) refresh_thread_.join();
  for (auto& [address, endpoint] : endpoints) endpoint->Stop();
}

void WorkerPool::RefreshLoop() {
  for (;;) {
    {
      absl::MutexLock lock(&mu_);
      mu_.AwaitWithTimeout(absl::Condition(&stopping_), options_.dns_refresh);
      if (stopping_) return;
    }
    Reconcile(ResolveWorkerTargets(options_.targets));
  }
}

void WorkerPool::Reconcile(const std::vector<std::string>& addresses) {
  std::vector<std::shared_ptr<WorkerEndpoint>> added, removed;
  {
    absl::MutexLock lock(&mu_);
    if (stopping_) return;
    for (auto it = endpoints_.begin(); it != endpoints_.end();) {
      if (std::find(addresses.begin(), addresses.end(), it->first) == addresses.end()) {
        removed.push_back(it->second);
        it = endpoints_.erase(it);
      } else {
        ++it;
      }
    }
    for (const std::string& address : addresses) {
      if (endpoints_.count(address)) continue;
      auto endpoint =
          std::make_shared<WorkerEndpoint>(next_id_++, address, this, options_.endpoint);
      endpoints_[address] = endpoint;
      added.push_back(endpoint);
    }
  }
  for (auto& endpoint : added) {
    std::fprintf(stderr, "saola-router: worker %s added\n", endpoint->address().c_str());
    endpoint->Start();
  }
  for (auto& endpoint : removed) {
    std::fprintf(stderr, "saola-router: worker %s removed (no longer in DNS)\n",
                 endpoint->address().c_str());
    endpoint->Stop();
    policy_->OnWorkerRemoved(endpoint->id());
  }
}

std::shared_ptr<const WorkerModel> WorkerPool::model() const {
  absl::MutexLock lock(&mu_);
  if (model_ == nullptr) {
    for (const auto& [address, endpoint] : endpoints_) {
      if (auto m = endpoint->model(); m != nullptr) {
        model_ = m;
        break;
      }
    }
  }
  return model_;
}

bool WorkerPool::ServesPoolModel(const WorkerEndpoint& endpoint) const {
  std::shared_ptr<const WorkerModel> mine = endpoint.model();
  std::shared_ptr<const WorkerModel> pool = model();
  if (mine == nullptr || pool == nullptr) return false;
  const auto& a = mine->info;
  const auto& b = pool->info;
  if (a.model().id() == b.model().id() && a.kv_block_size() == b.kv_block_size() &&
      a.model().vocab_size() == b.model().vocab_size()) {
    return true;
  }
  absl::MutexLock lock(&mu_);
  if (warned_mismatch_.insert(endpoint.id()).second) {
    std::fprintf(stderr,
                 "saola-router: worker %s serves '%s' (block size %u), not the pool's '%s' "
                 "(block size %u); not routing to it\n",
                 endpoint.address().c_str(), a.model().id().c_str(), a.kv_block_size(),
                 b.model().id().c_str(), b.kv_block_size());
  }
  return false;
}

absl::StatusOr<std::unique_ptr<WorkerLease>> WorkerPool::Acquire(
    const routing::RouteRequest& request, const absl::flat_hash_set<int32_t>& exclude) {
  std::vector<std::shared_ptr<WorkerEndpoint>> candidates;
  {
    absl::MutexLock lock(&mu_);
    for (const auto& [address, endpoint] : endpoints_) candidates.push_back(endpoint);
  }
  const absl::Time now = absl::Now();
  std::vector<std::shared_ptr<WorkerEndpoint>> usable;
  for (auto& endpoint : candidates) {
    if (exclude.contains(endpoint->id()) || !endpoint->Routable(now) ||
        !ServesPoolModel(*endpoint)) {
      continue;
    }
    usable.push_back(endpoint);
  }
  // A worker whose half-open breaker another request claimed first is dropped and we pick again.
  while (!usable.empty()) {
    std::vector<routing::WorkerLoad> loads;
    for (auto& endpoint : usable) {
      const saola::v1::WorkerStats stats = endpoint->stats();
      loads.push_back({endpoint->id(), endpoint->in_flight.load(),
                       static_cast<int32_t>(stats.waiting()), stats.kv_usage()});
    }
    routing::RouteDecision decision = policy_->Pick(request, loads);
    auto it = std::find_if(usable.begin(), usable.end(),
                           [&](const auto& e) { return e->id() == decision.worker_id; });
    if (it == usable.end()) return absl::InternalError("routing policy picked an unknown worker");
    if (!(*it)->breaker().Allow(now)) {
      usable.erase(it);
      continue;
    }
    policy_->OnRouted(decision.worker_id, request);
    return std::unique_ptr<WorkerLease>(new WorkerLease(*it, std::move(decision)));
  }
  return absl::UnavailableError(exclude.empty()
                                    ? "no worker is available"
                                    : "no other worker is available after the first failed");
}

std::vector<WorkerStatus> WorkerPool::Status() const {
  std::vector<std::shared_ptr<WorkerEndpoint>> endpoints;
  {
    absl::MutexLock lock(&mu_);
    for (const auto& [address, endpoint] : endpoints_) endpoints.push_back(endpoint);
  }
  std::vector<WorkerStatus> result;
  const absl::Time now = absl::Now();
  for (auto& e : endpoints) {
    result.push_back({e->address(), e->Routable(now) && ServesPoolModel(*e), e->in_flight.load()});
  }
  return result;
}

void WorkerPool::OnKvEvents(int32_t worker_id, const saola::v1::KvEventBatch& batch) {
  policy_->OnKvEvents(worker_id, batch);
}

void WorkerPool::OnKvEventsLost(int32_t worker_id) { policy_->OnKvEventsLost(worker_id); }

}  // namespace saola::router
