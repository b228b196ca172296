// Test fixture shared by the vGIC tests: a real GuestMemory, a Vgic and
// helpers that go through the MMIO frames exactly like a guest would.
#ifndef VGIC_VGIC_TEST_UTIL_H_
#define VGIC_VGIC_TEST_UTIL_H_

#include <atomic>
#include <cstdint>
#include <memory>

#include "gtest/gtest.h"
#include "hv/memory/guest_memory.h"
#include "vgic/regs.h"
#include "vgic/vgic.h"

namespace vgic {

class VgicTest : public ::testing::Test {
 protected:
  static constexpr uint64_t kRamSize = 0x400000;  // 4 MiB at GPA 0

  void SetUp() override {
    auto mem = hv::GuestMemory::Create({{0, kRamSize}});
    ASSERT_TRUE(mem.ok()) << mem.status();
    mem_ = std::move(*mem);
    Make(4, 64);
  }

  void Make(uint32_t vcpus, uint32_t spis, uint32_t id_bits = 16) {
    gic_.reset();
    for (auto& l : lines_) l.store(false);
    for (auto& c : line_changes_) c.store(0);
    VgicConfig c;
    c.num_vcpus = vcpus;
    c.num_spis = spis;
    c.lpi_id_bits = id_bits;
    c.memory = mem_.get();
    c.irq_line = [this](uint32_t v, bool level) {
      lines_[v].store(level);
      line_changes_[v].fetch_add(1);
    };
    auto g = Vgic::Create(c);
    ASSERT_TRUE(g.ok()) << g.status();
    gic_ = std::move(*g);
  }

  // ---- raw frame access
  uint64_t Read(hv::MmioDevice& dev, uint64_t off, uint8_t size,
                uint32_t vcpu = 0) {
    uint64_t v = 0;
    absl::Status s = dev.Read({vcpu, 0}, off, size, &v);
    EXPECT_TRUE(s.ok()) << s << " reading 0x" << std::hex << off;
    return v;
  }
  void Write(hv::MmioDevice& dev, uint64_t off, uint8_t size, uint64_t val,
             uint32_t vcpu = 0) {
    absl::Status s = dev.Write({vcpu, 0}, off, size, val);
    EXPECT_TRUE(s.ok()) << s << " writing 0x" << std::hex << off;
  }

  uint32_t Gicd(uint64_t off) {
    return static_cast<uint32_t>(Read(gic_->distributor(), off, 4));
  }
  uint32_t Gicd(GicdReg r) { return Gicd(static_cast<uint64_t>(r)); }
  void SetGicd(uint64_t off, uint32_t v) {
    Write(gic_->distributor(), off, 4, v);
  }
  void SetGicd(GicdReg r, uint32_t v) { SetGicd(static_cast<uint64_t>(r), v); }

  static uint64_t RdOff(uint32_t vcpu, uint64_t off) {
    return vcpu * kRedistributorStride + off;
  }
  static uint64_t SgiOff(uint32_t vcpu, uint64_t off) {
    return vcpu * kRedistributorStride + kRedistributorSgiBase + off;
  }
  uint64_t Gicr(uint32_t vcpu, GicrReg r, uint8_t size = 4) {
    return Read(gic_->redistributors(), RdOff(vcpu, static_cast<uint64_t>(r)),
                size);
  }
  void SetGicr(uint32_t vcpu, GicrReg r, uint64_t v, uint8_t size = 4) {
    Write(gic_->redistributors(), RdOff(vcpu, static_cast<uint64_t>(r)), size,
          v);
  }
  uint32_t Sgi(uint32_t vcpu, GicrSgiReg r) {
    return static_cast<uint32_t>(Read(
        gic_->redistributors(), SgiOff(vcpu, static_cast<uint64_t>(r)), 4));
  }
  void SetSgi(uint32_t vcpu, GicrSgiReg r, uint32_t v) {
    Write(gic_->redistributors(), SgiOff(vcpu, static_cast<uint64_t>(r)), 4, v);
  }
  uint64_t Icc(uint32_t vcpu, IccReg r) {
    return Read(gic_->cpu_interface(), static_cast<uint64_t>(r), 8, vcpu);
  }
  void SetIcc(uint32_t vcpu, IccReg r, uint64_t v) {
    Write(gic_->cpu_interface(), static_cast<uint64_t>(r), 8, v, vcpu);
  }
  uint32_t Ack(uint32_t vcpu) {
    return static_cast<uint32_t>(Icc(vcpu, IccReg::kIar1));
  }
  void Eoi(uint32_t vcpu, uint32_t intid) {
    SetIcc(vcpu, IccReg::kEoir1, intid);
  }

  // Edge injection helpers returning an ok Status (the "newly" bit is
  // checked where it matters).
  absl::Status Pulse(uint32_t intid) { return gic_->PulseSpi(intid).status(); }
  absl::Status PulsePpiOk(uint32_t vcpu, uint32_t intid) {
    return gic_->PulsePpi(vcpu, intid).status();
  }

  // Guest-style bring-up: distributor Group 1 on, every CPU interface open
  // (PMR 0xff, IGRPEN1 1).
  void EnableAll() {
    SetGicd(GicdReg::kCtlr, kGicdCtlrEnableGrp1);
    for (uint32_t v = 0; v < gic_->num_vcpus(); ++v) {
      SetIcc(v, IccReg::kPmr, 0xff);
      SetIcc(v, IccReg::kIgrpen1, 1);
    }
  }
  // Enables SPI `intid` with `prio`, routed to `vcpu`.
  void SetupSpi(uint32_t intid, uint8_t prio, uint32_t vcpu, bool edge) {
    Write(gic_->distributor(),
          static_cast<uint64_t>(GicdReg::kIpriorityr) + intid, 1, prio);
    Write(gic_->distributor(),
          static_cast<uint64_t>(GicdReg::kIrouter) + 8 * intid, 8,
          Vgic::VcpuMpidr(vcpu));
    const uint64_t cfg =
        static_cast<uint64_t>(GicdReg::kIcfgr) + intid / 16 * 4;
    uint32_t c = Gicd(cfg);
    const uint32_t bit = 2u << (2 * (intid % 16));
    SetGicd(cfg, edge ? (c | bit) : (c & ~bit));
    SetGicd(static_cast<uint64_t>(GicdReg::kIsenabler) + intid / 32 * 4,
            1u << (intid % 32));
  }
  void SetupPrivate(uint32_t vcpu, uint32_t intid, uint8_t prio) {
    Write(gic_->redistributors(),
          SgiOff(vcpu, static_cast<uint64_t>(GicrSgiReg::kIpriorityr) + intid),
          1, prio);
    SetSgi(vcpu, GicrSgiReg::kIsenabler0, 1u << intid);
  }

  std::unique_ptr<hv::GuestMemory> mem_;
  std::unique_ptr<Vgic> gic_;
  std::atomic<bool> lines_[kMaxVcpus];
  std::atomic<int> line_changes_[kMaxVcpus];
};

}  // namespace vgic

#endif  // VGIC_VGIC_TEST_UTIL_H_
