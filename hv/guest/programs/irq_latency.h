/* Host/guest ABI of the irq-latency probe (guest program irq-latency, host
 * tools/bench_vmm). The mailbox lives at HV_VIRT_GUEST_SCRATCH.
 *
 * Per sample `seq`: the guest publishes ready_seq = seq and halts with
 * interrupts enabled; the host waits for it (plus a settle delay so the vCPU
 * is really halted), stores its raise time in guest-TSC units in raise_tsc,
 * then raises the interrupt (vGIC SPI IRQ_LAT_SPI routed to vCPU 0, or — for
 * KVM's own path — an irqfd MSI straight to vector kit_info.irq_vector). The
 * guest's IRQ entry takes the TSC first thing (kit_trap), acknowledges
 * through ICC_IAR1/EOIR1 (1023 for the irqfd path) and the LAPIC, and stores
 * samples[seq] = entry TSC - raise_tsc, then done_seq = seq + 1. Setting quit
 * after ready_seq = seq and before raising makes the guest power off (exit 0)
 * after that interrupt. */
#ifndef HV_GUEST_PROGRAMS_IRQ_LATENCY_H_
#define HV_GUEST_PROGRAMS_IRQ_LATENCY_H_

#include <stdint.h>

#include "hv/platform/hv_virt.h"

#define IRQ_LAT_MAILBOX HV_VIRT_GUEST_SCRATCH
#define IRQ_LAT_MAGIC 0x3159434e4554414cull /* "LATENCY1" */
#define IRQ_LAT_SPI 40
#define IRQ_LAT_MAX_SAMPLES 8192

struct irq_lat_mailbox {
  uint64_t magic;     /* guest: set once the GIC is programmed */
  uint64_t ready_seq; /* guest: halted, waiting for sample ready_seq */
  uint64_t done_seq;  /* guest: samples [0, done_seq) are valid */
  uint64_t raise_tsc; /* host: guest-TSC time of the raise */
  uint64_t quit;      /* host: power off after the next interrupt */
  uint64_t samples[IRQ_LAT_MAX_SAMPLES]; /* guest: TSC ticks */
};

#endif /* HV_GUEST_PROGRAMS_IRQ_LATENCY_H_ */
