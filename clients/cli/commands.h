// The saola CLI's subcommands. Each takes the arguments after its name and returns the exit code:
// 0 on success, 2 for bad flags or a request the server refused as invalid, 1 otherwise.
#pragma once

#include <string>
#include <vector>

#include "grpcpp/support/status_code_enum.h"

namespace saola::client {

/// `saola generate`: one Generate call, streamed to the terminal (or as JSON lines).
int RunGenerate(const std::vector<std::string>& args);
/// `saola models`: ListModels.
int RunModels(const std::vector<std::string>& args);
/// `saola up`: a local cluster (workers and a router as child processes) until Ctrl-C.
int RunUp(const std::vector<std::string>& args);

/// "UNAVAILABLE" for grpc::StatusCode::UNAVAILABLE, and so on.
const char* StatusCodeName(grpc::StatusCode code);

}  // namespace saola::client
