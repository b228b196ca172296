// Fuzz target: arbitrary guest MMIO accesses to all three frames (any
// offset, width and value, from any vCPU or none) interleaved with host-side
// injection, LPI and forwarding calls. Checks that nothing crashes or goes
// out of bounds (ASan/UBSan) and that, afterwards, each vCPU's IRQ line
// agrees exactly with what ICC_IAR1 acknowledges.
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <memory>

#include "hv/memory/guest_memory.h"
#include "vgic/regs.h"
#include "vgic/vgic.h"

namespace {

constexpr uint32_t kVcpus = 3;
constexpr uint32_t kSpis = 64;
constexpr uint64_t kRam = 0x200000;  // 2 MiB

class Input {
 public:
  Input(const uint8_t* data, size_t size) : data_(data), size_(size) {}
  bool empty() const { return pos_ >= size_; }
  uint64_t Take(int bytes) {
    uint64_t v = 0;
    for (int i = 0; i < bytes; ++i) {
      v |= uint64_t{pos_ < size_ ? data_[pos_] : uint8_t{0}} << (8 * i);
      ++pos_;
    }
    return v;
  }

 private:
  const uint8_t* data_;
  size_t size_;
  size_t pos_ = 0;
};

hv::GuestMemory& Memory() {
  static hv::GuestMemory* mem = [] {
    auto m = hv::GuestMemory::Create({{0, kRam}});
    if (!m.ok()) abort();
    return m->release();
  }();
  return *mem;
}

// Aborts (a libFuzzer crash) naming the violated invariant.
#define CHECK_INVARIANT(cond)                                              \
  do {                                                                     \
    if (!(cond)) {                                                         \
      std::fprintf(stderr, "vgic_fuzz: invariant failed at line %d: %s\n", \
                   __LINE__, #cond);                                       \
      std::abort();                                                        \
    }                                                                      \
  } while (0)

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace vgic;
  hv::GuestMemory& mem = Memory();
  bool lines[kVcpus] = {};
  VgicConfig c;
  c.num_vcpus = kVcpus;
  c.num_spis = kSpis;
  c.lpi_id_bits = 14;
  c.memory = &mem;
  c.irq_line = [&lines](uint32_t v, bool level) {
    CHECK_INVARIANT(v < kVcpus);
    CHECK_INVARIANT(lines[v] != level);  // only changes are reported
    lines[v] = level;
  };
  auto created = Vgic::Create(c);
  CHECK_INVARIANT(created.ok());
  Vgic& g = **created;
  int forwarded_calls = 0;

  Input in(data, size);
  // Usually start from a guest-like bring-up so that random operations act
  // on interrupts that can actually be delivered.
  if (in.Take(1) % 4 != 0) {
    const hv::MmioContext c0{0, 0};
    (void)g.distributor().Write(c0, static_cast<uint64_t>(GicdReg::kCtlr), 4,
                                kGicdCtlrEnableGrp1);
    for (uint32_t w = 1; w <= kSpis / 32; ++w) {
      (void)g.distributor().Write(
          c0, static_cast<uint64_t>(GicdReg::kIsenabler) + 4 * w, 4,
          0xffffffff);
      (void)g.distributor().Write(
          c0, static_cast<uint64_t>(GicdReg::kIcfgr) + 8 * w, 4,
          static_cast<uint32_t>(in.Take(4)));
    }
    for (uint32_t i = 0; i < kSpis; i += 4) {
      (void)g.distributor().Write(
          c0, static_cast<uint64_t>(GicdReg::kIpriorityr) + kFirstSpi + i, 4,
          in.Take(4));
    }
    for (uint32_t v = 0; v < kVcpus; ++v) {
      // A PMR that masks part of the priority range, so priority and PMR
      // changes move lines.
      (void)g.WriteIcc(v, IccReg::kPmr, in.Take(1) | 0x80);
      (void)g.WriteIcc(v, IccReg::kIgrpen1, 1);
      const uint64_t sgi = v * kRedistributorStride + kRedistributorSgiBase;
      (void)g.redistributors().Write(
          c0, sgi + static_cast<uint64_t>(GicrSgiReg::kIsenabler0), 4,
          0xffffffff);
    }
  }
  int ops = 0;
  while (!in.empty() && ops++ < 512) {
    const uint8_t op = static_cast<uint8_t>(in.Take(1));
    const uint8_t size_sel = static_cast<uint8_t>(in.Take(1));
    const uint8_t sizes[4] = {1, 2, 4, 8};
    const uint8_t sz = sizes[size_sel & 3];
    uint64_t offset = in.Take(3);
    if (size_sel & 8) {
      // Mostly aim at implemented registers rather than reserved space.
      static constexpr uint64_t kGicdBases[] = {0x0,   0x40,  0x80,  0x100,
                                                0x180, 0x200, 0x280, 0x300,
                                                0x380, 0x400, 0xc00, 0x6100};
      static constexpr uint64_t kGicrBases[] = {
          0x0,     0x14,    0x70,    0x78,    0x10080, 0x10100, 0x10180,
          0x10200, 0x10280, 0x10300, 0x10380, 0x10400, 0x10c04};
      const uint64_t sel = offset >> 12;
      if (op % 10 < 2) {
        offset = kGicdBases[sel % 12] + (offset & 0x3f);
      } else if (op % 10 < 4) {
        offset = (sel % kVcpus) * kRedistributorStride + kGicrBases[sel % 13] +
                 (offset & 0x1f);
      } else {
        offset &= 0x5f;
      }
    }
    if (size_sel & 4) offset &= ~(uint64_t{sz} - 1);  // mostly aligned
    const uint64_t value = in.Take(8);
    const uint32_t vcpu = static_cast<uint32_t>(in.Take(1) % (kVcpus + 1));
    const hv::MmioContext ctx{vcpu == kVcpus ? hv::MmioContext::kNoVcpu : vcpu,
                              0};
    uint64_t out = 0;
    switch (op % 10) {
      case 0:
        (void)g.distributor().Write(ctx, offset % kDistributorFrameSize, sz,
                                    value);
        break;
      case 1:
        (void)g.distributor().Read(ctx, offset % kDistributorFrameSize, sz,
                                   &out);
        break;
      case 2:
        (void)g.redistributors().Write(
            ctx, offset % g.redistributor_region_size(), sz, value);
        break;
      case 3:
        (void)g.redistributors().Read(
            ctx, offset % g.redistributor_region_size(), sz, &out);
        break;
      case 4:
        (void)g.cpu_interface().Write(ctx, offset % kCpuInterfaceFrameSize, sz,
                                      value);
        break;
      case 5: {
        const absl::Status s = g.cpu_interface().Read(
            ctx, offset % kCpuInterfaceFrameSize, sz, &out);
        if (s.ok() && offset % kCpuInterfaceFrameSize ==
                          static_cast<uint64_t>(IccReg::kIar1)) {
          const uint32_t id = static_cast<uint32_t>(out);
          CHECK_INVARIANT(id == kSpuriousIntid || id < kFirstSpi + kSpis ||
                          (id >= kFirstLpi && id < (1u << 14)));
        }
        break;
      }
      case 6: {
        const uint32_t intid = static_cast<uint32_t>(value % 1100);
        switch ((value >> 16) % 6) {
          case 0:
            (void)g.SetSpiLevel(intid, (value >> 24) & 1);
            break;
          case 1:
            (void)g.PulseSpi(intid).ok();
            break;
          case 2:
            (void)g.PulsePpi(vcpu, intid % 40).ok();
            break;
          case 3:
            (void)g.SendSgi(vcpu, intid % 20).ok();
            break;
          case 4:
            (void)g.SetPending(vcpu, kFirstLpi + intid * 8);
            break;
          case 5:
            g.MovePending(vcpu, static_cast<uint32_t>(value >> 32) % 4,
                          kFirstLpi + intid * 8);
            break;
        }
        break;
      }
      case 7: {
        // A sane LPI set-up (tables inside RAM), so LPIs get exercised.
        const uint32_t v = vcpu % kVcpus;
        const uint64_t rd = v * kRedistributorStride;
        (void)g.redistributors().Write(
            {v, 0}, rd + static_cast<uint64_t>(GicrReg::kPropbaser), 8,
            0x100000 | 13);
        (void)g.redistributors().Write(
            {v, 0}, rd + static_cast<uint64_t>(GicrReg::kPendbaser), 8,
            (0x110000 + v * 0x10000) | ((value & 1) ? kPendbaserPtz : 0));
        (void)mem.Fill(0x100000 + (value >> 8) % 8192,
                       static_cast<uint8_t>(value >> 40), 64);
        (void)g.redistributors().Write(
            {v, 0}, rd + static_cast<uint64_t>(GicrReg::kCtlr), 4,
            (value >> 1) & 1);
        break;
      }
      case 8: {
        const uint32_t lpi = kFirstLpi + static_cast<uint32_t>(value % 9000);
        auto cfg = g.ReadConfigByte(vcpu % kVcpus, lpi);
        if (cfg.ok()) g.ApplyConfigByte(lpi, *cfg);
        if ((value >> 20) & 1) (void)g.InvalidateAll(vcpu % kVcpus);
        break;
      }
      case 9: {
        const uint32_t intid = static_cast<uint32_t>(value % 100);
        if ((value >> 8) & 1) {
          (void)g.ForwardSpi(intid, 7, [&](uint32_t) { ++forwarded_calls; });
          (void)g.ForwardPpi(vcpu, intid % 32, 8,
                             [&](uint32_t) { ++forwarded_calls; });
        } else {
          g.UnforwardSpi(intid);
          g.UnforwardPpi(vcpu, intid % 32);
        }
        break;
      }
    }
    // Every operation left each line up to date: recomputing it from
    // scratch (Kick) must not change it.
    for (uint32_t v = 0; v < kVcpus; ++v) {
      const bool before = lines[v];
      g.Kick(v);
      if (lines[v] != before) {
        std::fprintf(stderr, "op %d (kind %d) left vCPU %u's line stale\n", ops,
                     op % 10, v);
      }
      CHECK_INVARIANT(lines[v] == before);
    }
  }
  // The line is exactly "IAR1 would acknowledge something".
  for (uint32_t v = 0; v < kVcpus; ++v) {
    const bool line = lines[v];
    CHECK_INVARIANT(line == g.IrqLine(v));
    auto id = g.ReadIcc(v, IccReg::kIar1);
    CHECK_INVARIANT(id.ok());
    CHECK_INVARIANT(line == (*id != kSpuriousIntid));
  }
  return 0;
}
