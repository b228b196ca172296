// crash_kexec for a VM (kernel/kexec_core.c: panic() → __crash_kexec() →
// machine_crash_shutdown() → machine_kexec()), driven by the VMM:
//
//   guest panic hypercall / triple fault (KVM_EXIT_SHUTDOWN) / API request
//     → the vCPU thread (or API thread) calls TriggerCrash(reason, vcpu)
//     → exactly one caller wins (an atomic compare-exchange, like panic()'s
//       panic_cpu); every other caller gets kParkVcpu and must stop its vCPU
//     → the winner: marks the loader crashed (no more loads), stops all other
//       vCPUs, captures every vCPU's registers, then PrepareCrashJump():
//       verify the crash image's digests and write the ELF core header into
//       the crash region
//     → kStartCrashImage: the VMM resets all vCPUs' state and starts the boot
//       vCPU at `entry`, handing the crash image the core header's GPA and
//       size (Linux passes elfcorehdr= on the command line; the register /
//       platform-info convention is the VMM's, see docs/kexec.md).
//     → or kEnterCrashedState: no crash image / busy / verification failed;
//       the VM stays stopped with its memory kept for inspection.
//
// States: kRunning → kSwitching → kCrashImageRunning | kCrashed. A panic of
// the crash image itself (state kCrashImageRunning) wins once more and goes
// to kCrashed: as in Linux, the kdump kernel has no crash kernel of its own.
//
// Thread safety: TriggerCrash may be called from any number of threads at
// once. state_ is the only shared state (atomic); the loader's trylock guards
// the images. No lock is held across the VcpuStopper/VcpuRegisterSource
// calls.
#ifndef HV_LOADER_CRASH_KEXEC_H_
#define HV_LOADER_CRASH_KEXEC_H_

#include <atomic>
#include <cstddef>
#include <cstdint>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "hv/loader/kexec_loader.h"
#include "hv/loader/vcpu_control.h"

namespace hv::loader {

enum class CrashReason { kPanicHypercall, kTripleFault, kApiRequest };
absl::string_view CrashReasonName(CrashReason reason);

enum class CrashState { kRunning, kSwitching, kCrashImageRunning, kCrashed };

struct CrashOutcome {
  enum class Action {
    kParkVcpu,           // lost the race: stop this vCPU, do nothing else
    kStartCrashImage,    // reset vCPUs, start boot_vcpu at jump.entry
    kEnterCrashedState,  // keep the VM stopped; `why` says why no switch
  };
  Action action = Action::kParkVcpu;
  CrashReason reason = CrashReason::kApiRequest;  // the winning reason
  size_t boot_vcpu = 0;
  CrashJump jump;
  absl::Status why;  // OK for kStartCrashImage / kParkVcpu
};

class CrashKexec {
 public:
  // All three must outlive this object. `boot_vcpu` runs the crash image.
  CrashKexec(KexecLoader* loader, VcpuStopper* stopper,
             VcpuRegisterSource* registers, size_t boot_vcpu = 0);

  // `vcpu` is the panicking vCPU (for kApiRequest: the vCPU to keep running,
  // usually the boot vCPU).
  CrashOutcome TriggerCrash(CrashReason reason, size_t vcpu);

  CrashState state() const { return state_.load(std::memory_order_acquire); }

 private:
  CrashOutcome Switch(CrashReason reason, size_t vcpu);

  KexecLoader* const loader_;
  VcpuStopper* const stopper_;
  VcpuRegisterSource* const registers_;
  const size_t boot_vcpu_;
  std::atomic<CrashState> state_{CrashState::kRunning};
};

}  // namespace hv::loader

#endif  // HV_LOADER_CRASH_KEXEC_H_
