// saola: the command-line client of a Saola endpoint (a router or a single worker); it speaks the
// public saola.v1.Llm service over gRPC, as any client in any language can from proto/. `saola up`
// also starts a local cluster (router and workers) to talk to.
#include <cstdio>
#include <string>
#include <vector>

#include "clients/cli/commands.h"

namespace {

constexpr char kUsage[] =
    "usage: saola <command> [flags]\n"
    "  generate --addr HOST:PORT (--prompt TEXT | --chat TEXT | --chat-file FILE)\n"
    "           [--system TEXT] [--max-tokens N] [--temperature T] [--top-p P] [--top-k K]\n"
    "           [--seed S] [--stop TEXT] [--ignore-eos] [--model NAME] [--semantic]\n"
    "           [--semantic-threshold X] [--no-cache] [--api-key KEY] [--timeout-seconds S]\n"
    "           [--json]\n"
    "           --chat-file: JSON [{\"role\": ..., \"content\": ...}, ...] or {\"messages\": [...]};\n"
    "           --target is another name of --addr\n"
    "  models   --addr HOST:PORT [--api-key KEY]\n"
    "  up       [--workers N] [--port N] [--metrics-port N] [--host ADDR] [--redis URL]\n"
    "           [--semantic-cache | --no-semantic-cache] [--model PATH] [--threads N]\n"
    "           a local cluster: N saola-worker processes behind one saola-router (default\n"
    "           port 50051; 0: any free port); --threads is per worker (default cores / N);\n"
    "           the semantic cache is on when models/all-MiniLM-L6-v2 exists; Ctrl-C stops it\n";

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) {
    std::fputs(kUsage, stderr);
    return 2;
  }
  const std::string command = argv[1];
  const std::vector<std::string> args(argv + 2, argv + argc);
  for (const std::string& a : args) {
    if (a == "--help" || a == "-h") {
      std::fputs(kUsage, stdout);
      return 0;
    }
  }
  if (command == "generate") return saola::client::RunGenerate(args);
  if (command == "models") return saola::client::RunModels(args);
  if (command == "up") return saola::client::RunUp(args);
  if (command == "--help" || command == "-h" || command == "help") {
    std::fputs(kUsage, stdout);
    return 0;
  }
  std::fprintf(stderr, "saola: unknown command '%s'\n%s", command.c_str(), kUsage);
  return 2;
}
