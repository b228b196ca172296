// The arch layer (DESIGN §5): what the VMM needs from a hardware-assisted
// virtualization backend, independent of KVM. The KVM x86-64 backend lives
// in hv/arch/kvm/, a scripted fake for unit tests in fake_vm.h.
//
// Threading contract: a Vcpu's Reset/Run/Complete* are called only from that
// vCPU's own thread (VcpuThread). Kick() and irq_line() are thread-safe and
// may be called from any thread at any time while the Vcpu exists.
#ifndef HV_ARCH_ARCH_H_
#define HV_ARCH_ARCH_H_

#include <cstdint>
#include <memory>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "hv/memory/guest_memory.h"

namespace hv::arch {

// Register state a vCPU starts with: 64-bit long mode, paging on, flat
// segments from the VMM-built GDT (see x86_boot.h).
struct BootState {
  uint64_t rip = 0;
  uint64_t rsp = 0;
  uint64_t rdi = 0;  // first argument (SysV): context / platform info
  uint64_t rsi = 0;  // second argument: vCPU index
  uint64_t rdx = 0;  // third argument (crash image: ELF core header GPA)
  uint64_t rcx = 0;  // fourth argument (crash image: core header size)
  uint64_t cr3 = 0;
  uint64_t gdt_base = 0;
  uint16_t gdt_limit = 0;
};

// Architectural register state read back from a stopped vCPU (KVM_GET_REGS
// + KVM_GET_SREGS), e.g. for the crash image's per-vCPU notes.
struct CpuRegisters {
  uint64_t rax, rbx, rcx, rdx, rsi, rdi, rbp, rsp;
  uint64_t r8, r9, r10, r11, r12, r13, r14, r15;
  uint64_t rip, rflags;
  uint16_t cs, ss, ds, es, fs, gs;
  uint64_t fs_base, gs_base;
  uint64_t cr0, cr2, cr3, cr4, efer;
};

struct VcpuExit {
  enum class Kind {
    kMmio,         // guest-physical access nobody in the kernel handled
    kPio,          // port I/O
    kHypercall,    // PSCI-style call; args[0] = function ID
    kInterrupted,  // Kick() was called (pause/stop/power-state change)
    kShutdown,     // triple fault / shutdown: the guest is dead
    kError,        // backend failure (entry failure, internal error)
  };
  Kind kind = Kind::kInterrupted;
  uint64_t addr = 0;  // GPA or port
  uint8_t size = 0;   // 1, 2, 4 or 8
  bool is_write = false;
  uint64_t data = 0;  // value written
  uint64_t args[4] = {0, 0, 0, 0};
  std::string reason;  // kShutdown / kError detail
};

// The GIC's per-CPU interrupt output as seen by one vCPU. Level-sensitive:
// while high, the vCPU takes an interrupt on the platform's IRQ vector as
// soon as it can; a halted vCPU is woken promptly.
class IrqLine {
 public:
  virtual ~IrqLine() = default;
  virtual void SetLevel(bool high) = 0;
};

class Vcpu {
 public:
  virtual ~Vcpu() = default;
  virtual uint32_t index() const = 0;
  // Puts the vCPU into the given long-mode state (power on / reset), not
  // halted, no pending injected interrupt.
  [[nodiscard]] virtual absl::Status Reset(const BootState& state) = 0;
  // Runs guest code until an exit the VMM must handle. HLT is handled inside
  // (the call blocks until the IRQ line rises or Kick()).
  [[nodiscard]] virtual absl::StatusOr<VcpuExit> Run() = 0;
  // Completes the last kMmio/kPio read exit with `value` (before next Run).
  [[nodiscard]] virtual absl::Status CompleteRead(uint64_t value) = 0;
  // Completes the last kHypercall exit with a result for the guest's rax.
  [[nodiscard]] virtual absl::Status CompleteHypercall(uint64_t result) = 0;
  // Makes a concurrent Run() return kInterrupted promptly, or the next one
  // immediately.
  virtual void Kick() = 0;
  virtual IrqLine& irq_line() = 0;
  // Reads the register state. Only from the vCPU's own thread between
  // Run() calls, or from another thread while the vCPU's thread is parked
  // outside Run() (a KVM vCPU ioctl blocks while KVM_RUN is in progress).
  [[nodiscard]] virtual absl::StatusOr<CpuRegisters> GetRegisters() {
    return absl::UnimplementedError("register read-out not supported");
  }
};

// How the GIC line reaches an x86 vCPU (docs/hv-core.md has the numbers).
enum class IrqDelivery {
  kInject,  // userspace irqchip: KVM_INTERRUPT when the guest can take it
  kLapic,   // in-kernel LAPIC: KVM_SIGNAL_MSI, fixed vector, edge on raise
};

struct VmConfig {
  IrqDelivery irq_delivery = IrqDelivery::kLapic;
  uint8_t irq_vector = 0x40;
  uint16_t hypercall_port = 0x510;
};

class Vm {
 public:
  virtual ~Vm() = default;
  // Makes every region of `memory` guest RAM. `memory` must outlive the Vm.
  [[nodiscard]] virtual absl::Status MapMemory(GuestMemory& memory) = 0;
  // index < max_vcpus(); each index once.
  [[nodiscard]] virtual absl::StatusOr<std::unique_ptr<Vcpu>> CreateVcpu(
      uint32_t index) = 0;
  virtual uint32_t max_vcpus() const = 0;
  // Guest TSC frequency in kHz, 0 if unknown.
  virtual uint64_t tsc_khz() const = 0;
  virtual const VmConfig& config() const = 0;
};

}  // namespace hv::arch

#endif  // HV_ARCH_ARCH_H_
