#include "hv/control/vmm_devices.h"

#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cstddef>
#include <utility>

#include "absl/strings/str_cat.h"
#include "hv/platform/hv_hotplug.h"
#include "tools/hwsim/hwsim_regs.h"

namespace hv::control {

namespace pb = ::hv::vmm::v1;

// Page 0 of a device's register window, shared with hvd's hwsim.
class VmmDevices::RemoteWindow : public MmioDevice {
 public:
  RemoteWindow(void* page, uint32_t slot, uint32_t num_vectors,
               const Send* send)
      : page_(static_cast<char*>(page)),
        slot_(slot),
        num_vectors_(num_vectors),
        send_(send) {}
  ~RemoteWindow() override { munmap(page_, HWSIM_WINDOW_GUEST_SIZE); }

  absl::Status Read(const MmioContext&, uint64_t offset, uint8_t size,
                    uint64_t* value) override {
    if (absl::Status s = Check(offset, size); !s.ok()) return s;
    if (size == 4) {
      *value = __atomic_load_n(reinterpret_cast<uint32_t*>(page_ + offset),
                               __ATOMIC_ACQUIRE);
    } else {
      *value = __atomic_load_n(reinterpret_cast<uint64_t*>(page_ + offset),
                               __ATOMIC_ACQUIRE);
    }
    return absl::OkStatus();
  }

  absl::Status Write(const MmioContext&, uint64_t offset, uint8_t size,
                     uint64_t value) override {
    if (absl::Status s = Check(offset, size); !s.ok()) return s;
    bool side_effect = false;
    bool plain = false;
    switch (offset) {
      case offsetof(hwsim_regs, status):
      case offsetof(hwsim_regs, fire):
      case offsetof(hwsim_regs, gen_count):
        side_effect = true;
        break;
      case offsetof(hwsim_regs, gen_vector):
      case offsetof(hwsim_regs, gen_burst):
      case offsetof(hwsim_regs, gen_rate_hz):
        plain = true;
        break;
      default:
        if (offset >= HWSIM_OFF_VECTORS &&
            offset < HWSIM_OFF_VECTORS + num_vectors_ * HWSIM_VECTOR_STRIDE) {
          const uint64_t field =
              (offset - HWSIM_OFF_VECTORS) % HWSIM_VECTOR_STRIDE;
          if (field == offsetof(hwsim_vector_regs, ctrl)) {
            side_effect = true;
          } else if (field == offsetof(hwsim_vector_regs, msg_data) ||
                     field == offsetof(hwsim_vector_regs, msg_addr)) {
            plain = true;
          }
        }
        break;
    }
    if (plain) {
      // The same store hwsim::WindowMmio does for these registers.
      if (size == 4) {
        __atomic_store_n(reinterpret_cast<uint32_t*>(page_ + offset),
                         static_cast<uint32_t>(value), __ATOMIC_RELEASE);
      } else {
        __atomic_store_n(reinterpret_cast<uint64_t*>(page_ + offset), value,
                         __ATOMIC_RELEASE);
      }
    } else if (side_effect) {
      pb::VmmEvent ev;
      pb::WindowWrite* w = ev.mutable_window_write();
      w->set_slot(slot_);
      w->set_offset(offset);
      w->set_size(size);
      w->set_value(value);
      (*send_)(ev);
    }
    return absl::OkStatus();  // read-only / reserved: writes ignored
  }

 private:
  static absl::Status Check(uint64_t offset, uint8_t size) {
    if ((size != 4 && size != 8) || offset % size != 0 ||
        offset + size > HWSIM_WINDOW_GUEST_SIZE) {
      return absl::InvalidArgumentError(
          absl::StrCat("device window: bad access at 0x", absl::Hex(offset)));
    }
    return absl::OkStatus();
  }
  char* const page_;
  const uint32_t slot_;
  const uint32_t num_vectors_;
  const Send* const send_;
};

namespace {
uint64_t Token(uint32_t slot, uint32_t vector) {
  return (uint64_t{slot} << 8 | vector) + 1;  // 0: the stop eventfd
}
}  // namespace

VmmDevices::VmmDevices(Vmm* vmm, Send send)
    : vmm_(vmm), send_(std::move(send)) {}

absl::StatusOr<std::unique_ptr<VmmDevices>> VmmDevices::Create(Vmm* vmm,
                                                               Send send) {
  std::unique_ptr<VmmDevices> d(new VmmDevices(vmm, std::move(send)));
  vgic::Vgic* gic = vmm->gic();
  if (gic == nullptr || vmm->its() == nullptr) {
    return d;  // no ITS: Attach answers FailedPrecondition
  }
  d->hp_ = std::make_unique<HotplugController>(kHotplugSlots, [gic](bool lv) {
    gic->SetSpiLevel(HV_HOTPLUG_SPI, lv).IgnoreError();
  });
  if (absl::Status s = vmm->mmio_bus().Register(
          HV_HOTPLUG_BASE, HV_HOTPLUG_SIZE, d->hp_.get(), "hotplug");
      !s.ok()) {
    return s;
  }
  d->epfd_ = epoll_create1(EPOLL_CLOEXEC);
  d->stop_fd_ = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  if (d->epfd_ < 0 || d->stop_fd_ < 0) {
    return absl::InternalError("vmm devices: epoll/eventfd");
  }
  epoll_event ev{};
  ev.events = EPOLLIN;
  ev.data.u64 = 0;
  epoll_ctl(d->epfd_, EPOLL_CTL_ADD, d->stop_fd_, &ev);
  d->thread_ = std::thread([p = d.get()] { p->Loop(); });
  return d;
}

VmmDevices::~VmmDevices() {
  if (thread_.joinable()) {
    uint64_t one = 1;
    [[maybe_unused]] ssize_t n = write(stop_fd_, &one, sizeof(one));
    thread_.join();
  }
  {
    MutexLock l(&mu_);
    for (Slot& s : slots_) {
      for (int fd : s.efds) close(fd);
      s.efds.clear();
    }
  }
  if (epfd_ >= 0) close(epfd_);
  if (stop_fd_ >= 0) close(stop_fd_);
}

void VmmDevices::Loop() {
  epoll_event events[16];
  for (;;) {
    const int n = epoll_wait(epfd_, events, 16, -1);
    if (n < 0) {
      if (errno == EINTR) continue;
      return;
    }
    for (int i = 0; i < n; ++i) {
      const uint64_t tok = events[i].data.u64;
      if (tok == 0) return;
      const uint32_t slot = static_cast<uint32_t>((tok - 1) >> 8);
      const uint32_t vector = static_cast<uint32_t>((tok - 1) & 0xff);
      uint64_t count = 0;
      uint32_t rid = 0;
      {
        MutexLock l(&mu_);
        if (slot >= kHotplugSlots || !slots_[slot].used ||
            vector >= slots_[slot].efds.size()) {
          continue;  // detached meanwhile
        }
        if (read(slots_[slot].efds[vector], &count, sizeof(count)) !=
            sizeof(count)) {
          continue;
        }
        rid = slots_[slot].requester_id;
      }
      // Mediated delivery: one MSI per interrupt hvd forwarded; an
      // untranslatable one is dropped, as the ITS drops it.
      for (uint64_t k = 0; k < count; ++k) {
        (void)vmm_->its()->InjectMsi(rid, vector);
      }
    }
  }
}

absl::Status VmmDevices::Attach(const pb::AttachDevice& cmd,
                                std::vector<int> fds) {
  auto close_all = [&fds] {
    for (int fd : fds) {
      if (fd >= 0) close(fd);
    }
  };
  if (hp_ == nullptr) {
    close_all();
    return absl::FailedPreconditionError("vm: no ITS for mediated MSIs");
  }
  const uint32_t slot = cmd.slot();
  const uint32_t nvec = cmd.num_vectors();
  if (slot >= kHotplugSlots) {
    close_all();
    return absl::InvalidArgumentError(absl::StrCat("slot: ", slot));
  }
  if (nvec == 0 || nvec > HWSIM_MAX_VECTORS || fds.size() != 1 + nvec) {
    close_all();
    return absl::InvalidArgumentError(
        absl::StrCat("num_vectors: ", nvec, " with ", fds.size(), " fds"));
  }
  if (cmd.window_gpa() != kDeviceWindowBase + slot * kDeviceWindowStride) {
    close_all();
    return absl::InvalidArgumentError("window_gpa: not the slot's window");
  }
  {
    MutexLock l(&mu_);
    if (slots_[slot].used) {
      close_all();
      return absl::FailedPreconditionError(
          absl::StrCat("slot: ", slot, " occupied"));
    }
  }
  void* page = mmap(nullptr, HWSIM_WINDOW_GUEST_SIZE, PROT_READ | PROT_WRITE,
                    MAP_SHARED, fds[0], 0);
  close(fds[0]);
  fds[0] = -1;
  if (page == MAP_FAILED) {
    close_all();
    return absl::InvalidArgumentError("window: cannot map the memfd");
  }
  const auto* regs = static_cast<const hwsim_regs*>(page);
  if (regs->magic != HWSIM_MAGIC || regs->requester_id != cmd.requester_id() ||
      regs->num_vectors != nvec) {
    munmap(page, HWSIM_WINDOW_GUEST_SIZE);
    close_all();
    return absl::InvalidArgumentError("window: identity does not match");
  }
  std::vector<int> efds(fds.begin() + 1, fds.end());
  MutexLock l(&mu_);
  windows_.push_back(std::make_unique<RemoteWindow>(page, slot, nvec, &send_));
  RemoteWindow* win = windows_.back().get();
  if (absl::Status s = vmm_->mmio_bus().Register(
          cmd.window_gpa(), HWSIM_WINDOW_GUEST_SIZE, win, cmd.device());
      !s.ok()) {
    for (int fd : efds) close(fd);
    return s;
  }
  uint32_t added = 0;
  for (; added < nvec; ++added) {
    epoll_event ev{};
    ev.events = EPOLLIN;
    ev.data.u64 = Token(slot, added);
    if (epoll_ctl(epfd_, EPOLL_CTL_ADD, efds[added], &ev) != 0) break;
  }
  absl::Status s = added == nvec
                       ? absl::OkStatus()
                       : absl::InvalidArgumentError("fds: not an eventfd");
  if (s.ok()) {
    s = hp_->Attach(
        slot, {cmd.device(), 1, static_cast<uint16_t>(cmd.requester_id()), nvec,
               0, cmd.window_gpa(), HWSIM_WINDOW_GUEST_SIZE});
  }
  if (!s.ok()) {  // undo, newest first
    for (uint32_t v = 0; v < added; ++v) {
      epoll_ctl(epfd_, EPOLL_CTL_DEL, efds[v], nullptr);
    }
    for (int fd : efds) close(fd);
    vmm_->mmio_bus().Unregister(cmd.window_gpa()).IgnoreError();
    return s;
  }
  Slot& sl = slots_[slot];
  sl.used = true;
  sl.requester_id = cmd.requester_id();
  sl.window_gpa = cmd.window_gpa();
  sl.efds = std::move(efds);
  sl.window = win;
  return absl::OkStatus();
}

void VmmDevices::Complete(uint32_t slot, bool forced) {
  {
    MutexLock l(&mu_);
    Slot& s = slots_[slot];
    if (s.used) {
      for (int fd : s.efds) {
        epoll_ctl(epfd_, EPOLL_CTL_DEL, fd, nullptr);
        close(fd);
      }
      vmm_->mmio_bus().Unregister(s.window_gpa).IgnoreError();
    }
    s = Slot();
  }
  pb::VmmEvent ev;
  ev.mutable_detached()->set_slot(slot);
  ev.mutable_detached()->set_forced(forced);
  send_(ev);
}

absl::Status VmmDevices::Detach(const pb::DetachDevice& cmd) {
  const uint32_t slot = cmd.slot();
  if (slot >= kHotplugSlots || hp_ == nullptr) {
    return absl::InvalidArgumentError(absl::StrCat("slot: ", slot));
  }
  switch (hp_->state(slot)) {
    case SlotState::kEmpty:
      // Nothing there (an attach that failed half-way on our side, or a
      // repeated request): hvd still gets its Detached.
      Complete(slot, cmd.force());
      return absl::OkStatus();
    case SlotState::kPresent:
      if (absl::Status s = hp_->RequestEject(
              slot, [this, slot](bool forced) { Complete(slot, forced); });
          !s.ok()) {
        return s;
      }
      break;
    case SlotState::kEjectPending:
      break;
  }
  if (cmd.force()) {
    // Completes every pending eject requested up to now (forced = true).
    hp_->ExpireEjects(HotplugController::Clock::now(),
                      std::chrono::milliseconds(0));
  }
  return absl::OkStatus();
}

}  // namespace hv::control
