#include "iommu/page_allocator.h"

#include <set>

#include "gtest/gtest.h"
#include "iommu/formats.h"
#include "iommu/phys_memory.h"

namespace iommu {
namespace {

TEST(PageAllocatorTest, AllocatesZeroedPagesInsideItsWindowOnly) {
  auto mem = PhysMemory::Create(64 * kPageSize);
  ASSERT_TRUE(mem.ok());
  ASSERT_TRUE((*mem)->Store64(40 * kPageSize + 8, 0xdead).ok());
  auto pool = PageAllocator::Create(mem->get(), 40 * kPageSize, 10 * kPageSize);
  ASSERT_TRUE(pool.ok());
  std::set<uint64_t> pages;
  for (int i = 0; i < 10; ++i) {
    auto p = (*pool)->Allocate();
    ASSERT_TRUE(p.ok());
    EXPECT_TRUE((*pool)->Owns(*p));
    EXPECT_EQ(*(*mem)->Load64(*p + 8), 0u);
    pages.insert(*p);
  }
  EXPECT_EQ(pages.size(), 10u);
  EXPECT_EQ((*pool)->Allocate().status().code(),
            absl::StatusCode::kResourceExhausted);
  ASSERT_TRUE((*pool)->Free(*pages.begin()).ok());
  EXPECT_FALSE((*pool)->Free(*pages.begin()).ok());
  EXPECT_FALSE((*pool)->Free(0).ok());
  EXPECT_EQ((*pool)->allocated_pages(), 9u);
  EXPECT_FALSE(
      PageAllocator::Create(mem->get(), 60 * kPageSize, 8 * kPageSize).ok());
  // Physical memory bounds.
  EXPECT_FALSE((*mem)->Load64(64 * kPageSize).ok());
  EXPECT_FALSE((*mem)->Load64(4).ok());
  EXPECT_EQ((*mem)->PageWords(64 * kPageSize), nullptr);
}

}  // namespace
}  // namespace iommu

namespace iommu {
namespace {

// hwsim owns the memfd; hvd maps the same fd: both views see the same bytes.
TEST(PhysMemoryTest, SharedMemfdViews) {
  auto owner = PhysMemory::Create(16 * kPageSize);
  ASSERT_TRUE(owner.ok());
  auto view = PhysMemory::FromFd((*owner)->fd(), 16 * kPageSize);
  ASSERT_TRUE(view.ok()) << view.status();
  ASSERT_TRUE((*view)->Store64(3 * kPageSize + 16, 0x1234).ok());
  EXPECT_EQ(*(*owner)->Load64(3 * kPageSize + 16), 0x1234u);
  const char msg[] = "dma";
  ASSERT_TRUE((*owner)->Write(5 * kPageSize, msg, sizeof(msg)).ok());
  char back[sizeof(msg)];
  ASSERT_TRUE((*view)->Read(5 * kPageSize, back, sizeof(back)).ok());
  EXPECT_STREQ(back, msg);
  EXPECT_FALSE((*view)->Write(16 * kPageSize - 2, msg, sizeof(msg)).ok());
}

}  // namespace
}  // namespace iommu
