#include "vfio/vfio_core.h"

#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "absl/strings/str_cat.h"

namespace vfio {

const char* IrqModeName(IrqMode m) {
  switch (m) {
    case IrqMode::kHostOwned:
      return "host-owned";
    case IrqMode::kForwardedMediated:
      return "forwarded-mediated";
    case IrqMode::kForwardedPosted:
      return "forwarded-posted";
  }
  return "?";
}

VfioCore::VfioCore(HostConsumer host_consumer, BypassManager* bypass)
    : host_consumer_(std::move(host_consumer)), bypass_(bypass) {}

VfioCore::~VfioCore() {
  Stop();
  hv::MutexLock l(&mu_);
  for (auto& s : slot_storage_) {
    s->handler.store(nullptr);
    s->owned.reset();
  }
}

VfioCore::Device* VfioCore::FindLocked(absl::string_view id) const {
  for (const auto& d : devices_) {
    if (d->bus->id() == id) return d.get();
  }
  return nullptr;
}

absl::Status VfioCore::AddDevice(std::unique_ptr<BusDevice> dev) {
  if (dev == nullptr) return absl::InvalidArgumentError("no device");
  std::vector<HostIrq> added;
  {
    hv::MutexLock l(&mu_);
    if (FindLocked(dev->id()) != nullptr) {
      return absl::AlreadyExistsError(
          absl::StrCat("device ", dev->id(), " is already registered"));
    }
    if (next_irq_ + dev->num_lines() > kMaxHostIrqs) {
      return absl::ResourceExhaustedError("out of host IRQ numbers");
    }
    auto d = std::make_unique<Device>();
    d->first_irq = next_irq_;
    for (uint32_t line = 0; line < dev->num_lines(); ++line) {
      auto s = std::make_unique<IrqSlot>();
      s->device = d.get();
      s->bus = dev.get();
      s->line = line;
      s->level = dev->level(line);
      if (!s->level) s->producer = std::make_unique<Producer>(this, next_irq_);
      slots_[next_irq_].store(s.get(), std::memory_order_release);
      added.push_back(next_irq_);
      ++next_irq_;
      slot_storage_.push_back(std::move(s));
    }
    d->bus = std::move(dev);
    devices_.push_back(std::move(d));
  }
  for (HostIrq irq : added) Watch(irq);
  return absl::OkStatus();
}

std::vector<DeviceInfo> VfioCore::ListDevices() const {
  hv::MutexLock l(&mu_);
  std::vector<DeviceInfo> out;
  for (const auto& d : devices_) {
    out.push_back({d->bus->id(), d->bus->bus(), d->bus->requester_id(),
                   d->owner, d->refs, d->first_irq, d->bus->num_lines()});
  }
  return out;
}

absl::StatusOr<DeviceInfo> VfioCore::GetDevice(absl::string_view id) const {
  hv::MutexLock l(&mu_);
  Device* d = FindLocked(id);
  if (d == nullptr) return absl::NotFoundError(absl::StrCat("device ", id));
  return DeviceInfo{d->bus->id(),       d->bus->bus(), d->bus->requester_id(),
                    d->owner,           d->refs,       d->first_irq,
                    d->bus->num_lines()};
}

absl::StatusOr<HostIrq> VfioCore::HostIrqFor(absl::string_view device,
                                             uint32_t index,
                                             uint32_t subindex) const {
  hv::MutexLock l(&mu_);
  Device* d = FindLocked(device);
  if (d == nullptr) {
    return absl::NotFoundError(absl::StrCat("device ", device, " not found"));
  }
  auto line = d->bus->Line(index, subindex);
  if (!line.ok()) return line.status();
  return d->first_irq + *line;
}

BusDevice* VfioCore::bus_device(HostIrq irq, uint32_t* line) const {
  IrqSlot* s = Slot(irq);
  if (s == nullptr) return nullptr;
  if (line != nullptr) *line = s->line;
  return s->bus;
}

absl::Status VfioCore::AcquireRef(absl::string_view device, VmId vm) {
  if (vm == kHost) return absl::InvalidArgumentError("vm: 0 is the host");
  hv::MutexLock l(&mu_);
  Device* d = FindLocked(device);
  if (d == nullptr) {
    return absl::NotFoundError(absl::StrCat("device ", device, " not found"));
  }
  if (d->refs > 0 && d->owner != vm) {
    return absl::FailedPreconditionError(
        absl::StrCat("device ", device, " is assigned to VM ", d->owner));
  }
  d->owner = vm;
  ++d->refs;
  return absl::OkStatus();
}

void VfioCore::ReleaseRef(absl::string_view device, VmId vm) {
  hv::MutexLock l(&mu_);
  Device* d = FindLocked(device);
  if (d == nullptr || d->refs == 0 || d->owner != vm) return;
  if (--d->refs == 0) {
    d->owner = kHost;
    d->bus->HostReset();
  }
}

void VfioCore::Swap(IrqSlot* s, std::unique_ptr<IrqHandler> h) {
  // RCU-style publish: new pointer first, then wait out every reader that may
  // hold the old one (a reader increments `readers` before loading the
  // pointer, both seq_cst, so a reader that loaded the old pointer is counted
  // by the time exchange() is visible), then free the old handler.
  s->handler.exchange(h.get(), std::memory_order_seq_cst);
  while (s->readers.load(std::memory_order_seq_cst) != 0) {
    std::this_thread::yield();
  }
  s->owned = std::move(h);
}

void VfioCore::SetForwarded(HostIrq irq, std::unique_ptr<IrqHandler> handler) {
  IrqSlot* s = Slot(irq);
  if (s == nullptr || handler == nullptr) return;
  bool register_producer = false;
  {
    hv::MutexLock l(&mu_);
    s->mode.store(IrqMode::kForwardedMediated);
    Swap(s, std::move(handler));
    if (bypass_ != nullptr && s->producer != nullptr &&
        !s->producer_registered) {
      s->producer_registered = register_producer = true;
    }
  }
  // Outside mu_: pairing may call back into SetPosted.
  if (register_producer) {
    bypass_->RegisterProducer(BypassToken(irq), s->producer.get())
        .IgnoreError();  // tokens are unique per IRQ
  }
}

void VfioCore::SetHostOwned(HostIrq irq) {
  IrqSlot* s = Slot(irq);
  if (s == nullptr) return;
  bool unregister = false;
  {
    hv::MutexLock l(&mu_);
    unregister = s->producer_registered;
    s->producer_registered = false;
  }
  // Unpairing first (outside mu_: DelProducer calls ClearPosted).
  if (unregister) bypass_->UnregisterProducer(BypassToken(irq));
  hv::MutexLock l(&mu_);
  if (s->mode.load() == IrqMode::kForwardedPosted) {
    s->bus->ClearPosted(s->line);
  }
  Swap(s, nullptr);
  s->mode.store(IrqMode::kHostOwned);
  // Messages that arrived while posted/forwarded and are still queued now
  // belong to the host: make sure somebody looks.
  s->bus->Unmask(s->line);
}

absl::Status VfioCore::SetPosted(HostIrq irq, hwsim::PostedEntry entry) {
  IrqSlot* s = Slot(irq);
  if (s == nullptr) return absl::NotFoundError(absl::StrCat("host irq ", irq));
  hv::MutexLock l(&mu_);
  if (s->handler.load() == nullptr) {
    return absl::FailedPreconditionError(
        absl::StrCat("host irq ", irq, " is not forwarded"));
  }
  if (s->level) {
    return absl::InvalidArgumentError(
        absl::StrCat("host irq ", irq, " is a level line (not postable)"));
  }
  if (absl::Status st = s->bus->SetPosted(s->line, std::move(entry));
      !st.ok()) {
    return st;
  }
  s->mode.store(IrqMode::kForwardedPosted);
  return absl::OkStatus();
}

void VfioCore::ClearPosted(HostIrq irq) {
  IrqSlot* s = Slot(irq);
  if (s == nullptr) return;
  hv::MutexLock l(&mu_);
  if (s->mode.load() != IrqMode::kForwardedPosted) return;
  s->bus->ClearPosted(s->line);
  s->mode.store(IrqMode::kForwardedMediated);
}

void VfioCore::Unmask(HostIrq irq) {
  IrqSlot* s = Slot(irq);
  if (s != nullptr) s->bus->Unmask(s->line);
}

void VfioCore::Deliver(HostIrq irq, IrqSlot* s, const IrqEvent& ev) {
  s->readers.fetch_add(1, std::memory_order_seq_cst);
  IrqHandler* h = s->handler.load(std::memory_order_seq_cst);
  if (h != nullptr) {
    if (h->Handle(irq, ev)) {
      s->guest_delivered.fetch_add(1, std::memory_order_relaxed);
    } else {
      s->guest_dropped.fetch_add(1, std::memory_order_relaxed);
    }
    s->readers.fetch_sub(1, std::memory_order_seq_cst);
    return;
  }
  s->readers.fetch_sub(1, std::memory_order_seq_cst);
  // Host-owned: the host driver consumes it; a level line was masked, its
  // source is acked, then unmasked (re-triggers if it asserts again).
  if (host_consumer_) host_consumer_(irq, ev);
  s->host_handled.fetch_add(1, std::memory_order_relaxed);
  if (ev.level) {
    s->bus->AckSource(s->line);
    s->bus->Unmask(s->line);
  }
}

void VfioCore::Dispatch(HostIrq irq) {
  IrqSlot* s = Slot(irq);
  if (s == nullptr) return;
  hv::SpinLockHolder l(&s->dispatch_lock);
  // Reset the trigger before draining, so a fire after the drain re-signals.
  uint64_t count;
  [[maybe_unused]] ssize_t n = read(s->bus->trigger_fd(s->line), &count, 8);
  // A masked line keeps its messages; unmasking re-triggers.
  if (s->bus->Masked(s->line)) return;
  s->scratch.clear();
  s->bus->Drain(s->line, &s->scratch);
  if (!s->level) {
    for (uint64_t seq : s->scratch) Deliver(irq, s, IrqEvent{seq, false});
    return;
  }
  // Level: one assertion is handled per dispatch; the line is masked first so
  // it cannot re-trigger until its owner is done.
  if (!s->bus->Asserted(s->line)) {
    // Raised and cleared again before anybody looked (e.g. the guest's
    // driver polled the status): those assertions coalesced to nothing.
    s->merged.fetch_add(s->scratch.size(), std::memory_order_relaxed);
    return;
  }
  if (s->scratch.size() > 1) {
    s->merged.fetch_add(s->scratch.size() - 1, std::memory_order_relaxed);
  }
  s->bus->Mask(s->line);
  Deliver(irq, s, IrqEvent{s->scratch.empty() ? 0 : s->scratch.back(), true});
}

absl::StatusOr<IrqStatus> VfioCore::Status(HostIrq irq) const {
  IrqSlot* s = Slot(irq);
  if (s == nullptr) return absl::NotFoundError(absl::StrCat("host irq ", irq));
  IrqStatus st;
  st.irq = irq;
  st.device = s->bus->id();
  st.line = s->line;
  st.level = s->level;
  st.mode = s->mode.load();
  {
    hv::MutexLock l(&mu_);
    st.owner = s->device->owner;
  }
  const hwsim::VectorCounters c = s->bus->counters(s->line);
  st.fired = c.fired;
  st.host_handled = s->host_handled.load();
  st.guest_delivered = s->guest_delivered.load();
  st.guest_dropped = s->guest_dropped.load();
  st.posted_delivered = c.posted_delivered;
  st.coalesced = c.posted_coalesced + c.level_coalesced + c.ring_overflow +
                 s->merged.load();
  st.queued = c.queued;
  return st;
}

std::vector<IrqStatus> VfioCore::DeviceStatus(absl::string_view device) const {
  HostIrq first = 0;
  uint32_t n = 0;
  {
    hv::MutexLock l(&mu_);
    Device* d = FindLocked(device);
    if (d == nullptr) return {};
    first = d->first_irq;
    n = d->bus->num_lines();
  }
  std::vector<IrqStatus> out;
  for (uint32_t i = 0; i < n; ++i) {
    if (auto st = Status(first + i); st.ok()) out.push_back(*st);
  }
  return out;
}

// ---------------------------------------------------------------- dispatcher

void VfioCore::Watch(HostIrq irq) {
  hv::MutexLock l(&mu_);
  if (!running_) return;
  IrqSlot* s = Slot(irq);
  epoll_event ev{};
  ev.events = EPOLLIN;
  ev.data.u64 = irq;
  epoll_ctl(epfd_, EPOLL_CTL_ADD, s->bus->trigger_fd(s->line), &ev);
}

absl::Status VfioCore::Start() {
  hv::MutexLock l(&mu_);
  if (running_) return absl::OkStatus();
  epfd_ = epoll_create1(EPOLL_CLOEXEC);
  stop_fd_ = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  if (epfd_ < 0 || stop_fd_ < 0) {
    return absl::InternalError(
        absl::StrCat("epoll/eventfd: ", strerror(errno)));
  }
  epoll_event ev{};
  ev.events = EPOLLIN;
  ev.data.u64 = ~0ull;
  epoll_ctl(epfd_, EPOLL_CTL_ADD, stop_fd_, &ev);
  for (HostIrq irq = 0; irq < next_irq_; ++irq) {
    IrqSlot* s = Slot(irq);
    epoll_event e{};
    e.events = EPOLLIN;
    e.data.u64 = irq;
    if (epoll_ctl(epfd_, EPOLL_CTL_ADD, s->bus->trigger_fd(s->line), &e) != 0) {
      return absl::InternalError(absl::StrCat("epoll_ctl: ", strerror(errno)));
    }
  }
  running_ = true;
  thread_ = std::thread([this] { Loop(); });
  return absl::OkStatus();
}

void VfioCore::Stop() {
  std::thread t;
  {
    hv::MutexLock l(&mu_);
    if (!running_) return;
    running_ = false;
    const uint64_t one = 1;
    [[maybe_unused]] ssize_t n = write(stop_fd_, &one, 8);
    t = std::move(thread_);
  }
  t.join();
  close(epfd_);
  close(stop_fd_);
  epfd_ = stop_fd_ = -1;
}

void VfioCore::Loop() {
  epoll_event evs[64];
  for (;;) {
    int n = epoll_wait(epfd_, evs, 64, -1);
    if (n < 0) {
      if (errno == EINTR) continue;
      return;
    }
    for (int i = 0; i < n; ++i) {
      if (evs[i].data.u64 == ~0ull) return;
      Dispatch(static_cast<HostIrq>(evs[i].data.u64));
    }
  }
}

}  // namespace vfio
