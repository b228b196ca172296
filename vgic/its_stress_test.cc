// Concurrency stress: MSIs from several threads while the command queue
// remaps, discards and moves the same translations (the CVE-2024-26598
// cache-hit-vs-DISCARD race). Run under --config=tsan and --config=asan: a
// cache hit touching freed state, or an unsynchronised access, is reported.
#include <atomic>
#include <thread>
#include <vector>

#include "gtest/gtest.h"
#include "vgic/fake_lpi_sink.h"
#include "vgic/its.h"
#include "vgic/its_commands.h"
#include "vgic/its_harness.h"
#include "vgic/vgic.h"

namespace vgic {
namespace {

namespace cmd = its::cmd;
constexpr uint32_t kLpi = 8192;
constexpr uint32_t kDevices = 6;
constexpr uint32_t kEvents = 8;
constexpr int kMsiThreads = 3;
constexpr int kRounds = 150;

uint32_t Intid(uint32_t d, uint32_t e) { return kLpi + d * kEvents + e; }

// Runs the command storm on `h` while kMsiThreads threads inject MSIs, then
// unmaps everything. Returns the number of successful injections.
uint64_t Storm(ItsHarness& h, std::atomic<bool>& unmapped_all,
               std::atomic<uint64_t>& late_successes) {
  std::atomic<bool> stop{false};
  std::atomic<uint64_t> ok{0};
  std::vector<std::thread> msi;
  for (int t = 0; t < kMsiThreads; ++t) {
    msi.emplace_back([&, t] {
      uint32_t i = t;
      while (!stop.load(std::memory_order_relaxed)) {
        const bool after = unmapped_all.load(std::memory_order_acquire);
        const uint32_t d = i % kDevices, e = (i / kDevices) % kEvents;
        ++i;
        if (h.its().InjectMsi(d, e) == its::Error::kNone) {
          ok.fetch_add(1, std::memory_order_relaxed);
          if (after) late_successes.fetch_add(1);
        }
        // Exercise the MMIO path and Translate concurrently too.
        if (i % 7 == 0) {
          h.its()
              .Write({hv::MmioContext::kNoVcpu, d}, 0x10040, 4, e)
              .IgnoreError();
        }
        if (i % 13 == 0) (void)h.its().Translate(d, e);
      }
    });
  }
  h.Send({cmd::Mapc(0, 0, true), cmd::Mapc(1, 1, true), cmd::Mapc(2, 2, true),
          cmd::Mapc(3, 3, true)});
  uint32_t coll_target[4] = {0, 1, 2, 3};
  for (int round = 0; round < kRounds; ++round) {
    std::vector<cmd::Raw> c;
    for (uint32_t d = 0; d < kDevices; ++d) {
      c.push_back(cmd::Mapd(d, 3, ItsHarness::Itt(d), true));  // drops ITEs
      for (uint32_t e = 0; e < kEvents; ++e) {
        c.push_back(cmd::Mapti(d, e, Intid(d, e), (d + e + round) % 4));
      }
    }
    const uint64_t before = ok.load();
    h.Send(c);
    c.clear();
    // Make sure MSIs really interleave with the commands (2 shared cores):
    // wait (bounded) until some MSI translated against this round's state.
    for (int spin = 0; spin < 20000 && ok.load() == before; ++spin) {
      std::this_thread::yield();
    }
    for (uint32_t d = 0; d < kDevices; ++d) {
      for (uint32_t e = 0; e < kEvents; e += 2) {
        c.push_back(cmd::Movi(d, e, (round + 1) % 4));
        c.push_back(cmd::Discard(d, e + 1));
      }
    }
    c.push_back(cmd::Mapc(round % 4, (round + 2) % 4, true));
    coll_target[round % 4] = (round + 2) % 4;
    // MOVALL the way software must use it (§5.3): first remap every
    // collection of RDbase1 to RDbase2, then move what is left pending.
    const uint32_t rd1 = (round + 1) % 4, rd2 = (round + 3) % 4;
    for (uint16_t col = 0; col < 4; ++col) {
      if (coll_target[col] == rd1) {
        c.push_back(cmd::Mapc(col, rd2, true));
        coll_target[col] = rd2;
      }
    }
    c.push_back(cmd::Movall(rd1, rd2));
    c.push_back(cmd::Int(0, 0));
    c.push_back(cmd::Inv(0, 0));
    h.Send(c);
  }
  // Unmap everything: DISCARD every remaining ITE, then every device.
  std::vector<cmd::Raw> c;
  for (uint32_t d = 0; d < kDevices; ++d) {
    for (uint32_t e = 0; e < kEvents; ++e) c.push_back(cmd::Discard(d, e));
  }
  h.Send(c);
  c.clear();
  for (uint32_t d = 0; d < kDevices; ++d)
    c.push_back(cmd::Mapd(d, 1, 0, false));
  h.Send(c);
  unmapped_all.store(true, std::memory_order_release);
  // Let the MSI threads run against the empty ITS for a while.
  std::this_thread::sleep_for(std::chrono::milliseconds(20));
  stop.store(true);
  for (auto& t : msi) t.join();
  return ok.load();
}

TEST(ItsStressTest, MsisRaceRemapDiscardMove) {
  FakeLpiSink sink(4, 16);
  for (uint32_t i = kLpi; i < kLpi + kDevices * kEvents; ++i) {
    sink.SetConfig(i, 0xa1);
  }
  ItsHarness h(&sink, ItsOptions{.cache_slots = 64});
  h.Enable();
  std::atomic<bool> unmapped_all{false};
  std::atomic<uint64_t> late{0};
  const uint64_t ok = Storm(h, unmapped_all, late);
  EXPECT_GT(ok, 0u);
  EXPECT_GT(h.its().cache_hits(), 0u);
  // No MSI translated after everything was unmapped, and nothing is left
  // pending: DISCARD/MAPD cleared it and no stale cache hit re-set it.
  EXPECT_EQ(late.load(), 0u);
  for (uint32_t v = 0; v < 4; ++v) EXPECT_EQ(sink.PendingCount(v), 0) << v;
  // The only errors: the final DISCARDs of the odd events, which the last
  // round already discarded.
  const ItsErrorStats st = h.its().GetErrorStats();
  EXPECT_EQ(st.total, kDevices * kEvents / 2);
  EXPECT_EQ(st.per_opcode[0x0f], kDevices * kEvents / 2);
}

// The same storm against the real vGIC core, so TSan sees the real lock
// order (ITS spinlock → vCPU spinlocks inside SetPending/ApplyConfigByte).
TEST(ItsStressTest, AgainstRealVgic) {
  ItsHarness h(nullptr);
  VgicConfig cfg;
  cfg.num_vcpus = 4;
  cfg.memory = &h.mem();
  auto gic = Vgic::Create(cfg);
  ASSERT_TRUE(gic.ok()) << gic.status();
  h.its_ptr() = std::make_unique<Its>(gic->get(), &h.mem());
  // LPIs on: PROPBASER (16 ID bits) at 4 MiB, pending tables after it.
  for (uint32_t i = 0; i < kDevices * kEvents; ++i) {
    ASSERT_TRUE(h.mem().WriteObj<uint8_t>(0x400000 + i, 0xa1).ok());
  }
  for (uint32_t v = 0; v < 4; ++v) {
    auto& rd = (*gic)->redistributors();
    const uint64_t base = v * kRedistributorStride;
    ASSERT_TRUE(rd.Write({}, base + 0x70, 8, 0x400000 | 15).ok());
    ASSERT_TRUE(rd.Write({}, base + 0x78, 8, 0x500000 + v * 0x10000).ok());
    ASSERT_TRUE(rd.Write({}, base + 0x0, 4, 1).ok());
  }
  h.Enable();
  std::atomic<bool> unmapped_all{false};
  std::atomic<uint64_t> late{0};
  const uint64_t ok = Storm(h, unmapped_all, late);
  EXPECT_GT(ok, 0u);
  EXPECT_EQ(late.load(), 0u);
  for (uint32_t v = 0; v < 4; ++v) {
    for (uint32_t i = kLpi; i < kLpi + kDevices * kEvents; ++i) {
      EXPECT_FALSE((*gic)->IsPending(v, i)) << v << " " << i;
    }
  }
  h.its_ptr().reset();
}

}  // namespace
}  // namespace vgic
