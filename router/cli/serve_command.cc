// `saola-router serve`. Once listening it prints one line on stdout that scripts and tests wait
// for:
//   saola-router: listening port=P metrics_port=M
#include "router/cli/serve_command.h"

#include <pthread.h>

#include <csignal>
#include <cstdio>

#include "absl/strings/str_format.h"
#include "common/flags.h"
#include "router/router_server.h"

namespace saola::router {
namespace {

constexpr char kUsage[] = R"(usage: saola-router serve --workers HOST:PORT[,dns:///NAME:PORT...] [flags]

  --workers LIST              workers: HOST:PORT, or dns:///NAME:PORT for every address of a DNS
                              name (a Kubernetes headless Service), re-resolved periodically
  --host ADDR                 listen address (default 0.0.0.0)
  --port N                    gRPC port (default 0: any free port)
  --metrics-port N            Prometheus /metrics port (default -1: off; 0: any free port)
  --policy NAME               prefix-aware (default), least-load or round-robin
  --balance-abs-threshold N   prefix-aware: load gap (requests) above which least load wins (4)
  --balance-rel-threshold X   prefix-aware: ... and load ratio above which it wins (1.5)
  --redis URL                 exact cache on Redis (redis://HOST:PORT[/DB]); default in memory
  --exact-cache-mb N          in-memory exact cache size (default 256)
  --no-exact-cache            no exact cache
  --cache-ttl SECONDS         exact and semantic entries expire after this (default 3600)
  --semantic-cache            enable the semantic cache (requests opt in with cache.semantic)
  --semantic-threshold X      default cosine similarity for a semantic hit (default 0.85)
  --semantic-model-dir DIR    all-MiniLM-L6-v2 files (default models/all-MiniLM-L6-v2)
  --semantic-cache-file PATH  load the semantic cache from PATH at start, save it every 5
                              minutes and at shutdown
  --semantic-max-entries N    semantic cache bound (default 100000)
  --api-keys FILE             `KEY TENANT` per line; calls then need an API key
  --dns-refresh-seconds N     how often DNS worker names are resolved again (default 5)
  --cache-threads N           threads for cache lookups and writes (default 4)
  --max-attempts N            workers tried for a request before its first token (default 3)
  --drain-seconds N           on SIGTERM, time for streams in flight to finish (default 30)
)";

struct ServeArgs {
  RouterOptions router;
  int drain_seconds = 30;
};

absl::StatusOr<ServeArgs> Parse(const std::vector<std::string>& args) {
  using cli::Flags;
  absl::StatusOr<Flags> flags = Flags::Parse(
      args,
      {"workers", "host", "port", "metrics-port", "policy", "balance-abs-threshold",
       "balance-rel-threshold", "redis", "exact-cache-mb", "cache-ttl", "semantic-threshold",
       "semantic-model-dir", "semantic-cache-file", "semantic-max-entries", "api-keys",
       "dns-refresh-seconds", "cache-threads", "max-attempts", "drain-seconds"},
      {"semantic-cache", "no-exact-cache"});
  if (!flags.ok()) return flags.status();
  ServeArgs a;
  RouterOptions& o = a.router;
  absl::StatusOr<std::string> workers = flags->String("workers");
  if (!workers.ok()) return workers.status();
  o.workers = *workers;
  if (flags->Has("host")) o.host = *flags->String("host");
  if (flags->Has("policy")) o.policy = *flags->String("policy");
  if (flags->Has("redis")) o.redis_url = *flags->String("redis");
  if (flags->Has("semantic-model-dir")) o.semantic_model_dir = *flags->String("semantic-model-dir");
  if (flags->Has("semantic-cache-file")) {
    o.semantic_cache_file = *flags->String("semantic-cache-file");
  }
  if (flags->Has("api-keys")) o.api_keys_file = *flags->String("api-keys");
  o.semantic_cache = flags->Bool("semantic-cache");
  o.exact_cache = !flags->Bool("no-exact-cache");
  if (o.exact_cache == false && !o.redis_url.empty()) {
    return absl::InvalidArgumentError("--redis: conflicts with --no-exact-cache");
  }

  struct IntFlag {
    const char* name;
    int64_t fallback, min, max;
    int64_t* out;
  };
  int64_t port = 0, metrics_port = -1, abs_threshold = 4, exact_mb = 256, ttl = 3600,
          max_entries = 100000, dns = 5, threads = 4, attempts = 3, drain = 30;
  for (const IntFlag& f : std::initializer_list<IntFlag>{
           {"port", 0, 0, 65535, &port},
           {"metrics-port", -1, -1, 65535, &metrics_port},
           {"balance-abs-threshold", 4, 0, 1 << 20, &abs_threshold},
           {"exact-cache-mb", 256, 1, 1 << 20, &exact_mb},
           {"cache-ttl", 3600, 1, 86400 * 365, &ttl},
           {"semantic-max-entries", 100000, 1, int64_t{1} << 32, &max_entries},
           {"dns-refresh-seconds", 5, 1, 3600, &dns},
           {"cache-threads", 4, 1, 256, &threads},
           {"max-attempts", 3, 1, 16, &attempts},
           {"drain-seconds", 30, 0, 86400, &drain}}) {
    absl::StatusOr<int64_t> v = flags->Int(f.name, f.fallback, f.min, f.max);
    if (!v.ok()) return v.status();
    *f.out = *v;
  }
  absl::StatusOr<double> rel = flags->Float("balance-rel-threshold", 1.5, 1.0, 1000.0);
  if (!rel.ok()) return rel.status();
  absl::StatusOr<double> threshold = flags->Float("semantic-threshold", 0.85, 1e-6, 1.0);
  if (!threshold.ok()) return threshold.status();
  o.port = static_cast<int>(port);
  o.metrics_port = static_cast<int>(metrics_port);
  o.routing.balance_abs_threshold = static_cast<int32_t>(abs_threshold);
  o.routing.balance_rel_threshold = *rel;
  o.exact_cache_mb = exact_mb;
  o.cache_ttl = absl::Seconds(ttl);
  o.semantic_max_entries = max_entries;
  o.semantic_threshold = static_cast<float>(*threshold);
  o.dns_refresh = absl::Seconds(dns);
  o.cache_threads = static_cast<int>(threads);
  o.max_attempts = static_cast<int>(attempts);
  a.drain_seconds = static_cast<int>(drain);
  return a;
}

}  // namespace

int RunServe(const std::vector<std::string>& args) {
  for (const std::string& a : args) {
    if (a == "--help" || a == "-h") {
      std::fputs(kUsage, stdout);
      return 0;
    }
  }
  // Block the shutdown signals in every thread (threads inherit the mask): this thread waits
  // for them with sigwait once the server runs.
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGTERM);
  sigaddset(&signals, SIGINT);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);

  absl::StatusOr<ServeArgs> parsed = Parse(args);
  if (!parsed.ok()) {
    std::fprintf(stderr, "saola-router: %s\n", std::string(parsed.status().message()).c_str());
    return 2;
  }
  absl::StatusOr<std::unique_ptr<RouterServer>> server = RouterServer::Start(parsed->router);
  if (!server.ok()) {
    std::fprintf(stderr, "saola-router: %s\n", std::string(server.status().message()).c_str());
    return 1;
  }
  std::printf("saola-router: listening port=%d metrics_port=%d\n", (*server)->port(),
              (*server)->metrics_port());
  std::fflush(stdout);
  const RouterOptions& o = parsed->router;
  std::fprintf(stderr,
               "saola-router: %s:%d, workers %s, policy %s, exact cache %s, semantic cache %s\n",
               o.host.c_str(), (*server)->port(), o.workers.c_str(), o.policy.c_str(),
               !o.exact_cache ? "off" : o.redis_url.empty() ? "memory" : o.redis_url.c_str(),
               o.semantic_cache ? "on" : "off");
  int signal = 0;
  sigwait(&signals, &signal);
  std::fprintf(stderr, "saola-router: %s, draining for up to %d s\n",
               signal == SIGTERM ? "SIGTERM" : "SIGINT", parsed->drain_seconds);
  (*server)->Shutdown(absl::Seconds(parsed->drain_seconds));
  std::fprintf(stderr, "saola-router: stopped\n");
  return 0;
}

}  // namespace saola::router
