// VMM-built x86-64 boot structures so vCPUs start directly in 64-bit long
// mode (Intel SDM Vol. 3A §9.8.5 "Initializing IA-32e Mode"; AMD APM Vol. 2
// §14.6): a flat GDT and identity page tables mapping the low 4 GiB with
// 2 MiB pages (§4.5, PDE with PS=1), MMIO hole [HV_VIRT_RAM_MAX, 4 GiB)
// mapped uncached (PCD|PWT). Layout: hv_virt.h HV_VIRT_BOOT_*.
#ifndef HV_ARCH_X86_BOOT_H_
#define HV_ARCH_X86_BOOT_H_

#include <cstdint>

#include "absl/status/statusor.h"
#include "hv/arch/arch.h"
#include "hv/memory/guest_memory.h"

namespace hv::arch {

// GDT selectors the VMM programs into the segment registers.
inline constexpr uint16_t kCodeSelector = 0x08;
inline constexpr uint16_t kDataSelector = 0x10;
inline constexpr uint16_t kTssSelector = 0x18;
inline constexpr uint64_t kGdtEntries = 5;  // null, code, data, TSS (2 slots)
inline constexpr uint64_t kTssOffset = 0x100;  // TSS inside the GDT page
inline constexpr uint64_t kTssLimit = 0x67;

// GDT descriptor encodings (SDM Vol. 3A §3.4.5): code = 64-bit (L=1),
// execute/read, accessed; data = read/write, accessed, 4 GiB, G=1, D/B=1.
inline constexpr uint64_t kGdtCode64 = 0x00af9b000000ffffull;
inline constexpr uint64_t kGdtData = 0x00cf93000000ffffull;

// Page-table entry bits (SDM Vol. 3A §4.5, Table 4-15..4-18).
inline constexpr uint64_t kPtePresent = 1ull << 0;
inline constexpr uint64_t kPteWrite = 1ull << 1;
inline constexpr uint64_t kPtePwt = 1ull << 3;
inline constexpr uint64_t kPtePcd = 1ull << 4;
inline constexpr uint64_t kPteAccessed = 1ull << 5;
inline constexpr uint64_t kPteDirty = 1ull << 6;
inline constexpr uint64_t kPtePageSize = 1ull << 7;

// Control-register bits used for the long-mode entry state.
inline constexpr uint64_t kCr0Pe = 1ull << 0, kCr0Mp = 1ull << 1,
                          kCr0Et = 1ull << 4, kCr0Ne = 1ull << 5,
                          kCr0Wp = 1ull << 16, kCr0Am = 1ull << 18,
                          kCr0Pg = 1ull << 31;
inline constexpr uint64_t kCr4Pae = 1ull << 5, kCr4Osfxsr = 1ull << 9,
                          kCr4Osxmmexcpt = 1ull << 10;
inline constexpr uint64_t kEferLme = 1ull << 8, kEferLma = 1ull << 10;

// Writes GDT, TSS and page tables into guest RAM. Needs RAM covering
// [0, HV_VIRT_BOOT_END). Returns the BootState fields cr3 / gdt_*; the
// caller fills rip/rsp/rdi/rsi.
[[nodiscard]] absl::StatusOr<BootState> BuildBootTables(GuestMemory& memory);

}  // namespace hv::arch

#endif  // HV_ARCH_X86_BOOT_H_
