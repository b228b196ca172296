/* The hv-virt platform ABI, shared by the VMM (C++) and the guest kit
 * (freestanding C). Plain C so both sides compile the same definitions.
 * The memory map is documented in docs/hv-core.md.
 */
#ifndef HV_PLATFORM_HV_VIRT_H_
#define HV_PLATFORM_HV_VIRT_H_

#include <stdint.h>

/* ---- Guest-physical memory map ---------------------------------------- */
/* RAM starts at 0 and ends at min(memory size, HV_VIRT_RAM_MAX). */
#define HV_VIRT_RAM_MAX 0xC0000000ull /* 3 GiB: the MMIO hole starts here */
/* VMM-built boot structures (GDT, identity page tables) live in low RAM; the
 * guest must not overwrite them. Images load at or above HV_VIRT_IMAGE_MIN. */
#define HV_VIRT_BOOT_GDT 0x1000ull
#define HV_VIRT_BOOT_PML4 0x2000ull
#define HV_VIRT_BOOT_PDPT 0x3000ull
#define HV_VIRT_BOOT_PD 0x4000ull /* 4 pages: 4 GiB of 2 MiB pages */
#define HV_VIRT_BOOT_END 0x8000ull
#define HV_VIRT_IMAGE_MIN 0x100000ull
/* Free low RAM the guest may use, e.g. as a host/guest mailbox
 * (the irq-latency probe's lives here). */
#define HV_VIRT_GUEST_SCRATCH 0x80000ull
#define HV_VIRT_GUEST_SCRATCH_SIZE 0x80000ull

/* GICv3 frames (IHI 0069 §12: each frame 64 KiB aligned). */
#define HV_VIRT_GICD_BASE 0xD0000000ull /* distributor, 64 KiB */
#define HV_VIRT_GICD_SIZE 0x10000ull
#define HV_VIRT_ITS_BASE 0xD0020000ull /* ITS control + translater frames */
#define HV_VIRT_ITS_SIZE 0x20000ull
#define HV_VIRT_GICC_BASE 0xD0040000ull /* CPU interface, banked per vCPU */
#define HV_VIRT_GICC_SIZE 0x1000ull     /* 4 KiB of a 64 KiB slot */
#define HV_VIRT_INFO_BASE 0xD0050000ull /* platform info block (read-only) */
#define HV_VIRT_INFO_SIZE 0x1000ull
#define HV_VIRT_GICR_BASE 0xD0100000ull /* redistributor of vCPU n at */
#define HV_VIRT_GICR_STRIDE 0x20000ull  /*   BASE + n * STRIDE (RD + SGI) */
/* In-kernel LAPIC (only when IRQ delivery is HV_IRQ_DELIVERY_LAPIC). */
#define HV_VIRT_LAPIC_BASE 0xFEE00000ull

/* ---- Port I/O ----------------------------------------------------------- */
#define HV_VIRT_UART_PORT 0x3f8 /* 16550 UART, 8 ports */
/* PSCI-style hypercall doorbell: the guest loads rax = function ID,
 * rdi/rsi/r8 = arguments 1..3, dx = this port, then executes `outl %eax,
 * %dx`; the result comes back in rax (SMCCC-style, DEN0022 §5). */
#define HV_VIRT_HYPERCALL_PORT 0x510

#define HV_VIRT_MAX_VCPUS 64

/* ---- PSCI (ARM DEN0022D) function IDs and return codes ----------------- */
#define PSCI_VERSION 0x84000000u
#define PSCI_CPU_OFF 0x84000002u
#define PSCI_CPU_ON 0xC4000003u        /* SMC64: target, entry, context */
#define PSCI_AFFINITY_INFO 0xC4000004u /* SMC64: target, level */
#define PSCI_SYSTEM_OFF 0x84000008u    /* hv extension: arg1 = exit code */
#define PSCI_SYSTEM_RESET 0x84000009u

/* hv vendor-specific hypervisor calls (SMCCC function ID, owning entity 6
 * "vendor specific hypervisor service", fast SMC64), docs/kexec.md:
 *   HV_CALL_PANIC (arg1 = panic code): the guest panicked. Runs crash_kexec:
 *     with a crash image loaded the VM switches to it (the call does not
 *     return); without one the VM enters the crashed state.
 *   HV_CALL_KEXEC (arg1 = entry-list head, arg2 = new entry): guest kexec
 *     (kexec.c entry list, IND_* flags below). Every other vCPU must be off
 *     (CPU_OFF), as kernel_kexec() stops the other CPUs first. On success
 *     the call does not return: vCPU 0 restarts at the new entry with
 *     rdi = platform info, rsi = 0. Errors: INVALID_PARAMETERS (malformed
 *     list, cycle, limits), INVALID_ADDRESS (a page or the entry outside
 *     RAM), DENIED (destination in the crash region or VMM area, other
 *     vCPUs still on, the VM crashed), HV_RET_BUSY (a load holds the kexec
 *     lock; retry).
 * A crash image starts like any image (rdi = platform info, rsi = vCPU)
 * plus rdx = ELF core header GPA and rcx = its size in bytes. */
#define HV_CALL_PANIC 0xC6000001u
#define HV_CALL_KEXEC 0xC6000002u
#define HV_KEXEC_IND_DESTINATION 0x1ull
#define HV_KEXEC_IND_INDIRECTION 0x2ull
#define HV_KEXEC_IND_DONE 0x4ull
#define HV_KEXEC_IND_SOURCE 0x8ull

#define PSCI_RET_SUCCESS 0
#define PSCI_RET_NOT_SUPPORTED (-1)
#define PSCI_RET_INVALID_PARAMETERS (-2)
#define PSCI_RET_DENIED (-3)
#define PSCI_RET_ALREADY_ON (-4)
#define PSCI_RET_ON_PENDING (-5)
#define PSCI_RET_INTERNAL_FAILURE (-6)
#define PSCI_RET_INVALID_ADDRESS (-9)
#define HV_RET_BUSY (-16) /* hv: kexec lock held (the kernel's -EBUSY) */

/* ---- Platform info block (at HV_VIRT_INFO_BASE, little endian) --------- */
#define HV_VIRT_INFO_MAGIC 0x5452495656482d76ull /* "v-HVVIRT" */
#define HV_VIRT_INFO_VERSION 1

#define HV_IRQ_DELIVERY_NONE 0   /* no GIC line wired */
#define HV_IRQ_DELIVERY_INJECT 1 /* userspace KVM_INTERRUPT, no LAPIC EOI */
#define HV_IRQ_DELIVERY_LAPIC 2  /* in-kernel LAPIC: also EOI the LAPIC */

struct hv_virt_info {
  uint64_t magic;
  uint32_t version;
  uint32_t size; /* sizeof(struct hv_virt_info) */
  uint32_t num_vcpus;
  uint32_t irq_delivery; /* HV_IRQ_DELIVERY_* */
  uint32_t irq_vector;   /* x86 vector the GIC line arrives on */
  uint32_t gic_present;  /* 1 when the GIC frames below are decoded */
  uint64_t ram_base;
  uint64_t ram_size;
  uint64_t gicd_base;
  uint64_t gicr_base;
  uint64_t gicr_stride;
  uint64_t its_base; /* 0 when there is no ITS */
  uint64_t gicc_base;
  uint64_t uart_port;
  uint64_t hypercall_port;
  uint64_t tsc_khz;    /* 0 if unknown */
  uint64_t boot_count; /* 0 on cold boot, +1 per SYSTEM_RESET */
  uint64_t user_arg;   /* hv-vmm --guest_arg */
};

#endif /* HV_PLATFORM_HV_VIRT_H_ */
