// Multi-threaded stress: vCPU threads acknowledge and EOI through the MMIO
// CPU-interface frame while injector threads pulse SPIs, PPIs, SGIs and pend
// LPIs, and a configuration thread re-routes SPIs, flips priorities and
// group enables. Exact accounting: every injection that was not coalesced
// (the injection API reports coalescing) is delivered exactly once.
#include <atomic>
#include <map>
#include <mutex>
#include <random>
#include <thread>
#include <vector>

#include "gtest/gtest.h"
#include "vgic/vgic_test_util.h"

namespace vgic {
namespace {

constexpr uint32_t kVcpus = 4;
constexpr uint32_t kInjectors = 3;
constexpr uint32_t kSpisPerInjector = 8;
constexpr uint32_t kLpisPerInjector = 16;
constexpr int kIterations = 20000;
constexpr uint64_t kPropPa = 0x100000;

// Source key: (vcpu for private/LPI state, intid).
using Key = std::pair<uint32_t, uint32_t>;

class StressTest : public VgicTest {
 protected:
  void SetUp() override {
    VgicTest::SetUp();
    Make(kVcpus, 64);
    EnableAll();
    for (uint32_t i = 0; i < kInjectors * kSpisPerInjector; ++i) {
      SetupSpi(32 + i, static_cast<uint8_t>((i % 4) * 0x20), i % kVcpus, true);
    }
    for (uint32_t v = 0; v < kVcpus; ++v) {
      SetupPrivate(v, 1, 0x10);   // SGI 1
      SetupPrivate(v, 20, 0x30);  // PPI 20
    }
    for (uint32_t l = 0; l < kInjectors * kLpisPerInjector; ++l) {
      ASSERT_TRUE(mem_->WriteObj<uint8_t>(
                          kPropPa + l, static_cast<uint8_t>(((l % 8) << 5) | 1))
                      .ok());
    }
    for (uint32_t v = 0; v < kVcpus; ++v) {
      SetGicr(v, GicrReg::kPropbaser, kPropPa | 15, 8);
      SetGicr(v, GicrReg::kPendbaser, (0x200000 + v * 0x10000) | kPendbaserPtz,
              8);
      SetGicr(v, GicrReg::kCtlr, kGicrCtlrEnableLpis);
    }
  }
};

TEST_F(StressTest, EveryNonCoalescedInjectionIsDeliveredExactlyOnce) {
  std::mutex mu;
  std::map<Key, long> injected;   // non-coalesced injections
  std::map<Key, long> delivered;  // acknowledged INTIDs
  std::atomic<bool> stop{false};
  std::atomic<long> spurious{0};

  auto vcpu_thread = [&](uint32_t v) {
    std::map<Key, long> mine;
    std::mt19937 rng(v);
    long spins = 0;
    for (;;) {
      uint64_t id = 0;
      ASSERT_TRUE(
          gic_->cpu_interface()
              .Read({v, 0}, static_cast<uint64_t>(IccReg::kIar1), 8, &id)
              .ok());
      if (id == kSpuriousIntid) {
        spurious.fetch_add(1, std::memory_order_relaxed);
        if (stop.load()) break;
        // Occasionally mask and unmask to race with injectors.
        if (++spins % 64 == 0) {
          EXPECT_TRUE(gic_->WriteIcc(v, IccReg::kPmr, 0x40).ok());
          EXPECT_TRUE(gic_->WriteIcc(v, IccReg::kPmr, 0xff).ok());
        }
        std::this_thread::yield();
        continue;
      }
      const uint32_t intid = static_cast<uint32_t>(id);
      // SPIs have global state (vcpu 0 in the key); private and LPI
      // state is per vCPU.
      mine[{intid >= 32 && intid < 1020 ? 0 : v, intid}]++;
      if (rng() % 8 == 0) {
        // Nested: try to take another before EOI (preemption path).
        uint64_t id2 = 0;
        ASSERT_TRUE(
            gic_->cpu_interface()
                .Read({v, 0}, static_cast<uint64_t>(IccReg::kIar1), 8, &id2)
                .ok());
        if (id2 != kSpuriousIntid) {
          const uint32_t i2 = static_cast<uint32_t>(id2);
          mine[{i2 >= 32 && i2 < 1020 ? 0 : v, i2}]++;
          ASSERT_TRUE(
              gic_->cpu_interface()
                  .Write({v, 0}, static_cast<uint64_t>(IccReg::kEoir1), 8, id2)
                  .ok());
        }
      }
      ASSERT_TRUE(
          gic_->cpu_interface()
              .Write({v, 0}, static_cast<uint64_t>(IccReg::kEoir1), 8, id)
              .ok());
    }
    std::lock_guard<std::mutex> l(mu);
    for (auto& [k, n] : mine) delivered[k] += n;
  };

  auto injector = [&](uint32_t t) {
    std::map<Key, long> mine;
    std::mt19937 rng(100 + t);
    for (int i = 0; i < kIterations; ++i) {
      switch (rng() % 4) {
        case 0:
        case 1: {
          const uint32_t intid =
              32 + t * kSpisPerInjector + rng() % kSpisPerInjector;
          auto r = gic_->PulseSpi(intid);
          ASSERT_TRUE(r.ok());
          if (*r) mine[{0, intid}]++;
          break;
        }
        case 2: {
          const uint32_t v = rng() % kVcpus;
          const uint32_t lpi =
              kFirstLpi + t * kLpisPerInjector + rng() % kLpisPerInjector;
          if (gic_->SetPending(v, lpi)) mine[{v, lpi}]++;
          break;
        }
        case 3: {
          // Private interrupts: injector t owns PPI 20 / SGI 1 of vCPU t
          // only (so coalescing of each source is reported to one thread).
          if (t >= kVcpus) break;
          if (rng() % 2) {
            auto r = gic_->PulsePpi(t, 20);
            ASSERT_TRUE(r.ok());
            if (*r) mine[{t, 20}]++;
          } else {
            auto r = gic_->SendSgi(t, 1);
            ASSERT_TRUE(r.ok());
            if (*r) mine[{t, 1}]++;
          }
          break;
        }
      }
      if (i % 256 == 0) std::this_thread::yield();
    }
    std::lock_guard<std::mutex> l(mu);
    for (auto& [k, n] : mine) injected[k] += n;
  };

  auto churn = [&]() {
    std::mt19937 rng(999);
    for (int i = 0; i < kIterations / 4; ++i) {
      const uint32_t intid = 32 + rng() % (kInjectors * kSpisPerInjector);
      Write(gic_->distributor(),
            static_cast<uint64_t>(GicdReg::kIrouter) + 8 * intid, 8,
            Vgic::VcpuMpidr(rng() % kVcpus));
      Write(gic_->distributor(),
            static_cast<uint64_t>(GicdReg::kIpriorityr) + intid, 1,
            (rng() % 8) << 4);
      if (i % 50 == 0) {
        SetGicd(GicdReg::kCtlr, 0);
        SetGicd(GicdReg::kCtlr, kGicdCtlrEnableGrp1);
      }
      if (i % 97 == 0) {
        // INV of an LPI whose configuration did not change (ITS-style).
        const uint32_t lpi = kFirstLpi + rng() % kLpisPerInjector;
        auto cfg = gic_->ReadConfigByte(rng() % kVcpus, lpi);
        ASSERT_TRUE(cfg.ok());
        gic_->ApplyConfigByte(lpi, *cfg);
      }
      if (i % 16 == 0) std::this_thread::yield();
    }
  };

  std::vector<std::thread> vcpus;
  for (uint32_t v = 0; v < kVcpus; ++v) vcpus.emplace_back(vcpu_thread, v);
  std::vector<std::thread> others;
  for (uint32_t t = 0; t < kInjectors; ++t) others.emplace_back(injector, t);
  others.emplace_back(churn);
  for (auto& t : others) t.join();
  stop.store(true);
  for (auto& t : vcpus) t.join();

  // After everything stopped: nothing left pending or signalled.
  for (uint32_t v = 0; v < kVcpus; ++v) {
    EXPECT_EQ(Ack(v), kSpuriousIntid) << "vCPU " << v;
    EXPECT_FALSE(gic_->IrqLine(v)) << "vCPU " << v;
    EXPECT_EQ(Icc(v, IccReg::kAp1r0), 0u) << "vCPU " << v;
  }
  long total = 0;
  for (auto& [k, n] : injected) {
    EXPECT_EQ(delivered[k], n)
        << "source vcpu " << k.first << " intid " << k.second;
    total += n;
  }
  for (auto& [k, n] : delivered) {
    EXPECT_TRUE(injected.count(k))
        << "delivered but never injected: " << k.second;
  }
  EXPECT_GT(total, 1000);  // the test really exercised delivery
}

}  // namespace
}  // namespace vgic
