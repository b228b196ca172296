// A scripted arch backend for unit tests: no hardware, deterministic.
//
// A FakeVcpu replays exits the test pushes with PushExit(). Run() blocks until
// an exit is queued, Kick() is called, or — for a queued Halt() — the IRQ
// line is high, mirroring how the KVM backend handles HLT. It records what
// the VMM did (reset states, read completions, hypercall results, line
// levels) for assertions.
//
// Locking: each FakeVcpu has one mutex `mu_` guarding its script and records
// (leaf lock); FakeVm's `mu_` guards its vCPU list (leaf lock).
#ifndef HV_ARCH_FAKE_VM_H_
#define HV_ARCH_FAKE_VM_H_

#include <deque>
#include <optional>
#include <vector>

#include "hv/arch/arch.h"
#include "hv/arch/cond_var.h"
#include "hv/base/locks.h"

namespace hv::arch {

class FakeVcpu : public Vcpu, private IrqLine {
 public:
  explicit FakeVcpu(uint32_t index) : index_(index) {}

  // Script.
  void PushExit(const VcpuExit& exit);
  void PushHalt();  // Run() waits for a high IRQ line, then continues

  // Records.
  std::vector<BootState> resets() const;
  std::vector<uint64_t> read_completions() const;
  std::vector<uint64_t> hypercall_results() const;
  bool line_level() const;
  int line_raises() const;
  int kicks() const;
  int runs() const;
  // Blocks until the script is empty and Run() is waiting (or timeout).
  bool WaitIdle(std::chrono::milliseconds timeout);

  // Vcpu.
  uint32_t index() const override { return index_; }
  absl::Status Reset(const BootState& state) override;
  absl::StatusOr<VcpuExit> Run() override;
  absl::Status CompleteRead(uint64_t value) override;
  absl::Status CompleteHypercall(uint64_t result) override;
  void Kick() override;
  IrqLine& irq_line() override { return *this; }
  // The last Reset()'s rip/rsp/rdi/rsi/rdx/rcx/cr3 (long mode), or zeros.
  absl::StatusOr<CpuRegisters> GetRegisters() override;

 private:
  void SetLevel(bool high) override;
  struct Item {
    bool halt = false;
    VcpuExit exit;
  };
  const uint32_t index_;
  mutable Mutex mu_;
  CondVar cv_;
  std::deque<Item> script_ ABSL_GUARDED_BY(mu_);
  bool kicked_ ABSL_GUARDED_BY(mu_) = false;
  bool waiting_ ABSL_GUARDED_BY(mu_) = false;
  bool line_ ABSL_GUARDED_BY(mu_) = false;
  int raises_ ABSL_GUARDED_BY(mu_) = 0;
  int kicks_ ABSL_GUARDED_BY(mu_) = 0;
  int runs_ ABSL_GUARDED_BY(mu_) = 0;
  std::optional<VcpuExit> last_ ABSL_GUARDED_BY(mu_);
  std::vector<BootState> resets_ ABSL_GUARDED_BY(mu_);
  std::vector<uint64_t> reads_ ABSL_GUARDED_BY(mu_);
  std::vector<uint64_t> hypercalls_ ABSL_GUARDED_BY(mu_);
};

class FakeVm : public Vm {
 public:
  explicit FakeVm(uint32_t max_vcpus = 8, VmConfig config = {})
      : max_vcpus_(max_vcpus), config_(config) {}

  absl::Status MapMemory(GuestMemory& memory) override;
  absl::StatusOr<std::unique_ptr<Vcpu>> CreateVcpu(uint32_t index) override;
  uint32_t max_vcpus() const override { return max_vcpus_; }
  uint64_t tsc_khz() const override { return 1000000; }
  const VmConfig& config() const override { return config_; }

  // The vCPU created with `index` (owned by whoever called CreateVcpu).
  FakeVcpu* vcpu(uint32_t index) const;
  GuestMemory* memory() const;

 private:
  const uint32_t max_vcpus_;
  const VmConfig config_;
  mutable Mutex mu_;
  std::vector<FakeVcpu*> vcpus_ ABSL_GUARDED_BY(mu_);
  GuestMemory* memory_ ABSL_GUARDED_BY(mu_) = nullptr;
};

}  // namespace hv::arch

#endif  // HV_ARCH_FAKE_VM_H_
