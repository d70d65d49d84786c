// Helpers for absl::Status / absl::StatusOr propagation, used across module boundaries.
#pragma once

#include "absl/status/status.h"
#include "absl/status/statusor.h"

#define SAOLA_CONCAT_INNER_(a, b) a##b
#define SAOLA_CONCAT_(a, b) SAOLA_CONCAT_INNER_(a, b)

// Returns from the enclosing function if `expr` (an absl::Status) is not OK.
#define RETURN_IF_ERROR(expr)                     \
  do {                                            \
    ::absl::Status saola_status_ = (expr);        \
    if (!saola_status_.ok()) return saola_status_; \
  } while (0)

// `ASSIGN_OR_RETURN(auto x, MakeX());` unwraps an absl::StatusOr or returns its error.
#define ASSIGN_OR_RETURN(lhs, expr) \
  SAOLA_ASSIGN_OR_RETURN_IMPL_(SAOLA_CONCAT_(saola_statusor_, __LINE__), lhs, expr)
#define SAOLA_ASSIGN_OR_RETURN_IMPL_(tmp, lhs, expr) \
  auto tmp = (expr);                                 \
  if (!tmp.ok()) return tmp.status();                \
  lhs = std::move(tmp).value()
