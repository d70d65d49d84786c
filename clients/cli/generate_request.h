// Turns `saola generate` flags into a saola.v1.GenerateRequest. Every problem is an
// InvalidArgument that names the flag (or the --chat-file path), so the CLI exits 2 with it.
#pragma once

#include <string>

#include "absl/status/statusor.h"
#include "common/flags.h"
#include "saola/v1/llm.pb.h"

namespace saola::client {

/// The value flags and boolean flags `saola generate` accepts (names without "--").
const std::set<std::string>& GenerateValueFlags();
const std::set<std::string>& GenerateBoolFlags();

/// Reads a chat from a JSON file: `[{"role": "...", "content": "..."}, ...]` or
/// `{"messages": [...]}`. At least one message; role and content are strings. The file is
/// untrusted: at most 16 MiB, and every error names the file.
absl::StatusOr<saola::v1::Chat> ReadChatFile(const std::string& path);

/// The request the flags describe: exactly one of --prompt, --chat, --chat-file; --system
/// prepends a system message to a chat; sampling, stop, cache controls and the model.
absl::StatusOr<saola::v1::GenerateRequest> BuildGenerateRequest(const cli::Flags& flags);

}  // namespace saola::client
