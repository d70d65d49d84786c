// CHECK for invariants that only a bug can break (abseil of this vintage has no absl/log).
#pragma once

#include <cstdio>
#include <cstdlib>

#define SAOLA_CHECK(cond)                                                          \
  do {                                                                             \
    if (!(cond)) {                                                                 \
      std::fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__, #cond); \
      std::abort();                                                                \
    }                                                                              \
  } while (0)
