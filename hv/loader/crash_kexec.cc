#include "hv/loader/crash_kexec.h"

#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"

namespace hv::loader {

absl::string_view CrashReasonName(CrashReason reason) {
  switch (reason) {
    case CrashReason::kPanicHypercall:
      return "panic hypercall";
    case CrashReason::kTripleFault:
      return "triple fault";
    case CrashReason::kApiRequest:
      return "API request";
  }
  return "unknown";
}

CrashKexec::CrashKexec(KexecLoader* loader, VcpuStopper* stopper,
                       VcpuRegisterSource* registers, size_t boot_vcpu)
    : loader_(loader),
      stopper_(stopper),
      registers_(registers),
      boot_vcpu_(boot_vcpu) {}

CrashOutcome CrashKexec::TriggerCrash(CrashReason reason, size_t vcpu) {
  CrashOutcome out;
  out.reason = reason;
  CrashState expected = CrashState::kRunning;
  if (state_.compare_exchange_strong(expected, CrashState::kSwitching,
                                     std::memory_order_acq_rel)) {
    out = Switch(reason, vcpu);
    state_.store(out.action == CrashOutcome::Action::kStartCrashImage
                     ? CrashState::kCrashImageRunning
                     : CrashState::kCrashed,
                 std::memory_order_release);
    return out;
  }
  if (expected == CrashState::kCrashImageRunning &&
      state_.compare_exchange_strong(expected, CrashState::kCrashed,
                                     std::memory_order_acq_rel)) {
    // The crash image itself crashed: there is nothing further to switch to.
    out.action = CrashOutcome::Action::kEnterCrashedState;
    out.why = absl::FailedPreconditionError(absl::StrCat(
        "the crash image crashed (", CrashReasonName(reason), ")"));
    return out;
  }
  out.action = CrashOutcome::Action::kParkVcpu;  // someone else is handling it
  return out;
}

CrashOutcome CrashKexec::Switch(CrashReason reason, size_t vcpu) {
  CrashOutcome out;
  out.reason = reason;
  out.boot_vcpu = boot_vcpu_;
  out.action = CrashOutcome::Action::kEnterCrashedState;
  loader_->BeginCrash();  // from now on the images are frozen
  const size_t n = stopper_->NumVcpus();
  if (vcpu >= n || boot_vcpu_ >= n) {
    out.why = absl::InvalidArgumentError(absl::StrFormat(
        "crash on vCPU %u / boot vCPU %u of %u", vcpu, boot_vcpu_, n));
    return out;
  }
  if (absl::Status s = stopper_->StopAllExcept(vcpu); !s.ok()) {
    out.why = s;
    return out;
  }
  std::vector<VcpuDump> dumps;
  dumps.reserve(n);
  for (size_t i = 0; i < n; ++i) {
    absl::StatusOr<X86VcpuState> st = registers_->CaptureState(i);
    if (!st.ok()) {
      out.why = st.status();
      return out;
    }
    dumps.push_back(VcpuDump{static_cast<uint32_t>(i), *st});
  }
  absl::StatusOr<CrashJump> jump = loader_->PrepareCrashJump(dumps);
  if (!jump.ok()) {
    out.why = jump.status();
    return out;
  }
  out.action = CrashOutcome::Action::kStartCrashImage;
  out.jump = *jump;
  return out;
}

}  // namespace hv::loader
