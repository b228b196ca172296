/* Guest kit GICv3 + ITS driver (see gic.h). */
#include "hv/guest/kit/gic.h"

extern char _end[];
static uint64_t alloc_next;
static volatile int alloc_lock;
static void (*gic_handler)(unsigned cpu, uint32_t intid);

void *kit_alloc(uint64_t size, uint64_t align) {
  while (__atomic_exchange_n(&alloc_lock, 1, __ATOMIC_ACQUIRE)) kit_pause();
  if (alloc_next == 0) alloc_next = (uint64_t)_end;
  uint64_t p = (alloc_next + align - 1) & ~(align - 1);
  if (p + size > kit_info.ram_size) {
    alloc_lock = 0;
    kit_fail("kit_alloc: out of guest RAM (0x%lx bytes)", size);
  }
  alloc_next = p + size;
  __atomic_store_n(&alloc_lock, 0, __ATOMIC_RELEASE);
  kit_memset((void *)p, 0, size);
  return (void *)p;
}

/* ---- GIC ---- */
static uint64_t gicd(uint64_t off) { return kit_info.gicd_base + off; }

uint64_t gic_rd_base(unsigned cpu) {
  return kit_info.gicr_base + (uint64_t)cpu * kit_info.gicr_stride;
}

uint64_t gic_affinity(unsigned cpu) {
  return (uint64_t)(cpu % 16) | ((uint64_t)((cpu / 16) % 256) << 8);
}

static void gicd_wait_rwp(void) {
  const uint64_t t0 = kit_rdtsc();
  while (kit_mmio_read32(gicd(GICD_CTLR)) & GICD_CTLR_RWP) {
    if (kit_ns_since(t0) > 1000000000ull) kit_fail("GICD_CTLR.RWP stuck");
  }
}

void gic_dist_init(void) {
  KIT_CHECK(kit_info.gic_present);
  kit_mmio_write32(gicd(GICD_CTLR), 0);
  gicd_wait_rwp();
  kit_mmio_write32(gicd(GICD_CTLR), GICD_CTLR_ARE | GICD_CTLR_ENABLE_GRP1);
  gicd_wait_rwp();
}

static void gic_irq_entry(unsigned cpu) {
  const uint64_t cpuif = kit_info.gicc_base;
  for (;;) {
    const uint32_t intid =
        (uint32_t)(kit_mmio_read64(cpuif + ICC_IAR1) & 0xffffff);
    if (intid >= 1020 && intid <= 1023) break;
    if (gic_handler) gic_handler(cpu, intid);
    kit_mmio_write64(cpuif + ICC_EOIR1, intid);
  }
  kit_lapic_eoi();
}

void gic_set_handler(void (*handler)(unsigned cpu, uint32_t intid)) {
  gic_handler = handler;
}

void gic_cpu_init(unsigned cpu) {
  const uint64_t rd = gic_rd_base(cpu);
  /* Wake the redistributor (§12.11.44 GICR_WAKER). */
  kit_mmio_write32(rd + GICR_WAKER, kit_mmio_read32(rd + GICR_WAKER) &
                                        ~GICR_WAKER_PROCESSOR_SLEEP);
  const uint64_t t0 = kit_rdtsc();
  while (kit_mmio_read32(rd + GICR_WAKER) & GICR_WAKER_CHILDREN_ASLEEP) {
    if (kit_ns_since(t0) > 1000000000ull) kit_fail("GICR_WAKER stuck");
  }
  /* SGIs/PPIs: Group 1. */
  kit_mmio_write32(rd + GICR_SGI_BASE + GICR_IGROUPR0, 0xffffffffu);
  const uint64_t cpuif = kit_info.gicc_base;
  kit_mmio_write64(cpuif + ICC_PMR, 0xff);
  kit_mmio_write64(cpuif + ICC_BPR1, 0);
  kit_mmio_write64(cpuif + ICC_CTLR, 0); /* EOImode 0: EOIR deactivates */
  kit_mmio_write64(cpuif + ICC_IGRPEN1, 1);
  kit_set_irq_handler(gic_irq_entry);
}

void gic_enable_spi(uint32_t intid, unsigned cpu, uint8_t prio, int edge) {
  const uint32_t bit = 1u << (intid % 32);
  const uint64_t word = (intid / 32) * 4;
  kit_mmio_write32(gicd(GICD_IGROUPR + word),
                   kit_mmio_read32(gicd(GICD_IGROUPR + word)) | bit);
  /* IPRIORITYR is byte-accessible: read-modify-write its word. */
  const uint64_t pw = gicd(GICD_IPRIORITYR + (intid & ~3u));
  uint32_t p = kit_mmio_read32(pw);
  p &= ~(0xffu << (8 * (intid % 4)));
  p |= (uint32_t)prio << (8 * (intid % 4));
  kit_mmio_write32(pw, p);
  const uint64_t cw = gicd(GICD_ICFGR + (intid / 16) * 4);
  uint32_t c = kit_mmio_read32(cw);
  const uint32_t cbit = 2u << (2 * (intid % 16));
  c = edge ? (c | cbit) : (c & ~cbit);
  kit_mmio_write32(cw, c);
  kit_mmio_write64(gicd(GICD_IROUTER + 8ull * intid), gic_affinity(cpu));
  kit_mmio_write32(gicd(GICD_ISENABLER + word), bit);
}

void gic_disable_spi(uint32_t intid) {
  kit_mmio_write32(gicd(GICD_ICENABLER + (intid / 32) * 4), 1u << (intid % 32));
  gicd_wait_rwp();
}

/* ---- LPIs ---- */
static uint8_t *prop_table;
static unsigned lpi_id_bits;
static uint8_t lpi_prio;

void lpi_table_init(unsigned id_bits, uint8_t prio) {
  lpi_id_bits = id_bits;
  lpi_prio = prio;
  /* One byte per INTID from 8192 (§5.1.1); 4 KiB aligned. */
  const uint64_t size = (1ull << id_bits) - GIC_FIRST_LPI;
  prop_table = kit_alloc(size, 4096);
  for (uint64_t i = 0; i < size; ++i) prop_table[i] = prio & 0xfc;
}

void lpi_cpu_enable(unsigned cpu) {
  const uint64_t rd = gic_rd_base(cpu);
  KIT_CHECK(kit_mmio_read64(rd + GICR_TYPER) & 1); /* PLPIS */
  /* Pending table: 1 bit per INTID, 64 KiB aligned (§12.11.33). */
  void *pend = kit_alloc((1ull << lpi_id_bits) / 8, 0x10000);
  kit_mmio_write64(rd + GICR_PROPBASER,
                   (uint64_t)prop_table | (uint64_t)(lpi_id_bits - 1));
  kit_mmio_write64(rd + GICR_PENDBASER, (uint64_t)pend);
  kit_mmio_write32(rd + GICR_CTLR, GICR_CTLR_ENABLE_LPIS);
  KIT_CHECK(kit_mmio_read32(rd + GICR_CTLR) & GICR_CTLR_ENABLE_LPIS);
}

void lpi_set_enabled(uint32_t intid, int enabled) {
  KIT_CHECK(intid >= GIC_FIRST_LPI && intid < (1u << lpi_id_bits));
  prop_table[intid - GIC_FIRST_LPI] =
      (uint8_t)((lpi_prio & 0xfc) | (enabled ? 1 : 0));
  __atomic_thread_fence(__ATOMIC_SEQ_CST);
}

/* ---- ITS ---- */
#define CMDQ_PAGES 1
#define CMD_SIZE 32
static uint64_t *cmdq;
static uint64_t cmd_write; /* byte offset */
static uint64_t its_typer;
static volatile int its_lock;

uint64_t its_read64(uint64_t off) {
  return kit_mmio_read64(kit_info.its_base + off);
}
void its_write64(uint64_t off, uint64_t v) {
  kit_mmio_write64(kit_info.its_base + off, v);
}
uint64_t its_cmdq_base(void) { return (uint64_t)cmdq; }

uint64_t its_rdbase(unsigned cpu) {
  if (its_typer & (1ull << 19)) return gic_rd_base(cpu) >> 16; /* PTA = 1 */
  /* PTA = 0: the processor number from GICR_TYPER[23:8]. */
  return (kit_mmio_read64(gic_rd_base(cpu) + GICR_TYPER) >> 8) & 0xffff;
}

int its_init(void) {
  KIT_CHECK(kit_info.its_base != 0);
  its_typer = its_read64(GITS_TYPER);
  KIT_CHECK(its_typer & 1); /* Physical LPIs */
  /* Device and collection tables: one 64 KiB page each, flat. A table's
   * type and entry size are read-only fields of its BASER (§12.19.1). */
  for (int n = 0; n < 8; ++n) {
    const uint64_t baser = its_read64(GITS_BASER(n));
    const uint64_t type = (baser >> 56) & 7;
    if (type == 0) continue;
    void *table = kit_alloc(0x10000, 0x10000);
    const uint64_t v = (1ull << 63) | (baser & (0x1full << 48)) | (type << 56) |
                       (uint64_t)table | (2ull << 8) /* 64 KiB pages */ |
                       0 /* 1 page */;
    its_write64(GITS_BASER(n), v);
    if (!(its_read64(GITS_BASER(n)) >> 63)) return -1;
  }
  cmdq = kit_alloc(CMDQ_PAGES * 4096, 0x10000);
  its_write64(GITS_CBASER, (1ull << 63) | (uint64_t)cmdq | (CMDQ_PAGES - 1));
  its_write64(GITS_CWRITER, 0);
  cmd_write = 0;
  kit_mmio_write32(
      kit_info.its_base + GITS_CTLR,
      kit_mmio_read32(kit_info.its_base + GITS_CTLR) | GITS_CTLR_ENABLED);
  return 0;
}

static int its_send(uint64_t d0, uint64_t d1, uint64_t d2, uint64_t d3) {
  while (__atomic_exchange_n(&its_lock, 1, __ATOMIC_ACQUIRE)) kit_pause();
  uint64_t *slot = (uint64_t *)((uint8_t *)cmdq + cmd_write);
  slot[0] = d0;
  slot[1] = d1;
  slot[2] = d2;
  slot[3] = d3;
  __atomic_thread_fence(__ATOMIC_SEQ_CST);
  cmd_write = (cmd_write + CMD_SIZE) % (CMDQ_PAGES * 4096);
  its_write64(GITS_CWRITER, cmd_write);
  const uint64_t t0 = kit_rdtsc();
  int rc = 0;
  for (;;) {
    const uint64_t creadr = its_read64(GITS_CREADR);
    if (creadr & GITS_CREADR_STALLED) {
      rc = -1;
      break;
    }
    if ((creadr & ~0x1full) == cmd_write) break;
    if (kit_ns_since(t0) > 1000000000ull) {
      rc = -1;
      break;
    }
    kit_pause();
  }
  __atomic_store_n(&its_lock, 0, __ATOMIC_RELEASE);
  return rc;
}

int its_mapd(uint32_t dev, unsigned event_bits, int valid) {
  uint64_t itt = 0;
  if (valid) {
    const uint64_t entry = ((its_typer >> 4) & 0xf) + 1;
    itt = (uint64_t)kit_alloc(entry << event_bits, 256);
  }
  return its_send(0x08 | ((uint64_t)dev << 32), (uint64_t)(event_bits - 1),
                  ((uint64_t)valid << 63) | itt, 0);
}

int its_mapc(uint16_t icid, unsigned cpu, int valid) {
  return its_send(0x09, 0,
                  ((uint64_t)valid << 63) | (its_rdbase(cpu) << 16) | icid, 0);
}

int its_mapti(uint32_t dev, uint32_t event, uint32_t intid, uint16_t icid) {
  return its_send(0x0a | ((uint64_t)dev << 32), event | ((uint64_t)intid << 32),
                  icid, 0);
}

int its_int(uint32_t dev, uint32_t event) {
  return its_send(0x03 | ((uint64_t)dev << 32), event, 0, 0);
}

int its_inv(uint32_t dev, uint32_t event) {
  return its_send(0x0c | ((uint64_t)dev << 32), event, 0, 0);
}

int its_invall(uint16_t icid) { return its_send(0x0d, 0, icid, 0); }

int its_sync(unsigned cpu) {
  return its_send(0x05, 0, its_rdbase(cpu) << 16, 0);
}

int its_discard(uint32_t dev, uint32_t event) {
  return its_send(0x0f | ((uint64_t)dev << 32), event, 0, 0);
}

int its_movi(uint32_t dev, uint32_t event, uint16_t icid) {
  return its_send(0x01 | ((uint64_t)dev << 32), event, icid, 0);
}

int its_set_enabled(int enabled) {
  const uint64_t ctlr = kit_info.its_base + GITS_CTLR;
  uint32_t v = kit_mmio_read32(ctlr);
  v = enabled ? (v | GITS_CTLR_ENABLED) : (v & ~GITS_CTLR_ENABLED);
  kit_mmio_write32(ctlr, v);
  if (enabled) return 0;
  const uint64_t t0 = kit_rdtsc();
  while (!(kit_mmio_read32(ctlr) & GITS_CTLR_QUIESCENT)) {
    if (kit_ns_since(t0) > 1000000000ull) return -1;
  }
  return 0;
}

void its_reset_queue(void) {
  its_write64(GITS_CBASER, (1ull << 63) | (uint64_t)cmdq | (CMDQ_PAGES - 1));
  its_write64(GITS_CWRITER, 0);
  cmd_write = 0;
}
