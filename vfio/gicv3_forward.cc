#include "vfio/gicv3_forward.h"

#include "absl/strings/str_cat.h"

namespace vfio {
namespace {

// Mediated MSI: the host handler injects through the ITS translation path
// (IHI 0069 §5.1: a write of EventID to GITS_TRANSLATER by DeviceID).
class MsiHandler : public IrqHandler {
 public:
  MsiHandler(vgic::Its* its, uint32_t d, uint32_t e)
      : its_(its), d_(d), e_(e) {}
  bool Handle(HostIrq, const IrqEvent&) override {
    return its_->InjectMsi(d_, e_) == vgic::its::Error::kNone;
  }

 private:
  vgic::Its* its_;
  uint32_t d_, e_;
};

// Forwarded SPI: edge pulses, level raises (the core masked the host line;
// the vGIC's deactivate callback unmasks it).
class SpiHandler : public IrqHandler {
 public:
  SpiHandler(vgic::Vgic* gic, uint32_t intid) : gic_(gic), intid_(intid) {}
  bool Handle(HostIrq, const IrqEvent& ev) override {
    if (ev.level) return gic_->SetSpiLevel(intid_, true).ok();
    auto newly = gic_->PulseSpi(intid_);
    return newly.ok() && *newly;
  }

 private:
  vgic::Vgic* gic_;
  uint32_t intid_;
};

}  // namespace

Gicv3Forward::Gicv3Forward(VfioCore* core, vgic::Vgic* gic, vgic::Its* its,
                           std::optional<Gicv3PostedConfig> posted)
    : core_(core), gic_(gic), its_(its), posted_cfg_(std::move(posted)) {
  if (posted_cfg_ && its_ != nullptr) its_->SetObserver(this);
}

Gicv3Forward::~Gicv3Forward() {
  std::vector<std::pair<HostIrq, GuestIrq>> left;
  {
    hv::MutexLock l(&mu_);
    for (const auto& [irq, f] : fwds_) left.emplace_back(irq, f.guest);
  }
  for (const auto& [irq, g] : left) SetForward(irq, g, false).IgnoreError();
  if (posted_cfg_ && its_ != nullptr) its_->SetObserver(nullptr);
}

absl::StatusOr<std::shared_ptr<hwsim::PostedRegion>> Gicv3Forward::MapPending(
    const vgic::Vgic& gic) {
  const vgic::LpiPendingLayout& l = gic.lpi_pending_layout();
  return hwsim::PostedRegion::Map(l.fd, l.bytes_per_vcpu, gic.num_vcpus());
}

absl::Status Gicv3Forward::SetForward(HostIrq host_irq,
                                      const GuestIrq& guest_irq, bool on) {
  uint32_t line = 0;
  BusDevice* bus = core_->bus_device(host_irq, &line);
  if (!on) {
    bool was_posted_consumer = false;
    {
      hv::MutexLock l(&mu_);
      auto it = fwds_.find(host_irq);
      if (it == fwds_.end() || !(it->second.guest == guest_irq)) {
        return absl::OkStatus();
      }
      was_posted_consumer = it->second.consumer != nullptr;
    }
    if (guest_irq.kind == GuestIrq::Kind::kMsi) {
      if (was_posted_consumer) {
        posted_cfg_->bypass->UnregisterConsumer(
            VfioCore::BypassToken(host_irq));
        its_->Unwatch(guest_irq.device_id, guest_irq.event_id);
      }
      core_->SetHostOwned(host_irq);
    } else {
      // Host first, then give back an outstanding physical activation (its
      // deactivate callback unmasks; a still-asserted source goes to the
      // host), then drop the virtual level.
      core_->SetHostOwned(host_irq);
      gic_->UnforwardSpi(guest_irq.spi);
      if (bus != nullptr && bus->level(line)) {
        gic_->SetSpiLevel(guest_irq.spi, false).IgnoreError();
      }
    }
    hv::MutexLock l(&mu_);
    fwds_.erase(host_irq);
    return absl::OkStatus();
  }

  if (bus == nullptr) {
    return absl::NotFoundError(absl::StrCat("host irq ", host_irq));
  }
  {
    hv::MutexLock l(&mu_);
    if (fwds_.count(host_irq)) {
      return absl::AlreadyExistsError(
          absl::StrCat("host irq ", host_irq, " is already forwarded"));
    }
  }
  if (guest_irq.kind == GuestIrq::Kind::kSpi) {
    if (gic_ == nullptr) {
      return absl::FailedPreconditionError("guest_irq: this VM has no GIC");
    }
    if (absl::Status s =
            gic_->ForwardSpi(guest_irq.spi, host_irq,
                             [core = core_](uint32_t h) { core->Unmask(h); });
        !s.ok()) {
      return s;  // InvalidArgument (not an SPI) / AlreadyExists
    }
    {
      hv::MutexLock l(&mu_);
      fwds_[host_irq].guest = guest_irq;
    }
    core_->SetForwarded(host_irq,
                        std::make_unique<SpiHandler>(gic_, guest_irq.spi));
    return absl::OkStatus();
  }
  if (its_ == nullptr) {
    return absl::FailedPreconditionError("guest_irq: this VM has no ITS");
  }
  if (bus->level(line)) {
    return absl::InvalidArgumentError(
        "guest_irq: a level line cannot be forwarded as an MSI");
  }
  const bool posted = posted_cfg_.has_value() && posted_cfg_->bypass != nullptr;
  Consumer* consumer = nullptr;
  {
    hv::MutexLock l(&mu_);
    Fwd& f = fwds_[host_irq];
    f.guest = guest_irq;
    if (posted) {
      f.consumer = std::make_unique<Consumer>(this, host_irq);
      consumer = f.consumer.get();
    }
  }
  core_->SetForwarded(host_irq,
                      std::make_unique<MsiHandler>(its_, guest_irq.device_id,
                                                   guest_irq.event_id));
  if (posted) {
    // Watch before pairing, so no translation change can be missed between
    // the pairing's Translate() and the observer.
    its_->Watch(guest_irq.device_id, guest_irq.event_id);
    if (absl::Status s = posted_cfg_->bypass->RegisterConsumer(
            VfioCore::BypassToken(host_irq), consumer);
        !s.ok()) {
      its_->Unwatch(guest_irq.device_id, guest_irq.event_id);
      hv::MutexLock l(&mu_);
      fwds_[host_irq].consumer.reset();  // stays mediated
    }
  }
  return absl::OkStatus();
}

void Gicv3Forward::RepostLocked(Fwd& f,
                                const std::optional<vgic::Translation>& t) {
  if (f.producer == nullptr) return;
  int bell = -1;
  if (t.has_value() && posted_cfg_->pending != nullptr &&
      posted_cfg_->doorbell) {
    bell = posted_cfg_->doorbell(t->vcpu);
  }
  if (bell >= 0) {
    hwsim::PostedEntry e{posted_cfg_->pending, t->vcpu, t->intid, bell};
    if (f.producer->Post(std::move(e)).ok()) {
      f.posted = true;
      ++posts_;
      return;
    }
  }
  if (f.posted) {
    f.producer->Unpost();
    f.posted = false;
    ++revokes_;
  }
}

absl::Status Gicv3Forward::Consumer::AddProducer(BypassProducer* p) {
  hv::MutexLock l(&owner_->mu_);
  auto it = owner_->fwds_.find(irq_);
  if (it == owner_->fwds_.end()) return absl::NotFoundError("no forward");
  Fwd& f = it->second;
  f.producer = p;
  owner_->RepostLocked(
      f, owner_->its_->Translate(f.guest.device_id, f.guest.event_id));
  return f.posted ? absl::OkStatus()
                  : absl::FailedPreconditionError(
                        "not postable now (no translation or no doorbell)");
}

void Gicv3Forward::Consumer::DelProducer(BypassProducer* p) {
  hv::MutexLock l(&owner_->mu_);
  auto it = owner_->fwds_.find(irq_);
  if (it == owner_->fwds_.end()) return;
  Fwd& f = it->second;
  if (f.posted) {
    p->Unpost();
    f.posted = false;
    ++owner_->revokes_;
  }
  f.producer = nullptr;
}

void Gicv3Forward::OnTranslationChange(const vgic::TranslationChange& change) {
  hv::MutexLock l(&mu_);
  for (auto& [irq, f] : fwds_) {
    if (f.guest.kind == GuestIrq::Kind::kMsi &&
        f.guest.device_id == change.device_id &&
        f.guest.event_id == change.event_id) {
      RepostLocked(f, change.after);
    }
  }
}

uint64_t Gicv3Forward::posts() const {
  hv::MutexLock l(&mu_);
  return posts_;
}

uint64_t Gicv3Forward::revokes() const {
  hv::MutexLock l(&mu_);
  return revokes_;
}

}  // namespace vfio
