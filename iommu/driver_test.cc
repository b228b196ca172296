#include "iommu/driver.h"

#include "gtest/gtest.h"
#include "iommu/test_util.h"
#include "iommu/walker.h"

namespace iommu {
namespace {

class DriverTest : public ::testing::Test {
 protected:
  void SetUp() override {
    env_ = std::move(*TestEnv::Create(4 << 20, 512, 64));
    driver_ = std::move(*IommuDriver::Create(env_->mem.get(), env_->hw.get(),
                                             env_->pool.get()));
  }
  std::unique_ptr<TestEnv> env_;
  std::unique_ptr<IommuDriver> driver_;
};

TEST_F(DriverTest, MapUnmapAndChoosesSuperpages) {
  const uint16_t did = *driver_->CreateDomain(4);
  const uint16_t sid = MakeSid(1, 8);
  ASSERT_TRUE(driver_->Attach(sid, did).ok());
  // 4 KiB + 2 MiB + 4 KiB: the middle becomes one superpage.
  ASSERT_TRUE(driver_->Map(did, 0x1ff000, 0x1ff000, 0x202000, kPermRW).ok());
  EXPECT_EQ(env_->hw->Translate(sid, 0x200000, Access::kRead).page_size,
            uint64_t{1} << 21);
  EXPECT_EQ(env_->hw->Translate(sid, 0x1ff000, Access::kRead).page_size,
            kPageSize);
  EXPECT_EQ(env_->hw->Translate(sid, 0x400000, Access::kRead).page_size,
            kPageSize);
  EXPECT_EQ(driver_->Map(did, 0x300000, 0, 0x1000, kPermR).code(),
            absl::StatusCode::kAlreadyExists);
  EXPECT_EQ(driver_->Unmap(did, 0x1ff000, 0x2000).code(),
            absl::StatusCode::kInvalidArgument);  // would split the 2 MiB page
  const uint64_t before_map = env_->pool->allocated_pages();
  ASSERT_TRUE(driver_->Unmap(did, 0x1ff000, 0x202000).ok());
  // The two level-1 tables became empty and were freed (the level-3 and
  // level-2 tables too: nothing else is mapped under them).
  EXPECT_EQ(env_->pool->allocated_pages(), before_map - 4);
  EXPECT_EQ(env_->hw->Translate(sid, 0x200000, Access::kRead).fault,
            FaultReason::kReadNotPermitted);
  EXPECT_EQ(driver_->Unmap(did, 0x1ff000, 0x1000).code(),
            absl::StatusCode::kNotFound);
  EXPECT_FALSE(driver_->Map(did, 0x1000, 0x1000, 0x1000, kPermNone).ok());
  EXPECT_FALSE(driver_->Map(did, uint64_t{1} << 48, 0, 0x1000, kPermR).ok());
  EXPECT_FALSE(
      driver_->Map(did, 0x1000, uint64_t{1} << 48, 0x1000, kPermR).ok());
  EXPECT_FALSE(driver_->Map(did, 0x1001, 0x1000, 0x1000, kPermR).ok());
}

TEST_F(DriverTest, FailedMapLeavesNothingMapped) {
  // A tiny pool: the second half of a large scattered map runs out of pages.
  auto env = *TestEnv::Create(1 << 20, 6, 4);
  auto drv =
      *IommuDriver::Create(env->mem.get(), env->hw.get(), env->pool.get());
  const uint16_t did = *drv->CreateDomain(3);
  const uint16_t sid = MakeSid(0, 1);
  ASSERT_TRUE(drv->Attach(sid, did).ok());
  // Root + context + domain root used 3 pages; spanning 4 level-1 tables
  // needs more than the 3 left.
  const uint64_t base = (uint64_t{1} << 21) - 0x1000;
  absl::Status s = drv->Map(did, base, 0, 3 * (uint64_t{1} << 21), kPermRW);
  ASSERT_EQ(s.code(), absl::StatusCode::kResourceExhausted) << s;
  for (uint64_t a = base; a < base + 3 * (uint64_t{1} << 21); a += 0x1000) {
    ASSERT_NE(env->hw->Translate(sid, a, Access::kRead).fault,
              FaultReason::kNone);
  }
}

TEST_F(DriverTest, AttachDetachAndDomains) {
  const uint16_t did = *driver_->CreateDomain(3);
  const uint16_t pt = *driver_->CreatePassThroughDomain();
  const uint16_t a = MakeSid(2, 0), b = MakeSid(2, 1);
  ASSERT_TRUE(driver_->Attach(a, did).ok());
  EXPECT_EQ(driver_->Attach(a, pt).code(),
            absl::StatusCode::kFailedPrecondition);
  ASSERT_TRUE(driver_->Attach(b, pt).ok());
  EXPECT_EQ(env_->hw->Translate(b, 0x123000, Access::kWrite).hpa, 0x123000u);
  EXPECT_FALSE(driver_->Map(pt, 0, 0, 0x1000, kPermR).ok());
  ASSERT_TRUE(driver_->Map(did, 0x1000, 0x5000, 0x1000, kPermR).ok());
  EXPECT_EQ(env_->hw->Translate(a, 0x1000, Access::kRead).hpa, 0x5000u);
  EXPECT_EQ(driver_->DestroyDomain(did).code(),
            absl::StatusCode::kFailedPrecondition);
  ASSERT_TRUE(driver_->Detach(a).ok());
  // Detach flushed context cache and IOTLB: the cached translation is gone.
  EXPECT_EQ(env_->hw->Translate(a, 0x1000, Access::kRead).fault,
            FaultReason::kContextNotPresent);
  const uint64_t before = env_->pool->allocated_pages();
  ASSERT_TRUE(driver_->DestroyDomain(did).ok());
  EXPECT_EQ(env_->pool->allocated_pages(), before - 3);  // 3-level tree
  EXPECT_EQ(driver_->Detach(a).code(), absl::StatusCode::kNotFound);
  EXPECT_FALSE(driver_->CreateDomain(6).ok());
}

TEST_F(DriverTest, IovaAllocatorPerDomain) {
  const uint16_t d1 = *driver_->CreateDomain(3), d2 = *driver_->CreateDomain(2);
  auto x = driver_->AllocIova(d1, 0x4000, 0x1000);
  auto y = driver_->AllocIova(d2, 0x4000, 0x1000);
  ASSERT_TRUE(x.ok() && y.ok());
  EXPECT_EQ(*x, (uint64_t{1} << 39) - 0x4000);
  EXPECT_EQ(*y, (uint64_t{1} << 30) - 0x4000);
  ASSERT_TRUE(driver_->FreeIova(d1, *x, 0x4000).ok());
  EXPECT_FALSE(driver_->AllocIova(77, 0x1000, 0x1000).ok());
}

}  // namespace
}  // namespace iommu
