/* Guest kit GICv3 + ITS driver, programmed the way an OS driver does it
 * (Arm IHI 0069: distributor §12.9, redistributor §12.10/§12.11, CPU
 * interface system registers §12.2 — here the hv-virt memory-mapped ICC
 * frame —, ITS registers §12.19 and commands §5.3). Tables live in guest
 * memory from kit_alloc(). */
#ifndef HV_GUEST_KIT_GIC_H_
#define HV_GUEST_KIT_GIC_H_

#include "hv/guest/kit/kit.h"

/* Distributor (GICD_*), 32-bit registers unless noted. */
#define GICD_CTLR 0x0000
#define GICD_TYPER 0x0004
#define GICD_IGROUPR 0x0080
#define GICD_ISENABLER 0x0100
#define GICD_ICENABLER 0x0180
#define GICD_ICPENDR 0x0280
#define GICD_IPRIORITYR 0x0400
#define GICD_ICFGR 0x0c00
#define GICD_IROUTER 0x6000 /* 64-bit, + 8 * INTID */
#define GICD_CTLR_ENABLE_GRP1 (1u << 1)
#define GICD_CTLR_ARE (1u << 4)
#define GICD_CTLR_RWP (1u << 31)

/* Redistributor RD_base (GICR_*) and SGI_base (+64 KiB). */
#define GICR_CTLR 0x0000
#define GICR_TYPER 0x0008 /* 64-bit */
#define GICR_WAKER 0x0014
#define GICR_PROPBASER 0x0070 /* 64-bit */
#define GICR_PENDBASER 0x0078 /* 64-bit */
#define GICR_CTLR_ENABLE_LPIS (1u << 0)
#define GICR_WAKER_PROCESSOR_SLEEP (1u << 1)
#define GICR_WAKER_CHILDREN_ASLEEP (1u << 2)
#define GICR_SGI_BASE 0x10000
#define GICR_IGROUPR0 0x0080
#define GICR_ISENABLER0 0x0100
#define GICR_IPRIORITYR 0x0400

/* CPU interface frame (hv-virt: ICC_*_EL1 as 64-bit MMIO, banked). */
#define ICC_CTLR 0x00
#define ICC_PMR 0x08
#define ICC_BPR1 0x10
#define ICC_IAR1 0x18
#define ICC_EOIR1 0x20
#define ICC_DIR 0x28
#define ICC_HPPIR1 0x30
#define ICC_RPR 0x38
#define ICC_IGRPEN1 0x40
#define ICC_SGI1R 0x48

/* ITS (GITS_*). */
#define GITS_CTLR 0x0000
#define GITS_TYPER 0x0008 /* 64-bit */
#define GITS_CBASER 0x0080
#define GITS_CWRITER 0x0088
#define GITS_CREADR 0x0090
#define GITS_BASER(n) (0x0100 + 8 * (n))
#define GITS_TRANSLATER 0x10040
#define GITS_CTLR_ENABLED (1u << 0)
#define GITS_CTLR_QUIESCENT (1u << 31)
#define GITS_CREADR_STALLED 1ull

#define GIC_SPURIOUS 1023
#define GIC_FIRST_LPI 8192

/* ---- memory for tables ---- */
/* Bump allocator over RAM above the image; zeroed; never freed. */
void *kit_alloc(uint64_t size, uint64_t align);

/* ---- GIC ---- */
uint64_t gic_rd_base(unsigned cpu);
/* Distributor: affinity routing, Group 1 enabled. Once, on vCPU 0. */
void gic_dist_init(void);
/* This CPU's redistributor (wake) and CPU interface (PMR, IGRPEN1); installs
 * the kit IRQ handler that acknowledges through ICC_IAR1 and calls
 * `handler` per INTID, then EOIs (ICC_EOIR1, and the LAPIC when the line
 * arrives through it). */
void gic_cpu_init(unsigned cpu);
void gic_set_handler(void (*handler)(unsigned cpu, uint32_t intid));
/* SPI `intid`: Group 1, priority, edge or level, routed to `cpu`, enabled. */
void gic_enable_spi(uint32_t intid, unsigned cpu, uint8_t prio, int edge);
void gic_disable_spi(uint32_t intid);
/* MPIDR-style affinity of a vCPU (Aff0 = cpu % 16, Aff1 = cpu / 16). */
uint64_t gic_affinity(unsigned cpu);
/* TSC at the most recent IRQ-vector entry on this CPU (kit.c). */
uint64_t kit_last_irq_tsc(void);

/* ---- LPIs ---- */
/* Allocates the LPI configuration table (shared) for `id_bits` INTID bits,
 * all LPIs disabled with priority `prio`. Once, on vCPU 0. */
void lpi_table_init(unsigned id_bits, uint8_t prio);
/* This CPU: its pending table, PROPBASER/PENDBASER, GICR_CTLR.EnableLPIs. */
void lpi_cpu_enable(unsigned cpu);
/* Writes LPI `intid`'s configuration byte (enable bit 0, priority). The
 * caller then issues INV/INVALL for the change to take effect (§5.1.1). */
void lpi_set_enabled(uint32_t intid, int enabled);

/* ---- ITS ---- */
/* Allocates device/collection tables and the command queue, programs
 * GITS_BASERn/CBASER, enables the ITS. Returns 0 or a negative error. */
int its_init(void);
/* RDbase of vCPU `cpu` as the ITS wants it (GITS_TYPER.PTA). */
uint64_t its_rdbase(unsigned cpu);
/* Commands: each is queued, CWRITER advanced and CREADR polled until the
 * ITS consumed it. Return 0, or -1 on timeout / stalled queue. */
int its_mapd(uint32_t dev, unsigned event_bits, int valid);
int its_mapc(uint16_t icid, unsigned cpu, int valid);
int its_mapti(uint32_t dev, uint32_t event, uint32_t intid, uint16_t icid);
int its_int(uint32_t dev, uint32_t event);
int its_inv(uint32_t dev, uint32_t event);
int its_invall(uint16_t icid);
int its_sync(unsigned cpu);
int its_discard(uint32_t dev, uint32_t event);
int its_movi(uint32_t dev, uint32_t event, uint16_t icid);
/* GITS_CTLR.Enabled; disabling waits for Quiescent. 0 or -1. */
int its_set_enabled(int enabled);
/* Re-programs CBASER with the kit's queue (CREADR restarts at 0) and
 * CWRITER = 0. The ITS must be disabled. */
void its_reset_queue(void);
/* Raw register access for tests of error handling. */
uint64_t its_read64(uint64_t off);
void its_write64(uint64_t off, uint64_t v);
/* The command queue's guest-physical base (as programmed in CBASER). */
uint64_t its_cmdq_base(void);

#endif /* HV_GUEST_KIT_GIC_H_ */
