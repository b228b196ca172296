#include "hv/arch/x86_boot.h"

#include "gtest/gtest.h"
#include "hv/platform/hv_virt.h"

namespace hv::arch {
namespace {

// Walks the identity map like the MMU would (4-level, 2 MiB leaves).
uint64_t Translate(const GuestMemory& mem, uint64_t cr3, uint64_t va,
                   uint64_t* flags) {
  const uint64_t pml4e = *mem.ReadObj<uint64_t>(cr3 + ((va >> 39) & 511) * 8);
  EXPECT_TRUE(pml4e & kPtePresent);
  const uint64_t pdpte =
      *mem.ReadObj<uint64_t>((pml4e & ~0xfffull) + ((va >> 30) & 511) * 8);
  EXPECT_TRUE(pdpte & kPtePresent);
  const uint64_t pde =
      *mem.ReadObj<uint64_t>((pdpte & ~0xfffull) + ((va >> 21) & 511) * 8);
  EXPECT_TRUE(pde & kPtePresent);
  EXPECT_TRUE(pde & kPtePageSize);
  *flags = pde & 0xfff;
  return (pde & ~0x1fffffull) | (va & 0x1fffff);
}

TEST(X86BootTest, IdentityMapsLow4GiB) {
  auto mem = GuestMemory::Create({{0, 0x200000}});
  ASSERT_TRUE(mem.ok());
  auto state = BuildBootTables(**mem);
  ASSERT_TRUE(state.ok()) << state.status();
  EXPECT_EQ(state->cr3, HV_VIRT_BOOT_PML4);
  uint64_t flags = 0;
  for (uint64_t va :
       {0x0ull, 0x100123ull, 0x40000000ull, 0xbfffffffull,
        HV_VIRT_GICD_BASE + 0x10, HV_VIRT_LAPIC_BASE + 0xb0, 0xffffffffull}) {
    EXPECT_EQ(Translate(**mem, state->cr3, va, &flags), va);
    EXPECT_TRUE(flags & kPteWrite);
    // Preset A/D: the CPU never writes the tables (crash images, kexec).
    EXPECT_EQ(flags & (kPteAccessed | kPteDirty), kPteAccessed | kPteDirty);
    EXPECT_EQ((flags & kPtePcd) != 0, va >= HV_VIRT_RAM_MAX) << va;
  }
}

TEST(X86BootTest, GdtHasFlatLongModeSegments) {
  auto mem = GuestMemory::Create({{0, 0x10000}});
  ASSERT_TRUE(mem.ok());
  auto state = BuildBootTables(**mem);
  ASSERT_TRUE(state.ok());
  EXPECT_EQ(state->gdt_limit, kGdtEntries * 8 - 1);
  const uint64_t code =
      *(*mem)->ReadObj<uint64_t>(HV_VIRT_BOOT_GDT + kCodeSelector);
  EXPECT_TRUE(code & (1ull << 53));   // L: 64-bit code
  EXPECT_FALSE(code & (1ull << 54));  // D must be 0 when L=1
  EXPECT_TRUE(code & (1ull << 47));   // present
  const uint64_t tss =
      *(*mem)->ReadObj<uint64_t>(HV_VIRT_BOOT_GDT + kTssSelector);
  EXPECT_EQ((tss >> 40) & 0xf, 9u);  // available 64-bit TSS
  EXPECT_EQ(((tss >> 16) & 0xffffff), HV_VIRT_BOOT_GDT + kTssOffset);
}

TEST(X86BootTest, RejectsTooLittleRam) {
  auto mem = GuestMemory::Create({{0, 0x4000}});
  ASSERT_TRUE(mem.ok());
  EXPECT_EQ(BuildBootTables(**mem).status().code(),
            absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace hv::arch
