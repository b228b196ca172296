// The VMM side of issue 5 (docs/kexec.md): image loading through
// loader::KexecLoader (normal + crash slots), crash_kexec through
// loader::CrashKexec, and guest kexec. Implements the two interfaces the
// loader needs from the hypervisor core:
//   VcpuStopper        — pauses vCPU threads (VcpuThread::RequestPause +
//                        WaitPaused: each has left KVM_RUN and stays out)
//   VcpuRegisterSource — arch::Vcpu::GetRegisters (KVM_GET_REGS/SREGS)
//
// Threading: Crash() runs on the panicking vCPU's thread (or an API thread
// with every vCPU paused). Reload() runs only with every vCPU paused (VM
// start, SYSTEM_RESET). `mu_` (leaf, taken by Reload and the API crash
// path) keeps a reload from replacing the loader while an API crash uses it;
// vCPU threads never take it (Reload only runs while they are parked).
// Lock order: VmmKexec::mu_ → VcpuThread::mu_; the loader's kexec trylock is
// never waited on.
#ifndef HV_VMM_VMM_KEXEC_H_
#define HV_VMM_VMM_KEXEC_H_

#include <atomic>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "hv/arch/arch.h"
#include "hv/base/locks.h"
#include "hv/loader/crash_kexec.h"
#include "hv/loader/kexec_loader.h"
#include "hv/memory/guest_memory.h"
#include "hv/vmm/vcpu_thread.h"

namespace hv {

class VmmKexec : public loader::VcpuStopper, public loader::VcpuRegisterSource {
 public:
  // `image`/`crash_image` must outlive this object (segments point into
  // them). crash_mib == 0 and an empty crash image: no crash region.
  // InvalidArgument/OutOfRange for a bad image or crash region.
  [[nodiscard]] static absl::StatusOr<std::unique_ptr<VmmKexec>> Create(
      GuestMemory* memory, const std::vector<uint8_t>* image,
      const std::vector<uint8_t>* crash_image, uint64_t crash_mib);

  // The vCPU threads, once created (before any Reload/Crash).
  void Attach(std::vector<std::unique_ptr<VcpuThread>>* threads,
              std::vector<std::unique_ptr<arch::Vcpu>>* vcpus);

  // A fresh loader: loads the normal image (kNormal slot), the crash image
  // (kCrash slot) if any, verifies the normal image (purgatory check) and
  // returns its entry. Every vCPU must be parked.
  [[nodiscard]] absl::StatusOr<uint64_t> Reload();

  // crash_kexec from `vcpu`'s thread (panic hypercall, triple fault).
  loader::CrashOutcome Crash(loader::CrashReason reason, uint32_t vcpu);
  // crash_kexec on API request: the caller has paused every vCPU.
  loader::CrashOutcome CrashFromApi(uint32_t keep);

  // Guest kexec from `vcpu`: validates and performs the entry list.
  [[nodiscard]] absl::StatusOr<uint64_t> GuestKexec(uint32_t vcpu,
                                                    uint64_t head,
                                                    uint64_t entry);

  // The generation a vCPU's current run belongs to (CrashKexec).
  void SetGeneration(uint32_t vcpu, uint32_t generation);
  loader::CrashState state();
  const loader::GpaRange& crash_region() const { return crash_region_; }
  bool has_crash_image() const { return crash_image_.has_value(); }

  // VcpuStopper / VcpuRegisterSource.
  size_t NumVcpus() const override;
  absl::Status StopAllExcept(size_t keep) override;
  absl::StatusOr<loader::X86VcpuState> CaptureState(size_t vcpu) override;

  // The current loader (replaced by Reload, i.e. at SYSTEM_RESET): for the
  // control plane's load/unload and for tests racing a load with a crash.
  loader::KexecLoader& loader() { return *loader_; }
  const loader::Image* crash_image() const {
    return crash_image_ ? &*crash_image_ : nullptr;
  }

  // Test/bench seam: called by StopAllExcept after every other vCPU is
  // parked (the moment the old memory is final). Set before Start().
  void SetStoppedHook(std::function<void()> hook) {
    stopped_hook_ = std::move(hook);
  }

 private:
  VmmKexec(GuestMemory* memory, loader::Image image,
           std::optional<loader::Image> crash_image,
           loader::GpaRange crash_region)
      : memory_(memory),
        image_(std::move(image)),
        crash_image_(std::move(crash_image)),
        crash_region_(crash_region) {}

  GuestMemory* const memory_;
  const loader::Image image_;
  const std::optional<loader::Image> crash_image_;
  const loader::GpaRange crash_region_;
  std::vector<std::unique_ptr<VcpuThread>>* threads_ = nullptr;
  std::vector<std::unique_ptr<arch::Vcpu>>* vcpus_ = nullptr;
  std::unique_ptr<std::atomic<uint32_t>[]> generation_;
  std::function<void()> stopped_hook_;

  Mutex mu_;
  // Replaced only by Reload() (all vCPUs parked, mu_ held).
  std::unique_ptr<loader::KexecLoader> loader_;
  std::unique_ptr<loader::CrashKexec> crash_;
};

}  // namespace hv

#endif  // HV_VMM_VMM_KEXEC_H_
