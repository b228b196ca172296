#include "hv/memory/guest_memory.h"

#include <sys/mman.h>
#include <unistd.h>

#include <cstring>

#include "gtest/gtest.h"

namespace hv {
namespace {

TEST(GuestMemoryTest, ReadWriteInsideRegions) {
  auto mem = GuestMemory::Create({{0, 0x2000}, {0x100000, 0x1000}});
  ASSERT_TRUE(mem.ok()) << mem.status();
  ASSERT_TRUE((*mem)->WriteObj<uint32_t>(0x1ffc, 0xdeadbeef).ok());
  EXPECT_EQ(*(*mem)->ReadObj<uint32_t>(0x1ffc), 0xdeadbeefu);
  ASSERT_TRUE((*mem)->WriteObj<uint64_t>(0x100ff8, 7).ok());
  EXPECT_EQ(*(*mem)->ReadObj<uint64_t>(0x100ff8), 7u);
  EXPECT_EQ((*mem)->total_size(), 0x3000u);
}

TEST(GuestMemoryTest, RejectsAccessOutsideOrAcrossRegions) {
  auto mem = GuestMemory::Create({{0, 0x2000}, {0x3000, 0x1000}});
  ASSERT_TRUE(mem.ok());
  uint64_t v = 0;
  // Straddles the end of region 0 into the hole.
  EXPECT_EQ((*mem)->Read(0x1ffc, &v, 8).code(), absl::StatusCode::kOutOfRange);
  // Entirely in the hole.
  EXPECT_EQ((*mem)->Write(0x2000, &v, 8).code(), absl::StatusCode::kOutOfRange);
  // Address arithmetic that would wrap.
  EXPECT_EQ((*mem)->Read(~0ull - 3, &v, 8).code(),
            absl::StatusCode::kOutOfRange);
  EXPECT_FALSE((*mem)->Contains(0x3000, 0x1001));
  EXPECT_TRUE((*mem)->Contains(0x3000, 0x1000));
  EXPECT_FALSE((*mem)->Contains(0, 0));
}

TEST(GuestMemoryTest, RejectsBadLayouts) {
  EXPECT_FALSE(GuestMemory::Create({}).ok());
  EXPECT_FALSE(GuestMemory::Create({{0, 0x1001}}).ok());
  EXPECT_FALSE(GuestMemory::Create({{0x800, 0x1000}}).ok());
  EXPECT_FALSE(GuestMemory::Create({{0, 0x2000}, {0x1000, 0x1000}}).ok());
  EXPECT_FALSE(GuestMemory::Create({{~0ull & ~0xfffull, 0x2000}}).ok());
}

TEST(GuestMemoryTest, AtomicsRequireAlignment) {
  auto mem = GuestMemory::Create({{0, 0x1000}});
  ASSERT_TRUE(mem.ok());
  EXPECT_EQ(*(*mem)->AtomicFetchOr64(0x10, 0x5), 0u);
  EXPECT_EQ(*(*mem)->AtomicFetchAnd64(0x10, ~0x1ull), 0x5u);
  EXPECT_EQ(*(*mem)->AtomicLoad64(0x10), 0x4u);
  EXPECT_EQ((*mem)->AtomicFetchOr64(0x14, 1).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ((*mem)->AtomicLoad64(0x1000).status().code(),
            absl::StatusCode::kOutOfRange);
}

TEST(GuestMemoryTest, FdIsSharedWithAnotherMapping) {
  auto mem = GuestMemory::Create({{0x40000000, 0x2000}});
  ASSERT_TRUE(mem.ok());
  ASSERT_TRUE((*mem)->WriteObj<uint32_t>(0x40001000, 0x1234).ok());
  // A second view of the same fd (as another process would map it).
  auto view = GuestMemory::FromFd((*mem)->fd(), 0x1000, {{0, 0x1000}});
  ASSERT_TRUE(view.ok()) << view.status();
  EXPECT_EQ(*(*view)->ReadObj<uint32_t>(0), 0x1234u);
}

}  // namespace
}  // namespace hv
