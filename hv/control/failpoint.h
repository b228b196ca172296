// Failpoints: named points in hvd and hv-vmm where a test can inject a
// failure exactly between two steps (docs/management.md).
//
// Activated by the environment variable HV_FAILPOINTS (read on first use) or
// SetFailpoints() (hvd's --failpoints flag), as a comma-separated list of
// NAME=ACTION, where ACTION is
//   error      the point returns absl::InternalError("failpoint NAME")
//   abort      the process SIGKILLs itself (a kill -9 exactly at the point)
//   sleep:MS   the point sleeps MS milliseconds, then continues
// An ACTION may end in "*N" to fire only the first N times.
//
// Locking: one process-wide hv::Mutex (leaf lock) guards the table; the
// action itself runs after it is released.
#ifndef HV_CONTROL_FAILPOINT_H_
#define HV_CONTROL_FAILPOINT_H_

#include <string_view>

#include "absl/status/status.h"

namespace hv::control {

// Replaces the table (InvalidArgument naming the bad entry).
[[nodiscard]] absl::Status SetFailpoints(std::string_view spec);

// Runs the action configured for `name` (OK when none).
[[nodiscard]] absl::Status Failpoint(std::string_view name);

}  // namespace hv::control

#endif  // HV_CONTROL_FAILPOINT_H_
