// x86-64 vCPU state the VMM captures at a guest panic, for the crash image's
// per-vCPU register notes (DESIGN §5, crash_kexec). The arch layer fills it
// from KVM_GET_REGS / KVM_GET_SREGS (see VcpuRegisterSource).
#ifndef HV_LOADER_VCPU_STATE_H_
#define HV_LOADER_VCPU_STATE_H_

#include <cstdint>
#include <type_traits>

namespace hv::loader {

struct X86VcpuState {
  // General purpose registers (struct kvm_regs order is irrelevant here).
  uint64_t rax, rbx, rcx, rdx, rsi, rdi, rbp, rsp;
  uint64_t r8, r9, r10, r11, r12, r13, r14, r15;
  uint64_t rip, rflags;
  // Segment selectors and the FS/GS bases (struct kvm_sregs).
  uint16_t cs, ss, ds, es, fs, gs;
  uint32_t reserved0;
  uint64_t fs_base, gs_base;
  // Control state a dump analyser needs to walk the page tables.
  uint64_t cr0, cr2, cr3, cr4, efer;
};
static_assert(std::is_trivially_copyable_v<X86VcpuState>);
static_assert(sizeof(X86VcpuState) == 18 * 8 + 16 + 2 * 8 + 5 * 8);

}  // namespace hv::loader

#endif  // HV_LOADER_VCPU_STATE_H_
