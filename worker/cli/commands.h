// The saola-worker subcommands. Each takes the arguments after its name and returns the exit code.
#pragma once

#include <string>
#include <vector>

namespace saola::cli {

int RunGenerate(const std::vector<std::string>& args);
int RunTokenize(const std::vector<std::string>& args);
int RunBench(const std::vector<std::string>& args);
int RunServe(const std::vector<std::string>& args);
/// Hidden: rank r > 0 of a tensor-parallel shard group, started by rank 0.
int RunTpRank(const std::vector<std::string>& args);

}  // namespace saola::cli
