// saola-worker: the worker binary. `serve` is the gRPC worker; `generate`, `tokenize` and `bench`
// run the engine from the command line.
#include <cstdio>
#include <string>
#include <vector>

#include "worker/cli/commands.h"

namespace {

constexpr char kUsage[] =
    "usage: saola-worker <command> [flags]\n"
    "  serve    --model PATH [--port N] [--metrics-port N] [--host ADDR] [--threads N]\n"
    "           [--served-model-name NAME] [--kv-cache-mb N] [--max-batch-tokens N]\n"
    "           [--max-running N] [--max-waiting N] [--block-size N] [--drain-seconds N]\n"
    "           [--no-prefix-cache] [--tp-size N] [--tp-timeout-seconds S] [--device cpu|cuda]\n"
    "  generate --model PATH --prompt TEXT [--max-tokens N] [--temperature T] [--seed S]\n"
    "           [--ignore-eos] [--chat] [--threads N] [--json] [--top-logits K]\n"
    "           [--tp-size N] [--tp-timeout-seconds S] [--device cpu|cuda]\n"
    "  tokenize --model PATH [--json]        (JSON lines {\"text\": ...} in, {\"ids\": [...]} out)\n"
    "  bench    --model PATH [--prompt-tokens N] [--gen-tokens N] [--repetitions N]\n"
    "           [--batch-tokens N] [--threads N] [--json] [--device cpu|cuda]\n";

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) {
    std::fputs(kUsage, stderr);
    return 2;
  }
  const std::string command = argv[1];
  const std::vector<std::string> args(argv + 2, argv + argc);
  if (command == "serve") return saola::cli::RunServe(args);
  if (command == "generate") return saola::cli::RunGenerate(args);
  if (command == "tokenize") return saola::cli::RunTokenize(args);
  if (command == "bench") return saola::cli::RunBench(args);
  if (command == "tp-rank") return saola::cli::RunTpRank(args);  // hidden: started by rank 0
  if (command == "--help" || command == "-h" || command == "help") {
    std::fputs(kUsage, stdout);
    return 0;
  }
  std::fprintf(stderr, "saola-worker: unknown command '%s'\n%s", command.c_str(), kUsage);
  return 2;
}
