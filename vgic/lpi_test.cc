// LPIs: configuration cache refreshed only by invalidation, pending-table
// scan on enable (PTZ), write-back on disable, the 1-bit pending latch, the
// LpiSink contract the ITS uses, the shared pending bitmap, and table
// addresses outside guest RAM.
#include <sys/mman.h>

#include "gtest/gtest.h"
#include "vgic/vgic_test_util.h"

namespace vgic {
namespace {

constexpr uint64_t kPropPa = 0x100000;  // config table, 2^16 - 8192 bytes
constexpr uint64_t kPendPa = 0x200000;  // pending tables, 64 KiB apart
constexpr uint32_t kIdBits = 16;

class LpiTest : public VgicTest {
 protected:
  void SetUp() override {
    VgicTest::SetUp();
    EnableAll();
  }
  uint64_t PendPa(uint32_t v) { return kPendPa + v * 0x10000; }
  void SetConfig(uint32_t intid, uint8_t cfg) {
    ASSERT_TRUE(mem_->WriteObj<uint8_t>(kPropPa + intid - kFirstLpi, cfg).ok());
  }
  void Program(uint32_t v, bool ptz = true) {
    SetGicr(v, GicrReg::kPropbaser, kPropPa | (kIdBits - 1), 8);
    SetGicr(v, GicrReg::kPendbaser, PendPa(v) | (ptz ? kPendbaserPtz : 0), 8);
  }
  void EnableLpis(uint32_t v, bool ptz = true) {
    Program(v, ptz);
    SetGicr(v, GicrReg::kCtlr, kGicrCtlrEnableLpis);
    ASSERT_TRUE(gic_->LpisEnabled(v));
  }
  bool TableBit(uint32_t v, uint32_t intid) {
    auto b = mem_->ReadObj<uint8_t>(PendPa(v) + intid / 8);
    EXPECT_TRUE(b.ok());
    return (*b >> (intid % 8)) & 1;
  }
};

TEST_F(LpiTest, ConfigChangesTakeEffectOnlyAfterInvalidation) {
  SetConfig(8200, 0xa0);  // priority 0xa0, disabled
  EnableLpis(0);
  EXPECT_TRUE(gic_->SetPending(0, 8200));
  EXPECT_FALSE(lines_[0].load());
  EXPECT_EQ(Ack(0), kSpuriousIntid);
  // The guest enables it in memory: nothing changes until INV.
  SetConfig(8200, 0xa1);
  EXPECT_EQ(Ack(0), kSpuriousIntid);
  auto cfg = gic_->ReadConfigByte(0, 8200);
  ASSERT_TRUE(cfg.ok()) << cfg.status();
  EXPECT_EQ(*cfg, 0xa1);
  EXPECT_FALSE(lines_[0].load());
  gic_->ApplyConfigByte(8200, *cfg);
  EXPECT_TRUE(lines_[0].load());
  EXPECT_EQ(Icc(0, IccReg::kHppir1), 8200u);
  // Disabling in memory: still delivered until INVALL.
  SetConfig(8200, 0xa0);
  EXPECT_TRUE(lines_[0].load());
  ASSERT_TRUE(gic_->InvalidateAll(0).ok());
  EXPECT_FALSE(lines_[0].load());
  SetConfig(8200, 0x41);
  ASSERT_TRUE(gic_->InvalidateAll(0).ok());
  EXPECT_EQ(Ack(0), 8200u);
  EXPECT_EQ(Icc(0, IccReg::kRpr), 0x40u);
  Eoi(0, 8200);
  EXPECT_EQ(Icc(0, IccReg::kRpr), kIdlePriority);
  EXPECT_FALSE(gic_->IsPending(0, 8200));
}

TEST_F(LpiTest, OnePendingBitLatch) {
  SetConfig(9000, 0x81);
  EnableLpis(1);
  EXPECT_TRUE(gic_->SetPending(1, 9000));
  EXPECT_FALSE(gic_->SetPending(1, 9000));  // coalesced
  EXPECT_TRUE(gic_->IsPending(1, 9000));
  EXPECT_EQ(Ack(1), 9000u);
  EXPECT_FALSE(gic_->IsPending(1, 9000));
  Eoi(1, 9000);
  EXPECT_EQ(Ack(1), kSpuriousIntid);  // two injections, one delivery
  // LPIs have no active state: pending again right after acknowledge.
  EXPECT_TRUE(gic_->SetPending(1, 9000));
  EXPECT_EQ(Ack(1), 9000u);
  EXPECT_TRUE(gic_->SetPending(1, 9000));
  EXPECT_EQ(Ack(1), kSpuriousIntid);  // same priority does not preempt
  Eoi(1, 9000);
  EXPECT_EQ(Ack(1), 9000u);
  Eoi(1, 9000);
}

TEST_F(LpiTest, PriorityOrderAmongLpisAndOtherInterrupts) {
  SetConfig(8192, 0x61);
  SetConfig(10000, 0x21);
  SetConfig(12345, 0x21);
  EnableLpis(0);
  SetupSpi(40, 0x40, 0, true);
  EXPECT_TRUE(gic_->SetPending(0, 8192));
  EXPECT_TRUE(gic_->SetPending(0, 12345));
  EXPECT_TRUE(gic_->SetPending(0, 10000));
  ASSERT_TRUE(Pulse(40).ok());
  std::vector<uint32_t> order;
  for (uint32_t id; (id = Ack(0)) != kSpuriousIntid;) {
    order.push_back(id);
    Eoi(0, id);
  }
  EXPECT_EQ(order, (std::vector<uint32_t>{10000, 12345, 40, 8192}));
}

TEST_F(LpiTest, PendingTableScannedOnEnableUnlessPtz) {
  SetConfig(8300, 0x81);
  SetConfig(16000, 0x81);
  // Guest-prepared pending table for vCPU 2 with two bits set.
  for (uint32_t id : {8300u, 16000u}) {
    ASSERT_TRUE(
        mem_->WriteObj<uint8_t>(PendPa(2) + id / 8, uint8_t(1u << (id % 8)))
            .ok());
  }
  EnableLpis(2, /*ptz=*/false);
  EXPECT_TRUE(gic_->IsPending(2, 8300));
  EXPECT_TRUE(gic_->IsPending(2, 16000));
  EXPECT_TRUE(lines_[2].load());
  // Same table on vCPU 3 but PTZ = 1: the table is not read.
  for (uint32_t id : {8300u, 16000u}) {
    ASSERT_TRUE(
        mem_->WriteObj<uint8_t>(PendPa(3) + id / 8, uint8_t(1u << (id % 8)))
            .ok());
  }
  EnableLpis(3, /*ptz=*/true);
  EXPECT_FALSE(gic_->IsPending(3, 8300));
  EXPECT_FALSE(lines_[3].load());
}

TEST_F(LpiTest, DisableWritesPendingStateBack) {
  SetConfig(8400, 0x80);  // disabled, stays pending
  SetConfig(9999, 0x80);
  EnableLpis(1);
  ASSERT_TRUE(mem_->WriteObj<uint8_t>(PendPa(1) + 8500 / 8, 0xff).ok());
  EXPECT_TRUE(gic_->SetPending(1, 8400));
  EXPECT_TRUE(gic_->SetPending(1, 9999));
  SetGicr(1, GicrReg::kCtlr, 0);
  EXPECT_FALSE(gic_->LpisEnabled(1));
  EXPECT_EQ(Gicr(1, GicrReg::kCtlr), 0u);
  EXPECT_TRUE(TableBit(1, 8400));
  EXPECT_TRUE(TableBit(1, 9999));
  EXPECT_FALSE(TableBit(1, 8500));  // stale guest bits overwritten
  EXPECT_FALSE(gic_->IsPending(1, 8400));
  // While disabled, LPIs cannot become pending.
  EXPECT_FALSE(gic_->SetPending(1, 8400));
  EXPECT_FALSE(gic_->IsPending(1, 8400));
  // Re-enable with PTZ = 0 reloads them.
  EnableLpis(1, /*ptz=*/false);
  EXPECT_TRUE(gic_->IsPending(1, 8400));
  EXPECT_TRUE(gic_->IsPending(1, 9999));
}

TEST_F(LpiTest, TableRegistersAreReadOnlyWhileEnabled) {
  EnableLpis(0);
  SetGicr(0, GicrReg::kPropbaser, 0x300000 | 15, 8);
  SetGicr(0, GicrReg::kPendbaser, 0x310000, 8);
  EXPECT_EQ(Gicr(0, GicrReg::kPropbaser, 8), kPropPa | (kIdBits - 1));
  EXPECT_EQ(Gicr(0, GicrReg::kPendbaser, 8), PendPa(0));
}

TEST_F(LpiTest, TablesOutsideGuestRamAreRejected) {
  uint64_t v;
  hv::MmioDevice& r = gic_->redistributors();
  // Configuration table beyond RAM.
  SetGicr(0, GicrReg::kPropbaser, (kRamSize - 0x1000) | (kIdBits - 1), 8);
  SetGicr(0, GicrReg::kPendbaser, PendPa(0), 8);
  absl::Status s = r.Write({0, 0}, RdOff(0, 0), 4, kGicrCtlrEnableLpis);
  EXPECT_EQ(s.code(), absl::StatusCode::kOutOfRange) << s;
  EXPECT_FALSE(gic_->LpisEnabled(0));
  // Pending table far outside RAM (and with a huge address).
  SetGicr(0, GicrReg::kPropbaser, kPropPa | (kIdBits - 1), 8);
  SetGicr(0, GicrReg::kPendbaser, 0x000fffffffff0000ull, 8);
  s = r.Write({0, 0}, RdOff(0, 0), 4, kGicrCtlrEnableLpis);
  EXPECT_EQ(s.code(), absl::StatusCode::kOutOfRange) << s;
  EXPECT_FALSE(gic_->LpisEnabled(0));
  ASSERT_TRUE(r.Read({0, 0}, RdOff(0, 0), 4, &v).ok());
  EXPECT_EQ(v, 0u);
  // PROPBASER.IDbits beyond what the GIC implements is capped, so a table
  // that fits the implemented range is accepted.
  SetGicr(0, GicrReg::kPropbaser, kPropPa | 31, 8);
  SetGicr(0, GicrReg::kPendbaser, PendPa(0), 8);
  EXPECT_TRUE(r.Write({0, 0}, RdOff(0, 0), 4, kGicrCtlrEnableLpis).ok());
  EXPECT_TRUE(gic_->LpisEnabled(0));
}

TEST_F(LpiTest, PropbaserIdbitsLimitsTheLpiRange) {
  SetConfig(9000, 0x81);
  // IDbits = 13 → 14 INTID bits → LPIs 8192..16383 only.
  SetGicr(0, GicrReg::kPropbaser, kPropPa | 13, 8);
  SetGicr(0, GicrReg::kPendbaser, PendPa(0), 8);
  SetGicr(0, GicrReg::kCtlr, kGicrCtlrEnableLpis);
  EXPECT_TRUE(gic_->SetPending(0, 9000));
  EXPECT_FALSE(gic_->SetPending(0, 20000));
  EXPECT_EQ(gic_->ReadConfigByte(0, 20000).status().code(),
            absl::StatusCode::kOutOfRange);
  // IDbits < 13: no LPI is in range at all.
  SetGicr(1, GicrReg::kPropbaser, kPropPa | 5, 8);
  SetGicr(1, GicrReg::kPendbaser, PendPa(1), 8);
  SetGicr(1, GicrReg::kCtlr, kGicrCtlrEnableLpis);
  EXPECT_FALSE(gic_->SetPending(1, 8192));
}

TEST_F(LpiTest, ReadConfigByteNeedsEnabledLpis) {
  EXPECT_EQ(gic_->ReadConfigByte(0, 8192).status().code(),
            absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(gic_->InvalidateAll(0).code(),
            absl::StatusCode::kFailedPrecondition);
  EXPECT_FALSE(gic_->ReadConfigByte(7, 8192).ok());
  EnableLpis(0);
  EXPECT_EQ(gic_->ReadConfigByte(0, 100).status().code(),
            absl::StatusCode::kOutOfRange);
  EXPECT_TRUE(gic_->ReadConfigByte(0, 8192).ok());
  EXPECT_EQ(gic_->id_bits(), kIdBits);
  EXPECT_EQ(gic_->num_vcpus(), 4u);
}

TEST_F(LpiTest, MoveAndClearPending) {
  SetConfig(8800, 0x81);
  EnableLpis(0);
  EnableLpis(2);
  EXPECT_TRUE(gic_->SetPending(0, 8800));
  EXPECT_TRUE(lines_[0].load());
  gic_->MovePending(0, 2, 8800);
  EXPECT_FALSE(lines_[0].load());
  EXPECT_TRUE(lines_[2].load());
  EXPECT_FALSE(gic_->IsPending(0, 8800));
  EXPECT_TRUE(gic_->IsPending(2, 8800));
  gic_->MovePending(0, 2, 8800);  // nothing pending on 0: no-op
  EXPECT_TRUE(gic_->IsPending(2, 8800));
  EXPECT_TRUE(gic_->ClearPending(2, 8800));
  EXPECT_FALSE(gic_->ClearPending(2, 8800));
  EXPECT_FALSE(lines_[2].load());
  EXPECT_EQ(Ack(2), kSpuriousIntid);
}

// MOVALL (IHI 0069 §5.3, MOVALL) moves *every* pending LPI of RDbase1,
// whatever made it pending (an ITS, the pending table scanned at enable).
TEST_F(LpiTest, MoveAllPendingMovesEveryLpi) {
  SetConfig(8800, 0x81);
  SetConfig(9000, 0x41);
  SetConfig(8192 + 64 * 7 + 63, 0x21);  // last bit of a word
  EnableLpis(0);
  EnableLpis(2);
  EXPECT_TRUE(gic_->SetPending(0, 8800));
  EXPECT_TRUE(gic_->SetPending(0, 9000));
  EXPECT_TRUE(gic_->SetPending(0, 8192 + 64 * 7 + 63));
  EXPECT_TRUE(gic_->SetPending(2, 8800));  // already pending on 2: coalesces
  EXPECT_TRUE(lines_[0].load());
  gic_->MoveAllPending(0, 2);
  EXPECT_FALSE(lines_[0].load());
  EXPECT_TRUE(lines_[2].load());
  EXPECT_FALSE(gic_->IsPending(0, 8800));
  EXPECT_FALSE(gic_->IsPending(0, 9000));
  EXPECT_EQ(Ack(0), kSpuriousIntid);
  EXPECT_EQ(Ack(2), 8192u + 64 * 7 + 63);  // priority 0x20
  Eoi(2, 8192 + 64 * 7 + 63);
  EXPECT_EQ(Ack(2), 9000u);  // 0x40
  Eoi(2, 9000);
  EXPECT_EQ(Ack(2), 8800u);  // 0x80, once
  Eoi(2, 8800);
  EXPECT_EQ(Ack(2), kSpuriousIntid);
  gic_->MoveAllPending(0, 0);  // same vCPU / out of range: no-op
  gic_->MoveAllPending(0, 99);
}

TEST_F(LpiTest, LpisAreGatedByCpuInterfaceAndDistributorEnables) {
  SetConfig(8800, 0x81);
  EnableLpis(0);
  SetIcc(0, IccReg::kIgrpen1, 0);
  EXPECT_TRUE(gic_->SetPending(0, 8800));
  EXPECT_FALSE(lines_[0].load());
  SetIcc(0, IccReg::kIgrpen1, 1);
  EXPECT_TRUE(lines_[0].load());
  SetIcc(0, IccReg::kPmr, 0x80);
  EXPECT_FALSE(lines_[0].load());
  SetIcc(0, IccReg::kPmr, 0xff);
  SetGicd(GicdReg::kCtlr, 0);
  EXPECT_FALSE(lines_[0].load());
  SetGicd(GicdReg::kCtlr, kGicdCtlrEnableGrp1);
  EXPECT_EQ(Ack(0), 8800u);
}

TEST_F(LpiTest, SharedBitmapProducerAndKick) {
  SetConfig(8999, 0x81);
  EnableLpis(3);
  const LpiPendingLayout& layout = gic_->lpi_pending_layout();
  ASSERT_GE(layout.fd, 0);
  ASSERT_GE(layout.bytes_per_vcpu, (1u << kIdBits) / 8);
  // A second mapping of the memfd stands in for the posted-interrupt
  // producer in another process.
  void* map = mmap(nullptr, layout.bytes_per_vcpu, PROT_READ | PROT_WRITE,
                   MAP_SHARED, layout.fd, static_cast<off_t>(layout.offset(3)));
  ASSERT_NE(map, MAP_FAILED);
  auto* words = static_cast<std::atomic<uint64_t>*>(map);
  const uint32_t k = 8999 / 64;
  words[k].fetch_or(uint64_t{1} << (8999 % 64));
  words[k / 64].fetch_or(uint64_t{1} << (k % 64));
  EXPECT_TRUE(gic_->IsPending(3, 8999));
  EXPECT_FALSE(lines_[3].load());  // nobody told the vGIC yet
  gic_->Kick(3);
  EXPECT_TRUE(lines_[3].load());
  EXPECT_EQ(Ack(3), 8999u);
  EXPECT_EQ(words[k].load() & (uint64_t{1} << (8999 % 64)), 0u);
  Eoi(3, 8999);
  // And the other direction: SetPending is visible through the mapping.
  EXPECT_TRUE(gic_->SetPending(3, 8999));
  EXPECT_NE(words[k].load() & (uint64_t{1} << (8999 % 64)), 0u);
  munmap(map, layout.bytes_per_vcpu);
}

TEST_F(LpiTest, LargestIdBits) {
  Make(2, 32, kMaxLpiIdBits);
  EnableAll();
  const uint32_t top = (1u << kMaxLpiIdBits) - 1;
  // Config table needs 2^19 - 8192 bytes; put it at 1 MiB.
  ASSERT_TRUE(mem_->WriteObj<uint8_t>(kPropPa + top - kFirstLpi, 0x11).ok());
  SetGicr(1, GicrReg::kPropbaser, kPropPa | (kMaxLpiIdBits - 1), 8);
  SetGicr(1, GicrReg::kPendbaser, 0x300000, 8);
  SetGicr(1, GicrReg::kCtlr, kGicrCtlrEnableLpis);
  ASSERT_TRUE(gic_->LpisEnabled(1));
  EXPECT_TRUE(gic_->SetPending(1, top));
  EXPECT_FALSE(gic_->SetPending(1, top + 1));
  EXPECT_EQ(Ack(1), top);
  Eoi(1, top);
}

}  // namespace
}  // namespace vgic
