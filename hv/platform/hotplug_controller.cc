#include "hv/platform/hotplug_controller.h"

#include <cstring>

#include "absl/strings/str_cat.h"

namespace hv {

HotplugController::HotplugController(uint32_t num_slots,
                                     std::function<void(bool)> set_irq,
                                     std::chrono::milliseconds eject_timeout)
    : num_slots_(num_slots == 0 || num_slots > HV_HOTPLUG_MAX_SLOTS
                     ? HV_HOTPLUG_MAX_SLOTS
                     : num_slots),
      set_irq_(std::move(set_irq)),
      timeout_(eject_timeout),
      slots_(num_slots_) {
  if (timeout_.count() > 0) timer_ = std::thread([this] { TimerLoop(); });
}

HotplugController::~HotplugController() {
  {
    MutexLock l(&mu_);
    stop_ = true;
  }
  cv_.NotifyAll();
  if (timer_.joinable()) timer_.join();
}

void HotplugController::ApplyIrq() {
  MutexLock il(&irq_mu_);
  bool level;
  {
    MutexLock l(&mu_);
    level = LevelLocked();
  }
  if (set_irq_) set_irq_(level);
}

absl::Status HotplugController::Attach(uint32_t slot,
                                       const HotplugDevice& dev) {
  if (slot >= num_slots_) {
    return absl::InvalidArgumentError(
        absl::StrCat("slot ", slot, " >= ", num_slots_));
  }
  if (dev.name.size() > 31) {
    return absl::InvalidArgumentError("name: longer than 31 bytes");
  }
  {
    MutexLock l(&mu_);
    if (slots_[slot].state != SlotState::kEmpty) {
      return absl::FailedPreconditionError(
          absl::StrCat("slot ", slot, " is occupied"));
    }
    slots_[slot] = Slot{SlotState::kPresent, dev, nullptr, {}};
    events_ |= 1u << slot;
  }
  ApplyIrq();
  return absl::OkStatus();
}

absl::Status HotplugController::RequestEject(uint32_t slot, EjectDone done) {
  if (slot >= num_slots_) {
    return absl::InvalidArgumentError(absl::StrCat("slot ", slot));
  }
  {
    MutexLock l(&mu_);
    Slot& s = slots_[slot];
    if (s.state != SlotState::kPresent) {
      return absl::FailedPreconditionError(absl::StrCat(
          "slot ", slot,
          s.state == SlotState::kEmpty ? " is empty" : " is already ejecting"));
    }
    s.state = SlotState::kEjectPending;
    s.done = std::move(done);
    s.requested = Clock::now();
    events_ |= 1u << slot;
  }
  cv_.NotifyAll();
  ApplyIrq();
  return absl::OkStatus();
}

HotplugController::EjectDone HotplugController::CompleteLocked(uint32_t s) {
  EjectDone done = std::move(slots_[s].done);
  slots_[s] = Slot{};
  events_ &= ~(1u << s);
  return done;
}

void HotplugController::ExpireEjects(Clock::time_point now,
                                     std::chrono::milliseconds timeout) {
  std::vector<EjectDone> forced;
  {
    MutexLock l(&mu_);
    for (uint32_t s = 0; s < num_slots_; ++s) {
      if (slots_[s].state == SlotState::kEjectPending &&
          slots_[s].requested + timeout <= now) {
        forced.push_back(CompleteLocked(s));
      }
    }
  }
  if (forced.empty()) return;
  ApplyIrq();
  for (auto& d : forced) {
    if (d) d(/*forced=*/true);
  }
}

void HotplugController::TimerLoop() {
  MutexLock l(&mu_);
  while (!stop_) {
    cv_.WaitFor(&mu_, timeout_ / 4 + std::chrono::milliseconds(1));
    if (stop_) break;
    mu_.Unlock();
    ExpireEjects(Clock::now(), timeout_);
    mu_.Lock();
  }
}

SlotState HotplugController::state(uint32_t slot) const {
  MutexLock l(&mu_);
  return slot < num_slots_ ? slots_[slot].state : SlotState::kEmpty;
}

absl::Status HotplugController::Read(const MmioContext&, uint64_t offset,
                                     uint8_t size, uint64_t* value) {
  const bool wide = offset == HV_HOTPLUG_REG_WINDOW_GPA ||
                    offset == HV_HOTPLUG_REG_WINDOW_SIZE;
  if (!(size == 4 || (size == 8 && wide)) || offset % 4 != 0 ||
      offset + size > HV_HOTPLUG_SIZE) {
    return absl::InvalidArgumentError(
        absl::StrCat("hotplug: bad read at 0x", absl::Hex(offset)));
  }
  MutexLock l(&mu_);
  const Slot* s = sel_ < num_slots_ ? &slots_[sel_] : nullptr;
  const bool present = s != nullptr && s->state != SlotState::kEmpty;
  uint64_t v = 0;
  switch (offset) {
    case HV_HOTPLUG_REG_MAGIC:
      v = HV_HOTPLUG_MAGIC;
      break;
    case HV_HOTPLUG_REG_NUM_SLOTS:
      v = num_slots_;
      break;
    case HV_HOTPLUG_REG_SEL:
      v = sel_;
      break;
    case HV_HOTPLUG_REG_EVENTS:
      v = events_;
      break;
    case HV_HOTPLUG_REG_STATUS:
      if (present) {
        v = HV_HOTPLUG_STATUS_PRESENT;
        if (s->state == SlotState::kEjectPending) {
          v |= HV_HOTPLUG_STATUS_EJECT_REQ;
        }
      }
      break;
    case HV_HOTPLUG_REG_KIND:
      v = present ? s->dev.kind : 0;
      break;
    case HV_HOTPLUG_REG_REQUESTER_ID:
      v = present ? s->dev.requester_id : 0;
      break;
    case HV_HOTPLUG_REG_NUM_VECTORS:
      v = present ? s->dev.num_vectors : 0;
      break;
    case HV_HOTPLUG_REG_DEV_SPI:
      v = present ? s->dev.spi : 0;
      break;
    case HV_HOTPLUG_REG_WINDOW_GPA:
    case HV_HOTPLUG_REG_WINDOW_GPA + 4: {
      const uint64_t g = present ? s->dev.window_gpa : 0;
      v = offset == HV_HOTPLUG_REG_WINDOW_GPA ? g : g >> 32;
      if (size == 4 && offset == HV_HOTPLUG_REG_WINDOW_GPA) v &= 0xffffffff;
      break;
    }
    case HV_HOTPLUG_REG_WINDOW_SIZE:
    case HV_HOTPLUG_REG_WINDOW_SIZE + 4: {
      const uint64_t z = present ? s->dev.window_size : 0;
      v = offset == HV_HOTPLUG_REG_WINDOW_SIZE ? z : z >> 32;
      if (size == 4 && offset == HV_HOTPLUG_REG_WINDOW_SIZE) v &= 0xffffffff;
      break;
    }
    default:
      if (offset >= HV_HOTPLUG_REG_NAME && offset < HV_HOTPLUG_REG_NAME + 32 &&
          present) {
        char name[32] = {};
        std::memcpy(name, s->dev.name.data(), s->dev.name.size());
        uint32_t w;
        std::memcpy(&w, name + (offset - HV_HOTPLUG_REG_NAME), 4);
        v = w;
      }
      break;  // reserved: RAZ
  }
  *value = v;
  return absl::OkStatus();
}

absl::Status HotplugController::Write(const MmioContext&, uint64_t offset,
                                      uint8_t size, uint64_t value) {
  if (size != 4 || offset % 4 != 0 || offset >= HV_HOTPLUG_SIZE) {
    return absl::InvalidArgumentError(
        absl::StrCat("hotplug: bad write at 0x", absl::Hex(offset)));
  }
  EjectDone done;
  {
    MutexLock l(&mu_);
    switch (offset) {
      case HV_HOTPLUG_REG_SEL:
        sel_ = static_cast<uint32_t>(value);
        break;
      case HV_HOTPLUG_REG_EVENTS:
        // W1C of attach notifications; an eject request stays signalled
        // until it is acked or forced.
        for (uint32_t s = 0; s < num_slots_; ++s) {
          if ((value >> s & 1) && slots_[s].state != SlotState::kEjectPending) {
            events_ &= ~(1u << s);
          }
        }
        break;
      case HV_HOTPLUG_REG_CMD:
        if (value == HV_HOTPLUG_CMD_EJECT_ACK && sel_ < num_slots_ &&
            slots_[sel_].state == SlotState::kEjectPending) {
          done = CompleteLocked(sel_);
          if (!done) done = [](bool) {};
        }
        break;
      default:
        break;  // read-only / reserved: ignored
    }
  }
  ApplyIrq();
  if (done) done(/*forced=*/false);
  return absl::OkStatus();
}

}  // namespace hv
