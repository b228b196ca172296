/* panic: fills the kdump_abi.h regions with a pseudo-random pattern, prints
 * their checksums, then panics through HV_CALL_PANIC. user_arg selects how
 * it dies: 0 = panic hypercall, 1 = triple fault (empty IDT + ud2),
 * 2 = every vCPU calls HV_CALL_PANIC at once (exactly one may win).
 * With more than one vCPU, the secondaries spin in guest code first, so the
 * VMM has to stop running vCPUs. Without a crash image the VM crashes
 * (hv-vmm exit 126); with kdump loaded, kdump prints the same checksums. */
#include "hv/guest/kit/kit.h"
#include "hv/guest/programs/kdump_abi.h"

static volatile int spinning[HV_VIRT_MAX_VCPUS];
static volatile int all_panic;

static void spin(unsigned cpu) {
  spinning[cpu] = 1;
  while (!all_panic) kit_pause();
  kit_panic(0xd00 + cpu);
}

int kit_main(void) {
  uint64_t x = 0x9e3779b97f4a7c15ull ^ kit_rdtsc();
  for (int r = 0; r < KDUMP_NUM_REGIONS; ++r) {
    volatile uint64_t *p = (volatile uint64_t *)kdump_regions[r].base;
    for (uint64_t i = 0; i < kdump_regions[r].size / 8; ++i) {
      x ^= x << 13;
      x ^= x >> 7;
      x ^= x << 17;
      p[i] = x;
    }
    kit_printf("panic: region %d 0x%lx+0x%lx sum=%016lx\n", r,
               kdump_regions[r].base, kdump_regions[r].size,
               kdump_checksum(p, kdump_regions[r].size));
  }
  for (unsigned cpu = 1; cpu < kit_info.num_vcpus; ++cpu) {
    KIT_CHECK_EQ(kit_cpu_on(cpu, spin), PSCI_RET_SUCCESS);
    KIT_CHECK(kit_wait_flag(&spinning[cpu], 2000));
  }
  volatile struct kdump_mailbox *mb =
      (volatile struct kdump_mailbox *)KDUMP_MAILBOX;
  mb->magic = KDUMP_MAILBOX_MAGIC;
  if (kit_info.user_arg == 1) {
    kit_printf("panic: triple fault\n");
    struct {
      uint16_t limit;
      uint64_t base;
    } __attribute__((packed)) idtr = {0, 0};
    mb->panic_tsc = kit_rdtsc();
    __asm__ volatile("lidt %0; ud2" : : "m"(idtr));
  }
  kit_printf("panic: calling HV_CALL_PANIC\n");
  mb->panic_tsc = kit_rdtsc();
  if (kit_info.user_arg == 2) all_panic = 1;
  kit_panic(0xdead);
}
