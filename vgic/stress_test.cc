// Multi-threaded stress: vCPU threads acknowledge and EOI through the MMIO
// CPU-interface frame while injector threads pulse SPIs, PPIs, SGIs and pend
// LPIs, and a configuration thread re-routes SPIs, flips priorities and
// group enables. Exact accounting: every injection that was not coalesced
// (the injection API reports coalescing) is delivered exactly once.
#include <algorithm>
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

namespace vgic {
namespace {

// A forwarded level SPI modelled like real hardware: the physical line can
// only fire again after the host was told to deactivate it. The host thread
// re-injects from the deactivate callback (and sometimes from its own
// thread), while vCPU threads acknowledge/EOI and the route moves between
// them. Every host injection is deactivated exactly once and every delivery
// matches an injection.
TEST_F(VgicTest, ForwardedInterruptHandshakeUnderConcurrency) {
  EnableAll();
  constexpr uint32_t kSpi = 45;
  constexpr int kRounds = 3000;
  SetupSpi(kSpi, 0x40, 0, /*edge=*/false);
  std::atomic<int> injected{0}, deactivated{0}, delivered{0};
  std::atomic<bool> physical_active{false};
  auto fire = [&] {
    // The physical line fires only when not active (host GIC semantics).
    bool expected = false;
    if (injected.load() < kRounds &&
        physical_active.compare_exchange_strong(expected, true)) {
      injected.fetch_add(1);
      EXPECT_TRUE(gic_->SetSpiLevel(kSpi, true).ok());
    }
  };
  ASSERT_TRUE(gic_->ForwardSpi(kSpi, 99,
                               [&](uint32_t host_irq) {
                                 EXPECT_EQ(host_irq, 99u);
                                 deactivated.fetch_add(1);
                                 EXPECT_TRUE(physical_active.exchange(false));
                                 fire();  // the device is still asserting
                               })
                  .ok());
  std::atomic<bool> stop{false};
  std::vector<std::thread> threads;
  for (uint32_t v = 0; v < 4; ++v) {
    threads.emplace_back([&, v] {
      while (!stop.load()) {
        auto id = gic_->ReadIcc(v, IccReg::kIar1);
        ASSERT_TRUE(id.ok());
        if (*id == kSpuriousIntid) {
          std::this_thread::yield();
          continue;
        }
        EXPECT_EQ(*id, kSpi);
        delivered.fetch_add(1);
        ASSERT_TRUE(gic_->WriteIcc(v, IccReg::kEoir1, *id).ok());
      }
    });
  }
  threads.emplace_back([&] {
    std::mt19937 rng(7);
    while (deactivated.load() < kRounds) {
      fire();
      Write(gic_->distributor(),
            static_cast<uint64_t>(GicdReg::kIrouter) + 8 * kSpi, 8,
            Vgic::VcpuMpidr(rng() % 4));
      std::this_thread::yield();
    }
  });
  threads.back().join();
  threads.pop_back();
  stop.store(true);
  for (auto& t : threads) t.join();
  EXPECT_EQ(injected.load(), kRounds);
  EXPECT_EQ(deactivated.load(), kRounds);
  EXPECT_EQ(delivered.load(), kRounds);
  EXPECT_FALSE(physical_active.load());
  gic_->UnforwardSpi(kSpi);
  EXPECT_EQ(deactivated.load(), kRounds);  // nothing outstanding
}

}  // namespace
}  // namespace vgic

namespace vgic {
namespace {

// EnableLPIs toggling (pending-table scan / write-back, PTZ = 0) racing
// with ITS-side SetPending and a vCPU acknowledging. Exact accounting per
// LPI: every SetPending that reported "newly pending" is either acknowledged
// once or still recorded in the guest's pending table after the final
// disable (the table carries pending state across disable/enable).
TEST_F(VgicTest, LpiEnableDisableRacesWithInjection) {
  EnableAll();
  constexpr uint32_t kLpis = 64;
  for (uint32_t l = 0; l < kLpis; ++l) {
    ASSERT_TRUE(mem_->WriteObj<uint8_t>(0x100000 + l, 0x81).ok());
  }
  for (uint32_t v = 0; v < 2; ++v) {
    SetGicr(v, GicrReg::kPropbaser, 0x100000 | 15, 8);
    SetGicr(v, GicrReg::kPendbaser, 0x200000 + v * 0x10000, 8);
  }
  SetGicr(0, GicrReg::kCtlr, kGicrCtlrEnableLpis);
  std::atomic<bool> stop{false};
  long newly[2][kLpis] = {};
  long acked[2][kLpis] = {};
  std::thread toggler([&] {
    for (int i = 0; i < 80; ++i) {
      SetGicr(1, GicrReg::kCtlr, (i % 2 == 0) ? kGicrCtlrEnableLpis : 0);
      std::this_thread::yield();
    }
    SetGicr(1, GicrReg::kCtlr, 0);
  });
  std::thread its([&] {
    std::mt19937 rng(3);
    while (!stop.load()) {
      const uint32_t v = rng() % 2;
      const uint32_t l = rng() % kLpis;
      if (gic_->SetPending(v, kFirstLpi + l)) newly[v][l]++;
      std::this_thread::yield();
    }
  });
  auto drain = [&](uint32_t v) {
    for (;;) {
      auto id = gic_->ReadIcc(v, IccReg::kIar1);
      if (!id.ok() || *id == kSpuriousIntid) return;
      EXPECT_GE(*id, kFirstLpi);
      EXPECT_LT(*id, kFirstLpi + kLpis);
      acked[v][*id - kFirstLpi]++;
      EXPECT_TRUE(gic_->WriteIcc(v, IccReg::kEoir1, *id).ok());
    }
  };
  std::thread vcpu([&] {
    while (!stop.load()) {
      drain(0);
      drain(1);
      std::this_thread::yield();
    }
  });
  toggler.join();
  stop.store(true);
  its.join();
  vcpu.join();
  drain(0);
  drain(1);
  EXPECT_FALSE(gic_->LpisEnabled(1));
  EXPECT_FALSE(gic_->IrqLine(1));
  long total = 0;
  for (uint32_t l = 0; l < kLpis; ++l) {
    const uint32_t id = kFirstLpi + l;
    EXPECT_FALSE(gic_->IsPending(1, id));
    auto b = mem_->ReadObj<uint8_t>(0x210000 + id / 8);
    ASSERT_TRUE(b.ok());
    const long in_table = (*b >> (id % 8)) & 1;
    EXPECT_EQ(newly[0][l], acked[0][l]) << "vCPU 0 LPI " << id;
    EXPECT_EQ(newly[1][l], acked[1][l] + in_table) << "vCPU 1 LPI " << id;
    total += newly[1][l];
  }
  EXPECT_GT(total, 0);
}

// The largest configuration: 512 vCPUs, 988 SPIs.
TEST_F(VgicTest, LargestConfiguration) {
  Make(kMaxVcpus, kMaxSpis);
  EnableAll();
  EXPECT_NE(Gicr(511, GicrReg::kTyper, 8) & kGicrTyperLast, 0u);
  EXPECT_EQ(Gicr(510, GicrReg::kTyper, 8) & kGicrTyperLast, 0u);
  EXPECT_EQ(Gicr(511, GicrReg::kTyper, 8) >> 32, Vgic::VcpuMpidr(511));
  // SPI 1019 routed to vCPU 500 (Aff1 31, Aff0 4).
  SetupSpi(1019, 0x10, 500, true);
  ASSERT_TRUE(Pulse(1019).ok());
  EXPECT_TRUE(lines_[500].load());
  EXPECT_EQ(Ack(500), 1019u);
  Eoi(500, 1019);
  // SGI from vCPU 0 to vCPU 500 via Aff1 = 31, TargetList bit 4.
  SetupPrivate(500, 2, 0x10);
  SetIcc(0, IccReg::kSgi1r, (31ull << 16) | (2ull << 24) | (1u << 4));
  EXPECT_EQ(Ack(500), 2u);
  Eoi(500, 2);
}

}  // namespace
}  // namespace vgic
