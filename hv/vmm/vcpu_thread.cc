#include "hv/vmm/vcpu_thread.h"

#include "absl/strings/str_cat.h"

namespace hv {

VcpuThread::VcpuThread(arch::Vcpu* vcpu, ExitHandler* handler)
    : vcpu_(vcpu), handler_(handler) {}

VcpuThread::~VcpuThread() { Stop(); }

void VcpuThread::Start() {
  thread_ = std::thread([this] { Loop(); });
}

VcpuThread::PowerOnResult VcpuThread::PowerOn(const arch::BootState& state) {
  MutexLock lock(&mu_);
  if (stop_) return PowerOnResult::kStopped;
  if (power_ == Power::kOn) return PowerOnResult::kAlreadyOn;
  if (power_ == Power::kOnPending) return PowerOnResult::kOnPending;
  power_ = Power::kOnPending;
  boot_ = state;
  cv_.NotifyAll();
  return PowerOnResult::kOk;
}

void VcpuThread::PowerOffSelf() {
  MutexLock lock(&mu_);
  off_request_ = true;
}

void VcpuThread::ForceOff() {
  MutexLock lock(&mu_);
  power_ = Power::kOff;
  off_request_ = false;
}

void VcpuThread::RequestPause() {
  {
    MutexLock lock(&mu_);
    pause_ = true;
  }
  vcpu_->Kick();
}

void VcpuThread::WaitPaused() {
  MutexLock lock(&mu_);
  while (!parked_ && !exited_ && thread_.joinable()) cv_.Wait(&mu_);
}

void VcpuThread::Resume() {
  MutexLock lock(&mu_);
  pause_ = false;
  cv_.NotifyAll();
}

void VcpuThread::Stop() {
  {
    MutexLock lock(&mu_);
    stop_ = true;
    cv_.NotifyAll();
  }
  vcpu_->Kick();
  if (thread_.joinable()) thread_.join();
}

VcpuThread::Power VcpuThread::power() const {
  MutexLock lock(&mu_);
  return power_;
}

uint64_t VcpuThread::exits() const {
  MutexLock lock(&mu_);
  return exits_;
}

void VcpuThread::Loop() {
  for (;;) {
    bool boot = false;
    arch::BootState state;
    {
      MutexLock lock(&mu_);
      for (;;) {
        if (off_request_) {
          off_request_ = false;
          power_ = Power::kOff;
        }
        if (stop_) {
          exited_ = true;
          parked_ = true;
          cv_.NotifyAll();
          return;
        }
        if (pause_ || power_ == Power::kOff) {
          if (!parked_) {
            parked_ = true;
            cv_.NotifyAll();
          }
          cv_.Wait(&mu_);
          continue;
        }
        parked_ = false;
        if (power_ == Power::kOnPending) {
          power_ = Power::kOn;
          boot = true;
          state = boot_;
        }
        break;
      }
    }
    if (boot) {
      absl::Status s = vcpu_->Reset(state);
      if (!s.ok()) {
        handler_->OnFatal(index(), absl::StrCat("reset failed: ", s.message()));
        PowerOffSelf();
        continue;
      }
    }
    absl::StatusOr<arch::VcpuExit> exit = vcpu_->Run();
    if (!exit.ok()) {
      handler_->OnFatal(index(), std::string(exit.status().message()));
      PowerOffSelf();
      continue;
    }
    HandleExit(*exit);
  }
}

void VcpuThread::HandleExit(const arch::VcpuExit& exit) {
  using Kind = arch::VcpuExit::Kind;
  if (exit.kind != Kind::kInterrupted) {
    MutexLock lock(&mu_);
    ++exits_;
  }
  absl::Status s;
  switch (exit.kind) {
    case Kind::kInterrupted:
      return;  // the loop re-checks pause/stop/power
    case Kind::kMmio: {
      const uint64_t v = handler_->OnMmio(index(), exit);
      if (!exit.is_write) s = vcpu_->CompleteRead(v);
      break;
    }
    case Kind::kPio: {
      const uint64_t v = handler_->OnPio(index(), exit);
      if (!exit.is_write) s = vcpu_->CompleteRead(v);
      break;
    }
    case Kind::kHypercall:
      s = vcpu_->CompleteHypercall(handler_->OnHypercall(index(), exit));
      break;
    case Kind::kShutdown:
      handler_->OnShutdown(index(), exit.reason);
      PowerOffSelf();
      return;
    case Kind::kError:
      handler_->OnFatal(index(), exit.reason);
      PowerOffSelf();
      return;
  }
  if (!s.ok()) {
    handler_->OnFatal(index(), std::string(s.message()));
    PowerOffSelf();
  }
}

}  // namespace hv
