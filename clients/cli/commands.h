// The saola CLI's subcommands. Each takes the arguments after its name and returns the exit code:
// 0 on success, 2 for bad flags or a request the server refused as invalid, 1 otherwise.
#pragma once

#include <string>
#include <vector>

namespace saola::client {

int RunGenerate(const std::vector<std::string>& args);
int RunModels(const std::vector<std::string>& args);

}  // namespace saola::client
