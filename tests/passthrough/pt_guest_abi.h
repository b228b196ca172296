/* Host ↔ guest contract of the `passthrough` guest program (plain C, shared
 * by the guest and the tests):
 *   - the VMM maps hwsim register windows (hwsim_regs.h, guest page only) at
 *     PT_WINDOW_BASE + n * PT_WINDOW_STRIDE; window 0 is a PCI function, 1 a
 *     platform device (the host forwards the PCI vectors as MSIs with
 *     DeviceID = the window's requester_id and EventID = vector number, and
 *     the platform line as SPI PT_PLATFORM_SPI, level);
 *   - a mailbox in guest scratch RAM: the guest sets `ready`, counts every
 *     interrupt and checks sequence numbers; the host sets `stop`; the guest
 *     prints its per-vector counts and powers off with exit code 0, or 1 if a
 *     sequence check failed.
 */
#ifndef TESTS_PASSTHROUGH_PT_GUEST_ABI_H_
#define TESTS_PASSTHROUGH_PT_GUEST_ABI_H_

#include <stdint.h>

#define PT_WINDOW_BASE 0xD1000000ull
#define PT_WINDOW_STRIDE 0x1000ull
#define PT_PLATFORM_SPI 40
#define PT_WAKE_SPI 41 /* edge; the host pulses it after setting stop */
#define PT_MAX_VECTORS 32
#define PT_MAILBOX 0x80000ull /* HV_VIRT_GUEST_SCRATCH */
#define PT_MAGIC 0x5054474dU  /* "MGTP" */

struct pt_mailbox {
  uint32_t magic; /* written by the guest with ready */
  uint32_t ready; /* guest: drivers up, vectors enabled */
  uint32_t stop;  /* host: print and exit */
  uint32_t num_vectors;
  uint64_t msi_count[PT_MAX_VECTORS]; /* per vector, handler runs */
  uint64_t msi_last_seq[PT_MAX_VECTORS];
  uint64_t spi_count;    /* platform line handler runs */
  uint64_t spi_spurious; /* SPI taken with the device status clear */
  uint64_t seq_errors;   /* a vector's sequence number went backwards */
  uint64_t unexpected;   /* other INTIDs */
  uint64_t wakes;        /* PT_WAKE_SPI */
};

#endif /* TESTS_PASSTHROUGH_PT_GUEST_ABI_H_ */
