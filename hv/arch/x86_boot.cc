#include "hv/arch/x86_boot.h"

#include "hv/base/status_macros.h"
#include "hv/platform/hv_virt.h"

namespace hv::arch {

absl::StatusOr<BootState> BuildBootTables(GuestMemory& memory) {
  if (!memory.Contains(0, HV_VIRT_BOOT_END)) {
    return absl::InvalidArgumentError(
        "guest RAM must cover the boot structures at [0, 0x8000)");
  }
  HV_RETURN_IF_ERROR(
      memory.Fill(HV_VIRT_BOOT_GDT, 0, HV_VIRT_BOOT_END - HV_VIRT_BOOT_GDT));
  // GDT: null, code64, data, 64-bit TSS descriptor (16 bytes, §7.2.3).
  const uint64_t tss_base = HV_VIRT_BOOT_GDT + kTssOffset;
  const uint64_t tss_lo = (kTssLimit & 0xffff) | ((tss_base & 0xffffff) << 16) |
                          (0x89ull << 40) |  // present, type 9 (available)
                          (((tss_base >> 24) & 0xff) << 56);
  const uint64_t tss_hi = tss_base >> 32;
  const uint64_t gdt[kGdtEntries] = {0, kGdtCode64, kGdtData, tss_lo, tss_hi};
  HV_RETURN_IF_ERROR(memory.Write(HV_VIRT_BOOT_GDT, gdt, sizeof(gdt)));
  // TSS: I/O map base past the limit (no I/O permission bitmap).
  HV_RETURN_IF_ERROR(memory.WriteObj<uint16_t>(tss_base + 0x66, kTssLimit + 1));

  // PML4[0] → PDPT; PDPT[0..3] → 4 PDs of 512 × 2 MiB = 4 GiB identity.
  // Accessed (and, in the 2 MiB leaves, dirty) are preset: the processor
  // writes a paging entry only to set a clear A/D flag (SDM Vol. 3A §4.8),
  // so with them set the tables are never written by the CPU — a crash
  // image running on them leaves memory outside its region untouched.
  HV_RETURN_IF_ERROR(memory.WriteObj<uint64_t>(
      HV_VIRT_BOOT_PML4,
      HV_VIRT_BOOT_PDPT | kPtePresent | kPteWrite | kPteAccessed));
  for (uint64_t i = 0; i < 4; ++i) {
    const uint64_t pd = HV_VIRT_BOOT_PD + i * GuestMemory::kPageSize;
    HV_RETURN_IF_ERROR(
        memory.WriteObj<uint64_t>(HV_VIRT_BOOT_PDPT + i * 8,
                                  pd | kPtePresent | kPteWrite | kPteAccessed));
    for (uint64_t j = 0; j < 512; ++j) {
      const uint64_t addr = (i << 30) | (j << 21);
      uint64_t pde = addr | kPtePresent | kPteWrite | kPteAccessed | kPteDirty |
                     kPtePageSize;
      if (addr >= HV_VIRT_RAM_MAX) pde |= kPtePcd | kPtePwt;
      HV_RETURN_IF_ERROR(memory.WriteObj<uint64_t>(pd + j * 8, pde));
    }
  }
  BootState state;
  state.cr3 = HV_VIRT_BOOT_PML4;
  state.gdt_base = HV_VIRT_BOOT_GDT;
  state.gdt_limit = kGdtEntries * 8 - 1;
  return state;
}

}  // namespace hv::arch
