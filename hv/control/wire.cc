#include "hv/control/wire.h"

#include <errno.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstring>
#include <string>

#include "absl/strings/str_cat.h"

namespace hv::control {

absl::Status SendRecord(int sock, const google::protobuf::MessageLite& msg,
                        absl::Span<const int> fds) {
  const size_t n = msg.ByteSizeLong();
  if (n + 4 > kMaxRecordBytes) {
    return absl::InvalidArgumentError(
        absl::StrCat("record of ", n, " bytes exceeds ", kMaxRecordBytes));
  }
  if (fds.size() > kMaxRecordFds) {
    return absl::InvalidArgumentError("too many fds in one record");
  }
  std::string buf(4 + n, '\0');
  const uint32_t len = static_cast<uint32_t>(n);
  for (int i = 0; i < 4; ++i)
    buf[i] = static_cast<char>((len >> (8 * i)) & 0xff);
  if (!msg.SerializeToArray(buf.data() + 4, static_cast<int>(n))) {
    return absl::InternalError("serialize failed");
  }
  iovec iov{buf.data(), buf.size()};
  msghdr mh{};
  mh.msg_iov = &iov;
  mh.msg_iovlen = 1;
  alignas(cmsghdr) char cbuf[CMSG_SPACE(sizeof(int) * kMaxRecordFds)];
  if (!fds.empty()) {
    std::memset(cbuf, 0, sizeof(cbuf));
    mh.msg_control = cbuf;
    mh.msg_controllen = CMSG_SPACE(sizeof(int) * fds.size());
    cmsghdr* c = CMSG_FIRSTHDR(&mh);
    c->cmsg_level = SOL_SOCKET;
    c->cmsg_type = SCM_RIGHTS;
    c->cmsg_len = CMSG_LEN(sizeof(int) * fds.size());
    std::memcpy(CMSG_DATA(c), fds.data(), sizeof(int) * fds.size());
  }
  for (;;) {
    const ssize_t r = sendmsg(sock, &mh, MSG_NOSIGNAL);
    if (r >= 0) {
      if (static_cast<size_t>(r) != buf.size()) {
        return absl::InternalError("short send on a seqpacket socket");
      }
      return absl::OkStatus();
    }
    if (errno == EINTR) continue;
    return absl::UnavailableError(
        absl::StrCat("sendmsg: ", std::strerror(errno)));
  }
}

absl::StatusOr<RecvResult> RecvRecord(int sock,
                                      google::protobuf::MessageLite* msg,
                                      std::vector<int>* fds, bool nonblock) {
  std::string buf(kMaxRecordBytes, '\0');
  iovec iov{buf.data(), buf.size()};
  msghdr mh{};
  mh.msg_iov = &iov;
  mh.msg_iovlen = 1;
  alignas(cmsghdr) char cbuf[CMSG_SPACE(sizeof(int) * kMaxRecordFds)];
  mh.msg_control = cbuf;
  mh.msg_controllen = sizeof(cbuf);
  ssize_t r;
  for (;;) {
    r = recvmsg(sock, &mh, MSG_CMSG_CLOEXEC | (nonblock ? MSG_DONTWAIT : 0));
    if (r >= 0) break;
    if (errno == EINTR) continue;
    if (errno == EAGAIN || errno == EWOULDBLOCK) return RecvResult::kWouldBlock;
    if (errno == ECONNRESET) return RecvResult::kEof;
    return absl::UnavailableError(
        absl::StrCat("recvmsg: ", std::strerror(errno)));
  }
  std::vector<int> got;
  for (cmsghdr* c = CMSG_FIRSTHDR(&mh); c != nullptr; c = CMSG_NXTHDR(&mh, c)) {
    if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_RIGHTS) {
      const size_t k = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
      for (size_t i = 0; i < k; ++i) {
        int fd;
        std::memcpy(&fd, CMSG_DATA(c) + i * sizeof(int), sizeof(int));
        got.push_back(fd);
      }
    }
  }
  auto fail = [&](std::string why) -> absl::StatusOr<RecvResult> {
    for (int fd : got) close(fd);
    return absl::InvalidArgumentError(why);
  };
  if (r == 0 && got.empty()) return RecvResult::kEof;
  if ((mh.msg_flags & (MSG_TRUNC | MSG_CTRUNC)) != 0) {
    return fail("truncated record");
  }
  if (r < 4) return fail("record shorter than its length prefix");
  uint32_t len = 0;
  for (int i = 0; i < 4; ++i) {
    len |= static_cast<uint32_t>(static_cast<uint8_t>(buf[i])) << (8 * i);
  }
  if (len != static_cast<size_t>(r) - 4) return fail("record length mismatch");
  if (!msg->ParseFromArray(buf.data() + 4, static_cast<int>(len))) {
    return fail("unparsable record");
  }
  if (fds != nullptr) {
    fds->insert(fds->end(), got.begin(), got.end());
  } else {
    for (int fd : got) close(fd);
  }
  return RecvResult::kRecord;
}

}  // namespace hv::control
