// Length-delimited protobuf records over an AF_UNIX SOCK_SEQPACKET socket,
// with file descriptors passed by SCM_RIGHTS (the hvd ↔ hv-vmm channel,
// DESIGN §2, proto/vmm_control.proto). A record is one packet: a 4-byte
// little-endian length, then that many bytes of a serialized message.
#ifndef HV_CONTROL_WIRE_H_
#define HV_CONTROL_WIRE_H_

#include <cstddef>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "google/protobuf/message_lite.h"

namespace hv::control {

inline constexpr size_t kMaxRecordBytes = 64 * 1024;
// A hot-attach carries the window memfd + one eventfd per MSI-X vector
// (up to HWSIM_MAX_VECTORS = 32).
inline constexpr size_t kMaxRecordFds = 40;

// Sends one record. Retries EINTR; fails on EPIPE (peer gone) etc.
[[nodiscard]] absl::Status SendRecord(int sock,
                                      const google::protobuf::MessageLite& msg,
                                      absl::Span<const int> fds = {});

enum class RecvResult { kRecord, kEof, kWouldBlock };

// Receives one record into `msg`; received fds (O_CLOEXEC) are appended to
// `fds` (may be null: then they are closed). `nonblock` uses MSG_DONTWAIT.
// A malformed record (bad length, truncated, too many fds, unparsable) is
// InvalidArgument and its fds are closed.
[[nodiscard]] absl::StatusOr<RecvResult> RecvRecord(
    int sock, google::protobuf::MessageLite* msg, std::vector<int>* fds,
    bool nonblock = false);

}  // namespace hv::control

#endif  // HV_CONTROL_WIRE_H_
