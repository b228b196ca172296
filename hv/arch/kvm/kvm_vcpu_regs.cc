// KvmVcpu::GetRegisters: KVM_GET_REGS + KVM_GET_SREGS (api.rst 4.11/4.13)
// into arch::CpuRegisters. struct kvm_regs / kvm_sregs have no flexible
// arrays, so the <linux/kvm.h> ioctl numbers are right in C++ (unlike the
// ones kvm_abi.h spells out).
#include <linux/kvm.h>
#include <sys/ioctl.h>

#include <cerrno>
#include <cstring>

#include "absl/strings/str_format.h"
#include "hv/arch/kvm/kvm_vcpu.h"

namespace hv::arch {

static_assert(sizeof(kvm_regs) == 18 * 8, "struct kvm_regs layout");

absl::StatusOr<CpuRegisters> KvmVcpu::GetRegisters() {
  kvm_regs regs{};
  if (ioctl(fd_, KVM_GET_REGS, &regs) < 0) {
    return absl::InternalError(absl::StrFormat("vCPU %u: KVM_GET_REGS: %s",
                                               index_, std::strerror(errno)));
  }
  kvm_sregs sregs{};
  if (ioctl(fd_, KVM_GET_SREGS, &sregs) < 0) {
    return absl::InternalError(absl::StrFormat("vCPU %u: KVM_GET_SREGS: %s",
                                               index_, std::strerror(errno)));
  }
  CpuRegisters r{};
  r.rax = regs.rax;
  r.rbx = regs.rbx;
  r.rcx = regs.rcx;
  r.rdx = regs.rdx;
  r.rsi = regs.rsi;
  r.rdi = regs.rdi;
  r.rbp = regs.rbp;
  r.rsp = regs.rsp;
  r.r8 = regs.r8;
  r.r9 = regs.r9;
  r.r10 = regs.r10;
  r.r11 = regs.r11;
  r.r12 = regs.r12;
  r.r13 = regs.r13;
  r.r14 = regs.r14;
  r.r15 = regs.r15;
  r.rip = regs.rip;
  r.rflags = regs.rflags;
  r.cs = sregs.cs.selector;
  r.ss = sregs.ss.selector;
  r.ds = sregs.ds.selector;
  r.es = sregs.es.selector;
  r.fs = sregs.fs.selector;
  r.gs = sregs.gs.selector;
  r.fs_base = sregs.fs.base;
  r.gs_base = sregs.gs.base;
  r.cr0 = sregs.cr0;
  r.cr2 = sregs.cr2;
  r.cr3 = sregs.cr3;
  r.cr4 = sregs.cr4;
  r.efer = sregs.efer;
  return r;
}

}  // namespace hv::arch
