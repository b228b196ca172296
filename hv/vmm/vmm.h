// The VMM core: one guest on the hv-virt platform (hv_virt.h,
// docs/hv-core.md). Owns guest RAM, the arch Vm and its vCPUs (one
// VcpuThread each), the MMIO and PIO buses, the UART and the platform info
// block, and implements the PSCI-style hypercalls (ARM DEN0022D §5):
// PSCI_VERSION, CPU_ON, CPU_OFF, AFFINITY_INFO, SYSTEM_OFF (with an exit
// code argument, an hv extension) and SYSTEM_RESET.
//
// Lifecycle: Create() validates the configuration and loads the image;
// Start() powers on vCPU 0 at the ELF entry (rdi = platform info base,
// rsi = 0); Wait() blocks until the guest powers off, crashes, or Stop() is
// called, performing SYSTEM_RESETs in between (all vCPUs paused and powered
// off, RAM cleared, vGIC and ITS recreated in reset state, image reloaded,
// boot_count + 1, vCPU 0 restarted).
//
// GIC: the vGIC's frames are mapped at the hv-virt addresses and its
// per-vCPU line output drives arch::Vcpu::irq_line() (SetLevel runs under
// the vGIC's per-vCPU spinlock; the arch line only takes its own leaf lock,
// signals a thread or issues KVM_SIGNAL_MSI, never calls back into the GIC).
// The ITS acts on the vGIC through vgic::LpiSink.
//
// Locking: `mu_` guards the outcome/reset request (leaf lock). Lock order:
// Vmm::mu_ is never held while calling into a VcpuThread or device; device
// and bus locks sit below the vCPU threads: ITS cmd_mu_ → ITS lock_ → vGIC
// locks → arch IrqLine lock (KvmVcpu::mu_).
#ifndef HV_VMM_VMM_H_
#define HV_VMM_VMM_H_

#include <chrono>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "hv/arch/arch.h"
#include "hv/arch/cond_var.h"
#include "hv/base/locks.h"
#include "hv/bus/bus.h"
#include "hv/memory/guest_memory.h"
#include "hv/platform/platform_info.h"
#include "hv/platform/uart16550.h"
#include "hv/vmm/vcpu_thread.h"
#include "hv/vmm/vmm_kexec.h"
#include "vgic/its.h"
#include "vgic/vgic.h"

namespace hv {

struct VmmConfig {
  std::vector<uint8_t> image;  // ELF64 x86-64 executable
  uint32_t vcpus = 1;
  uint64_t memory_mib = 64;
  uint64_t guest_arg = 0;             // platform info user_arg
  std::function<void(char)> console;  // UART output, called per byte
  bool gic = true;         // GICv3 distributor, redistributors, CPU iface
  bool its = true;         // GICv3 ITS (needs gic)
  uint32_t num_spis = 64;  // multiple of 32
  // crash_kexec (docs/kexec.md): an ELF crash image loaded into a crash
  // region of crash_mib MiB (placed like crashkernel=, top of RAM). Both or
  // neither.
  std::vector<uint8_t> crash_image;
  uint64_t crash_mib = 0;
};

inline constexpr uint64_t kMinMemoryMib = 2;
inline constexpr uint64_t kMaxMemoryMib = HV_VIRT_RAM_MAX >> 20;

struct VmmExit {
  enum class Kind { kPowerOff, kCrash, kStopped };
  Kind kind = Kind::kStopped;
  int exit_code = 0;    // SYSTEM_OFF argument (kPowerOff)
  std::string message;  // kCrash detail
};

class Vmm : private ExitHandler {
 public:
  // InvalidArgument / OutOfRange naming the bad setting (vcpus, memory_mib,
  // image).
  [[nodiscard]] static absl::StatusOr<std::unique_ptr<Vmm>> Create(
      VmmConfig config, std::unique_ptr<arch::Vm> vm);
  ~Vmm() override;

  [[nodiscard]] absl::Status Start();
  VmmExit Wait();
  // Like Wait() but gives up after `timeout` (nullopt).
  std::optional<VmmExit> WaitFor(std::chrono::milliseconds timeout);

  void Pause();  // returns when no vCPU runs guest code
  void Resume();
  void Stop();  // Wait() then returns kStopped (unless already finished)

  MmioBus& mmio_bus() { return mmio_; }
  PioBus& pio_bus() { return pio_; }
  GuestMemory& memory() { return *memory_; }
  arch::Vm& vm() { return *vm_; }
  uint32_t num_vcpus() const { return static_cast<uint32_t>(vcpus_.size()); }
  arch::Vcpu& vcpu(uint32_t i) { return *vcpus_[i]; }
  VcpuThread& vcpu_thread(uint32_t i) { return *threads_[i]; }
  PlatformInfo& platform_info() { return *info_; }
  vgic::Vgic* gic() { return vgic_.get(); }  // nullptr without gic
  vgic::Its* its() { return its_.get(); }    // nullptr without its
  uint64_t boot_count() const;

  // crash_kexec on request (vmm_crash.cc): pauses every vCPU and switches
  // to the crash image on vCPU 0, or enters the crashed state (Wait()
  // returns kCrash) without one. FailedPrecondition if a crash is already
  // being handled or the VM has not started.
  [[nodiscard]] absl::Status TriggerCrash();
  loader::CrashState crash_state() { return kexec_->state(); }
  const loader::GpaRange& crash_region() const {
    return kexec_->crash_region();
  }
  VmmKexec& kexec() { return *kexec_; }
  uint64_t crash_switches() const;

 private:
  Vmm(VmmConfig config, std::unique_ptr<arch::Vm> vm)
      : config_(std::move(config)), vm_(std::move(vm)) {}
  absl::Status Init();
  absl::Status InitGic(hv_virt_info* info);
  absl::Status LoadAndBoot();  // loads the image, powers on vCPU 0
  absl::Status DoReset();
  void StopAll();
  void Finish(VmmExit exit);
  std::optional<VmmExit> WaitUntil(
      std::optional<std::chrono::steady_clock::time_point> deadline);

  // ExitHandler (vCPU threads).
  uint64_t OnMmio(uint32_t vcpu, const arch::VcpuExit& exit) override;
  uint64_t OnPio(uint32_t vcpu, const arch::VcpuExit& exit) override;
  uint64_t OnHypercall(uint32_t vcpu, const arch::VcpuExit& exit) override;
  void OnFatal(uint32_t vcpu, const std::string& reason) override;
  // vmm_crash.cc: triple fault → crash_kexec; panic / kexec hypercalls.
  void OnShutdown(uint32_t vcpu, const std::string& reason) override;
  int64_t PanicCall(uint32_t vcpu, uint64_t code);
  int64_t KexecCall(uint32_t vcpu, uint64_t head, uint64_t entry);
  // Acts on a CrashOutcome; `self` is true on the panicking vCPU's thread.
  void HandleCrashOutcome(const loader::CrashOutcome& outcome, uint32_t vcpu,
                          bool self, const std::string& detail);
  // A restart of `vcpu` at `boot`, performed by the Wait() thread with every
  // vCPU paused and powered off (crash switch, guest kexec).
  struct Restart {
    arch::BootState boot;
    uint32_t vcpu = 0;
    uint32_t generation = 0;
  };
  void RequestRestart(Restart r);
  void DoRestart(const Restart& r);
  void ConsoleMessage(const std::string& text);
  int64_t CpuOn(uint64_t target, uint64_t entry, uint64_t context);

  const VmmConfig config_;
  std::unique_ptr<GuestMemory> memory_;
  MmioBus mmio_;
  PioBus pio_;
  std::unique_ptr<Uart16550> uart_;
  std::unique_ptr<PlatformInfo> info_;
  std::unique_ptr<arch::Vm> vm_;
  arch::BootState boot_template_;  // cr3 / GDT, set in Init
  uint64_t entry_ = 0;
  std::vector<std::unique_ptr<arch::Vcpu>> vcpus_;
  // The vGIC's line callback drives vcpus_[v]->irq_line(); destroyed after
  // the vCPU threads (declared later) and before the vCPUs.
  std::unique_ptr<vgic::Vgic> vgic_;
  std::unique_ptr<vgic::Its> its_;
  std::vector<std::unique_ptr<VcpuThread>> threads_;
  std::unique_ptr<VmmKexec> kexec_;  // image slots, crash_kexec

  mutable Mutex mu_;
  CondVar cv_;
  std::optional<VmmExit> outcome_ ABSL_GUARDED_BY(mu_);
  bool reset_requested_ ABSL_GUARDED_BY(mu_) = false;
  std::optional<Restart> restart_ ABSL_GUARDED_BY(mu_);
  uint64_t crash_switches_ ABSL_GUARDED_BY(mu_) = 0;
  bool started_ ABSL_GUARDED_BY(mu_) = false;
  bool stopped_ ABSL_GUARDED_BY(mu_) = false;
  uint64_t boot_count_ ABSL_GUARDED_BY(mu_) = 0;
};

}  // namespace hv

#endif  // HV_VMM_VMM_H_
