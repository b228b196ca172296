/* platform-selftest: checks the hv-virt platform from the guest side —
 * platform info, unmapped MMIO and I/O ports (reads all-ones, writes
 * dropped, the guest keeps running), PSCI argument validation, CPU_OFF and
 * re-CPU_ON. Needs >= 2 vCPUs for the CPU_ON part. */
#include "hv/guest/kit/kit.h"

#define UNMAPPED_MMIO 0xD0F00000ull /* inside the MMIO hole, no device */
#define UNMAPPED_PORT 0x2f8         /* COM2: not present on hv-virt */

static volatile int runs;

static void secondary(unsigned cpu) {
  (void)cpu;
  __atomic_add_fetch(&runs, 1, __ATOMIC_SEQ_CST);
}

static int64_t affinity(unsigned cpu) {
  return kit_psci(PSCI_AFFINITY_INFO, cpu, 0, 0);
}

int kit_main(void) {
  const unsigned n = kit_info.num_vcpus;
  KIT_CHECK_EQ(kit_info.version, HV_VIRT_INFO_VERSION);
  KIT_CHECK_EQ(kit_info.size, sizeof(struct hv_virt_info));
  KIT_CHECK(n >= 1 && n <= HV_VIRT_MAX_VCPUS);
  KIT_CHECK_EQ(kit_info.uart_port, HV_VIRT_UART_PORT);

  /* Unmapped MMIO: all-ones at every width, writes dropped. */
  KIT_CHECK_EQ(kit_mmio_read8(UNMAPPED_MMIO), 0xff);
  KIT_CHECK_EQ(kit_mmio_read16(UNMAPPED_MMIO + 2), 0xffff);
  KIT_CHECK_EQ(kit_mmio_read32(UNMAPPED_MMIO + 4), 0xffffffffu);
  KIT_CHECK_EQ(kit_mmio_read64(UNMAPPED_MMIO + 8), ~0ull);
  kit_mmio_write32(UNMAPPED_MMIO, 0);
  KIT_CHECK_EQ(kit_mmio_read32(UNMAPPED_MMIO), 0xffffffffu);
  /* Writes to the read-only platform info are dropped. */
  kit_mmio_write64(HV_VIRT_INFO_BASE, 0);
  KIT_CHECK_EQ(kit_mmio_read64(HV_VIRT_INFO_BASE), HV_VIRT_INFO_MAGIC);
  /* Unmapped port. */
  KIT_CHECK_EQ(kit_inb(UNMAPPED_PORT), 0xff);
  kit_outb(UNMAPPED_PORT, 0x55);

  /* PSCI. */
  KIT_CHECK_EQ(kit_psci(PSCI_VERSION, 0, 0, 0), 0x10000);
  KIT_CHECK_EQ(kit_psci(0x8400ffffu, 0, 0, 0),
               (uint64_t)PSCI_RET_NOT_SUPPORTED);
  KIT_CHECK_EQ(kit_cpu_on(n, secondary), (uint64_t)PSCI_RET_INVALID_PARAMETERS);
  KIT_CHECK_EQ(kit_cpu_on(0, secondary), (uint64_t)PSCI_RET_ALREADY_ON);
  KIT_CHECK_EQ(affinity(0), 0);
  KIT_CHECK_EQ(affinity(n), (uint64_t)PSCI_RET_INVALID_PARAMETERS);
  if (n >= 2) {
    KIT_CHECK_EQ(affinity(1), 1); /* OFF */
    KIT_CHECK_EQ(kit_psci(PSCI_CPU_ON, 1, 0xfff0000000ull, 0),
                 (uint64_t)PSCI_RET_INVALID_ADDRESS);
    for (int round = 1; round <= 2; ++round) {
      KIT_CHECK_EQ(kit_cpu_on(1, secondary), PSCI_RET_SUCCESS);
      const uint64_t t0 = kit_rdtsc();
      while (runs < round || affinity(1) != 1) {
        if (kit_ns_since(t0) > 10000000000ull)
          kit_fail("vCPU 1 round %d", round);
        kit_pause();
      }
    }
    KIT_CHECK_EQ(runs, 2);
  }
  kit_printf("PASS platform-selftest (%u vCPUs)\n", n);
  return 0;
}
