#include "hv/control/wire.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <unistd.h>

#include <string>

#include "gtest/gtest.h"
#include "proto/vmm_control.pb.h"

namespace hv::control {
namespace {

namespace pb = ::hv::vmm::v1;

class WireTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_EQ(socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv_), 0);
  }
  void TearDown() override {
    if (sv_[0] >= 0) close(sv_[0]);
    if (sv_[1] >= 0) close(sv_[1]);
  }
  int sv_[2] = {-1, -1};
};

TEST_F(WireTest, RoundTripWithFd) {
  const int memfd = memfd_create("img", MFD_CLOEXEC);
  ASSERT_GE(memfd, 0);
  ASSERT_EQ(write(memfd, "ELF!", 4), 4);
  pb::VmmCommand cmd;
  cmd.set_seq(7);
  cmd.mutable_boot()->set_vcpus(3);
  cmd.mutable_boot()->set_memory_mib(64);
  const int fds[] = {memfd};
  ASSERT_TRUE(SendRecord(sv_[0], cmd, fds).ok());
  close(memfd);

  pb::VmmCommand got;
  std::vector<int> rfds;
  auto r = RecvRecord(sv_[1], &got, &rfds);
  ASSERT_TRUE(r.ok()) << r.status();
  ASSERT_EQ(*r, RecvResult::kRecord);
  EXPECT_EQ(got.seq(), 7u);
  EXPECT_EQ(got.boot().vcpus(), 3u);
  ASSERT_EQ(rfds.size(), 1u);
  char buf[4];
  EXPECT_EQ(pread(rfds[0], buf, 4, 0), 4);
  EXPECT_EQ(std::string(buf, 4), "ELF!");
  EXPECT_EQ(fcntl(rfds[0], F_GETFD) & FD_CLOEXEC, FD_CLOEXEC);
  close(rfds[0]);
}

TEST_F(WireTest, EofAndWouldBlock) {
  pb::VmmEvent ev;
  auto r = RecvRecord(sv_[1], &ev, nullptr, /*nonblock=*/true);
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(*r, RecvResult::kWouldBlock);
  close(sv_[0]);
  sv_[0] = -1;
  r = RecvRecord(sv_[1], &ev, nullptr);
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(*r, RecvResult::kEof);
}

TEST_F(WireTest, MalformedRecordsAreRejected) {
  pb::VmmEvent ev;
  // Length prefix disagrees with the packet size.
  const char bad_len[] = {10, 0, 0, 0, 1, 2};
  ASSERT_EQ(send(sv_[0], bad_len, sizeof(bad_len), 0),
            static_cast<ssize_t>(sizeof(bad_len)));
  auto r = RecvRecord(sv_[1], &ev, nullptr);
  EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument);
  // Too short for a prefix.
  ASSERT_EQ(send(sv_[0], bad_len, 2, 0), 2);
  r = RecvRecord(sv_[1], &ev, nullptr);
  EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument);
  // Unparsable payload (field 3 as a truncated length-delimited field).
  const char garbage[] = {2, 0, 0, 0, 0x1a, 0x7f};
  ASSERT_EQ(send(sv_[0], garbage, sizeof(garbage), 0),
            static_cast<ssize_t>(sizeof(garbage)));
  r = RecvRecord(sv_[1], &ev, nullptr);
  EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument);
}

TEST_F(WireTest, OversizedRecordIsRefused) {
  pb::VmmEvent ev;
  ev.set_console(std::string(kMaxRecordBytes, 'x'));
  EXPECT_EQ(SendRecord(sv_[0], ev).code(), absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace hv::control
