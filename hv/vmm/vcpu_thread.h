// One host thread per vCPU (DESIGN §5): runs arch::Vcpu::Run() in a loop and
// hands exits to an ExitHandler; implements the vCPU power/pause state
// machine:
//
//   power:  kOff ──PowerOn()──▶ kOnPending ──(thread resets the vCPU)──▶ kOn
//           kOn ──PowerOffSelf() (CPU_OFF, SYSTEM_OFF, fatal exit)──▶ kOff
//   pause:  orthogonal. RequestPause() kicks the vCPU; WaitPaused() returns
//           once the thread is parked outside Run(). Resume() lets it go.
//   stop:   terminal; the thread exits. Stop() is idempotent and joins.
//
// An exit is always handled completely (device access done, read value
// completed into the vCPU) before the thread looks at pause/stop, so a
// paused vCPU never has a half-done access.
//
// Locking: `mu_` guards the state below (leaf lock except that Kick() into
// the Vcpu is called with it released). The ExitHandler runs on this thread
// with no VcpuThread lock held, so it may call PowerOn() on other vCPUs and
// PowerOffSelf() on this one.
#ifndef HV_VMM_VCPU_THREAD_H_
#define HV_VMM_VCPU_THREAD_H_

#include <thread>

#include "hv/arch/arch.h"
#include "hv/arch/cond_var.h"
#include "hv/base/locks.h"

namespace hv {

class ExitHandler {
 public:
  virtual ~ExitHandler() = default;
  // Device access: for reads, return the value for the guest.
  virtual uint64_t OnMmio(uint32_t vcpu, const arch::VcpuExit& exit) = 0;
  virtual uint64_t OnPio(uint32_t vcpu, const arch::VcpuExit& exit) = 0;
  // Returns the value for the guest's rax.
  virtual uint64_t OnHypercall(uint32_t vcpu, const arch::VcpuExit& exit) = 0;
  // The vCPU cannot continue (triple fault, entry failure, backend error).
  // The VcpuThread powers the vCPU off afterwards.
  virtual void OnFatal(uint32_t vcpu, const std::string& reason) = 0;
  // A shutdown exit (triple fault, KVM_EXIT_SHUTDOWN): a guest crash the VMM
  // may answer with crash_kexec. Default: OnFatal. The VcpuThread powers
  // the vCPU off afterwards either way.
  virtual void OnShutdown(uint32_t vcpu, const std::string& reason) {
    OnFatal(vcpu, reason);
  }
};

class VcpuThread {
 public:
  enum class Power { kOff, kOnPending, kOn };
  enum class PowerOnResult { kOk, kAlreadyOn, kOnPending, kStopped };

  VcpuThread(arch::Vcpu* vcpu, ExitHandler* handler);
  ~VcpuThread();  // Stop()
  VcpuThread(const VcpuThread&) = delete;
  VcpuThread& operator=(const VcpuThread&) = delete;

  void Start();  // spawns the thread, powered off and not paused
  PowerOnResult PowerOn(const arch::BootState& state);
  // From this vCPU's own thread (inside the ExitHandler): stop running guest
  // code after the current exit.
  void PowerOffSelf();
  // From any other thread: power off (used by reset); the thread must be
  // paused (WaitPaused returned) so no exit is in flight.
  void ForceOff();

  void RequestPause();
  void WaitPaused();
  void Pause() {
    RequestPause();
    WaitPaused();
  }
  void Resume();
  void Stop();

  Power power() const;
  uint32_t index() const { return vcpu_->index(); }
  arch::Vcpu* vcpu() const { return vcpu_; }
  uint64_t exits() const;

 private:
  void Loop();
  void HandleExit(const arch::VcpuExit& exit);

  arch::Vcpu* const vcpu_;
  ExitHandler* const handler_;
  std::thread thread_;

  mutable Mutex mu_;
  CondVar cv_;
  Power power_ ABSL_GUARDED_BY(mu_) = Power::kOff;
  arch::BootState boot_ ABSL_GUARDED_BY(mu_);
  bool pause_ ABSL_GUARDED_BY(mu_) = false;
  bool parked_ ABSL_GUARDED_BY(mu_) = false;
  bool stop_ ABSL_GUARDED_BY(mu_) = false;
  bool exited_ ABSL_GUARDED_BY(mu_) = false;
  bool off_request_ ABSL_GUARDED_BY(mu_) = false;
  uint64_t exits_ ABSL_GUARDED_BY(mu_) = 0;
};

}  // namespace hv

#endif  // HV_VMM_VCPU_THREAD_H_
