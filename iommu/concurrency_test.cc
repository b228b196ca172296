// DMA from device threads while the driver remaps, attaches/detaches and
// destroys domains: stable mappings never fault, churned ones either
// translate to their current target or fault, never to a stale target after
// the unmap returned (the driver flushed). Run under --config=tsan.
#include <atomic>
#include <thread>
#include <vector>

#include "gtest/gtest.h"
#include "iommu/driver.h"
#include "iommu/test_util.h"

namespace iommu {
namespace {

TEST(ConcurrencyTest, DmaWhileDriverRemaps) {
  auto env = *TestEnv::Create(8 << 20, 1024, 16);
  auto drv =
      *IommuDriver::Create(env->mem.get(), env->hw.get(), env->pool.get());
  const uint16_t stable_did = *drv->CreateDomain(4);
  const uint16_t stable_sid = MakeSid(1, 0), churn_sid = MakeSid(1, 1);
  ASSERT_TRUE(drv->Attach(stable_sid, stable_did).ok());
  ASSERT_TRUE(drv->Map(stable_did, 0x100000, 0x100000, 0x10000, kPermRW).ok());

  std::atomic<bool> stop{false};
  std::atomic<int> stable_errors{0};
  std::atomic<uint64_t> churn_ok{0}, churn_faults{0};
  std::thread stable([&] {
    uint64_t n = 0;
    while (!stop.load()) {
      const uint64_t iova = 0x100000 + (n % 16) * 0x1000;
      if (!env->hw->DmaWrite(stable_sid, iova, &n, sizeof(n)).ok())
        ++stable_errors;
      ++n;
    }
  });
  std::thread churn([&] {
    uint64_t n = 0;
    while (!stop.load()) {
      uint64_t v = 0;
      const Translation t = env->hw->Translate(
          churn_sid, 0x200000 + (n++ % 4) * 0x1000, Access::kRead);
      if (t.fault == FaultReason::kNone) {
        // Only ever one of the two targets the driver maps.
        if ((t.hpa & ~0xffffull) != 0x300000 &&
            (t.hpa & ~0xffffull) != 0x400000) {
          ++stable_errors;
        }
        ++churn_ok;
      } else {
        ++churn_faults;
      }
      (void)v;
    }
  });
  for (int round = 0; round < 300; ++round) {
    const uint16_t did = *drv->CreateDomain(3 + round % 3);
    ASSERT_TRUE(drv->Attach(churn_sid, did).ok());
    const uint64_t target = round % 2 ? 0x300000 : 0x400000;
    ASSERT_TRUE(drv->Map(did, 0x200000, target, 0x4000, kPermR).ok());
    ASSERT_TRUE(drv->Map(stable_did, 0x800000, target, 0x2000, kPermR).ok());
    ASSERT_TRUE(drv->Unmap(stable_did, 0x800000, 0x2000).ok());
    // After Unmap returned, the stable device's translation is gone.
    ASSERT_NE(env->hw->Translate(stable_sid, 0x800000, Access::kRead).fault,
              FaultReason::kNone);
    ASSERT_TRUE(drv->Unmap(did, 0x200000, 0x4000).ok());
    ASSERT_TRUE(drv->Detach(churn_sid).ok());
    ASSERT_TRUE(drv->DestroyDomain(did).ok());
  }
  stop = true;
  stable.join();
  churn.join();
  EXPECT_EQ(stable_errors.load(), 0);
  EXPECT_GT(churn_ok.load() + churn_faults.load(), 0u);
}

}  // namespace
}  // namespace iommu
