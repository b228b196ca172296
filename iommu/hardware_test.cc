// Hardware model: registers, translation, every fault reason, superpages,
// cache staleness until invalidation.
#include "iommu/hardware.h"

#include <cstring>

#include "gtest/gtest.h"
#include "iommu/driver.h"
#include "iommu/register_io.h"
#include "iommu/test_util.h"

namespace iommu {
namespace {

constexpr uint16_t kSid = MakeSid(3, 0x10);

class HardwareTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto env = TestEnv::Create(4 << 20, 256, 64);
    ASSERT_TRUE(env.ok()) << env.status();
    env_ = std::move(*env);
    auto drv =
        IommuDriver::Create(env_->mem.get(), env_->hw.get(), env_->pool.get());
    ASSERT_TRUE(drv.ok()) << drv.status();
    driver_ = std::move(*drv);
  }

  // Reads fault record `i` through the registers.
  FaultRecord Record(int i) {
    FaultRecord r;
    EXPECT_TRUE(
        env_->hw->Read({}, RegOffset(Reg::kFrcd0) + 16 * i, 8, &r.lo).ok());
    EXPECT_TRUE(
        env_->hw->Read({}, RegOffset(Reg::kFrcd0) + 16 * i + 8, 8, &r.hi).ok());
    return r;
  }
  void ClearRecord(int i) {
    ASSERT_TRUE(env_->hw
                    ->Write({}, RegOffset(Reg::kFrcd0) + 16 * i + 8, 8,
                            FaultRecord::kHiF)
                    .ok());
  }
  // Expects a fault with `reason` for (sid, iova, access) and that it is
  // the record FSTS.FRI points at; clears it.
  void ExpectFault(uint16_t sid, uint64_t iova, Access access,
                   FaultReason reason) {
    const Translation t = env_->hw->Translate(sid, iova, access);
    ASSERT_EQ(t.fault, reason) << FaultReasonName(t.fault);
    uint64_t fsts = 0;
    ASSERT_TRUE(env_->hw->Read({}, RegOffset(Reg::kFsts), 4, &fsts).ok());
    ASSERT_NE(fsts & fsts::kPpf, 0u);
    const int fri = static_cast<int>((fsts >> fsts::kFriShift) & 0xff);
    const FaultRecord r = Record(fri);
    EXPECT_TRUE(r.fault());
    EXPECT_EQ(r.reason(), static_cast<uint8_t>(reason));
    EXPECT_EQ(r.sid(), sid);
    EXPECT_EQ(r.page(), iova & ~0xfffull);
    EXPECT_EQ(r.is_read(), access == Access::kRead);
    ClearRecord(fri);
  }
  uint64_t ContextSlot(uint16_t sid) {
    const uint64_t re =
        *env_->mem->Load64(driver_->root_table() + SidBus(sid) * 16);
    return RootEntry{re, 0}.ctp() + SidDevfn(sid) * 16;
  }

  std::unique_ptr<TestEnv> env_;
  std::unique_ptr<IommuDriver> driver_;
};

TEST_F(HardwareTest, RegistersAdvertiseCapabilities) {
  RegisterIo io(env_->hw.get());
  EXPECT_EQ(*io.Read64(Reg::kCap), kCapValue);
  EXPECT_EQ(*io.Read64(Reg::kEcap), kEcapValue);
  EXPECT_EQ(*io.Read32(Reg::kVer), kVersion);
  const uint32_t gsts = *io.Read32(Reg::kGsts);
  EXPECT_NE(gsts & gsts::kTes, 0u);
  EXPECT_NE(gsts & gsts::kRtps, 0u);
  EXPECT_EQ(*io.Read64(Reg::kRtaddr), driver_->root_table());
  uint64_t v;
  ASSERT_TRUE(env_->hw->Read({}, RegOffset(Reg::kCap), 4, &v).ok());
  EXPECT_EQ(v, kCapValue & 0xffffffff);
  EXPECT_FALSE(env_->hw->Read({}, RegOffset(Reg::kCap), 2, &v).ok());
  EXPECT_FALSE(env_->hw->Read({}, RegOffset(Reg::kGsts), 8, &v).ok());
  EXPECT_FALSE(env_->hw->Read({}, kRegisterWindowSize, 4, &v).ok());
  EXPECT_FALSE(env_->hw->Read({}, RegOffset(Reg::kGsts), 0, &v).ok());
  EXPECT_FALSE(env_->hw->Write({}, RegOffset(Reg::kGcmd), 2, 0).ok());
  EXPECT_FALSE(env_->hw->Write({}, RegOffset(Reg::kRtaddr) + 2, 4, 0).ok());
  // Dword access to 64-bit registers (§10.2).
  ASSERT_TRUE(env_->hw->Read({}, RegOffset(Reg::kCap) + 4, 4, &v).ok());
  EXPECT_EQ(v, kCapValue >> 32);
  const uint64_t rt = driver_->root_table();
  ASSERT_TRUE(env_->hw->Write({}, RegOffset(Reg::kRtaddr), 4, 0x5000).ok());
  ASSERT_TRUE(env_->hw->Write({}, RegOffset(Reg::kRtaddr) + 4, 4, 1).ok());
  EXPECT_EQ(*io.Read64(Reg::kRtaddr), 0x100005000u);
  ASSERT_TRUE(io.Write64(Reg::kRtaddr, rt).ok());
  // A global IOTLB invalidation issued as two dwords: acts on the upper one.
  const uint64_t cmd =
      iotlb_reg::kIvt | (iotlb_reg::kGlobal << iotlb_reg::kIirgShift);
  ASSERT_TRUE(
      env_->hw->Write({}, RegOffset(Reg::kIotlb), 4, cmd & 0xffffffff).ok());
  ASSERT_TRUE(
      env_->hw->Write({}, RegOffset(Reg::kIotlb) + 4, 4, cmd >> 32).ok());
  const uint64_t done = *io.Read64(Reg::kIotlb);
  EXPECT_EQ(done & iotlb_reg::kIvt, 0u);
  EXPECT_EQ((done >> iotlb_reg::kIaigShift) & 3, iotlb_reg::kGlobal);
}

TEST_F(HardwareTest, TranslatesAndDmaLandsInMemory) {
  const uint16_t did = *driver_->CreateDomain(4);
  ASSERT_TRUE(driver_->Attach(kSid, did).ok());
  ASSERT_TRUE(driver_->Map(did, 0x10000, 0x200000, 0x3000, kPermRW).ok());
  const Translation t = env_->hw->Translate(kSid, 0x11234, Access::kWrite);
  ASSERT_EQ(t.fault, FaultReason::kNone);
  EXPECT_EQ(t.hpa, 0x201234u);
  EXPECT_EQ(t.did, did);
  const char msg[] = "crossing a page boundary";
  ASSERT_TRUE(env_->hw->DmaWrite(kSid, 0x10ff8, msg, sizeof(msg)).ok());
  char back[sizeof(msg)] = {};
  ASSERT_TRUE(env_->mem->Read(0x200ff8, back, sizeof(back)).ok());
  EXPECT_STREQ(back, msg);
  char via_dma[sizeof(msg)] = {};
  ASSERT_TRUE(env_->hw->DmaRead(kSid, 0x10ff8, via_dma, sizeof(via_dma)).ok());
  EXPECT_STREQ(via_dma, msg);
}

TEST_F(HardwareTest, FaultingDmaWritesNothing) {
  const uint16_t did = *driver_->CreateDomain(3);
  ASSERT_TRUE(driver_->Attach(kSid, did).ok());
  // Page 0 writable, page 1 read-only: a write spanning both must not
  // touch page 0 either.
  ASSERT_TRUE(driver_->Map(did, 0x40000, 0x300000, 0x1000, kPermRW).ok());
  ASSERT_TRUE(driver_->Map(did, 0x41000, 0x301000, 0x1000, kPermR).ok());
  std::vector<uint8_t> data(0x1800, 0xab);
  absl::Status s = env_->hw->DmaWrite(kSid, 0x40800, data.data(), data.size());
  EXPECT_EQ(s.code(), absl::StatusCode::kPermissionDenied) << s;
  std::vector<uint8_t> mem(0x2000, 0x11);
  ASSERT_TRUE(env_->mem->Read(0x300000, mem.data(), mem.size()).ok());
  for (uint8_t b : mem) ASSERT_EQ(b, 0);
}

TEST_F(HardwareTest, EveryFaultReason) {
  const uint16_t did = *driver_->CreateDomain(3);
  ASSERT_TRUE(driver_->Attach(kSid, did).ok());
  ASSERT_TRUE(driver_->Map(did, 0x1000, 0x100000, 0x1000, kPermR).ok());
  ASSERT_TRUE(driver_->Map(did, 0x2000, 0x101000, 0x1000, kPermW).ok());

  ExpectFault(MakeSid(9, 0), 0x1000, Access::kRead,
              FaultReason::kRootNotPresent);
  ExpectFault(MakeSid(3, 0x11), 0x1000, Access::kRead,
              FaultReason::kContextNotPresent);
  ExpectFault(kSid, uint64_t{1} << 39, Access::kRead, FaultReason::kBeyondAgaw);
  ExpectFault(kSid, 0x1000, Access::kWrite, FaultReason::kWriteNotPermitted);
  ExpectFault(kSid, 0x2000, Access::kRead, FaultReason::kReadNotPermitted);
  ExpectFault(kSid, 0x5000, Access::kRead, FaultReason::kReadNotPermitted);

  // Hand-written malformed entries on fresh devices (not cached yet).
  const uint16_t bad_tt = MakeSid(3, 0x20), bad_aw = MakeSid(3, 0x21),
                 bad_rsv = MakeSid(3, 0x22);
  ASSERT_TRUE(driver_->Attach(bad_tt, did).ok());
  ASSERT_TRUE(driver_->Attach(bad_aw, did).ok());
  ASSERT_TRUE(driver_->Attach(bad_rsv, did).ok());
  uint64_t lo = *env_->mem->Load64(ContextSlot(bad_tt));
  ASSERT_TRUE(env_->mem->Store64(ContextSlot(bad_tt), lo | (3ull << 2)).ok());
  uint64_t hi = *env_->mem->Load64(ContextSlot(bad_aw) + 8);
  ASSERT_TRUE(
      env_->mem->Store64(ContextSlot(bad_aw) + 8, (hi & ~7ull) | 4).ok());
  hi = *env_->mem->Load64(ContextSlot(bad_rsv) + 8);
  ASSERT_TRUE(
      env_->mem->Store64(ContextSlot(bad_rsv) + 8, hi | (1ull << 40)).ok());
  ExpectFault(bad_tt, 0x1000, Access::kRead, FaultReason::kInvalidContext);
  ExpectFault(bad_aw, 0x1000, Access::kRead, FaultReason::kInvalidContext);
  ExpectFault(bad_rsv, 0x1000, Access::kRead, FaultReason::kContextReserved);

  // Paging entries: leaf with a reserved (beyond-HAW) address bit, and a
  // table pointer outside physical memory.
  const uint16_t pt_sid = MakeSid(4, 0);
  const uint16_t did2 = *driver_->CreateDomain(3);
  ASSERT_TRUE(driver_->Attach(pt_sid, did2).ok());
  ASSERT_TRUE(driver_->Map(did2, 0x1000, 0x100000, 0x1000, kPermRW).ok());
  ASSERT_TRUE(driver_->Map(did2, 0x40000000, 0x100000, 0x1000, kPermRW).ok());
  const uint64_t slpt =
      ContextEntry{*env_->mem->Load64(ContextSlot(pt_sid)), 0}.slptptr();
  // level 3 entry 0 → level 2 table → level 1 table; corrupt the leaf.
  const uint64_t l2 = *env_->mem->Load64(slpt) & kAddrMask;
  const uint64_t l1 = *env_->mem->Load64(l2) & kAddrMask;
  const uint64_t leaf = *env_->mem->Load64(l1 + 8);
  ASSERT_TRUE(env_->mem->Store64(l1 + 8, leaf | (1ull << 50)).ok());
  ExpectFault(pt_sid, 0x1000, Access::kRead, FaultReason::kPagingEntryReserved);
  // level 3 entry 1 (IOVA 1 GiB) → point its level-2 table out of memory.
  const uint64_t e1 = *env_->mem->Load64(slpt + 8);
  ASSERT_TRUE(
      env_->mem->Store64(slpt + 8, (e1 & ~kAddrMask) | (uint64_t{1} << 40))
          .ok());
  ExpectFault(pt_sid, 0x40000000, Access::kRead,
              FaultReason::kPagingEntryAccess);

  // Root entries: reserved bit, context-table pointer out of memory.
  const uint64_t rt = driver_->root_table();
  ASSERT_TRUE(
      env_->mem->Store64(rt + 5 * 16, RootEntry::Make(0x100000).lo | 2).ok());
  ExpectFault(MakeSid(5, 0), 0, Access::kRead, FaultReason::kRootReserved);
  ASSERT_TRUE(
      env_->mem->Store64(rt + 6 * 16, RootEntry::Make(1ull << 40).lo).ok());
  ExpectFault(MakeSid(6, 0), 0, Access::kRead,
              FaultReason::kContextTableAccess);

  // Root table pointer itself outside memory (SRTP with TE kept).
  RegisterIo io(env_->hw.get());
  ASSERT_TRUE(io.SetRootTable(uint64_t{1} << 40).ok());
  ASSERT_TRUE(io.InvalidateContextGlobal().ok());
  ASSERT_TRUE(io.InvalidateIotlbGlobal().ok());
  ExpectFault(kSid, 0x1000, Access::kRead, FaultReason::kRootTableAccess);
}

TEST_F(HardwareTest, FaultRecordOverflowAndFpd) {
  for (int i = 0; i < kNumFaultRecords + 2; ++i) {
    EXPECT_EQ(env_->hw->Translate(MakeSid(9, 0), 0, Access::kRead).fault,
              FaultReason::kRootNotPresent);
  }
  uint64_t fsts = 0;
  ASSERT_TRUE(env_->hw->Read({}, RegOffset(Reg::kFsts), 4, &fsts).ok());
  EXPECT_NE(fsts & fsts::kPfo, 0u);
  for (int i = 0; i < kNumFaultRecords; ++i) EXPECT_TRUE(Record(i).fault());
  for (int i = 0; i < kNumFaultRecords; ++i) ClearRecord(i);
  ASSERT_TRUE(env_->hw->Write({}, RegOffset(Reg::kFsts), 4, fsts::kPfo).ok());
  ASSERT_TRUE(env_->hw->Read({}, RegOffset(Reg::kFsts), 4, &fsts).ok());
  EXPECT_EQ(fsts & (fsts::kPfo | fsts::kPpf), 0u);

  // FPD: the fault still blocks the DMA but is not recorded.
  const uint16_t did = *driver_->CreateDomain(3);
  ASSERT_TRUE(driver_->Attach(kSid, did).ok());
  const uint64_t lo = *env_->mem->Load64(ContextSlot(kSid));
  ASSERT_TRUE(
      env_->mem->Store64(ContextSlot(kSid), lo | ContextEntry::kFpd).ok());
  EXPECT_EQ(env_->hw->Translate(kSid, 0x1000, Access::kRead).fault,
            FaultReason::kReadNotPermitted);
  ASSERT_TRUE(env_->hw->Read({}, RegOffset(Reg::kFsts), 4, &fsts).ok());
  EXPECT_EQ(fsts & fsts::kPpf, 0u);
  EXPECT_GE(env_->hw->stats().faults, uint64_t{kNumFaultRecords + 3});
}

TEST_F(HardwareTest, SuperpagesAtEveryLevel) {
  const uint16_t did = *driver_->CreateDomain(5);
  ASSERT_TRUE(driver_->Attach(kSid, did).ok());
  struct Case {
    uint64_t iova, hpa, size;
  } cases[] = {
      {uint64_t{1} << 21, 0x200000, uint64_t{1} << 21},  // level 2
      {uint64_t{1} << 30, 0, uint64_t{1} << 30},         // level 3
      {uint64_t{1} << 39, 0, uint64_t{1} << 39},         // level 4
  };
  for (const Case& c : cases) {
    ASSERT_TRUE(driver_->Map(did, c.iova, c.hpa, c.size, kPermRW).ok());
    const Translation t =
        env_->hw->Translate(kSid, c.iova + 0x1234, Access::kRead);
    ASSERT_EQ(t.fault, FaultReason::kNone);
    EXPECT_EQ(t.page_size, c.size);
    EXPECT_EQ(t.hpa, c.hpa + 0x1234);
    const uint32_t word = 0xfeedf00d;
    ASSERT_TRUE(env_->hw->DmaWrite(kSid, c.iova + 0x2000, &word, 4).ok());
    EXPECT_EQ(*env_->mem->Load64(c.hpa + 0x2000) & 0xffffffff, word);
    // The mapping is one PS entry: splitting it is refused.
    EXPECT_EQ(driver_->Unmap(did, c.iova, kPageSize).code(),
              absl::StatusCode::kInvalidArgument);
  }
  // 4-level domain: 512 GiB page at the top level.
  const uint16_t did4 = *driver_->CreateDomain(4);
  const uint16_t sid4 = MakeSid(7, 7);
  ASSERT_TRUE(driver_->Attach(sid4, did4).ok());
  ASSERT_TRUE(
      driver_->Map(did4, uint64_t{1} << 39, 0, uint64_t{1} << 39, kPermR).ok());
  const Translation t =
      env_->hw->Translate(sid4, (uint64_t{1} << 39) + 8, Access::kRead);
  EXPECT_EQ(t.page_size, uint64_t{1} << 39);
  EXPECT_EQ(t.hpa, 8u);
}

TEST_F(HardwareTest, IotlbAndContextCacheStaleUntilInvalidated) {
  const uint16_t did = *driver_->CreateDomain(4);
  ASSERT_TRUE(driver_->Attach(kSid, did).ok());
  ASSERT_TRUE(driver_->Map(did, 0x7000, 0x100000, 0x1000, kPermRW).ok());
  EXPECT_EQ(env_->hw->Translate(kSid, 0x7000, Access::kRead).hpa, 0x100000u);
  const auto hits0 = env_->hw->stats().iotlb_hits;
  EXPECT_EQ(env_->hw->Translate(kSid, 0x7000, Access::kRead).hpa, 0x100000u);
  EXPECT_EQ(env_->hw->stats().iotlb_hits, hits0 + 1);

  // Rewrite the PTE behind the hardware's back: the IOTLB keeps the old one.
  const uint64_t slpt =
      ContextEntry{*env_->mem->Load64(ContextSlot(kSid)), 0}.slptptr();
  uint64_t table = slpt;
  for (int level = 4; level > 1; --level) {
    table =
        *env_->mem->Load64(table + LevelIndex(0x7000, level) * 8) & kAddrMask;
  }
  const uint64_t pte_addr = table + LevelIndex(0x7000, 1) * 8;
  ASSERT_TRUE(env_->mem->Store64(pte_addr, 0x200000 | kPermRW).ok());
  EXPECT_EQ(env_->hw->Translate(kSid, 0x7000, Access::kRead).hpa, 0x100000u);
  RegisterIo io(env_->hw.get());
  ASSERT_TRUE(io.InvalidateIotlbRange(did, 0x7000, 0x1000).ok());
  EXPECT_EQ(env_->hw->Translate(kSid, 0x7000, Access::kRead).hpa, 0x200000u);

  // Other domain's invalidation does not help; domain-selective does.
  ASSERT_TRUE(env_->mem->Store64(pte_addr, 0x300000 | kPermRW).ok());
  ASSERT_TRUE(io.InvalidateIotlbDomain(did + 1).ok());
  EXPECT_EQ(env_->hw->Translate(kSid, 0x7000, Access::kRead).hpa, 0x200000u);
  ASSERT_TRUE(io.InvalidateIotlbDomain(did).ok());
  EXPECT_EQ(env_->hw->Translate(kSid, 0x7000, Access::kRead).hpa, 0x300000u);

  // Clear the context entry without flushing: still translates (cached).
  ASSERT_TRUE(env_->mem->Store64(ContextSlot(kSid), 0).ok());
  EXPECT_EQ(env_->hw->Translate(kSid, 0x7000, Access::kRead).fault,
            FaultReason::kNone);
  ASSERT_TRUE(io.InvalidateContextDevice(kSid, did).ok());
  ASSERT_TRUE(io.InvalidateIotlbDomain(did).ok());
  EXPECT_EQ(env_->hw->Translate(kSid, 0x7000, Access::kRead).fault,
            FaultReason::kContextNotPresent);
}

TEST_F(HardwareTest, TranslationDisabledPassesThrough) {
  RegisterIo io(env_->hw.get());
  ASSERT_TRUE(io.SetTranslation(false).ok());
  const Translation t =
      env_->hw->Translate(MakeSid(9, 9), 0x123456, Access::kWrite);
  EXPECT_EQ(t.fault, FaultReason::kNone);
  EXPECT_EQ(t.hpa, 0x123456u);
  // SRTP keeps TE as GSTS reports it (off here, on below).
  ASSERT_TRUE(io.SetRootTable(driver_->root_table()).ok());
  EXPECT_EQ(*io.Read32(Reg::kGsts) & gsts::kTes, 0u);
  ASSERT_TRUE(io.SetTranslation(true).ok());
  ASSERT_TRUE(io.SetRootTable(driver_->root_table()).ok());
  EXPECT_NE(*io.Read32(Reg::kGsts) & gsts::kTes, 0u);
}

}  // namespace
}  // namespace iommu

namespace iommu {
namespace {

// The process split of DESIGN §2: the hardware reads tables through its own
// mapping of the memfd (hwsim), the driver writes through another (hvd).
TEST(SplitProcessTest, DriverAndHardwareOnSeparateMappings) {
  auto hwsim_mem = *PhysMemory::Create(4 << 20);
  auto hvd_mem = *PhysMemory::FromFd(hwsim_mem->fd(), 4 << 20);
  IommuHardware hw(hwsim_mem.get());
  auto pool = *PageAllocator::Create(hvd_mem.get(), 2 << 20, 1 << 20);
  auto drv = IommuDriver::Create(hvd_mem.get(), &hw, pool.get());
  ASSERT_TRUE(drv.ok()) << drv.status();
  const uint16_t did = *(*drv)->CreateDomain(3);
  ASSERT_TRUE((*drv)->Attach(kSid, did).ok());
  ASSERT_TRUE((*drv)->Map(did, 0x5000, 0x9000, 0x1000, kPermW).ok());
  const uint64_t v = 0xabcdef;
  ASSERT_TRUE(hw.DmaWrite(kSid, 0x5008, &v, sizeof(v)).ok());
  EXPECT_EQ(*hvd_mem->Load64(0x9008), v);
  ASSERT_TRUE((*drv)->Unmap(did, 0x5000, 0x1000).ok());
  EXPECT_EQ(hw.DmaWrite(kSid, 0x5008, &v, sizeof(v)).code(),
            absl::StatusCode::kPermissionDenied);
}

}  // namespace
}  // namespace iommu
