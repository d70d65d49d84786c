// saola: the command-line client of a Saola endpoint (a router or a single worker); it speaks the
// public saola.v1.Llm service over gRPC, as any client in any language can from proto/.
#include <cstdio>
#include <string>
#include <vector>

#include "clients/cli/commands.h"

namespace {

constexpr char kUsage[] =
    "usage: saola <command> [flags]\n"
    "  generate --target HOST:PORT (--prompt TEXT | --chat TEXT) [--system TEXT]\n"
    "           [--max-tokens N] [--temperature T] [--top-p P] [--top-k K] [--seed S]\n"
    "           [--stop TEXT] [--ignore-eos] [--model NAME] [--timeout-seconds S] [--json]\n"
    "  models   --target HOST:PORT\n";

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) {
    std::fputs(kUsage, stderr);
    return 2;
  }
  const std::string command = argv[1];
  const std::vector<std::string> args(argv + 2, argv + argc);
  if (command == "generate") return saola::client::RunGenerate(args);
  if (command == "models") return saola::client::RunModels(args);
  if (command == "--help" || command == "-h" || command == "help") {
    std::fputs(kUsage, stdout);
    return 0;
  }
  std::fprintf(stderr, "saola: unknown command '%s'\n%s", command.c_str(), kUsage);
  return 2;
}
