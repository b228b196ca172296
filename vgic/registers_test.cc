// Register semantics of the GICD, GICR and ICC frames: reset values, RO/WI
// bits, access widths, write-1-to-set/clear, byte-accessible priorities,
// and rejection of bad accesses.
#include "gtest/gtest.h"
#include "vgic/vgic_test_util.h"

namespace vgic {
namespace {

using RegistersTest = VgicTest;

constexpr uint64_t O(GicdReg r) { return static_cast<uint64_t>(r); }
constexpr uint64_t O(GicrSgiReg r) { return static_cast<uint64_t>(r); }

TEST_F(RegistersTest, CreateValidatesConfig) {
  VgicConfig c;
  c.memory = mem_.get();
  c.num_vcpus = 0;
  EXPECT_FALSE(Vgic::Create(c).ok());
  c.num_vcpus = kMaxVcpus + 1;
  EXPECT_FALSE(Vgic::Create(c).ok());
  c.num_vcpus = 1;
  c.num_spis = 48;
  EXPECT_FALSE(Vgic::Create(c).ok());
  c.num_spis = 992;
  EXPECT_FALSE(Vgic::Create(c).ok());
  c.num_spis = 988;
  EXPECT_TRUE(Vgic::Create(c).ok());
  c.lpi_id_bits = 13;
  EXPECT_FALSE(Vgic::Create(c).ok());
  c.lpi_id_bits = 16;
  c.memory = nullptr;
  EXPECT_FALSE(Vgic::Create(c).ok());
}

TEST_F(RegistersTest, DistributorResetValues) {
  EXPECT_EQ(Gicd(GicdReg::kCtlr), kGicdCtlrAre | kGicdCtlrDs);
  const uint32_t typer = Gicd(GicdReg::kTyper);
  EXPECT_EQ(typer & 0x1f, 2u);      // (64 + 32) / 32 - 1
  EXPECT_EQ((typer >> 5) & 7, 3u);  // 4 vCPUs
  EXPECT_NE(typer & kGicdTyperLpis, 0u);
  EXPECT_NE(typer & kGicdTyperMbis, 0u);
  EXPECT_NE(typer & kGicdTyperNo1N, 0u);
  EXPECT_EQ((typer >> kGicdTyperIdbitsShift) & 0x1f, 15u);
  EXPECT_EQ(Gicd(GicdReg::kIidr) & 0xfff, 0x43bu);
  EXPECT_EQ((Gicd(GicdReg::kPidr2) >> 4) & 0xf, 3u);
  // PIDR2 = 0x3b: ArchRev 3, JEDEC = 1, DES_1 = 3 (Arm's JEP106 code 0x3b),
  // the value KVM and the ITS report (Linux and kvm-unit-tests read it).
  EXPECT_EQ(Gicd(GicdReg::kPidr2), 0x3bu);
  EXPECT_EQ(Gicd(O(GicdReg::kIgroupr) + 4), 0xffffffffu);  // SPIs 32..63
  EXPECT_EQ(Gicd(O(GicdReg::kIsenabler) + 4), 0u);
  EXPECT_EQ(Gicd(O(GicdReg::kIspendr) + 4), 0u);
  EXPECT_EQ(Gicd(O(GicdReg::kIsactiver) + 4), 0u);
  EXPECT_EQ(Gicd(O(GicdReg::kIpriorityr) + 32), 0u);
  EXPECT_EQ(Gicd(O(GicdReg::kIcfgr) + 8), 0u);  // SPIs level
  EXPECT_EQ(Read(gic_->distributor(), O(GicdReg::kIrouter) + 8 * 32, 8), 0u);

  Make(1, 988, 19);
  const uint32_t t = Gicd(GicdReg::kTyper);
  EXPECT_EQ(t & 0x1f, 31u);
  EXPECT_EQ((t >> 5) & 7, 0u);
  EXPECT_EQ((t >> kGicdTyperIdbitsShift) & 0x1f, 18u);
}

TEST_F(RegistersTest, DistributorRoBitsAndRazWiRanges) {
  SetGicd(GicdReg::kCtlr, 0);  // ARE/DS are RAO/WI
  EXPECT_EQ(Gicd(GicdReg::kCtlr), kGicdCtlrAre | kGicdCtlrDs);
  SetGicd(GicdReg::kCtlr, 0xffffffff);  // RWP and reserved bits stay 0
  EXPECT_EQ(Gicd(GicdReg::kCtlr), kGicdCtlrAre | kGicdCtlrDs |
                                      kGicdCtlrEnableGrp0 |
                                      kGicdCtlrEnableGrp1);
  const uint32_t typer = Gicd(GicdReg::kTyper);
  SetGicd(GicdReg::kTyper, 0);
  EXPECT_EQ(Gicd(GicdReg::kTyper), typer);
  // INTIDs 0..31 are RAZ/WI in the distributor with ARE = 1.
  SetGicd(GicdReg::kIsenabler, 0xffffffff);
  EXPECT_EQ(Gicd(GicdReg::kIsenabler), 0u);
  SetGicd(GicdReg::kIpriorityr, 0xffffffff);
  EXPECT_EQ(Gicd(GicdReg::kIpriorityr), 0u);
  // SPIs beyond num_spis (64 → INTIDs 32..95) are RAZ/WI.
  SetGicd(O(GicdReg::kIsenabler) + 12, 0xffffffff);
  EXPECT_EQ(Gicd(O(GicdReg::kIsenabler) + 12), 0u);
  Write(gic_->distributor(), O(GicdReg::kIrouter) + 8 * 100, 8, 1);
  EXPECT_EQ(Read(gic_->distributor(), O(GicdReg::kIrouter) + 8 * 100, 8), 0u);
  // ITARGETSR / SGIR / xPENDSGIR: RAZ/WI with affinity routing.
  SetGicd(O(GicdReg::kItargetsr) + 32, 0x01010101);
  EXPECT_EQ(Gicd(O(GicdReg::kItargetsr) + 32), 0u);
  SetGicd(GicdReg::kSgir, 0x00010001);
  EXPECT_EQ(Gicd(GicdReg::kSgir), 0u);
  // IGRPMODR and NSACR: RAZ/WI with DS = 1.
  SetGicd(O(GicdReg::kIgrpmodr) + 4, 0xffffffff);
  EXPECT_EQ(Gicd(O(GicdReg::kIgrpmodr) + 4), 0u);
}

TEST_F(RegistersTest, SetClearRegistersActOnOnesOnly) {
  const uint64_t isen = O(GicdReg::kIsenabler) + 4;
  const uint64_t icen = O(GicdReg::kIcenabler) + 4;
  SetGicd(isen, 0x0000f00f);
  SetGicd(isen, 0x00000100);  // zeros do not clear
  EXPECT_EQ(Gicd(isen), 0x0000f10fu);
  EXPECT_EQ(Gicd(icen), 0x0000f10fu);  // both views read the state
  SetGicd(icen, 0x0000100f);
  EXPECT_EQ(Gicd(isen), 0x0000e100u);

  const uint64_t ispend = O(GicdReg::kIspendr) + 4;
  const uint64_t icpend = O(GicdReg::kIcpendr) + 4;
  SetGicd(ispend, 0x5);
  EXPECT_EQ(Gicd(icpend), 0x5u);
  SetGicd(icpend, 0x1);
  EXPECT_EQ(Gicd(ispend), 0x4u);

  const uint64_t isact = O(GicdReg::kIsactiver) + 4;
  const uint64_t icact = O(GicdReg::kIcactiver) + 4;
  SetGicd(isact, 0x30);
  EXPECT_EQ(Gicd(icact), 0x30u);
  SetGicd(icact, 0x10);
  EXPECT_EQ(Gicd(isact), 0x20u);

  // IGROUPR is a plain RW register.
  SetGicd(O(GicdReg::kIgroupr) + 4, 0x0f0f0f0f);
  EXPECT_EQ(Gicd(O(GicdReg::kIgroupr) + 4), 0x0f0f0f0fu);
}

TEST_F(RegistersTest, PendingRegisterShowsLevelLineAndLatch) {
  // A level SPI with its line asserted is pending; ICPENDR clears only the
  // latch, so it stays pending while the line is high.
  ASSERT_TRUE(gic_->SetSpiLevel(34, true).ok());
  const uint64_t ispend = O(GicdReg::kIspendr) + 4;
  EXPECT_EQ(Gicd(ispend), 1u << 2);
  SetGicd(O(GicdReg::kIcpendr) + 4, 1u << 2);
  EXPECT_EQ(Gicd(ispend), 1u << 2);
  ASSERT_TRUE(gic_->SetSpiLevel(34, false).ok());
  EXPECT_EQ(Gicd(ispend), 0u);
}

TEST_F(RegistersTest, PrioritiesAreByteAccessibleWithFiveBits) {
  const uint64_t base = O(GicdReg::kIpriorityr);
  Write(gic_->distributor(), base + 41, 1, 0xff);
  EXPECT_EQ(Read(gic_->distributor(), base + 41, 1), 0xf8u);
  EXPECT_EQ(Gicd(base + 40), 0x0000f800u);
  SetGicd(base + 44, 0x11223344);
  EXPECT_EQ(Gicd(base + 44), 0x10203040u);
  EXPECT_EQ(Read(gic_->distributor(), base + 46, 1), 0x20u);
  // Redistributor priorities likewise.
  Write(gic_->redistributors(), SgiOff(2, O(GicrSgiReg::kIpriorityr) + 7), 1,
        0x47);
  EXPECT_EQ(Read(gic_->redistributors(),
                 SgiOff(2, O(GicrSgiReg::kIpriorityr) + 4), 4),
            0x40000000u);
  EXPECT_EQ(Read(gic_->redistributors(),
                 SgiOff(1, O(GicrSgiReg::kIpriorityr) + 4), 4),
            0u);  // banked per redistributor
}

TEST_F(RegistersTest, IcfgrEdgeLevelAndReservedBits) {
  const uint64_t cfg = O(GicdReg::kIcfgr) + 8;  // INTIDs 32..47
  SetGicd(cfg, 0xffffffff);
  EXPECT_EQ(Gicd(cfg), 0xaaaaaaaau);  // Int_config[0] is RES0
  SetGicd(cfg, 0x00000008);
  EXPECT_EQ(Gicd(cfg), 0x00000008u);  // INTID 33 edge
  // SGIs are always edge; PPIs configurable.
  SetSgi(0, GicrSgiReg::kIcfgr0, 0);
  EXPECT_EQ(Sgi(0, GicrSgiReg::kIcfgr0), 0xaaaaaaaau);
  EXPECT_EQ(Sgi(0, GicrSgiReg::kIcfgr1), 0u);
  SetSgi(0, GicrSgiReg::kIcfgr1, 0xffffffff);
  EXPECT_EQ(Sgi(0, GicrSgiReg::kIcfgr1), 0xaaaaaaaau);
}

TEST_F(RegistersTest, IrouterSixtyFourBitAndHalves) {
  const uint64_t r = O(GicdReg::kIrouter) + 8 * 40;
  Write(gic_->distributor(), r, 8, 0xffffffffffffffffull);
  // Only Aff3..Aff0 are stored; IRM is RES0 because No1N = 1.
  EXPECT_EQ(Read(gic_->distributor(), r, 8), kIrouterAffMask);
  Write(gic_->distributor(), r, 4, 0x00000003);
  EXPECT_EQ(Read(gic_->distributor(), r, 8), 0x000000ff00000003ull);
  Write(gic_->distributor(), r + 4, 4, 0);
  EXPECT_EQ(Read(gic_->distributor(), r, 8), 3u);
  EXPECT_EQ(Read(gic_->distributor(), r, 4), 3u);
  EXPECT_EQ(Read(gic_->distributor(), r + 4, 4), 0u);
  EXPECT_EQ(*gic_->SpiTargetVcpu(40), 3u);
}

TEST_F(RegistersTest, RedistributorIdentityAndLayout) {
  for (uint32_t v = 0; v < 4; ++v) {
    const uint64_t typer = Gicr(v, GicrReg::kTyper, 8);
    EXPECT_EQ(typer & kGicrTyperPlpis, kGicrTyperPlpis);
    EXPECT_EQ((typer >> kGicrTyperProcNumShift) & 0xffff, v);
    EXPECT_EQ(typer >> 32, Vgic::VcpuMpidr(v));
    EXPECT_EQ((typer & kGicrTyperLast) != 0, v == 3);
    // 32-bit halves.
    EXPECT_EQ(Gicr(v, GicrReg::kTyper, 4), typer & 0xffffffff);
    EXPECT_EQ(Read(gic_->redistributors(),
                   RdOff(v, static_cast<uint64_t>(GicrReg::kTyper) + 4), 4),
              typer >> 32);
    EXPECT_EQ((Gicr(v, GicrReg::kPidr2) >> 4) & 0xf, 3u);
    EXPECT_EQ(Gicr(v, GicrReg::kPidr2), 0x3bu);
  }
  EXPECT_EQ(gic_->redistributor_region_size(), 4 * kRedistributorStride);
  // Beyond the last redistributor: rejected.
  uint64_t val;
  EXPECT_FALSE(gic_->redistributors()
                   .Read({0, 0}, 4 * kRedistributorStride, 4, &val)
                   .ok());
}

TEST_F(RegistersTest, WakerHandshake) {
  EXPECT_EQ(Gicr(1, GicrReg::kWaker),
            kGicrWakerProcessorSleep | kGicrWakerChildrenAsleep);
  SetGicr(1, GicrReg::kWaker, 0);
  EXPECT_EQ(Gicr(1, GicrReg::kWaker), 0u);
  EXPECT_EQ(Gicr(0, GicrReg::kWaker),
            kGicrWakerProcessorSleep | kGicrWakerChildrenAsleep);
  SetGicr(1, GicrReg::kWaker, kGicrWakerChildrenAsleep);  // RO bit
  EXPECT_EQ(Gicr(1, GicrReg::kWaker), 0u);
}

TEST_F(RegistersTest, PropbaserPendbaserFieldsAndHalves) {
  SetGicr(0, GicrReg::kPropbaser, 0xffffffffffffffffull, 8);
  EXPECT_EQ(Gicr(0, GicrReg::kPropbaser, 8), kPropbaserWritable);
  SetGicr(0, GicrReg::kPropbaser, 0x12345000 | 15, 4);
  EXPECT_EQ(Gicr(0, GicrReg::kPropbaser, 8) & 0xffffffff, 0x1234500fu);
  SetGicr(0, GicrReg::kPendbaser, kPendbaserPtz | 0x30000, 8);
  // PTZ is write-only.
  EXPECT_EQ(Gicr(0, GicrReg::kPendbaser, 8), 0x30000u);
  SetGicr(0, GicrReg::kPendbaser, 0x1f000, 8);  // PA is 64 KiB aligned
  EXPECT_EQ(Gicr(0, GicrReg::kPendbaser, 8), 0x10000u);
}

TEST_F(RegistersTest, CpuInterfaceResetAndFields) {
  const uint64_t ctlr = Icc(0, IccReg::kCtlr);
  EXPECT_EQ(ctlr & kIccCtlrEoimode, 0u);
  EXPECT_EQ((ctlr >> kIccCtlrPribitsShift) & 7, kPriorityBits - 1);
  EXPECT_EQ((ctlr >> kIccCtlrIdbitsShift) & 7, 0u);  // 16-bit INTIDs
  EXPECT_EQ(Icc(0, IccReg::kPmr), 0u);
  EXPECT_EQ(Icc(0, IccReg::kBpr1), kMinBpr1);
  EXPECT_EQ(Icc(0, IccReg::kIgrpen1), 0u);
  EXPECT_EQ(Icc(0, IccReg::kRpr), kIdlePriority);
  EXPECT_EQ(Icc(0, IccReg::kHppir1), kSpuriousIntid);
  EXPECT_EQ(Icc(0, IccReg::kIar1), kSpuriousIntid);
  SetIcc(0, IccReg::kPmr, 0xff);
  EXPECT_EQ(Icc(0, IccReg::kPmr), 0xf8u);  // 5 bits implemented
  SetIcc(0, IccReg::kBpr1, 0);
  EXPECT_EQ(Icc(0, IccReg::kBpr1), kMinBpr1);
  SetIcc(0, IccReg::kBpr1, 7);
  EXPECT_EQ(Icc(0, IccReg::kBpr1), 7u);
  SetIcc(0, IccReg::kCtlr, 0xffffffff);  // only EOImode is writable
  EXPECT_EQ(Icc(0, IccReg::kCtlr), ctlr | kIccCtlrEoimode);
  // Banked: vCPU 1 untouched.
  EXPECT_EQ(Icc(1, IccReg::kPmr), 0u);
  EXPECT_EQ(Icc(1, IccReg::kBpr1), kMinBpr1);
  // 32-bit access to the low half works.
  Write(gic_->cpu_interface(), static_cast<uint64_t>(IccReg::kPmr), 4, 0x80, 1);
  EXPECT_EQ(
      Read(gic_->cpu_interface(), static_cast<uint64_t>(IccReg::kPmr), 4, 1),
      0x80u);
  Make(1, 32, 19);
  EXPECT_EQ((Icc(0, IccReg::kCtlr) >> kIccCtlrIdbitsShift) & 7, 1u);
}

TEST_F(RegistersTest, BadAccessesAreRejected) {
  uint64_t v = 0;
  hv::MmioDevice& d = gic_->distributor();
  hv::MmioDevice& r = gic_->redistributors();
  hv::MmioDevice& c = gic_->cpu_interface();
  // Widths the spec does not allow.
  EXPECT_FALSE(d.Read({0, 0}, O(GicdReg::kCtlr), 2, &v).ok());
  EXPECT_FALSE(d.Read({0, 0}, O(GicdReg::kCtlr), 8, &v).ok());
  EXPECT_FALSE(d.Write({0, 0}, O(GicdReg::kIsenabler) + 4, 1, 1).ok());
  EXPECT_FALSE(d.Write({0, 0}, O(GicdReg::kIpriorityr) + 32, 2, 1).ok());
  EXPECT_FALSE(d.Write({0, 0}, O(GicdReg::kIpriorityr) + 32, 8, 1).ok());
  EXPECT_FALSE(d.Read({0, 0}, O(GicdReg::kIrouter) + 8 * 40, 1, &v).ok());
  // Unaligned.
  EXPECT_FALSE(d.Read({0, 0}, O(GicdReg::kTyper) + 1, 4, &v).ok());
  EXPECT_FALSE(d.Write({0, 0}, O(GicdReg::kIrouter) + 8 * 40 + 4, 8, 1).ok());
  EXPECT_FALSE(r.Read({0, 0}, RdOff(0, 0x9), 8, &v).ok());
  EXPECT_FALSE(r.Read({0, 0}, RdOff(0, 0), 8, &v).ok());  // CTLR is 32-bit
  EXPECT_FALSE(
      r.Write({0, 0}, SgiOff(0, O(GicrSgiReg::kIsenabler0)), 2, 1).ok());
  // Out of the frame.
  EXPECT_FALSE(d.Read({0, 0}, kDistributorFrameSize, 4, &v).ok());
  // CPU interface: widths, directions, who is asking.
  EXPECT_FALSE(c.Read({0, 0}, 0x08, 1, &v).ok());
  EXPECT_FALSE(c.Read({0, 0}, 0x0c, 4, &v).ok());
  EXPECT_FALSE(
      c.Read({0, 0}, static_cast<uint64_t>(IccReg::kEoir1), 8, &v).ok());
  EXPECT_FALSE(
      c.Write({0, 0}, static_cast<uint64_t>(IccReg::kIar1), 8, 0).ok());
  EXPECT_FALSE(
      c.Write({0, 0}, static_cast<uint64_t>(IccReg::kSgi1r), 4, 0).ok());
  EXPECT_FALSE(c.Read({hv::MmioContext::kNoVcpu, 0},
                      static_cast<uint64_t>(IccReg::kPmr), 8, &v)
                   .ok());
  EXPECT_FALSE(c.Read({4, 0}, static_cast<uint64_t>(IccReg::kPmr), 8, &v).ok());
  // Reserved space in the ICC frame reads as zero.
  EXPECT_TRUE(c.Read({0, 0}, 0x800, 8, &v).ok());
  EXPECT_EQ(v, 0u);
}

TEST_F(RegistersTest, OutOfRangeIntidsAreRejectedOrIgnored) {
  EnableAll();
  EXPECT_EQ(gic_->PulseSpi(96).status().code(),
            absl::StatusCode::kInvalidArgument);  // only 64 SPIs
  EXPECT_FALSE(gic_->PulseSpi(20).ok());          // a PPI
  EXPECT_FALSE(gic_->SetSpiLevel(5000, true).ok());
  EXPECT_FALSE(gic_->SendSgi(0, 16).ok());
  EXPECT_FALSE(gic_->SendSgi(4, 1).ok());
  EXPECT_FALSE(gic_->SpiTargetVcpu(1020).ok());
  EXPECT_FALSE(gic_->ForwardSpi(1, 1, [](uint32_t) {}).ok());
  EXPECT_FALSE(gic_->SetPending(0, 100));
  EXPECT_FALSE(gic_->SetPending(0, 1u << 16));
  EXPECT_FALSE(gic_->SetPending(9, kFirstLpi));

  // EOIs of special or unimplemented INTIDs do not drop the priority.
  SetupSpi(40, 0x80, 0, true);
  ASSERT_TRUE(Pulse(40).ok());
  EXPECT_EQ(Ack(0), 40u);
  Eoi(0, 1023);
  Eoi(0, 5000);
  Eoi(0, 1u << 20);
  EXPECT_EQ(Icc(0, IccReg::kRpr), 0x80u);
  SetIcc(0, IccReg::kDir, 1023);
  Eoi(0, 40);
  EXPECT_EQ(Icc(0, IccReg::kRpr), kIdlePriority);
  // EOI with nothing active is ignored.
  Eoi(0, 40);
  EXPECT_EQ(Icc(0, IccReg::kAp1r0), 0u);
}

TEST_F(RegistersTest, MessageBasedSpis) {
  EnableAll();
  SetupSpi(40, 0x80, 0, /*edge=*/true);
  SetupSpi(41, 0x80, 0, /*edge=*/false);
  SetGicd(GicdReg::kSetSpiNsr, 40);
  EXPECT_EQ(Ack(0), 40u);
  Eoi(0, 40);
  SetGicd(GicdReg::kSetSpiNsr, 41);
  EXPECT_EQ(Ack(0), 41u);
  Eoi(0, 41);
  EXPECT_EQ(Ack(0), 41u);  // level stays asserted until CLRSPI
  SetGicd(GicdReg::kClrSpiNsr, 41);
  Eoi(0, 41);
  EXPECT_EQ(Ack(0), kSpuriousIntid);
  SetGicd(GicdReg::kSetSpiNsr, 1000);  // invalid INTID: ignored
  EXPECT_EQ(Ack(0), kSpuriousIntid);
}

}  // namespace
}  // namespace vgic
