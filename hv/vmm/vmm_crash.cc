// Vmm: crash_kexec and guest kexec wiring (docs/kexec.md, "VMM
// integration"). Kept apart from vmm.cc; the loader logic is in hv/loader/,
// the vCPU stop / register read-out in vmm_kexec.cc.
#include "absl/strings/str_format.h"
#include "hv/vmm/vmm.h"

namespace hv {
namespace {

using loader::CrashKexec;
using loader::CrashOutcome;
using loader::CrashReason;

constexpr uint64_t kScratchStack = HV_VIRT_BOOT_GDT;  // as in vmm.cc

int64_t KexecError(const absl::Status& s) {
  switch (s.code()) {
    case absl::StatusCode::kUnavailable:
      return HV_RET_BUSY;
    case absl::StatusCode::kOutOfRange:
      return PSCI_RET_INVALID_ADDRESS;
    case absl::StatusCode::kPermissionDenied:
    case absl::StatusCode::kFailedPrecondition:
      return PSCI_RET_DENIED;
    default:
      return PSCI_RET_INVALID_PARAMETERS;
  }
}

}  // namespace

void Vmm::ConsoleMessage(const std::string& text) {
  if (!config_.console) return;
  for (char c : text) config_.console(c);
}

uint64_t Vmm::crash_switches() const {
  MutexLock lock(&mu_);
  return crash_switches_;
}

void Vmm::RequestRestart(Restart r) {
  MutexLock lock(&mu_);
  if (outcome_) return;
  restart_ = std::move(r);
  cv_.NotifyAll();
}

void Vmm::DoRestart(const Restart& r) {
  // Every vCPU paused (its last exit fully handled) and powered off: "vCPU
  // state is reset" — the boot vCPU gets a fresh long-mode state from the
  // VMM's boot tables (still intact below HV_VIRT_IMAGE_MIN, outside the
  // crash region and never written here), the others stay off.
  for (auto& t : threads_) t->RequestPause();
  for (auto& t : threads_) t->WaitPaused();
  for (auto& t : threads_) t->ForceOff();
  for (uint32_t i = 0; i < threads_.size(); ++i) {
    kexec_->SetGeneration(i, r.generation);
  }
  threads_[r.vcpu]->PowerOn(r.boot);
  for (auto& t : threads_) t->Resume();
}

void Vmm::HandleCrashOutcome(const CrashOutcome& outcome, uint32_t vcpu,
                             bool self, const std::string& detail) {
  switch (outcome.action) {
    case CrashOutcome::Action::kParkVcpu:
      if (self) threads_[vcpu]->PowerOffSelf();
      return;
    case CrashOutcome::Action::kStartCrashImage: {
      if (self) threads_[vcpu]->PowerOffSelf();
      {
        MutexLock lock(&mu_);
        ++crash_switches_;
      }
      ConsoleMessage(absl::StrFormat(
          "\nhv: %s (%s): switching to the crash image at 0x%x on vCPU %u "
          "(elfcorehdr 0x%x, %u bytes)\n",
          loader::CrashReasonName(outcome.reason), detail, outcome.jump.entry,
          outcome.boot_vcpu, outcome.jump.core_header_gpa,
          outcome.jump.core_header_size));
      Restart r;
      r.boot = boot_template_;
      r.boot.rip = outcome.jump.entry;
      r.boot.rsp = kScratchStack;
      r.boot.rdi = HV_VIRT_INFO_BASE;
      r.boot.rsi = outcome.boot_vcpu;
      r.boot.rdx = outcome.jump.core_header_gpa;
      r.boot.rcx = outcome.jump.core_header_size;
      r.vcpu = static_cast<uint32_t>(outcome.boot_vcpu);
      r.generation = CrashKexec::kCrashKernel;
      RequestRestart(std::move(r));
      return;
    }
    case CrashOutcome::Action::kEnterCrashedState:
      if (self) threads_[vcpu]->PowerOffSelf();
      // hv-vmm's crash exit (126) as before; memory is kept until the Vmm
      // is destroyed (Wait() stops the vCPU threads, it frees nothing).
      Finish(VmmExit{VmmExit::Kind::kCrash, 0,
                     absl::StrFormat("vCPU %u: %s (crashed state: %s)", vcpu,
                                     detail, outcome.why.message())});
      return;
  }
}

void Vmm::OnShutdown(uint32_t vcpu, const std::string& reason) {
  HandleCrashOutcome(kexec_->Crash(CrashReason::kTripleFault, vcpu), vcpu,
                     /*self=*/true, reason);
}

int64_t Vmm::PanicCall(uint32_t vcpu, uint64_t code) {
  HandleCrashOutcome(kexec_->Crash(CrashReason::kPanicHypercall, vcpu), vcpu,
                     /*self=*/true,
                     absl::StrFormat("guest panic, code 0x%x", code));
  return PSCI_RET_SUCCESS;  // seen only if the guest is ever resumed
}

int64_t Vmm::KexecCall(uint32_t vcpu, uint64_t head, uint64_t entry) {
  absl::StatusOr<uint64_t> target = kexec_->GuestKexec(vcpu, head, entry);
  if (!target.ok()) {
    ConsoleMessage(
        absl::StrFormat("hv: kexec refused: %s\n", target.status().ToString()));
    return KexecError(target.status());
  }
  threads_[vcpu]->PowerOffSelf();
  Restart r;
  r.boot = boot_template_;
  r.boot.rip = *target;
  r.boot.rsp = kScratchStack;
  r.boot.rdi = HV_VIRT_INFO_BASE;
  r.boot.rsi = 0;
  r.vcpu = 0;
  r.generation = CrashKexec::kFirstKernel;
  RequestRestart(std::move(r));
  return PSCI_RET_SUCCESS;
}

absl::Status Vmm::TriggerCrash() {
  {
    MutexLock lock(&mu_);
    if (!started_) return absl::FailedPreconditionError("not started");
    if (outcome_) return absl::FailedPreconditionError("the VM has finished");
  }
  // Every vCPU parked first, so register read-out never waits on KVM_RUN.
  Pause();
  const CrashOutcome outcome = kexec_->CrashFromApi(0);
  if (outcome.action == CrashOutcome::Action::kParkVcpu) {
    return absl::FailedPreconditionError(
        "a crash is already being handled");  // its restart resumes vCPUs
  }
  HandleCrashOutcome(outcome, 0, /*self=*/false, "API request");
  return absl::OkStatus();
}

}  // namespace hv
