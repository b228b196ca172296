/* What the panic and kdump guest programs (and the host tests) agree on:
 * the memory regions the first kernel fills and checksums before it panics,
 * the mailbox with its panic timestamp, the checksum, and kdump's link
 * address. Plain C, shared with C++ host code. docs/kexec.md. */
#ifndef HV_GUEST_PROGRAMS_KDUMP_ABI_H_
#define HV_GUEST_PROGRAMS_KDUMP_ABI_H_

#include <stdint.h>

#include "hv/platform/hv_virt.h"

/* kdump is linked (and loaded) here: the crash region hv-vmm places for
 * --memory_mib=64 --crash_mib=16 is [48 MiB, 64 MiB). */
#define KDUMP_LINK_BASE 0x3000000ull

#define KDUMP_NUM_REGIONS 3
static const struct {
  uint64_t base, size;
} kdump_regions[KDUMP_NUM_REGIONS] = {
    {0x0400000, 0x040000}, /* 4 MiB (above the image and its stacks) */
    {0x0800000, 0x080000}, /* 8 MiB */
    {0x1000000, 0x020000}, /* 16 MiB */
};

/* Mailbox in the guest scratch area (outside the crash region). */
#define KDUMP_MAILBOX (HV_VIRT_GUEST_SCRATCH + 0x1000)
struct kdump_mailbox {
  uint64_t magic;     /* KDUMP_MAILBOX_MAGIC once panic has written it */
  uint64_t panic_tsc; /* TSC right before the panic hypercall */
};
#define KDUMP_MAILBOX_MAGIC 0x43494e4150564821ull /* "!HVPANIC" */

/* kdump's exit code when it walked the header and every region was found. */
#define KDUMP_EXIT_OK 0x4b

/* 64-bit FNV-1a over 8-byte little-endian words (size a multiple of 8). */
static inline uint64_t kdump_checksum(const volatile uint64_t *p,
                                      uint64_t size) {
  uint64_t h = 0xcbf29ce484222325ull;
  for (uint64_t i = 0; i < size / 8; ++i) {
    h ^= p[i];
    h *= 0x100000001b3ull;
  }
  return h;
}

#endif /* HV_GUEST_PROGRAMS_KDUMP_ABI_H_ */
