// A cached response shaped like a real stream, for the cache/exact tests and benchmark.
#pragma once

#include <string>

#include "saola/v1/cache.pb.h"

namespace saola::cache::testing {

/// `num_messages` token deltas of `text_bytes` bytes each, the last one carrying a finish.
inline saola::v1::CachedResponse MakeResponse(int num_messages = 4, int text_bytes = 8,
                                              char fill = 'a') {
  saola::v1::CachedResponse r;
  for (int i = 0; i < num_messages; ++i) {
    saola::v1::GenerateResponse* m = r.add_messages();
    m->set_text(std::string(text_bytes, static_cast<char>(fill + (i % 20))));
    m->add_token_ids(1000 + i);
    auto* lp = m->add_logprobs();
    lp->set_token_id(1000 + i);
    lp->set_logprob(-0.25f * i);
  }
  saola::v1::Finish* f = r.mutable_messages(num_messages - 1)->mutable_finish();
  f->set_reason(saola::v1::LENGTH);
  f->mutable_usage()->set_prompt_tokens(7);
  f->mutable_usage()->set_completion_tokens(num_messages);
  return r;
}

}  // namespace saola::cache::testing
