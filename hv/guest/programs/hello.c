/* hello: prints from every vCPU (secondaries started with PSCI CPU_ON) and
 * powers off with exit code 0 ("PASS hello") or 1 on failure. */
#include "hv/guest/kit/kit.h"

static volatile int online[HV_VIRT_MAX_VCPUS];

static void secondary(unsigned cpu) {
  KIT_CHECK_EQ(kit_cpu_id(), cpu);
  kit_printf("hello from vCPU %u\n", cpu);
  __atomic_store_n(&online[cpu], 1, __ATOMIC_RELEASE);
}

int kit_main(void) {
  const unsigned n = kit_info.num_vcpus;
  kit_printf("hello from vCPU 0 of %u (%lu MiB RAM, TSC %lu kHz)\n", n,
             kit_info.ram_size >> 20, kit_info.tsc_khz);
  for (unsigned cpu = 1; cpu < n; ++cpu) {
    const int64_t r = kit_cpu_on(cpu, secondary);
    if (r != PSCI_RET_SUCCESS) kit_fail("CPU_ON(%u) returned %ld", cpu, r);
  }
  for (unsigned cpu = 1; cpu < n; ++cpu) {
    if (!kit_wait_flag(&online[cpu], 10000)) {
      kit_fail("vCPU %u did not come online", cpu);
    }
  }
  kit_printf("PASS hello (%u vCPUs)\n", n);
  return 0;
}
