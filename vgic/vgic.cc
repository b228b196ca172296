// Vgic: construction, interrupt state, delivery evaluation, injection and
// forwarded interrupts. Lock order and interpretations: see vgic.h.
#include "vgic/vgic.h"

#include <sys/mman.h>
#include <unistd.h>

#include <bit>
#include <cerrno>
#include <cstring>
#include <new>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"

namespace vgic {

absl::StatusOr<std::unique_ptr<Vgic>> Vgic::Create(VgicConfig config) {
  if (config.num_vcpus < 1 || config.num_vcpus > kMaxVcpus) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "num_vcpus %d outside [1, %d]", config.num_vcpus, kMaxVcpus));
  }
  if (config.num_spis != kMaxSpis &&
      (config.num_spis < 32 || config.num_spis > 960 ||
       config.num_spis % 32 != 0)) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "num_spis %d: must be a multiple of 32 in [32, 960] or 988",
        config.num_spis));
  }
  if (config.lpi_id_bits < kMinLpiIdBits ||
      config.lpi_id_bits > kMaxLpiIdBits) {
    return absl::InvalidArgumentError(
        absl::StrFormat("lpi_id_bits %d outside [%d, %d]", config.lpi_id_bits,
                        kMinLpiIdBits, kMaxLpiIdBits));
  }
  if (config.memory == nullptr) {
    return absl::InvalidArgumentError("memory must be set");
  }
  std::unique_ptr<Vgic> vgic(new Vgic(config));
  absl::Status s = vgic->Init();
  if (!s.ok()) return s;
  return vgic;
}

Vgic::Vgic(const VgicConfig& config)
    : num_vcpus_(config.num_vcpus),
      num_spis_(config.num_spis),
      lpi_id_bits_(config.lpi_id_bits),
      memory_(config.memory),
      irq_line_(config.irq_line) {}

absl::Status Vgic::Init() {
  // LPI pending bitmaps: one page-aligned GICR-pending-table-shaped bitmap
  // per vCPU in a memfd, so a posted-interrupt producer in another process
  // can map it (DESIGN §3/§4).
  const uint64_t bitmap_bytes = (uint64_t{1} << lpi_id_bits_) / 8;
  const uint64_t per_vcpu = (bitmap_bytes + hv::GuestMemory::kPageSize - 1) &
                            ~(hv::GuestMemory::kPageSize - 1);
  lpi_map_size_ = per_vcpu * num_vcpus_;
  const int fd = memfd_create("hv-vgic-lpi-pending", MFD_CLOEXEC);
  if (fd < 0) {
    return absl::InternalError(
        absl::StrCat("memfd_create: ", std::strerror(errno)));
  }
  if (ftruncate(fd, static_cast<off_t>(lpi_map_size_)) != 0) {
    const int err = errno;
    close(fd);
    return absl::ResourceExhaustedError(
        absl::StrCat("sizing LPI pending memfd: ", std::strerror(err)));
  }
  void* map =
      mmap(nullptr, lpi_map_size_, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  if (map == MAP_FAILED) {
    const int err = errno;
    close(fd);
    return absl::ResourceExhaustedError(
        absl::StrCat("mapping LPI pending memfd: ", std::strerror(err)));
  }
  lpi_map_ = map;
  lpi_layout_.fd = fd;
  lpi_layout_.bytes_per_vcpu = per_vcpu;
  static_assert(std::atomic<uint64_t>::is_always_lock_free);
  static_assert(sizeof(std::atomic<uint64_t>) == sizeof(uint64_t));

  vcpus_.reserve(num_vcpus_);
  for (uint32_t v = 0; v < num_vcpus_; ++v) {
    auto vc = std::make_unique<VcpuState>();
    auto* words = static_cast<uint8_t*>(map) + per_vcpu * v;
    vc->pending = new (words) std::atomic<uint64_t>[per_vcpu / 8];
    {
      hv::SpinLockHolder l(&vc->lock);
      for (uint32_t i = 0; i < kNumPrivate; ++i) {
        // ICFGR0: SGIs are always edge-triggered (§12.11.7); PPIs reset to
        // level-sensitive.
        vc->priv[i].edge = i < kNumSgis;
      }
    }
    vcpus_.push_back(std::move(vc));
  }

  const uint32_t nlpis = (1u << lpi_id_bits_) - kFirstLpi;
  lpi_config_ = std::make_unique<std::atomic<uint8_t>[]>(nlpis);
  for (uint32_t i = 0; i < nlpis; ++i) lpi_config_[i].store(0);

  hv::SpinLockHolder l(&dist_lock_);
  spis_.resize(num_spis_);
  spi_candidates_.assign((num_spis_ + 63) / 64, 0);
  // GICD_IROUTER resets to 0 here (UNKNOWN in the spec): vCPU 0.
  for (Irq& s : spis_) s.target = 0;
  return absl::OkStatus();
}

Vgic::~Vgic() {
  if (lpi_map_ != nullptr) munmap(lpi_map_, lpi_map_size_);
  if (lpi_layout_.fd >= 0) close(lpi_layout_.fd);
}

void Vgic::SetIrqLineCallback(IrqLineCallback cb) { irq_line_ = std::move(cb); }

uint64_t Vgic::VcpuMpidr(uint32_t vcpu) {
  return (vcpu & 0xf) | (((vcpu >> 4) & 0xff) << 8) |
         (uint64_t{(vcpu >> 12) & 0xff} << 16);
}

uint32_t Vgic::VcpuForMpidr(uint64_t mpidr) const {
  const uint64_t aff0 = mpidr & 0xff;
  const uint64_t aff1 = (mpidr >> 8) & 0xff;
  const uint64_t aff2 = (mpidr >> 16) & 0xff;
  const uint64_t aff3 = (mpidr >> 32) & 0xff;
  if (aff0 >= 16 || aff3 != 0) return kNoVcpu;
  const uint64_t v = aff0 | (aff1 << 4) | (aff2 << 12);
  return v < num_vcpus_ ? static_cast<uint32_t>(v) : kNoVcpu;
}

uint32_t Vgic::ResolveRoute(uint64_t irouter) const {
  return VcpuForMpidr(irouter & kIrouterAffMask);
}

// ---------------------------------------------------------------------------
// Delivery evaluation (§4.8 "Interrupt prioritization", §12.2 ICC_*).

bool Vgic::GroupEnabledFor(const CpuInterface& cpu, uint32_t gicd_ctlr) {
  return cpu.igrpen1 && (gicd_ctlr & kGicdCtlrEnableGrp1) != 0;
}

uint32_t Vgic::PreemptionLevel(const CpuInterface& cpu, uint8_t prio) {
  // Group priority = priority with the subpriority bits (below BPR1) cleared
  // (§4.8.4, ICC_BPR1_EL1); one active-priority bit per 8 priority values.
  const uint8_t group = static_cast<uint8_t>(prio & (0xffu << cpu.bpr1));
  return group >> (8 - kPriorityBits);
}

uint8_t Vgic::RunningPriority(const CpuInterface& cpu) {
  if (cpu.ap == 0) return kIdlePriority;
  return static_cast<uint8_t>(std::countr_zero(cpu.ap) << (8 - kPriorityBits));
}

bool Vgic::Deliverable(const CpuInterface& cpu, const Best& best) {
  if (best.intid == kSpuriousIntid) return false;
  if (best.priority >= cpu.pmr) return false;  // PMR masks (§4.8.6)
  // Preemption: its group priority must be higher (lower value) than the
  // running priority.
  const uint8_t group =
      static_cast<uint8_t>(best.priority & (0xffu << cpu.bpr1));
  return group < RunningPriority(cpu);
}

Vgic::Best Vgic::FindBest(VcpuState& vc, uint32_t v) {
  Best best;
  if (!vc.cpu.igrpen1) return best;
  // Private interrupts first: on equal priority the lowest INTID wins.
  for (uint32_t i = 0; i < kNumPrivate; ++i) {
    const Irq& irq = vc.priv[i];
    if (irq.candidate() && irq.priority < best.priority) {
      best = {i, irq.priority};
    }
  }
  // GICD_CTLR.EnableGrp1 gates SGIs, PPIs, SPIs and (as in KVM) LPIs. A
  // GICD_CTLR write re-evaluates every line after publishing the mirror.
  const bool grp1 = (gicd_ctlr_mirror_.load() & kGicdCtlrEnableGrp1) != 0;
  if (grp1 && vc.spi_candidates.load() != 0) {
    hv::SpinLockHolder l(&dist_lock_);
    {
      for (size_t w = 0; w < spi_candidates_.size(); ++w) {
        uint64_t bits = spi_candidates_[w];
        while (bits != 0) {
          const uint32_t i = static_cast<uint32_t>(w * 64) +
                             static_cast<uint32_t>(std::countr_zero(bits));
          bits &= bits - 1;
          const Irq& s = spis_[i];
          if (s.target == v && s.priority < best.priority) {
            best = {kFirstSpi + i, s.priority};
          }
        }
      }
    }
  }
  if (!grp1) return Best{};
  const Best lpi = FindBestLpi(vc);
  if (lpi.priority < best.priority) best = lpi;
  return best;
}

void Vgic::SetLine(VcpuState& vc, uint32_t v, bool level) {
  if (vc.line == level) return;
  vc.line = level;
  vc.line_mirror.store(level, std::memory_order_release);
  if (irq_line_) irq_line_(v, level);
}

void Vgic::UpdateLineLocked(VcpuState& vc, uint32_t v) {
  SetLine(vc, v, Deliverable(vc.cpu, FindBest(vc, v)));
}

void Vgic::UpdateLine(uint32_t v) {
  VcpuState& vc = *vcpus_[v];
  hv::SpinLockHolder l(&vc.lock);
  UpdateLineLocked(vc, v);
}

void Vgic::UpdateAllLines() {
  for (uint32_t v = 0; v < num_vcpus_; ++v) UpdateLine(v);
}

bool Vgic::IrqLine(uint32_t vcpu) const {
  if (vcpu >= num_vcpus_) return false;
  return vcpus_[vcpu]->line_mirror.load(std::memory_order_acquire);
}

void Vgic::Kick(uint32_t vcpu) {
  if (vcpu < num_vcpus_) UpdateLine(vcpu);
}

// ---------------------------------------------------------------------------
// State maintenance.

void Vgic::SettleSpi(uint32_t intid, Deferred* d) {
  Irq& s = SpiRef(intid);
  const uint32_t i = intid - kFirstSpi;
  const uint64_t bit = uint64_t{1} << (i % 64);
  const uint32_t want =
      s.candidate() && s.target != kNoVcpu ? s.target : kNoVcpu;
  if (want != kNoVcpu) {
    spi_candidates_[i / 64] |= bit;
  } else {
    spi_candidates_[i / 64] &= ~bit;
  }
  if (want != s.counted) {
    if (s.counted != kNoVcpu) vcpus_[s.counted]->spi_candidates.fetch_sub(1);
    if (want != kNoVcpu) vcpus_[want]->spi_candidates.fetch_add(1);
    s.counted = want;
  }
  if (s.hw_active && !s.pending() && !s.active) {
    s.hw_active = false;
    if (s.hook && s.hook->forwarded) d->calls.emplace_back(s.hook, intid);
  }
}

void Vgic::SettlePrivate(Irq& irq, uint32_t intid, Deferred* d) {
  if (irq.hw_active && !irq.pending() && !irq.active) {
    irq.hw_active = false;
    if (irq.hook && irq.hook->forwarded) d->calls.emplace_back(irq.hook, intid);
  }
}

void Vgic::RunDeferred(Deferred* d) {
  for (uint32_t v : d->update_vcpus) UpdateLine(v);
  for (auto& [hook, intid] : d->calls) {
    if (hook->forwarded) {
      if (hook->deactivate) hook->deactivate(hook->host_irq);
    } else if (hook->resample) {
      hook->resample(intid);
    }
  }
  d->update_vcpus.clear();
  d->calls.clear();
}

// Deactivation of an active interrupt (§4.1.1): a level-sensitive line with a
// host hook is lowered (the host re-asserts after resample/deactivation).
void Vgic::DeactivateIrq(Irq& irq, uint32_t intid, Deferred* d) {
  if (!irq.active) return;
  irq.active = false;
  if (irq.hook && !irq.edge) {
    irq.line = false;
    if (!irq.hook->forwarded) d->calls.emplace_back(irq.hook, intid);
  }
}

void Vgic::Deactivate(VcpuState& vc, uint32_t v, uint32_t intid, Deferred* d) {
  if (intid < kNumPrivate) {
    Irq& irq = vc.priv[intid];
    DeactivateIrq(irq, intid, d);
    SettlePrivate(irq, intid, d);
  } else if (ValidSpi(intid)) {
    hv::SpinLockHolder l(&dist_lock_);
    Irq& s = SpiRef(intid);
    DeactivateIrq(s, intid, d);
    SettleSpi(intid, d);
    if (s.target != v) d->Update(s.target);
  }
}

// ---------------------------------------------------------------------------
// Injection.

absl::StatusOr<bool> Vgic::InjectSpi(uint32_t intid, bool pulse, bool level) {
  if (!ValidSpi(intid)) {
    return absl::InvalidArgumentError(
        absl::StrFormat("INTID %d is not an implemented SPI", intid));
  }
  Deferred d;
  bool newly = false;
  {
    hv::SpinLockHolder l(&dist_lock_);
    Irq& s = SpiRef(intid);
    const bool was = s.pending_latch;
    if (pulse) {
      s.pending_latch = true;
    } else {
      if (level && !s.line && s.edge) s.pending_latch = true;  // rising edge
      s.line = level;
    }
    if (s.hook && s.hook->forwarded && (pulse || level)) s.hw_active = true;
    newly = !was && s.pending_latch;
    SettleSpi(intid, &d);
    d.Update(s.target);
  }
  RunDeferred(&d);
  return newly;
}

absl::Status Vgic::SetSpiLevel(uint32_t intid, bool level) {
  return InjectSpi(intid, /*pulse=*/false, level).status();
}

absl::StatusOr<bool> Vgic::PulseSpi(uint32_t intid) {
  return InjectSpi(intid, /*pulse=*/true, true);
}

absl::StatusOr<bool> Vgic::InjectPpi(uint32_t vcpu, uint32_t intid, bool pulse,
                                     bool level) {
  if (vcpu >= num_vcpus_) {
    return absl::InvalidArgumentError(
        absl::StrFormat("vCPU %d out of range", vcpu));
  }
  if (intid < kNumSgis || intid >= kNumPrivate) {
    return absl::InvalidArgumentError(
        absl::StrFormat("INTID %d is not a PPI", intid));
  }
  VcpuState& vc = *vcpus_[vcpu];
  Deferred d;
  bool newly = false;
  {
    hv::SpinLockHolder l(&vc.lock);
    Irq& irq = vc.priv[intid];
    const bool was = irq.pending_latch;
    if (pulse) {
      irq.pending_latch = true;
    } else {
      if (level && !irq.line && irq.edge) irq.pending_latch = true;
      irq.line = level;
    }
    if (irq.hook && irq.hook->forwarded && (pulse || level)) {
      irq.hw_active = true;
    }
    newly = !was && irq.pending_latch;
    SettlePrivate(irq, intid, &d);
    UpdateLineLocked(vc, vcpu);
  }
  RunDeferred(&d);
  return newly;
}

absl::Status Vgic::SetPpiLevel(uint32_t vcpu, uint32_t intid, bool level) {
  return InjectPpi(vcpu, intid, /*pulse=*/false, level).status();
}

absl::StatusOr<bool> Vgic::PulsePpi(uint32_t vcpu, uint32_t intid) {
  return InjectPpi(vcpu, intid, /*pulse=*/true, true);
}

absl::StatusOr<bool> Vgic::SendSgi(uint32_t target_vcpu, uint32_t intid) {
  if (target_vcpu >= num_vcpus_) {
    return absl::InvalidArgumentError(
        absl::StrFormat("vCPU %d out of range", target_vcpu));
  }
  if (intid >= kNumSgis) {
    return absl::InvalidArgumentError(
        absl::StrFormat("INTID %d is not an SGI", intid));
  }
  VcpuState& vc = *vcpus_[target_vcpu];
  hv::SpinLockHolder l(&vc.lock);
  const bool was = vc.priv[intid].pending_latch;
  vc.priv[intid].pending_latch = true;
  UpdateLineLocked(vc, target_vcpu);
  return !was;
}

absl::StatusOr<uint32_t> Vgic::SpiTargetVcpu(uint32_t intid) const {
  if (!ValidSpi(intid)) {
    return absl::InvalidArgumentError(
        absl::StrFormat("INTID %d is not an implemented SPI", intid));
  }
  hv::SpinLockHolder l(&dist_lock_);
  const uint32_t t = spis_[intid - kFirstSpi].target;
  if (t == kNoVcpu) {
    return absl::NotFoundError(
        absl::StrFormat("SPI %d is routed to affinity 0x%x, which no vCPU has",
                        intid, spis_[intid - kFirstSpi].irouter));
  }
  return t;
}

// ---------------------------------------------------------------------------
// Forwarded interrupts and resamplers.

absl::Status Vgic::ForwardSpi(uint32_t intid, uint32_t host_irq,
                              HostDeactivateCallback deactivate) {
  if (!ValidSpi(intid)) {
    return absl::InvalidArgumentError(
        absl::StrFormat("INTID %d is not an implemented SPI", intid));
  }
  if (!deactivate) {
    return absl::InvalidArgumentError("forwarding needs a deactivate callback");
  }
  auto hook = std::make_shared<HostHook>();
  hook->forwarded = true;
  hook->host_irq = host_irq;
  hook->deactivate = std::move(deactivate);
  hv::SpinLockHolder l(&dist_lock_);
  Irq& s = SpiRef(intid);
  if (s.hook && s.hook->forwarded) {
    return absl::AlreadyExistsError(
        absl::StrFormat("SPI %d is already forwarded", intid));
  }
  s.hook = std::move(hook);
  s.hw_active = false;
  return absl::OkStatus();
}

absl::Status Vgic::ForwardPpi(uint32_t vcpu, uint32_t intid, uint32_t host_irq,
                              HostDeactivateCallback deactivate) {
  if (vcpu >= num_vcpus_ || intid < kNumSgis || intid >= kNumPrivate) {
    return absl::InvalidArgumentError(
        absl::StrFormat("vCPU %d INTID %d is not a PPI", vcpu, intid));
  }
  if (!deactivate) {
    return absl::InvalidArgumentError("forwarding needs a deactivate callback");
  }
  auto hook = std::make_shared<HostHook>();
  hook->forwarded = true;
  hook->host_irq = host_irq;
  hook->deactivate = std::move(deactivate);
  VcpuState& vc = *vcpus_[vcpu];
  hv::SpinLockHolder l(&vc.lock);
  Irq& irq = vc.priv[intid];
  if (irq.hook && irq.hook->forwarded) {
    return absl::AlreadyExistsError(
        absl::StrFormat("PPI %d of vCPU %d is already forwarded", intid, vcpu));
  }
  irq.hook = std::move(hook);
  irq.hw_active = false;
  return absl::OkStatus();
}

void Vgic::UnforwardSpi(uint32_t intid) {
  if (!ValidSpi(intid)) return;
  Deferred d;
  {
    hv::SpinLockHolder l(&dist_lock_);
    Irq& s = SpiRef(intid);
    if (!s.hook || !s.hook->forwarded) return;
    // The physical interrupt is still active on the host: give it back.
    if (s.hw_active) d.calls.emplace_back(s.hook, intid);
    s.hw_active = false;
    s.hook.reset();
  }
  RunDeferred(&d);
}

void Vgic::UnforwardPpi(uint32_t vcpu, uint32_t intid) {
  if (vcpu >= num_vcpus_ || intid < kNumSgis || intid >= kNumPrivate) return;
  Deferred d;
  {
    VcpuState& vc = *vcpus_[vcpu];
    hv::SpinLockHolder l(&vc.lock);
    Irq& irq = vc.priv[intid];
    if (!irq.hook || !irq.hook->forwarded) return;
    if (irq.hw_active) d.calls.emplace_back(irq.hook, intid);
    irq.hw_active = false;
    irq.hook.reset();
  }
  RunDeferred(&d);
}

bool Vgic::IsForwarded(uint32_t vcpu, uint32_t intid) const {
  if (ValidSpi(intid)) {
    hv::SpinLockHolder l(&dist_lock_);
    const Irq& s = spis_[intid - kFirstSpi];
    return s.hook != nullptr && s.hook->forwarded;
  }
  if (vcpu >= num_vcpus_ || intid >= kNumPrivate) return false;
  VcpuState& vc = *vcpus_[vcpu];
  hv::SpinLockHolder l(&vc.lock);
  return vc.priv[intid].hook != nullptr && vc.priv[intid].hook->forwarded;
}

absl::Status Vgic::SetSpiResampler(uint32_t intid, ResampleCallback cb) {
  if (!ValidSpi(intid)) {
    return absl::InvalidArgumentError(
        absl::StrFormat("INTID %d is not an implemented SPI", intid));
  }
  std::shared_ptr<HostHook> hook;
  if (cb) {
    hook = std::make_shared<HostHook>();
    hook->resample = std::move(cb);
  }
  hv::SpinLockHolder l(&dist_lock_);
  Irq& s = SpiRef(intid);
  if (s.hook && s.hook->forwarded) {
    return absl::FailedPreconditionError(absl::StrFormat(
        "SPI %d is forwarded; forwarded lines resample through deactivate",
        intid));
  }
  s.hook = std::move(hook);
  return absl::OkStatus();
}

}  // namespace vgic
