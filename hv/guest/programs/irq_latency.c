/* irq-latency: the guest side of the interrupt-latency benchmark
 * (tools/bench_vmm, protocol in irq_latency.h). Runs on vCPU 0. */
#include "hv/guest/programs/irq_latency.h"

#include "hv/guest/kit/gic.h"

static volatile uint64_t spi_count;

static void on_intid(unsigned cpu, uint32_t intid) {
  (void)cpu;
  if (intid == IRQ_LAT_SPI) spi_count++;
}

int kit_main(void) {
  KIT_CHECK(kit_info.gic_present);
  volatile struct irq_lat_mailbox *mb =
      (volatile struct irq_lat_mailbox *)IRQ_LAT_MAILBOX;
  _Static_assert(sizeof(struct irq_lat_mailbox) <= HV_VIRT_GUEST_SCRATCH_SIZE,
                 "mailbox exceeds the scratch area");
  gic_dist_init();
  gic_cpu_init(0);
  gic_set_handler(on_intid);
  gic_enable_spi(IRQ_LAT_SPI, 0, 0x80, /*edge=*/1);
  kit_printf("irq-latency: armed (SPI %u, vector 0x%x, delivery %u)\n",
             IRQ_LAT_SPI, kit_info.irq_vector, kit_info.irq_delivery);
  mb->magic = IRQ_LAT_MAGIC;
  for (uint64_t seq = 0;; ++seq) {
    kit_cli();
    const uint64_t before = kit_last_irq_tsc();
    __atomic_store_n(&mb->ready_seq, seq, __ATOMIC_RELEASE);
    do {
      kit_sti_hlt();
      kit_cli();
    } while (kit_last_irq_tsc() == before);
    mb->samples[seq % IRQ_LAT_MAX_SAMPLES] = kit_last_irq_tsc() - mb->raise_tsc;
    __atomic_store_n(&mb->done_seq, seq + 1, __ATOMIC_RELEASE);
    if (mb->quit) break;
  }
  kit_printf("irq-latency: done, %lu GIC SPIs taken\n", spi_count);
  return 0;
}
