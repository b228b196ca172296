/* hv-hwsim register window ABI, shared by hwsim (C++), the VMM and the guest
 * kit (freestanding C). One window per simulated device:
 *   page 0 (HWSIM_WINDOW_GUEST_SIZE): the guest-visible register file below;
 *   the following pages: host-only per-vector sequence rings (never mapped
 *   into a guest).
 * All fields are little endian. Registers marked (side effect) only act when
 * the access goes through hwsim::WindowMmio (a trapping VMM); the rest may be
 * read straight from the shared mapping.
 */
#ifndef TOOLS_HWSIM_HWSIM_REGS_H_
#define TOOLS_HWSIM_HWSIM_REGS_H_

#include <stdint.h>

#define HWSIM_MAGIC 0x4d49535748564800ull /* "\0HVHWSIM" */
#define HWSIM_VERSION 1
#define HWSIM_MAX_VECTORS 32
#define HWSIM_RING_SLOTS 256
#define HWSIM_WINDOW_GUEST_SIZE 0x1000u

#define HWSIM_KIND_PCI 1
#define HWSIM_KIND_PLATFORM 2

/* hwsim_vector_regs.ctrl */
#define HWSIM_VEC_ENABLE 0x1u /* vector (or line) enabled */
#define HWSIM_VEC_MASK 0x2u   /* MSI-X Vector Control Mask bit (PCIe 6.8.2.9) */

/* hwsim_regs.status (platform devices): bit 0 = line asserted; write 1 to
 * clear (side effect). */
#define HWSIM_STATUS_ASSERTED 0x1u

struct hwsim_vector_regs {
  uint32_t ctrl;     /* HWSIM_VEC_* */
  uint32_t msg_data; /* MSI-X message data: the EventID the guest programmed */
  uint64_t msg_addr; /* MSI-X message address (GITS_TRANSLATER) */
  uint64_t fired;    /* sequence number of the last fire (read-only) */
  uint64_t reserved;
};

struct hwsim_regs {
  uint64_t magic;        /* 0x00 HWSIM_MAGIC */
  uint32_t version;      /* 0x08 */
  uint32_t kind;         /* 0x0c HWSIM_KIND_* */
  uint32_t num_vectors;  /* 0x10 MSI-X table size (1 for a platform line) */
  uint32_t requester_id; /* 0x14 PCI bus/dev/fn (the ITS DeviceID) */
  uint32_t status;       /* 0x18 platform: HWSIM_STATUS_* (W1C) */
  uint32_t fire;         /* 0x1c write n: fire vector n now (side effect) */
  uint32_t gen_vector;   /* 0x20 generator: vector to fire */
  uint32_t gen_burst;    /* 0x24 fires per tick */
  uint32_t gen_rate_hz;  /* 0x28 ticks per second (0 = as fast as possible) */
  uint32_t gen_running;  /* 0x2c read-only: 1 while the generator runs */
  uint64_t gen_count;    /* 0x30 fires left; writing it starts (side effect) */
  uint64_t reserved[9];  /* 0x38 .. 0x7f */
  struct hwsim_vector_regs vectors[HWSIM_MAX_VECTORS]; /* 0x80 */
};

/* Host-only: one single-producer single-consumer ring of sequence numbers per
 * vector (the "message" an interrupt carries). head/tail count slots. */
struct hwsim_ring {
  uint64_t head; /* producer (hwsim) */
  uint64_t pad0[7];
  uint64_t tail; /* consumer (the bus driver) */
  uint64_t pad1[7];
  uint64_t slots[HWSIM_RING_SLOTS];
};

#define HWSIM_OFF_VECTORS 0x80u
#define HWSIM_VECTOR_STRIDE 32u

#ifdef __cplusplus
static_assert(sizeof(struct hwsim_vector_regs) == HWSIM_VECTOR_STRIDE);
static_assert(__builtin_offsetof(struct hwsim_regs, vectors) ==
              HWSIM_OFF_VECTORS);
static_assert(__builtin_offsetof(struct hwsim_regs, gen_count) == 0x30);
static_assert(sizeof(struct hwsim_regs) <= HWSIM_WINDOW_GUEST_SIZE);
static_assert(sizeof(struct hwsim_ring) == 128 + 8 * HWSIM_RING_SLOTS);
#endif

#endif /* TOOLS_HWSIM_HWSIM_REGS_H_ */
