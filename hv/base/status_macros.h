// Early-return helpers for absl::Status / absl::StatusOr.
#ifndef HV_BASE_STATUS_MACROS_H_
#define HV_BASE_STATUS_MACROS_H_

#include <utility>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

#define HV_STATUS_CONCAT_INNER_(a, b) a##b
#define HV_STATUS_CONCAT_(a, b) HV_STATUS_CONCAT_INNER_(a, b)

// Returns from the enclosing function if `expr` (an absl::Status) is not OK.
#define HV_RETURN_IF_ERROR(expr)             \
  do {                                       \
    ::absl::Status hv_status_ = (expr);      \
    if (!hv_status_.ok()) return hv_status_; \
  } while (0)

// `lhs = value of expr` (an absl::StatusOr<T>), or returns its error status.
#define HV_ASSIGN_OR_RETURN(lhs, expr)                                      \
  HV_ASSIGN_OR_RETURN_IMPL_(HV_STATUS_CONCAT_(hv_statusor_, __LINE__), lhs, \
                            expr)

#define HV_ASSIGN_OR_RETURN_IMPL_(tmp, lhs, expr) \
  auto tmp = (expr);                              \
  if (!tmp.ok()) return std::move(tmp).status();  \
  lhs = std::move(tmp).value()

#endif  // HV_BASE_STATUS_MACROS_H_
