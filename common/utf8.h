// UTF-8 encoding of one code point, shared by the JSON writer and both tokenizers.
#pragma once

#include <cstdint>
#include <string>

namespace saola {

/// Appends the UTF-8 form of `cp`, any value up to U+10FFFF (surrogates are encoded as given).
void AppendUtf8(uint32_t cp, std::string* out);

}  // namespace saola
