/* idle: brings every vCPU online, then all of them halt with interrupts
 * enabled forever. Each GIC-line interrupt is reported on the console as
 * "irq on vCPU N" (once per interrupt). For pause/resume/stop and wake-up
 * tests driven by the host. */
#include "hv/guest/kit/kit.h"

static volatile int online[HV_VIRT_MAX_VCPUS];
static volatile uint64_t irqs[HV_VIRT_MAX_VCPUS];

static void on_irq(unsigned cpu) {
  __atomic_add_fetch(&irqs[cpu], 1, __ATOMIC_SEQ_CST);
  kit_lapic_eoi();
}

static void idle_loop(unsigned cpu) {
  uint64_t seen = 0;
  for (;;) {
    kit_sti_hlt();
    kit_cli();
    const uint64_t n = irqs[cpu];
    if (n != seen) {
      seen = n;
      kit_printf("irq on vCPU %u\n", cpu);
    }
  }
}

static void secondary(unsigned cpu) {
  __atomic_store_n(&online[cpu], 1, __ATOMIC_RELEASE);
  idle_loop(cpu);
}

int kit_main(void) {
  kit_set_irq_handler(on_irq);
  for (unsigned cpu = 1; cpu < kit_info.num_vcpus; ++cpu) {
    if (kit_cpu_on(cpu, secondary) != PSCI_RET_SUCCESS) kit_fail("CPU_ON");
    if (!kit_wait_flag(&online[cpu], 10000)) kit_fail("vCPU %u offline", cpu);
  }
  kit_printf("idle: %u vCPUs online\n", kit_info.num_vcpus);
  idle_loop(0);
  return 0;
}
