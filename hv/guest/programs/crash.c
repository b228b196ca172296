/* crash: triple-faults on purpose (empty IDT, then #UD → #GP → #DF →
 * shutdown). The VMM must report a crash (hv-vmm exit 126), not hang. */
#include "hv/guest/kit/kit.h"

int kit_main(void) {
  kit_printf("crash: loading an empty IDT and faulting\n");
  struct {
    uint16_t limit;
    uint64_t base;
  } __attribute__((packed)) idtr = {0, 0};
  __asm__ volatile("lidt %0; ud2" : : "m"(idtr));
  return 3; /* not reached */
}
