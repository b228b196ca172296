// Crash copy: randomized equivalence, both strategies, adoption, malformed
// tables refused cleanly, DMA during and after the switch never faults.
#include "iommu/crash_copy.h"

#include <atomic>
#include <random>
#include <thread>

#include "gtest/gtest.h"
#include "iommu/register_io.h"
#include "iommu/test_util.h"
#include "iommu/walker.h"

namespace iommu {
namespace {

struct Crashed {
  std::unique_ptr<TestEnv> env;
  Population pop;
  uint64_t old_root = 0;
  std::unique_ptr<IommuDriver> old_driver;  // "crashed": never used again
};

Crashed MakeCrashed(const PopulateSpec& spec) {
  Crashed c;
  c.env = std::move(*TestEnv::Create(16 << 20, 8192, 8192));
  auto drv =
      IommuDriver::Create(c.env->mem.get(), c.env->hw.get(), c.env->pool.get());
  EXPECT_TRUE(drv.ok()) << drv.status();
  auto pop = Populate(drv->get(), c.env->data_bytes, spec);
  EXPECT_TRUE(pop.ok()) << pop.status();
  c.pop = std::move(*pop);
  c.old_root = (*drv)->root_table();
  c.old_driver = std::move(*drv);
  // The driver "crashes": its object goes away, tables stay in memory.
  return c;
}

// Every mapping and random IOVAs translate the same through old and new.
void ExpectSameTranslations(const Crashed& c, uint64_t new_root,
                            uint64_t seed) {
  std::mt19937_64 rng(seed);
  const PhysMemory& mem = *c.env->mem;
  for (const TestMapping& m : c.pop.mappings) {
    const uint64_t off = (rng() % (m.size / kPageSize)) * kPageSize;
    for (const auto& [sid, did] : c.pop.sid_to_did) {
      if (did != m.did) continue;
      const Translation n =
          TranslateUncached(mem, new_root, sid, m.iova + off, Access::kRead);
      const Translation w =
          TranslateUncached(mem, new_root, sid, m.iova + off, Access::kWrite);
      ASSERT_EQ(n.fault == FaultReason::kNone, (m.perms & kPermR) != 0);
      ASSERT_EQ(w.fault == FaultReason::kNone, (m.perms & kPermW) != 0);
      const Translation& ok = n.fault == FaultReason::kNone ? n : w;
      ASSERT_EQ(ok.hpa, m.hpa + off);
    }
  }
  for (int i = 0; i < 20000; ++i) {
    auto it = c.pop.sid_to_did.begin();
    std::advance(it, rng() % c.pop.sid_to_did.size());
    const uint64_t iova = (rng() & ((uint64_t{1} << 40) - 1)) & ~0xfffull;
    const Access a = rng() % 2 ? Access::kRead : Access::kWrite;
    const Translation o =
        TranslateUncached(mem, c.old_root, it->first, iova, a);
    const Translation n = TranslateUncached(mem, new_root, it->first, iova, a);
    ASSERT_EQ(o.fault, n.fault);
    ASSERT_EQ(o.hpa, n.hpa);
    ASSERT_EQ(o.perms, n.perms);
  }
}

class RandomizedCopyTest
    : public ::testing::TestWithParam<std::pair<int, int>> {};

TEST_P(RandomizedCopyTest, DeepCopyVerifiesSwitchesAndAdopts) {
  PopulateSpec spec;
  spec.min_levels = GetParam().first;
  spec.max_levels = GetParam().second;
  spec.ranges = 2500;
  spec.domains = 12;
  spec.seed = 100 + spec.min_levels * 10 + spec.max_levels;
  Crashed c = MakeCrashed(spec);
  uint64_t bytes = 0;
  for (const TestMapping& m : c.pop.mappings) bytes += m.size;

  auto report = RecoverTables(c.env->mem.get(), c.env->hw.get(),
                              c.env->reserved.get(), CopyStrategy::kDeepCopy);
  ASSERT_TRUE(report.ok()) << report.status();
  EXPECT_EQ(report->copy.stats.contexts, c.pop.sid_to_did.size());
  EXPECT_EQ(report->verify.contexts, c.pop.sid_to_did.size());
  EXPECT_EQ(report->copy.stats.bytes_mapped, bytes);
  EXPECT_EQ(report->verify.bytes_mapped, bytes);
  EXPECT_EQ(report->verify.leaf_entries, report->copy.stats.leaf_entries);
  EXPECT_EQ(report->copy.stats.domains, c.pop.dids.size() + 1);  // + PT
  EXPECT_GE(report->copy.stats.pass_through_contexts, 1u);
  EXPECT_LT(report->copy.stats.ranges, 2500u);  // adjacent runs merged
  // The hardware now walks the copy, all of it inside the reserved region.
  RegisterIo io(c.env->hw.get());
  EXPECT_EQ(*io.Read64(Reg::kRtaddr), report->copy.new_rtaddr);
  EXPECT_NE(*io.Read32(Reg::kGsts) & gsts::kTes, 0u);
  for (uint64_t p : report->copy.new_pages) {
    ASSERT_TRUE(c.env->reserved->Owns(p));
  }
  ExpectSameTranslations(c, report->copy.new_rtaddr, spec.seed);

  // A new driver adopts the domains: old mappings are reserved IOVA, new
  // allocations avoid them, old mappings can be unmapped.
  auto drv = AdoptRecovered(c.env->mem.get(), c.env->hw.get(),
                            c.env->reserved.get(), *report);
  ASSERT_TRUE(drv.ok()) << drv.status();
  for (const TestMapping& m : c.pop.mappings) {
    auto alloc = (*drv)->iova_allocator(m.did);
    ASSERT_TRUE(alloc.ok());
    ASSERT_TRUE((*alloc)->Overlaps(m.iova, m.size));
  }
  const TestMapping& m0 = c.pop.mappings[0];
  auto fresh = (*drv)->AllocIova(m0.did, 0x10000, 0x1000);
  ASSERT_TRUE(fresh.ok());
  ASSERT_TRUE((*drv)->Map(m0.did, *fresh, 0x1000, 0x10000, kPermRW).ok());
  ASSERT_TRUE((*drv)->Unmap(m0.did, m0.iova, m0.size).ok());
  const uint16_t new_did = *(*drv)->CreateDomain(3);
  for (uint16_t d : c.pop.dids) EXPECT_NE(new_did, d);
}

INSTANTIATE_TEST_SUITE_P(Levels, RandomizedCopyTest,
                         ::testing::Values(std::make_pair(3, 3),
                                           std::make_pair(4, 4),
                                           std::make_pair(5, 5),
                                           std::make_pair(2, 5)));

TEST(CrashCopyTest, KeepPageTablesStrategy) {
  PopulateSpec spec;
  spec.ranges = 500;
  Crashed c = MakeCrashed(spec);
  auto report =
      RecoverTables(c.env->mem.get(), c.env->hw.get(), c.env->reserved.get(),
                    CopyStrategy::kKeepPageTables);
  ASSERT_TRUE(report.ok()) << report.status();
  // Only root + context tables were allocated.
  EXPECT_EQ(report->copy.new_pages.size(), report->copy.context_pages.size());
  EXPECT_EQ(report->verify.shared_trees, c.pop.dids.size());
  ExpectSameTranslations(c, report->copy.new_rtaddr, 7);
  auto drv = AdoptRecovered(c.env->mem.get(), c.env->hw.get(),
                            c.env->reserved.get(), *report);
  ASSERT_TRUE(drv.ok());
  const TestMapping& m0 = c.pop.mappings[0];
  EXPECT_EQ((*drv)->Map(m0.did, 0x1000, 0x1000, 0x1000, kPermR).code(),
            absl::StatusCode::kFailedPrecondition);
  // A device re-attached to a fresh domain gets a DID none of the old ones.
  const uint16_t sid = c.pop.sid_to_did.begin()->first;
  ASSERT_TRUE((*drv)->Detach(sid).ok());
  const uint16_t did = *(*drv)->CreateDomain(4);
  for (uint16_t d : c.pop.dids) EXPECT_NE(did, d);
  ASSERT_TRUE((*drv)->Attach(sid, did).ok());
}

TEST(CrashCopyTest, SharedDidCopiesOneTree) {
  auto env = *TestEnv::Create(1 << 20, 256, 256);
  auto drv =
      *IommuDriver::Create(env->mem.get(), env->hw.get(), env->pool.get());
  const uint16_t did = *drv->CreateDomain(3);
  for (int f = 0; f < 4; ++f) ASSERT_TRUE(drv->Attach(MakeSid(1, f), did).ok());
  ASSERT_TRUE(drv->Map(did, 0x10000, 0x10000, 0x8000, kPermRW).ok());
  auto copy = CopyTables(env->mem.get(), drv->root_table(), env->reserved.get(),
                         CopyStrategy::kDeepCopy);
  ASSERT_TRUE(copy.ok()) << copy.status();
  EXPECT_EQ(copy->stats.domains, 1u);
  EXPECT_EQ(copy->stats.page_tables, 3u);
  EXPECT_EQ(copy->new_pages.size(), 2u + 3u);  // root, 1 context, 3 tables
  ASSERT_EQ(copy->ranges.size(), 1u);
  EXPECT_EQ(copy->ranges[0].iova, 0x10000u);
  EXPECT_EQ(copy->ranges[0].size, 0x8000u);
  EXPECT_EQ(copy->domains[0].sids.size(), 4u);
  ASSERT_TRUE(
      VerifyTranslationsEqual(*env->mem, drv->root_table(), copy->new_rtaddr)
          .ok());
  ReleaseCopy(&*copy, env->reserved.get());
  EXPECT_EQ(env->reserved->allocated_pages(), 0u);
}

// Malformed old tables: each refused with nothing installed.
class CorruptTablesTest : public ::testing::Test {
 protected:
  void SetUp() override {
    env_ = std::move(*TestEnv::Create(1 << 20, 256, 256));
    drv_ = std::move(*IommuDriver::Create(env_->mem.get(), env_->hw.get(),
                                          env_->pool.get()));
    d1_ = *drv_->CreateDomain(4);
    d2_ = *drv_->CreateDomain(4);
    ASSERT_TRUE(drv_->Attach(kA, d1_).ok());
    ASSERT_TRUE(drv_->Attach(kB, d2_).ok());
    ASSERT_TRUE(drv_->Map(d1_, 0x1000, 0x1000, 0x4000, kPermRW).ok());
    ASSERT_TRUE(drv_->Map(d2_, 0x1000, 0x8000, 0x4000, kPermR).ok());
  }
  uint64_t Ctx(uint16_t sid) {
    const uint64_t re =
        *env_->mem->Load64(drv_->root_table() + SidBus(sid) * 16);
    return RootEntry{re, 0}.ctp() + SidDevfn(sid) * 16;
  }
  uint64_t Slpt(uint16_t sid) {
    return *env_->mem->Load64(Ctx(sid)) & kAddrMask;
  }
  void Poke(uint64_t addr, uint64_t v) {
    ASSERT_TRUE(env_->mem->Store64(addr, v).ok());
  }
  void ExpectRefused(const char* why) {
    RegisterIo io(env_->hw.get());
    const uint64_t rt = *io.Read64(Reg::kRtaddr);
    auto r = RecoverTables(env_->mem.get(), env_->hw.get(),
                           env_->reserved.get(), CopyStrategy::kDeepCopy);
    ASSERT_FALSE(r.ok()) << why;
    EXPECT_NE(r.status().code(), absl::StatusCode::kInternal) << r.status();
    EXPECT_EQ(env_->reserved->allocated_pages(), 0u) << why;
    EXPECT_EQ(*io.Read64(Reg::kRtaddr), rt) << why;
    auto k = RecoverTables(env_->mem.get(), env_->hw.get(),
                           env_->reserved.get(), CopyStrategy::kKeepPageTables);
    EXPECT_FALSE(k.ok() && std::string(why) != "cycle") << why;
    EXPECT_EQ(env_->reserved->allocated_pages(), 0u) << why;
    std::printf("refused (%s): %s\n", why, r.status().ToString().c_str());
  }
  static constexpr uint16_t kA = MakeSid(1, 0), kB = MakeSid(2, 8);
  std::unique_ptr<TestEnv> env_;
  std::unique_ptr<IommuDriver> drv_;
  uint16_t d1_ = 0, d2_ = 0;
};

TEST_F(CorruptTablesTest, Cycle) {
  // Level-2 entry points back at the level-4 root: a cycle.
  uint64_t t = Slpt(kA);
  for (int level = 4; level > 2; --level) t = *env_->mem->Load64(t) & kAddrMask;
  Poke(t + 8 * 5, Slpt(kA) | kPermRW);
  ExpectRefused("cycle");
}

TEST_F(CorruptTablesTest, PointerOutOfRange) {
  Poke(Ctx(kB), (uint64_t{1} << 40) | (*env_->mem->Load64(Ctx(kB)) & 0xfff));
  ExpectRefused("pointer out of range");
}

TEST_F(CorruptTablesTest, RootPointerOutOfRange) {
  Poke(drv_->root_table() + 16 * 9, RootEntry::Make(uint64_t{1} << 44).lo);
  ExpectRefused("context table out of range");
}

TEST_F(CorruptTablesTest, ReservedTranslationType) {
  Poke(Ctx(kA), *env_->mem->Load64(Ctx(kA)) | (3ull << 2));
  ExpectRefused("reserved TT");
}

TEST_F(CorruptTablesTest, AwMismatch) {
  Poke(Ctx(kA) + 8, (*env_->mem->Load64(Ctx(kA) + 8) & ~7ull) | 5);
  ExpectRefused("unsupported AW");
}

TEST_F(CorruptTablesTest, SameDidDifferentAw) {
  ASSERT_TRUE(drv_->Attach(MakeSid(1, 1), d1_).ok());
  Poke(Ctx(MakeSid(1, 1)) + 8,
       (*env_->mem->Load64(Ctx(MakeSid(1, 1)) + 8) & ~7ull) | 1);
  ExpectRefused("AW mismatch within a DID");
}

TEST_F(CorruptTablesTest, DidReuseWithDifferentTrees) {
  const uint64_t hi = *env_->mem->Load64(Ctx(kB) + 8);
  Poke(Ctx(kB) + 8, (hi & ~ContextEntry::kDidMask) |
                        (uint64_t{d1_} << ContextEntry::kDidShift));
  ExpectRefused("DID reuse with different trees");
}

TEST_F(CorruptTablesTest, ReservedBitsInPte) {
  uint64_t t = Slpt(kA);
  for (int level = 4; level > 1; --level) t = *env_->mem->Load64(t) & kAddrMask;
  Poke(t + 8, *env_->mem->Load64(t + 8) | (1ull << 49));
  ExpectRefused("reserved PTE bits");
}

TEST_F(CorruptTablesTest, OldTableInReservedRegion) {
  Poke(Ctx(kB), env_->reserved->base() | (*env_->mem->Load64(Ctx(kB)) & 0xfff));
  ExpectRefused("table in reserved region");
}

TEST(CrashCopyTest, NothingToRecoverWhenTranslationOff) {
  auto env = *TestEnv::Create(1 << 20, 16, 16);
  auto r = RecoverTables(env->mem.get(), env->hw.get(), env->reserved.get(),
                         CopyStrategy::kDeepCopy);
  EXPECT_EQ(r.status().code(), absl::StatusCode::kFailedPrecondition);
}

// DMA from device threads keeps flowing while the tables are copied and the
// hardware is switched; no fault ever.
TEST(CrashCopyTest, DmaDuringAndAfterSwitchNeverFaults) {
  PopulateSpec spec;
  spec.ranges = 1500;
  Crashed c = MakeCrashed(spec);
  // Dedicated DMA devices with disjoint target buffers.
  constexpr int kThreads = 3;
  std::vector<uint16_t> sids;
  {
    IommuDriver* drv = c.old_driver.get();
    for (int i = 0; i < kThreads; ++i) {
      const uint16_t did = *drv->CreateDomain(3 + i);
      const uint16_t sid = MakeSid(0xf0, static_cast<uint8_t>(i));
      ASSERT_TRUE(drv->Attach(sid, did).ok());
      ASSERT_TRUE(
          drv->Map(did, 0x100000, 0x800000 + i * 0x10000, 0x10000, kPermRW)
              .ok());
      sids.push_back(sid);
    }
  }
  const uint64_t faults_before = c.env->hw->stats().faults;
  std::atomic<bool> stop{false};
  std::atomic<int> errors{0};
  std::atomic<uint64_t> dmas{0};
  std::vector<std::thread> threads;
  for (int i = 0; i < kThreads; ++i) {
    threads.emplace_back([&, i] {
      uint64_t n = 0;
      while (!stop.load() || n < 200) {
        const uint64_t v = n++;
        const uint64_t iova = 0x100000 + (v % 16) * 0x1000;
        if (!c.env->hw->DmaWrite(sids[i], iova, &v, sizeof(v)).ok()) ++errors;
        uint64_t back = 0;
        if (!c.env->hw->DmaRead(sids[i], iova, &back, sizeof(back)).ok() ||
            back != v) {
          ++errors;
        }
        dmas.fetch_add(1);
      }
    });
  }
  auto report = RecoverTables(c.env->mem.get(), c.env->hw.get(),
                              c.env->reserved.get(), CopyStrategy::kDeepCopy);
  const uint64_t at_switch = dmas.load();
  while (dmas.load() < at_switch + 600) std::this_thread::yield();
  stop = true;
  for (auto& t : threads) t.join();
  ASSERT_TRUE(report.ok()) << report.status();
  EXPECT_EQ(errors.load(), 0);
  EXPECT_EQ(c.env->hw->stats().faults, faults_before);
  EXPECT_EQ(report->copy.stats.contexts, c.pop.sid_to_did.size() + kThreads);
}

}  // namespace
}  // namespace iommu
