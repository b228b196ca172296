/* hotplug-counter: a built-in guest for hvd's hot-attach (docs/management.md).
 * Drives the hv-virt hot-plug controller (hv_hotplug.h) like
 * tests/passthrough/hotplug_guest.c and counts each attached device's MSIs
 * per vector on the console:
 *   attach event: read the slot's identity, map the device in the ITS
 *     (MAPD, MAPTI EventID v -> LPI 8192 + 32 * slot + v, INVALL, SYNC),
 *     program each MSI-X vector (GITS_TRANSLATER, EventID v), enable it,
 *     W1C the event;
 *     then make the device work: fire every vector once (the window's fire
 *     register) and start its generator on vector 0 (GEN_RATE_HZ per second);
 *   LPI: count it, check the device's sequence number never goes backwards,
 *     print "irq: <device> vector v count n" for the first 10 and every 50th;
 *   eject request: quiesce (stop the generator, disable the vectors,
 *     DISCARD, MAPD V=0, SYNC),
 *     print the totals, ack (CMD = EJECT_ACK) - unless user_arg is 1: then
 *     it never acks and the host must force the eject.
 * Runs until the VM is stopped. */
#include "hv/guest/kit/gic.h"
#include "hv/platform/hv_hotplug.h"
#include "tools/hwsim/hwsim_regs.h"

#define HP(reg) (HV_HOTPLUG_BASE + (reg))
#define VEC(w, v, field) \
  ((w) + HWSIM_OFF_VECTORS + (v)*HWSIM_VECTOR_STRIDE + (field))
#define SLOTS 4
#define MAXV 32
#define GEN_RATE_HZ 100

struct dev {
  int present;
  int quiesced;
  uint32_t rid, nvec;
  uint64_t win;
  char name[32];
  uint64_t count[MAXV];
  uint64_t last_seq[MAXV];
};
static struct dev devs[SLOTS];
static uint64_t seq_errors;

static uint32_t lpi(uint32_t slot, uint32_t v) {
  return GIC_FIRST_LPI + slot * MAXV + v;
}

static void attach(uint32_t s) {
  struct dev *d = &devs[s];
  d->rid = kit_mmio_read32(HP(HV_HOTPLUG_REG_REQUESTER_ID));
  d->nvec = kit_mmio_read32(HP(HV_HOTPLUG_REG_NUM_VECTORS));
  d->win = kit_mmio_read64(HP(HV_HOTPLUG_REG_WINDOW_GPA));
  for (uint32_t i = 0; i < 31; i += 4) {
    const uint32_t w = kit_mmio_read32(HP(HV_HOTPLUG_REG_NAME) + i);
    for (uint32_t b = 0; b < 4; ++b) d->name[i + b] = (char)(w >> (8 * b));
  }
  d->name[31] = 0;
  /* A surprise removal (forced eject) can empty the slot while we probe:
   * then the identity no longer reads back and the device is skipped. */
  if (kit_mmio_read32(HP(HV_HOTPLUG_REG_KIND)) != 1 || d->nvec < 1 ||
      d->nvec > MAXV || kit_mmio_read64(d->win) != HWSIM_MAGIC ||
      kit_mmio_read32(d->win + 0x14) != d->rid) {
    kit_printf("hotplug: slot %u: device gone during attach\n", s);
    return;
  }
  KIT_CHECK_EQ(its_mapd(d->rid, 5, 1), 0);
  for (uint32_t v = 0; v < d->nvec; ++v) {
    d->count[v] = 0;
    d->last_seq[v] = kit_mmio_read64(VEC(d->win, v, 16));
    KIT_CHECK_EQ(its_mapti(d->rid, v, lpi(s, v), 0), 0);
    lpi_set_enabled(lpi(s, v), 1);
  }
  KIT_CHECK_EQ(its_invall(0), 0);
  KIT_CHECK_EQ(its_sync(0), 0);
  for (uint32_t v = 0; v < d->nvec; ++v) {
    kit_mmio_write64(VEC(d->win, v, 8), kit_info.its_base + GITS_TRANSLATER);
    kit_mmio_write32(VEC(d->win, v, 4), v);
    kit_mmio_write32(VEC(d->win, v, 0), HWSIM_VEC_ENABLE);
  }
  d->quiesced = 0;
  d->present = 1;
  kit_printf("hotplug: slot %u: attached %s (device id 0x%x, %u vectors)\n", s,
             d->name, d->rid, d->nvec);
  for (uint32_t v = 0; v < d->nvec; ++v) kit_mmio_write32(d->win + 0x1c, v);
  kit_mmio_write32(d->win + 0x20, 0);           /* gen_vector */
  kit_mmio_write32(d->win + 0x24, 1);           /* gen_burst */
  kit_mmio_write32(d->win + 0x28, GEN_RATE_HZ); /* gen_rate_hz */
  kit_mmio_write64(d->win + 0x30, 1ull << 40);  /* gen_count: start */
}

static void quiesce(uint32_t s) {
  struct dev *d = &devs[s];
  kit_mmio_write64(d->win + 0x30, 0); /* gen_count 0: stop the generator */
  for (uint32_t v = 0; v < d->nvec; ++v) kit_mmio_write32(VEC(d->win, v, 0), 0);
  for (uint32_t v = 0; v < d->nvec; ++v) {
    KIT_CHECK_EQ(its_discard(d->rid, v), 0);
    lpi_set_enabled(lpi(s, v), 0);
  }
  KIT_CHECK_EQ(its_mapd(d->rid, 5, 0), 0);
  KIT_CHECK_EQ(its_sync(0), 0);
  d->quiesced = 1;
  d->present = 0;
  uint64_t total = 0;
  for (uint32_t v = 0; v < d->nvec; ++v) total += d->count[v];
  kit_printf("hotplug: slot %u: ejecting %s after %lu interrupts\n", s, d->name,
             total);
}

static void on_intid(unsigned cpu, uint32_t intid) {
  (void)cpu;
  if (intid == HV_HOTPLUG_SPI) {
    const uint32_t ev = kit_mmio_read32(HP(HV_HOTPLUG_REG_EVENTS));
    for (uint32_t s = 0; s < SLOTS; ++s) {
      if (!(ev >> s & 1)) continue;
      /* Acknowledge (W1C) first, then read the slot's current state: a
       * change after this read raises the event again, so none is lost. */
      kit_mmio_write32(HP(HV_HOTPLUG_REG_SEL), s);
      kit_mmio_write32(HP(HV_HOTPLUG_REG_EVENTS), 1u << s);
      const uint32_t st = kit_mmio_read32(HP(HV_HOTPLUG_REG_STATUS));
      if (st & HV_HOTPLUG_STATUS_EJECT_REQ) {
        if (!devs[s].quiesced && devs[s].present) quiesce(s);
        if (kit_info.user_arg == 1) {
          kit_printf("hotplug: slot %u: not acking the eject\n", s);
        } else {
          kit_mmio_write32(HP(HV_HOTPLUG_REG_CMD), HV_HOTPLUG_CMD_EJECT_ACK);
        }
      } else if (st & HV_HOTPLUG_STATUS_PRESENT) {
        attach(s); /* (re-)probe: a new device may replace a removed one */
      } else {
        devs[s].present = 0;
      }
    }
    return;
  }
  if (intid >= GIC_FIRST_LPI && intid < GIC_FIRST_LPI + SLOTS * MAXV) {
    const uint32_t s = (intid - GIC_FIRST_LPI) / MAXV;
    const uint32_t v = (intid - GIC_FIRST_LPI) % MAXV;
    struct dev *d = &devs[s];
    if (!d->present || v >= d->nvec) return;
    const uint64_t seq = kit_mmio_read64(VEC(d->win, v, 16));
    if (seq < d->last_seq[v]) {
      ++seq_errors;
      kit_printf("irq: %s vector %u: sequence went backwards\n", d->name, v);
    }
    d->last_seq[v] = seq;
    const uint64_t n = ++d->count[v];
    if (n <= 10 || n % 50 == 0) {
      kit_printf("irq: %s vector %u count %lu\n", d->name, v, n);
    }
  }
}

int kit_main(void) {
  KIT_CHECK(kit_info.its_base != 0);
  KIT_CHECK_EQ(kit_mmio_read32(HP(HV_HOTPLUG_REG_MAGIC)), HV_HOTPLUG_MAGIC);
  gic_dist_init();
  lpi_table_init(16, 0xa0);
  gic_set_handler(on_intid);
  gic_cpu_init(0);
  lpi_cpu_enable(0);
  KIT_CHECK_EQ(its_init(), 0);
  KIT_CHECK_EQ(its_mapc(0, 0, 1), 0);
  gic_enable_spi(HV_HOTPLUG_SPI, 0, 0x80, /*edge=*/0);
  kit_printf("hotplug-counter: ready for hot-plug (%u slots)\n",
             kit_mmio_read32(HP(HV_HOTPLUG_REG_NUM_SLOTS)));
  for (;;) kit_sti_hlt();
  return 0;
}
