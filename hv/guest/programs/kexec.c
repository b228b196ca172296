/* kexec: guest-initiated kexec through HV_CALL_KEXEC (hv_virt.h).
 * Stage 1 builds a second image — a copy of its own pages with `stage`
 * patched to 2 and a zeroed bss — in a staging area, describes it with a
 * kexec.c entry list spread over several indirection pages (IND_DESTINATION
 * 1 MiB, one IND_SOURCE per page), adds a swap of two pages (X↔Y: each a
 * source of the other's destination, snapshot semantics), first checks
 * that malformed lists are refused (bad flags, a page outside RAM, a cycle,
 * another vCPU still on), then kexecs. Stage 2 (the new image, started at
 * its entry on vCPU 0) checks its stage, the swapped pages, that RAM outside
 * the destinations is preserved and that no reset happened, and passes. */
#include "hv/guest/kit/kit.h"

#define PAGE 4096ull
#define STAGING 0x300000ull /* the second image's pages (sources) */
#define LIST 0x4a0000ull    /* indirection pages */
#define SWAP_X 0x480000ull
#define SWAP_Y 0x481000ull
#define MARKER (HV_VIRT_GUEST_SCRATCH + 0x2000)
#define MARKER_VALUE 0x434558454b564821ull
#define PER_PAGE 100 /* entries per indirection page before chaining */

extern char _image_start[], _bss_start[], _end[];
volatile uint64_t stage __attribute__((section(".data"))) = 1;
static volatile int go_off;
static volatile int spinning;

static void fill(uint64_t page, uint64_t v) {
  for (uint64_t i = 0; i < PAGE / 8; ++i)
    ((volatile uint64_t *)page)[i] = v + i;
}
static int check(uint64_t page, uint64_t v) {
  for (uint64_t i = 0; i < PAGE / 8; ++i) {
    if (((volatile uint64_t *)page)[i] != v + i) return 0;
  }
  return 1;
}

/* Appends entries across indirection pages starting at LIST. */
static uint64_t *slot;
static uint64_t used, next_page;
static void put(uint64_t e) {
  if (used == PER_PAGE) {
    const uint64_t page = LIST + next_page++ * PAGE;
    *slot = page | HV_KEXEC_IND_INDIRECTION;
    slot = (uint64_t *)page;
    used = 0;
  }
  *slot++ = e;
  ++used;
}

static void spin_until_told(unsigned cpu) {
  (void)cpu;
  spinning = 1;
  while (!go_off) kit_pause();
}

static int stage2(void) {
  kit_printf("kexec: stage 2 running at 0x%lx\n", (uint64_t)_image_start);
  KIT_CHECK_EQ(kit_info.boot_count, 0);
  KIT_CHECK(check(SWAP_X, 0xbbbb0000));
  KIT_CHECK(check(SWAP_Y, 0xaaaa0000));
  KIT_CHECK_EQ(*(volatile uint64_t *)MARKER, MARKER_VALUE);
  kit_printf("PASS kexec: second image runs, swap and memory preserved\n");
  return 0;
}

int kit_main(void) {
  if (stage == 2) return stage2();
  KIT_CHECK_EQ(stage, 1);
  const uint64_t start = (uint64_t)_image_start, end = (uint64_t)_end;
  const uint64_t pages = (end - start) / PAGE;
  kit_printf("kexec: stage 1, image 0x%lx-0x%lx (%lu pages)\n", start, end,
             pages);
  /* The second image: this image's pages, bss zeroed, stage = 2. */
  kit_memcpy((void *)STAGING, (void *)start, end - start);
  kit_memset((void *)(STAGING + ((uint64_t)_bss_start - start)), 0,
             end - (uint64_t)_bss_start);
  *(volatile uint64_t *)(STAGING + ((uint64_t)&stage - start)) = 2;
  fill(SWAP_X, 0xaaaa0000);
  fill(SWAP_Y, 0xbbbb0000);
  *(volatile uint64_t *)MARKER = MARKER_VALUE;

  /* Refused lists. */
  KIT_CHECK_EQ(kit_kexec(LIST | 0x10, start), PSCI_RET_INVALID_PARAMETERS);
  KIT_CHECK_EQ(
      kit_kexec((kit_info.ram_size + PAGE) | HV_KEXEC_IND_INDIRECTION, start),
      PSCI_RET_INVALID_ADDRESS);
  *(volatile uint64_t *)LIST = LIST | HV_KEXEC_IND_INDIRECTION; /* cycle */
  KIT_CHECK_EQ(kit_kexec(LIST | HV_KEXEC_IND_INDIRECTION, start),
               PSCI_RET_INVALID_PARAMETERS);

  /* The real list. */
  slot = (uint64_t *)LIST;
  used = 0;
  next_page = 1;
  put(start | HV_KEXEC_IND_DESTINATION);
  for (uint64_t i = 0; i < pages; ++i) {
    put((STAGING + i * PAGE) | HV_KEXEC_IND_SOURCE);
  }
  put(SWAP_X | HV_KEXEC_IND_DESTINATION);
  put(SWAP_Y | HV_KEXEC_IND_SOURCE);
  put(SWAP_Y | HV_KEXEC_IND_DESTINATION);
  put(SWAP_X | HV_KEXEC_IND_SOURCE);
  put(HV_KEXEC_IND_DONE);
  kit_printf("kexec: entry list uses %lu indirection pages\n", next_page);
  KIT_CHECK(next_page > 1);

  if (kit_info.num_vcpus > 1) {
    KIT_CHECK_EQ(kit_cpu_on(1, spin_until_told), PSCI_RET_SUCCESS);
    KIT_CHECK(kit_wait_flag(&spinning, 2000));
    KIT_CHECK_EQ(kit_kexec(LIST | HV_KEXEC_IND_INDIRECTION, start),
                 PSCI_RET_DENIED);
    go_off = 1;
    for (int i = 0; i < 2000000 && kit_psci(PSCI_AFFINITY_INFO, 1, 0, 0) != 1;
         ++i) {
      kit_pause();
    }
    KIT_CHECK_EQ(kit_psci(PSCI_AFFINITY_INFO, 1, 0, 0), 1);
  }
  kit_printf("kexec: jumping to the second image\n");
  const int64_t r =
      kit_kexec(LIST | HV_KEXEC_IND_INDIRECTION, (uint64_t)_image_start);
  kit_fail("kexec: HV_CALL_KEXEC returned %ld", r);
}
