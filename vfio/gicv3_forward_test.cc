// The gicv3 arch forward over a real vGIC (SPIs) and a real ITS (MSIs, with
// the test double LPI sink), driven through kvm-vfio.
#include "vfio/gicv3_forward.h"

#include <sys/eventfd.h>
#include <sys/mman.h>
#include <unistd.h>

#include "gtest/gtest.h"
#include "vfio/kvm_vfio.h"
#include "vfio/test_util.h"
#include "vgic/fake_lpi_sink.h"
// vgic/its_harness.h keeps an unused private field (clang -Wall warns).
#if defined(__clang__)
#pragma clang diagnostic push
#pragma clang diagnostic ignored "-Wunused-private-field"
#endif
#include "vgic/its_harness.h"
#if defined(__clang__)
#pragma clang diagnostic pop
#endif
#include "vgic/regs.h"

namespace vfio {
namespace {

using testing::Rig;
using vgic::GicdReg;
using vgic::IccReg;
namespace cmd = vgic::its::cmd;

constexpr uint32_t kMsix = kVfioPciMsixIrqIndex;
constexpr uint32_t kDev = 0x100;  // requester ID of 0000:01:00.0
constexpr uint32_t kLpi = 8192;

uint64_t ReadFd(int fd) {
  uint64_t v = 0;
  return read(fd, &v, 8) == 8 ? v : 0;
}

class Gicv3ForwardTest : public ::testing::Test {
 protected:
  Gicv3ForwardTest() : rig_(&bypass_), sink_(2, 16), its_(&sink_) {}

  void SetUp() override {
    mem_ = std::move(hv::GuestMemory::Create({{0, 0x100000}})).value();
    vgic::VgicConfig c;
    c.num_vcpus = 2;
    c.num_spis = 64;
    c.memory = mem_.get();
    gic_ = std::move(vgic::Vgic::Create(c)).value();
    Gicd(GicdReg::kCtlr, vgic::kGicdCtlrEnableGrp1);
    for (uint32_t v = 0; v < 2; ++v) {
      ASSERT_TRUE(gic_->WriteIcc(v, IccReg::kPmr, 0xff).ok());
      ASSERT_TRUE(gic_->WriteIcc(v, IccReg::kIgrpen1, 1).ok());
    }
    its_.Enable();
    // Device kDev: events 0..7 → LPIs kLpi+e on collection 0 (vCPU 1);
    // collection 1 targets vCPU 0.
    its_.Send({cmd::Mapd(kDev, 4, vgic::ItsHarness::Itt(kDev), true),
               cmd::Mapc(0, 1, true), cmd::Mapc(1, 0, true)});
    for (uint32_t e = 0; e < 8; ++e)
      its_.Send(cmd::Mapti(kDev, e, kLpi + e, 0));
    ASSERT_EQ(its_.LastError(), 0u);
  }

  void Gicd(GicdReg r, uint32_t v, uint64_t extra = 0, uint8_t size = 4) {
    ASSERT_TRUE(gic_->distributor()
                    .Write({0, 0}, static_cast<uint64_t>(r) + extra, size, v)
                    .ok());
  }
  // SPI `intid`: priority 0x80, routed to vCPU 0, level or edge, enabled.
  void SetupSpi(uint32_t intid, bool edge) {
    Gicd(GicdReg::kIpriorityr, 0x80, intid, 1);
    ASSERT_TRUE(gic_->distributor()
                    .Write({0, 0},
                           static_cast<uint64_t>(GicdReg::kIrouter) + 8 * intid,
                           8, vgic::Vgic::VcpuMpidr(0))
                    .ok());
    Gicd(GicdReg::kIcfgr, edge ? 2u << (2 * (intid % 16)) : 0, intid / 16 * 4);
    Gicd(GicdReg::kIsenabler, 1u << (intid % 32), intid / 32 * 4);
  }
  uint32_t Ack(uint32_t v) {
    return static_cast<uint32_t>(gic_->ReadIcc(v, IccReg::kIar1).value());
  }
  void Eoi(uint32_t v, uint32_t intid) {
    ASSERT_TRUE(gic_->WriteIcc(v, IccReg::kEoir1, intid).ok());
  }

  BypassManager bypass_;
  Rig rig_;
  vgic::FakeLpiSink sink_;
  vgic::ItsHarness its_;
  std::unique_ptr<hv::GuestMemory> mem_;
  std::unique_ptr<vgic::Vgic> gic_;
};

TEST_F(Gicv3ForwardTest, MediatedMsiGoesThroughTheIts) {
  Gicv3Forward arch(rig_.core.get(), gic_.get(), &its_.its());
  KvmVfio vm(1, rig_.core.get(), &arch);
  ASSERT_TRUE(
      vm.Forward("0000:01:00.0", kMsix, 3, GuestIrq::Msi(kDev, 3)).ok());
  ASSERT_TRUE(
      vm.Forward("0000:01:00.0", kMsix, 4, GuestIrq::Msi(kDev, 40)).ok());
  hwsim::Device* d = rig_.Dev("0000:01:00.0");
  const HostIrq irq3 = rig_.Msix("0000:01:00.0", 3);
  const HostIrq irq4 = rig_.Msix("0000:01:00.0", 4);
  ASSERT_TRUE(d->Fire(3).ok());
  ASSERT_TRUE(d->Fire(4).ok());
  rig_.core->Dispatch(irq3);
  rig_.core->Dispatch(irq4);
  EXPECT_TRUE(sink_.IsPending(1, kLpi + 3));
  EXPECT_EQ(rig_.core->Status(irq3)->guest_delivered, 1u);
  EXPECT_EQ(rig_.core->Status(irq3)->mode, IrqMode::kForwardedMediated);
  // EventID 40 is not mapped: the interrupt is dropped, and counted.
  EXPECT_EQ(rig_.core->Status(irq4)->guest_dropped, 1u);
  EXPECT_TRUE(rig_.host_log.For(irq3).empty());
}

TEST_F(Gicv3ForwardTest, ForwardErrors) {
  Gicv3Forward no_its(rig_.core.get(), gic_.get(), nullptr);
  KvmVfio vm(1, rig_.core.get(), &no_its);
  EXPECT_EQ(vm.Forward("0000:01:00.0", kMsix, 0, GuestIrq::Msi(kDev, 0)).code(),
            absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(vm.Forward("plat0", 0, 0, GuestIrq::Spi(1000)).code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(rig_.core->GetDevice("plat0")->refs, 0u);
  Gicv3Forward arch(rig_.core.get(), gic_.get(), &its_.its());
  KvmVfio vm2(2, rig_.core.get(), &arch);
  EXPECT_EQ(vm2.Forward("plat0", 0, 0, GuestIrq::Msi(kDev, 0)).code(),
            absl::StatusCode::kInvalidArgument);  // level line as an MSI
  EXPECT_EQ(rig_.core->GetDevice("plat0")->refs, 0u);
}

TEST_F(Gicv3ForwardTest, ForwardedLevelSpiFollowsGuestDeactivation) {
  SetupSpi(40, /*edge=*/false);
  Gicv3Forward arch(rig_.core.get(), gic_.get(), &its_.its());
  KvmVfio vm(1, rig_.core.get(), &arch);
  ASSERT_TRUE(vm.Forward("plat0", 0, 0, GuestIrq::Spi(40)).ok());
  hwsim::Device* p = rig_.Dev("plat0");
  const HostIrq irq = rig_.Plat("plat0");
  ASSERT_TRUE(p->Fire(0).ok());
  rig_.core->Dispatch(irq);
  EXPECT_TRUE(p->masked(0));  // physical line held while the guest has it
  ASSERT_EQ(Ack(0), 40u);
  // Re-asserted while active: the guest's handler clears the status, the
  // device fires again before the EOI. Nothing reaches the guest yet.
  p->ClearStatus();
  ASSERT_TRUE(p->Fire(0).ok());
  rig_.core->Dispatch(irq);
  EXPECT_EQ(Ack(0), 1023u);
  Eoi(0, 40);  // deactivation → host unmask → the line re-triggers
  EXPECT_FALSE(p->masked(0));
  rig_.core->Dispatch(irq);
  ASSERT_EQ(Ack(0), 40u);
  p->ClearStatus();
  Eoi(0, 40);
  rig_.core->Dispatch(irq);
  EXPECT_EQ(Ack(0), 1023u);
  EXPECT_FALSE(p->masked(0));
  auto st = rig_.core->Status(irq);
  EXPECT_EQ(st->guest_delivered, 2u);
  EXPECT_EQ(st->fired, 2u);
  EXPECT_TRUE(rig_.host_log.For(irq).empty());
}

TEST_F(Gicv3ForwardTest, LevelSpiEoiBeforeClearingReTriggers) {
  // Wrong guest ordering (EOI before clearing the device): the source is
  // still asserted at deactivation, so the guest gets it again (level).
  SetupSpi(41, /*edge=*/false);
  Gicv3Forward arch(rig_.core.get(), gic_.get(), &its_.its());
  KvmVfio vm(1, rig_.core.get(), &arch);
  ASSERT_TRUE(vm.Forward("plat1", 0, 0, GuestIrq::Spi(41)).ok());
  hwsim::Device* p = rig_.Dev("plat1");
  const HostIrq irq = rig_.Plat("plat1");
  ASSERT_TRUE(p->Fire(0).ok());
  rig_.core->Dispatch(irq);
  ASSERT_EQ(Ack(0), 41u);
  Eoi(0, 41);
  rig_.core->Dispatch(irq);
  ASSERT_EQ(Ack(0), 41u);  // again: still asserted
  p->ClearStatus();
  Eoi(0, 41);
  rig_.core->Dispatch(irq);
  EXPECT_EQ(Ack(0), 1023u);
}

TEST_F(Gicv3ForwardTest, EdgeSpiForward) {
  SetupSpi(42, /*edge=*/true);
  Gicv3Forward arch(rig_.core.get(), gic_.get(), &its_.its());
  KvmVfio vm(1, rig_.core.get(), &arch);
  ASSERT_TRUE(vm.Forward("0000:02:00.0", kMsix, 0, GuestIrq::Spi(42)).ok());
  const HostIrq irq = rig_.Msix("0000:02:00.0", 0);
  ASSERT_TRUE(rig_.Dev("0000:02:00.0")->Fire(0).ok());
  ASSERT_TRUE(rig_.Dev("0000:02:00.0")->Fire(0).ok());
  rig_.core->Dispatch(irq);
  ASSERT_EQ(Ack(0), 42u);
  Eoi(0, 42);
  EXPECT_EQ(Ack(0), 1023u);  // two edges before the ack coalesced in the GIC
  auto st = rig_.core->Status(irq);
  EXPECT_EQ(st->guest_delivered, 1u);
  EXPECT_EQ(st->guest_dropped, 1u);
  // Another VM cannot take the same guest SPI... and this VM cannot reuse it.
  EXPECT_EQ(vm.Forward("0000:02:00.0", kMsix, 1, GuestIrq::Spi(42)).code(),
            absl::StatusCode::kInvalidArgument);
}

class PostedTest : public Gicv3ForwardTest {
 protected:
  void SetUp() override {
    Gicv3ForwardTest::SetUp();
    pend_fd_ = memfd_create("pending", MFD_CLOEXEC);
    ASSERT_EQ(ftruncate(pend_fd_, 2 * kBytes), 0);
    region_ = std::move(hwsim::PostedRegion::Map(pend_fd_, kBytes, 2)).value();
    for (int& b : bells_) b = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    view_ = static_cast<uint64_t*>(
        mmap(nullptr, 2 * kBytes, PROT_READ, MAP_SHARED, pend_fd_, 0));
    Gicv3PostedConfig cfg;
    cfg.bypass = &bypass_;
    cfg.pending = region_;
    cfg.doorbell = [this](uint32_t v) { return v < 2 ? bells_[v] : -1; };
    arch_ = std::make_unique<Gicv3Forward>(rig_.core.get(), gic_.get(),
                                           &its_.its(), cfg);
    vm_ = std::make_unique<KvmVfio>(1, rig_.core.get(), arch_.get());
  }
  void TearDown() override {
    vm_.reset();
    arch_.reset();
    munmap(view_, 2 * kBytes);
    for (int b : bells_) close(b);
    close(pend_fd_);
  }
  bool Bit(uint32_t vcpu, uint32_t intid) {
    const uint64_t* w = view_ + vcpu * kBytes / 8;
    return __atomic_load_n(&w[intid / 64], __ATOMIC_SEQ_CST) &
           (uint64_t{1} << (intid % 64));
  }
  static constexpr uint64_t kBytes = 8192;  // 2^16 INTIDs
  int pend_fd_ = -1;
  int bells_[2];
  uint64_t* view_ = nullptr;
  std::shared_ptr<hwsim::PostedRegion> region_;
  std::unique_ptr<Gicv3Forward> arch_;
  std::unique_ptr<KvmVfio> vm_;
};

TEST_F(PostedTest, PairedVectorIsPostedAndFollowsItsChanges) {
  ASSERT_TRUE(
      vm_->Forward("0000:01:00.0", kMsix, 2, GuestIrq::Msi(kDev, 2)).ok());
  const HostIrq irq = rig_.Msix("0000:01:00.0", 2);
  hwsim::Device* d = rig_.Dev("0000:01:00.0");
  EXPECT_TRUE(bypass_.Paired(VfioCore::BypassToken(irq)));
  EXPECT_EQ(rig_.core->Status(irq)->mode, IrqMode::kForwardedPosted);
  ASSERT_TRUE(d->Fire(2).ok());
  EXPECT_TRUE(Bit(1, kLpi + 2));  // collection 0 → vCPU 1
  EXPECT_EQ(ReadFd(bells_[1]), 1u);
  EXPECT_EQ(rig_.core->Status(irq)->queued, 0u);  // no host handler involved
  EXPECT_EQ(rig_.core->Status(irq)->posted_delivered, 1u);
  // MOVI to collection 1 (vCPU 0): the entry is rewritten before it applies.
  its_.Send(cmd::Movi(kDev, 2, 1));
  EXPECT_EQ(arch_->posts(), 2u);
  ASSERT_TRUE(d->Fire(2).ok());
  EXPECT_TRUE(Bit(0, kLpi + 2));
  EXPECT_EQ(ReadFd(bells_[0]), 1u);
  // DISCARD revokes: back to mediated; the ITS drops the untranslatable MSI.
  its_.Send(cmd::Discard(kDev, 2));
  EXPECT_EQ(arch_->revokes(), 1u);
  EXPECT_EQ(rig_.core->Status(irq)->mode, IrqMode::kForwardedMediated);
  ASSERT_TRUE(d->Fire(2).ok());
  rig_.core->Dispatch(irq);
  EXPECT_EQ(rig_.core->Status(irq)->guest_dropped, 1u);
  // MAPTI again: translatable → posted again.
  its_.Send(cmd::Mapti(kDev, 2, kLpi + 20, 0));
  EXPECT_EQ(rig_.core->Status(irq)->mode, IrqMode::kForwardedPosted);
  ASSERT_TRUE(d->Fire(2).ok());
  EXPECT_TRUE(Bit(1, kLpi + 20));
  // MAPD V=0 revokes too.
  its_.Send(cmd::Mapd(kDev, 4, 0, false));
  EXPECT_EQ(rig_.core->Status(irq)->mode, IrqMode::kForwardedMediated);
  EXPECT_FALSE(d->posted(2));
}

TEST_F(PostedTest, UntranslatableAtPairingStaysMediated) {
  ASSERT_TRUE(
      vm_->Forward("0000:01:00.0", kMsix, 6, GuestIrq::Msi(kDev, 10)).ok());
  const HostIrq irq = rig_.Msix("0000:01:00.0", 6);
  EXPECT_TRUE(bypass_.Paired(VfioCore::BypassToken(irq)));
  EXPECT_EQ(rig_.core->Status(irq)->mode, IrqMode::kForwardedMediated);
  // The guest maps it later: the observer posts it.
  its_.Send(cmd::Mapti(kDev, 10, kLpi + 60, 1));
  EXPECT_EQ(its_.LastError(), 0u);
  EXPECT_EQ(arch_->posts(), 1u);
  EXPECT_EQ(rig_.core->Status(irq)->mode, IrqMode::kForwardedPosted);
  ASSERT_TRUE(rig_.Dev("0000:01:00.0")->Fire(6).ok());
  EXPECT_TRUE(Bit(0, kLpi + 60));
}

TEST_F(PostedTest, DestroyInEveryState) {
  SetupSpi(40, /*edge=*/false);
  SetupSpi(41, /*edge=*/false);
  hwsim::Device* d = rig_.Dev("0000:01:00.0");
  hwsim::Device* p0 = rig_.Dev("plat0");
  hwsim::Device* p1 = rig_.Dev("plat1");
  // posted, mediated (untranslatable), level active in the guest (masked,
  // not EOI'd), level pending (not acked), and an edge vector with queued
  // messages.
  ASSERT_TRUE(
      vm_->Forward("0000:01:00.0", kMsix, 0, GuestIrq::Msi(kDev, 0)).ok());
  ASSERT_TRUE(
      vm_->Forward("0000:01:00.0", kMsix, 1, GuestIrq::Msi(kDev, 50)).ok());
  ASSERT_TRUE(
      vm_->Forward("0000:01:00.0", kMsix, 7, GuestIrq::Msi(kDev, 7)).ok());
  ASSERT_TRUE(vm_->Forward("plat0", 0, 0, GuestIrq::Spi(40)).ok());
  ASSERT_TRUE(vm_->Forward("plat1", 0, 0, GuestIrq::Spi(41)).ok());
  EXPECT_EQ(rig_.core->GetDevice("0000:01:00.0")->refs, 3u);
  ASSERT_TRUE(d->Fire(0).ok());
  ASSERT_TRUE(d->Fire(1).ok());
  ASSERT_TRUE(p0->Fire(0).ok());
  ASSERT_TRUE(p1->Fire(0).ok());
  rig_.core->Dispatch(rig_.Plat("plat0"));
  rig_.core->Dispatch(rig_.Plat("plat1"));
  ASSERT_EQ(Ack(0), 40u);  // plat0 active in the guest; plat1 pending
  rig_.core->ClearPosted(rig_.Msix("0000:01:00.0", 7));  // mediated w/ queue
  ASSERT_TRUE(d->Fire(7).ok());
  EXPECT_TRUE(p0->masked(0));
  EXPECT_TRUE(p1->masked(0));

  vm_->Destroy();

  for (const char* dev : {"0000:01:00.0", "plat0", "plat1"}) {
    auto info = rig_.core->GetDevice(dev);
    EXPECT_EQ(info->refs, 0u) << dev;
    EXPECT_EQ(info->owner, kHost) << dev;
    for (const auto& st : rig_.core->DeviceStatus(dev)) {
      EXPECT_EQ(st.mode, IrqMode::kHostOwned) << dev << " line " << st.line;
    }
  }
  EXPECT_FALSE(d->posted(0));
  EXPECT_FALSE(
      bypass_.Paired(VfioCore::BypassToken(rig_.Msix("0000:01:00.0", 0))));
  // The host gets its lines back unmasked; still-asserted sources and queued
  // messages are handled by the host driver.
  EXPECT_FALSE(p0->masked(0));
  EXPECT_FALSE(p1->masked(0));
  for (const char* dev : {"plat0", "plat1"}) {
    rig_.core->Dispatch(rig_.Plat(dev));
  }
  rig_.core->Dispatch(rig_.Msix("0000:01:00.0", 7));
  EXPECT_EQ(rig_.host_log.For(rig_.Plat("plat0")).size(), 1u);
  EXPECT_EQ(rig_.host_log.For(rig_.Plat("plat1")).size(), 1u);
  EXPECT_EQ(rig_.host_log.For(rig_.Msix("0000:01:00.0", 7)),
            (std::vector<uint64_t>{1}));
  EXPECT_FALSE(p0->asserted());
  // The guest side is gone: its virtual lines are low.
  Eoi(0, 40);
  EXPECT_EQ(Ack(0), 1023u);
  // And a new VM can take the devices.
  KvmVfio vm2(2, rig_.core.get(), arch_.get());
  EXPECT_TRUE(vm2.Forward("plat0", 0, 0, GuestIrq::Spi(40)).ok());
}

}  // namespace
}  // namespace vfio
