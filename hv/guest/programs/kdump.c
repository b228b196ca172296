/* kdump: a crash image (linked at KDUMP_LINK_BASE, inside the crash region).
 * Started by crash_kexec with rdx = ELF core header GPA, rcx = its size
 * (kit_boot_args). Walks the header with the rules of
 * hv/loader/core_header.cc ParseCoreHeader (ELF64 ET_CORE EM_X86_64,
 * program headers and notes inside the header, PT_LOADs inside RAM with
 * p_offset == p_paddr), prints every vCPU's saved rip, every PT_LOAD's
 * range, the checksums of the kdump_abi.h regions read through the
 * PT_LOAD that covers them, and the switch time, then powers off with
 * KDUMP_EXIT_OK. Any malformed field → FAIL (exit 1). */
#include "hv/guest/kit/kit.h"
#include "hv/guest/programs/kdump_abi.h"

#define PT_LOAD 1
#define PT_NOTE 4
#define NT_PRSTATUS 1
#define PRSTATUS_SIZE 336
#define PRSTATUS_REG_OFFSET 112 /* pr_reg in struct elf_prstatus */
#define PRSTATUS_RIP_INDEX 16   /* rip in struct user_regs_struct */
#define MAX_LOADS 16

static uint16_t rd16(uint64_t a) { return *(volatile uint16_t *)a; }
static uint32_t rd32(uint64_t a) { return *(volatile uint32_t *)a; }
static uint64_t rd64(uint64_t a) { return *(volatile uint64_t *)a; }

static int in_ram(uint64_t base, uint64_t size) {
  const uint64_t end = kit_info.ram_base + kit_info.ram_size;
  return base >= kit_info.ram_base && base <= end && size <= end - base;
}

static uint64_t align4(uint64_t v) { return (v + 3) & ~3ull; }

int kit_main(void) {
  const uint64_t hdr = kit_boot_args[0], size = kit_boot_args[1];
  const uint64_t entry_tsc = kit_entry_tsc;
  kit_printf("kdump: running at 0x%lx, elfcorehdr 0x%lx size %lu\n",
             (uint64_t)KDUMP_LINK_BASE, hdr, size);
  if (size < 64 || !in_ram(hdr, size)) kit_fail("kdump: bad elfcorehdr");
  static const uint8_t ident[] = {0x7f, 'E', 'L', 'F', 2, 1, 1};
  for (unsigned i = 0; i < sizeof(ident); ++i) {
    if (*(volatile uint8_t *)(hdr + i) != ident[i]) {
      kit_fail("kdump: e_ident[%u] wrong", i);
    }
  }
  KIT_CHECK_EQ(rd16(hdr + 16), 4);  /* ET_CORE */
  KIT_CHECK_EQ(rd16(hdr + 18), 62); /* EM_X86_64 */
  const uint64_t phoff = rd64(hdr + 32);
  const uint16_t phentsize = rd16(hdr + 54), phnum = rd16(hdr + 56);
  KIT_CHECK_EQ(phentsize, 56);
  if (phoff > size || (uint64_t)phnum * 56 > size - phoff) {
    kit_fail("kdump: program headers outside the header");
  }
  uint64_t load_base[MAX_LOADS], load_size[MAX_LOADS];
  int loads = 0, vcpus = 0;
  for (uint16_t i = 0; i < phnum; ++i) {
    const uint64_t ph = hdr + phoff + (uint64_t)i * 56;
    const uint32_t type = rd32(ph);
    const uint64_t off = rd64(ph + 8), paddr = rd64(ph + 24);
    const uint64_t filesz = rd64(ph + 32), memsz = rd64(ph + 40);
    if (type == PT_NOTE) {
      if (!in_ram(off, filesz)) kit_fail("kdump: PT_NOTE outside RAM");
      uint64_t p = off, end = off + filesz;
      while (p < end) {
        if (end - p < 12) kit_fail("kdump: truncated note");
        const uint32_t namesz = rd32(p), descsz = rd32(p + 4),
                       ntype = rd32(p + 8);
        const uint64_t desc = p + 12 + align4(namesz);
        if (desc > end || align4(descsz) > end - desc) {
          kit_fail("kdump: note %d runs past PT_NOTE", vcpus);
        }
        if (ntype == NT_PRSTATUS && descsz == PRSTATUS_SIZE) {
          kit_printf("kdump: vcpu %d rip=0x%lx\n", vcpus,
                     rd64(desc + PRSTATUS_REG_OFFSET + 8 * PRSTATUS_RIP_INDEX));
          ++vcpus;
        }
        p = desc + align4(descsz);
      }
    } else if (type == PT_LOAD) {
      if (off != paddr || filesz != memsz || !in_ram(paddr, memsz)) {
        kit_fail("kdump: PT_LOAD %d malformed", loads);
      }
      if (loads == MAX_LOADS) kit_fail("kdump: too many PT_LOADs");
      load_base[loads] = paddr;
      load_size[loads] = memsz;
      /* Only the range: reading all of old RAM would fault in every
       * untouched page (slow under nested KVM); the regions below are
       * checksummed in place. */
      kit_printf("kdump: load %d 0x%lx+0x%lx\n", loads, paddr, memsz);
      ++loads;
    }
  }
  kit_printf("kdump: %d PT_LOAD, %d vCPU notes\n", loads, vcpus);
  if (loads == 0 || vcpus == 0) kit_fail("kdump: empty core header");
  for (int r = 0; r < KDUMP_NUM_REGIONS; ++r) {
    const uint64_t b = kdump_regions[r].base, s = kdump_regions[r].size;
    int found = -1;
    for (int l = 0; l < loads; ++l) {
      if (b >= load_base[l] && s <= load_size[l] &&
          b - load_base[l] <= load_size[l] - s) {
        found = l;
      }
    }
    if (found < 0) kit_fail("kdump: region %d not in the dump", r);
    /* p_offset == p_paddr: the old memory is read in place. */
    kit_printf("kdump: region %d 0x%lx+0x%lx sum=%016lx\n", r, b, s,
               kdump_checksum((const volatile uint64_t *)b, s));
  }
  volatile struct kdump_mailbox *mb =
      (volatile struct kdump_mailbox *)KDUMP_MAILBOX;
  if (mb->magic == KDUMP_MAILBOX_MAGIC && entry_tsc > mb->panic_tsc) {
    const uint64_t ticks = entry_tsc - mb->panic_tsc;
    const uint64_t khz = kit_tsc_khz();
    kit_printf("kdump: switch_tsc=%lu switch_ns=%lu\n", ticks,
               khz ? ticks * 1000000 / khz : 0);
  }
  kit_printf("kdump: done\n");
  return KDUMP_EXIT_OK;
}
