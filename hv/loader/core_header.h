// The ELF core header ("elfcorehdr") handed to a crash image: an ELF64
// ET_CORE header whose program headers describe the crashed VM's memory, the
// way kexec-tools builds it for a kdump kernel (kexec/crashdump-elf.c) and
// /proc/vmcore consumes it (fs/proc/vmcore.c).
//
// Layout (all little endian, built at guest-physical address `header_gpa`):
//   Elf64_Ehdr                      e_type ET_CORE, e_machine EM_X86_64
//   Elf64_Phdr[0]   PT_NOTE         p_offset = GPA of the notes below
//   Elf64_Phdr[1..] PT_LOAD         one per preserved range:
//                                   p_paddr = p_offset = GPA, p_vaddr = GPA,
//                                   p_filesz = p_memsz = size
//   notes, per vCPU:
//     "CORE" NT_PRSTATUS  struct elf_prstatus (x86-64, 336 bytes), pr_pid =
//                         vCPU id + 1, pr_reg = user_regs_struct order
//     "HV"   NT_HV_VCPU   HvVcpuNote (cr0/cr2/cr3/cr4/efer + vCPU id)
//
// As in the elfcorehdr a kdump kernel receives, p_offset values are physical
// addresses of old memory (a dump writer turns them into file offsets).
// ParseCoreHeader() is what the guest kit's `kdump` program does; it is a
// fuzzable, bounds-checked parser.
#ifndef HV_LOADER_CORE_HEADER_H_
#define HV_LOADER_CORE_HEADER_H_

#include <cstddef>
#include <cstdint>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "hv/loader/segment.h"
#include "hv/loader/vcpu_state.h"

namespace hv::loader {

inline constexpr uint32_t kNtPrstatus = 1;         // NT_PRSTATUS
inline constexpr uint32_t kNtHvVcpu = 0x48560001;  // hv's own note type
inline constexpr size_t kMaxCoreVcpus = 256;
inline constexpr size_t kMaxCoreRanges = 1024;

// struct elf_prstatus for x86-64 (include/linux/elfcore.h, 336 bytes).
struct ElfPrstatus {
  int32_t si_signo, si_code, si_errno;  // struct elf_siginfo pr_info
  int16_t pr_cursig;
  int16_t pad0;
  uint64_t pr_sigpend, pr_sighold;
  int32_t pr_pid, pr_ppid, pr_pgrp, pr_sid;
  int64_t pr_utime[2], pr_stime[2], pr_cutime[2], pr_cstime[2];
  // elf_gregset_t = struct user_regs_struct (arch/x86/include/asm/user_64.h).
  uint64_t r15, r14, r13, r12, rbp, rbx, r11, r10, r9, r8, rax, rcx, rdx, rsi,
      rdi, orig_rax, rip, cs, eflags, rsp, ss, fs_base, gs_base, ds, es, fs, gs;
  int32_t pr_fpvalid;
  int32_t pad1;
};
static_assert(sizeof(ElfPrstatus) == 336);
static_assert(offsetof(ElfPrstatus, pr_pid) == 32);
static_assert(offsetof(ElfPrstatus, r15) == 112);  // pr_reg
static_assert(offsetof(ElfPrstatus, pr_fpvalid) == 328);

struct HvVcpuNote {
  uint32_t vcpu_id;
  uint32_t reserved;
  uint64_t cr0, cr2, cr3, cr4, efer;
};
static_assert(sizeof(HvVcpuNote) == 48);

struct VcpuDump {
  uint32_t vcpu_id = 0;
  X86VcpuState state{};
};

struct CoreDescription {
  std::vector<GpaRange> preserved;  // PT_LOAD ranges, in order
  std::vector<VcpuDump> vcpus;      // in note order
};

// Size in bytes of the header for `ranges` ranges and `vcpus` vCPUs.
uint64_t CoreHeaderSize(size_t ranges, size_t vcpus);

// Builds the header as it will sit at `header_gpa`. InvalidArgument if the
// counts exceed kMaxCoreRanges / kMaxCoreVcpus or a range is empty/wraps.
[[nodiscard]] absl::StatusOr<std::vector<uint8_t>> BuildCoreHeader(
    uint64_t header_gpa, const CoreDescription& core);

// Parses a header read from `header_gpa`. Every field is validated: ELF
// identity, ET_CORE/EM_X86_64, phentsize, bounded phnum, exactly one PT_NOTE
// lying inside `bytes`, PT_LOADs with p_offset == p_paddr, filesz == memsz,
// no wrap; notes walked with bounds checks; each NT_PRSTATUS paired with its
// NT_HV_VCPU note. InvalidArgument naming the field otherwise.
[[nodiscard]] absl::StatusOr<CoreDescription> ParseCoreHeader(
    absl::Span<const uint8_t> bytes, uint64_t header_gpa);

// Memory outside `crash_region` in `memory`'s RAM layout: what the crash
// image may dump (DESIGN §5: "everything outside the crash region").
std::vector<GpaRange> PreservedRanges(const GuestMemory& memory,
                                      const GpaRange& crash_region);

}  // namespace hv::loader

#endif  // HV_LOADER_CORE_HEADER_H_
