// Delivery semantics: priority order, PMR masking, group enables,
// preemption with active priorities, EOImode 0/1, level vs edge, routing by
// IROUTER, SGIs between vCPUs, the IRQ line output.
#include "gtest/gtest.h"
#include "vgic/vgic_test_util.h"

namespace vgic {
namespace {

using DeliveryTest = VgicTest;

TEST_F(DeliveryTest, EdgeSpiIsDeliveredOnceAndLineFollows) {
  EnableAll();
  SetupSpi(40, 0x80, 1, /*edge=*/true);
  EXPECT_FALSE(lines_[1].load());
  ASSERT_TRUE(Pulse(40).ok());
  EXPECT_TRUE(lines_[1].load());
  EXPECT_TRUE(gic_->IrqLine(1));
  EXPECT_FALSE(lines_[0].load());
  EXPECT_EQ(Ack(0), kSpuriousIntid);  // routed to vCPU 1, not 0
  EXPECT_EQ(Icc(1, IccReg::kHppir1), 40u);
  EXPECT_EQ(Ack(1), 40u);
  EXPECT_FALSE(lines_[1].load());
  EXPECT_EQ(Icc(1, IccReg::kRpr), 0x80u);
  EXPECT_EQ(Ack(1), kSpuriousIntid);
  Eoi(1, 40);
  EXPECT_EQ(Icc(1, IccReg::kRpr), kIdlePriority);
  EXPECT_EQ(Ack(1), kSpuriousIntid);
  // Active bit was cleared by EOImode 0.
  EXPECT_EQ(
      Gicd(static_cast<uint64_t>(GicdReg::kIsactiver) + 4) & (1u << (40 - 32)),
      0u);
}

TEST_F(DeliveryTest, PriorityOrderAndTieBreakByIntid) {
  EnableAll();
  SetupSpi(50, 0x40, 0, true);
  SetupSpi(45, 0x40, 0, true);
  SetupSpi(60, 0x20, 0, true);
  SetupSpi(33, 0x90, 0, true);
  for (uint32_t i : {50u, 45u, 60u, 33u}) ASSERT_TRUE(Pulse(i).ok());
  // Drop priority after each so the next (lower priority) one can preempt
  // nothing and is acknowledged in order.
  std::vector<uint32_t> order;
  for (int i = 0; i < 4; ++i) {
    uint32_t id = Ack(0);
    order.push_back(id);
    Eoi(0, id);
  }
  EXPECT_EQ(order, (std::vector<uint32_t>{60, 45, 50, 33}));
}

TEST_F(DeliveryTest, PmrMasksAndUnmasks) {
  EnableAll();
  SetupSpi(40, 0x80, 0, true);
  SetIcc(0, IccReg::kPmr, 0x80);  // priority must be < PMR
  ASSERT_TRUE(Pulse(40).ok());
  EXPECT_FALSE(lines_[0].load());
  EXPECT_EQ(Icc(0, IccReg::kHppir1), 40u);  // HPPIR ignores PMR
  EXPECT_EQ(Ack(0), kSpuriousIntid);
  SetIcc(0, IccReg::kPmr, 0x88);
  EXPECT_TRUE(lines_[0].load());
  EXPECT_EQ(Ack(0), 40u);
}

TEST_F(DeliveryTest, PriorityChangesWhilePendingMoveTheLine) {
  EnableAll();
  SetIcc(1, IccReg::kPmr, 0x80);
  SetupSpi(40, 0xa0, 1, true);
  SetupPrivate(1, 21, 0xa0);
  ASSERT_TRUE(Pulse(40).ok());
  ASSERT_TRUE(PulsePpiOk(1, 21).ok());
  EXPECT_FALSE(lines_[1].load());  // both masked by PMR
  Write(gic_->distributor(), static_cast<uint64_t>(GicdReg::kIpriorityr) + 40,
        1, 0x70);
  EXPECT_TRUE(lines_[1].load());
  Write(gic_->distributor(), static_cast<uint64_t>(GicdReg::kIpriorityr) + 40,
        1, 0x90);
  EXPECT_FALSE(lines_[1].load());
  Write(gic_->redistributors(),
        SgiOff(1, static_cast<uint64_t>(GicrSgiReg::kIpriorityr) + 21), 1,
        0x10);
  EXPECT_TRUE(lines_[1].load());
  EXPECT_EQ(Ack(1), 21u);
  EXPECT_FALSE(lines_[1].load());
  Eoi(1, 21);
  EXPECT_FALSE(lines_[1].load());
  // Disabling / enabling a pending SPI moves the line too.
  Write(gic_->distributor(), static_cast<uint64_t>(GicdReg::kIpriorityr) + 40,
        1, 0x10);
  EXPECT_TRUE(lines_[1].load());
  SetGicd(static_cast<uint64_t>(GicdReg::kIcenabler) + 4, 1u << 8);
  EXPECT_FALSE(lines_[1].load());
  SetGicd(static_cast<uint64_t>(GicdReg::kIsenabler) + 4, 1u << 8);
  EXPECT_TRUE(lines_[1].load());
  EXPECT_EQ(Ack(1), 40u);
  Eoi(1, 40);
}

TEST_F(DeliveryTest, GroupEnablesGateDelivery) {
  SetupSpi(40, 0x80, 0, true);
  SetIcc(0, IccReg::kPmr, 0xff);
  ASSERT_TRUE(Pulse(40).ok());
  EXPECT_EQ(Ack(0), kSpuriousIntid);  // IGRPEN1 = 0, GICD_CTLR = 0
  SetIcc(0, IccReg::kIgrpen1, 1);
  EXPECT_EQ(Ack(0), kSpuriousIntid);  // GICD_CTLR.EnableGrp1 = 0
  EXPECT_FALSE(lines_[0].load());
  SetGicd(GicdReg::kCtlr, kGicdCtlrEnableGrp1);
  EXPECT_TRUE(lines_[0].load());
  // Group 0 interrupts are never signalled through IAR1.
  SetGicd(static_cast<uint64_t>(GicdReg::kIgroupr) + 4, 0);
  EXPECT_FALSE(lines_[0].load());
  EXPECT_EQ(Icc(0, IccReg::kHppir1), kSpuriousIntid);
  SetGicd(static_cast<uint64_t>(GicdReg::kIgroupr) + 4, 0xffffffff);
  EXPECT_EQ(Ack(0), 40u);
}

TEST_F(DeliveryTest, PreemptionUsesGroupPriorityAndActivePriorities) {
  EnableAll();
  SetupSpi(40, 0x80, 0, true);
  SetupSpi(41, 0x40, 0, true);
  SetupSpi(42, 0x48, 0, true);
  ASSERT_TRUE(Pulse(40).ok());
  EXPECT_EQ(Ack(0), 40u);
  ASSERT_TRUE(Pulse(41).ok());
  EXPECT_TRUE(lines_[0].load());  // 0x40 preempts running 0x80
  EXPECT_EQ(Ack(0), 41u);
  EXPECT_EQ(Icc(0, IccReg::kRpr), 0x40u);
  EXPECT_EQ(Icc(0, IccReg::kAp1r0), (1u << (0x80 >> 3)) | (1u << (0x40 >> 3)));
  ASSERT_TRUE(Pulse(42).ok());
  EXPECT_FALSE(lines_[0].load());  // 0x48 does not preempt 0x40
  EXPECT_EQ(Ack(0), kSpuriousIntid);
  Eoi(0, 41);
  EXPECT_EQ(Icc(0, IccReg::kRpr), 0x80u);
  EXPECT_EQ(Ack(0), 42u);  // 0x48 preempts 0x80
  Eoi(0, 42);
  Eoi(0, 40);
  EXPECT_EQ(Icc(0, IccReg::kRpr), kIdlePriority);
  EXPECT_EQ(Icc(0, IccReg::kAp1r0), 0u);

  // With BPR1 = 6, group priority is [7:6]: 0x48 no longer preempts 0x40.
  SetIcc(0, IccReg::kBpr1, 6);
  EXPECT_EQ(Icc(0, IccReg::kBpr1), 6u);
  ASSERT_TRUE(Pulse(42).ok());
  EXPECT_EQ(Ack(0), 42u);  // group 0x40
  ASSERT_TRUE(Pulse(41).ok());
  EXPECT_EQ(Ack(0), kSpuriousIntid);  // group 0x40 is not < 0x40
  Eoi(0, 42);
  EXPECT_EQ(Ack(0), 41u);
  Eoi(0, 41);
}

TEST_F(DeliveryTest, EoiModeOneSplitsPriorityDropAndDeactivation) {
  EnableAll();
  SetIcc(0, IccReg::kCtlr, kIccCtlrEoimode);
  EXPECT_EQ(Icc(0, IccReg::kCtlr) & kIccCtlrEoimode, kIccCtlrEoimode);
  SetupSpi(40, 0x80, 0, true);
  ASSERT_TRUE(Pulse(40).ok());
  EXPECT_EQ(Ack(0), 40u);
  Eoi(0, 40);  // priority drop only
  EXPECT_EQ(Icc(0, IccReg::kRpr), kIdlePriority);
  const uint64_t active = static_cast<uint64_t>(GicdReg::kIsactiver) + 4;
  EXPECT_NE(Gicd(active) & (1u << 8), 0u);
  // Still active: a new edge makes it active+pending, not deliverable.
  ASSERT_TRUE(Pulse(40).ok());
  EXPECT_EQ(Ack(0), kSpuriousIntid);
  SetIcc(0, IccReg::kDir, 40);
  EXPECT_EQ(Gicd(active) & (1u << 8), 0u);
  EXPECT_EQ(Ack(0), 40u);
  // DIR is ignored with EOImode 0.
  Eoi(0, 40);
  SetIcc(0, IccReg::kCtlr, 0);
  ASSERT_TRUE(Pulse(40).ok());
  EXPECT_EQ(Ack(0), kSpuriousIntid);  // still active from before
  SetIcc(0, IccReg::kDir, 40);
  EXPECT_NE(Gicd(active) & (1u << 8), 0u);
}

TEST_F(DeliveryTest, LevelVersusEdge) {
  EnableAll();
  SetupSpi(40, 0x80, 0, /*edge=*/false);
  SetupSpi(41, 0x80, 0, /*edge=*/true);
  // Level: pending while asserted, re-pends after EOI if still asserted.
  ASSERT_TRUE(gic_->SetSpiLevel(40, true).ok());
  EXPECT_EQ(Ack(0), 40u);
  Eoi(0, 40);
  EXPECT_EQ(Ack(0), 40u);
  ASSERT_TRUE(gic_->SetSpiLevel(40, false).ok());
  Eoi(0, 40);
  EXPECT_EQ(Ack(0), kSpuriousIntid);
  // Level deasserted before acknowledge: no interrupt.
  ASSERT_TRUE(gic_->SetSpiLevel(40, true).ok());
  EXPECT_TRUE(lines_[0].load());
  ASSERT_TRUE(gic_->SetSpiLevel(40, false).ok());
  EXPECT_FALSE(lines_[0].load());
  EXPECT_EQ(Ack(0), kSpuriousIntid);
  // Edge: a rising edge latches; holding the line does not re-pend.
  ASSERT_TRUE(gic_->SetSpiLevel(41, true).ok());
  ASSERT_TRUE(gic_->SetSpiLevel(41, false).ok());
  EXPECT_EQ(Ack(0), 41u);
  Eoi(0, 41);
  EXPECT_EQ(Ack(0), kSpuriousIntid);
  ASSERT_TRUE(gic_->SetSpiLevel(41, true).ok());
  EXPECT_EQ(Ack(0), 41u);
  Eoi(0, 41);
  EXPECT_EQ(Ack(0), kSpuriousIntid);  // line still high, no new edge
  ASSERT_TRUE(gic_->SetSpiLevel(41, false).ok());
}

TEST_F(DeliveryTest, IrouterRoutesAndReroutesPendingSpi) {
  EnableAll();
  SetupSpi(40, 0x80, 2, true);
  auto t = gic_->SpiTargetVcpu(40);
  ASSERT_TRUE(t.ok());
  EXPECT_EQ(*t, 2u);
  ASSERT_TRUE(Pulse(40).ok());
  EXPECT_TRUE(lines_[2].load());
  // Re-route while pending: the line moves.
  Write(gic_->distributor(), static_cast<uint64_t>(GicdReg::kIrouter) + 8 * 40,
        8, Vgic::VcpuMpidr(3));
  EXPECT_FALSE(lines_[2].load());
  EXPECT_TRUE(lines_[3].load());
  // An affinity no vCPU has: nobody gets it, the route query says so.
  Write(gic_->distributor(), static_cast<uint64_t>(GicdReg::kIrouter) + 8 * 40,
        8, 0x0f0f);
  EXPECT_FALSE(lines_[3].load());
  EXPECT_EQ(gic_->SpiTargetVcpu(40).status().code(),
            absl::StatusCode::kNotFound);
  for (uint32_t v = 0; v < 4; ++v) EXPECT_EQ(Ack(v), kSpuriousIntid);
  Write(gic_->distributor(), static_cast<uint64_t>(GicdReg::kIrouter) + 8 * 40,
        8, Vgic::VcpuMpidr(1));
  EXPECT_EQ(Ack(1), 40u);
}

TEST_F(DeliveryTest, SgisBetweenVcpus) {
  EnableAll();
  for (uint32_t v = 0; v < 4; ++v) SetupPrivate(v, 3, 0x20);
  // TargetList {1, 3}, Aff1..3 = 0, INTID 3, sent by vCPU 0.
  SetIcc(0, IccReg::kSgi1r, (3ull << 24) | 0b1010);
  EXPECT_FALSE(lines_[0].load());
  EXPECT_TRUE(lines_[1].load());
  EXPECT_FALSE(lines_[2].load());
  EXPECT_TRUE(lines_[3].load());
  EXPECT_EQ(Ack(1), 3u);
  EXPECT_EQ(Ack(3), 3u);
  Eoi(1, 3);
  Eoi(3, 3);
  // IRM: everyone but the sender.
  SetIcc(2, IccReg::kSgi1r, kSgi1rIrm | (3ull << 24));
  EXPECT_EQ(Ack(0), 3u);
  EXPECT_EQ(Ack(1), 3u);
  EXPECT_EQ(Ack(2), kSpuriousIntid);
  EXPECT_EQ(Ack(3), 3u);
  // RS = 1 names Aff0 16..31: no such vCPU here.
  SetIcc(0, IccReg::kSgi1r, (1ull << 44) | (3ull << 24) | 0xffff);
  EXPECT_EQ(Icc(2, IccReg::kHppir1), kSpuriousIntid);
}

TEST_F(DeliveryTest, SgiTargetsAboveSixteenVcpusUseAff1) {
  Make(40, 32);
  EnableAll();
  SetupPrivate(37, 5, 0x10);
  // vCPU 37 = Aff1 2, Aff0 5.
  EXPECT_EQ(Vgic::VcpuMpidr(37), 0x205u);
  SetIcc(0, IccReg::kSgi1r, (2ull << 16) | (5ull << 24) | (1u << 5));
  EXPECT_EQ(Ack(37), 5u);
  EXPECT_EQ(gic_->VcpuForMpidr(0x205), 37u);
  EXPECT_EQ(gic_->VcpuForMpidr(0x305), kNoVcpu);
}

TEST_F(DeliveryTest, PpiLevelAndPerVcpuBanking) {
  EnableAll();
  SetupPrivate(1, 27, 0x30);
  ASSERT_TRUE(gic_->SetPpiLevel(1, 27, true).ok());
  EXPECT_TRUE(lines_[1].load());
  EXPECT_FALSE(lines_[0].load());
  EXPECT_EQ(Ack(0), kSpuriousIntid);
  EXPECT_EQ(Ack(1), 27u);
  ASSERT_TRUE(gic_->SetPpiLevel(1, 27, false).ok());
  Eoi(1, 27);
  EXPECT_EQ(Ack(1), kSpuriousIntid);
  EXPECT_FALSE(gic_->SetPpiLevel(1, 5, true).ok());   // an SGI
  EXPECT_FALSE(gic_->SetPpiLevel(9, 27, true).ok());  // no such vCPU
}

TEST_F(DeliveryTest, SpiToPrivateAndLpiPriorityMix) {
  EnableAll();
  SetupPrivate(0, 20, 0x50);
  SetupSpi(70, 0x30, 0, true);
  ASSERT_TRUE(PulsePpiOk(0, 20).ok());
  ASSERT_TRUE(Pulse(70).ok());
  EXPECT_EQ(Ack(0), 70u);
  EXPECT_EQ(Ack(0), kSpuriousIntid);  // 0x50 does not preempt 0x30
  Eoi(0, 70);
  EXPECT_EQ(Ack(0), 20u);
  Eoi(0, 20);
}

}  // namespace
}  // namespace vgic
