/* hotplug-guest: the guest side of hot-attach / two-phase detach through the
 * hv-virt hot-plug controller (hv_hotplug.h).
 *   Controller SPI: for each slot event — attach: read the identity, map the
 *   device in the ITS (MAPD, MAPTI EventID v → LPI 8192 + v, INVALL, SYNC),
 *   program and enable its MSI-X vectors, W1C the event; eject request:
 *   quiesce (disable every vector, DISCARD each event, MAPD V=0, SYNC), then
 *   ack with CMD = EJECT_ACK — unless user_arg is 1 (a guest that never acks;
 *   it masks the controller SPI instead, so the host must force the eject).
 *   LPIs are counted per vector (mailbox, pt_guest_abi.h layout reused:
 *   msi_count, msi_last_seq, seq_errors; `ready` = 1 when armed, bit 1 set
 *   while a device is attached, bit 2 once quiesced).
 * Runs until the host sets `stop`. */
#include "hv/guest/kit/gic.h"
#include "hv/platform/hv_hotplug.h"
#include "tests/passthrough/pt_guest_abi.h"
#include "tools/hwsim/hwsim_regs.h"

#define HP(reg) (HV_HOTPLUG_BASE + (reg))
#define VEC(w, v, field) \
  ((w) + HWSIM_OFF_VECTORS + (v)*HWSIM_VECTOR_STRIDE + (field))

static volatile struct pt_mailbox *const mb =
    (volatile struct pt_mailbox *)PT_MAILBOX;
static uint32_t rid, nvec;
static uint64_t win;
static int quiesced;

static void attach(void) {
  rid = kit_mmio_read32(HP(HV_HOTPLUG_REG_REQUESTER_ID));
  nvec = kit_mmio_read32(HP(HV_HOTPLUG_REG_NUM_VECTORS));
  win = kit_mmio_read64(HP(HV_HOTPLUG_REG_WINDOW_GPA));
  KIT_CHECK_EQ(kit_mmio_read32(HP(HV_HOTPLUG_REG_KIND)), 1);
  KIT_CHECK(nvec >= 1 && nvec <= PT_MAX_VECTORS);
  KIT_CHECK_EQ(kit_mmio_read64(win), HWSIM_MAGIC);
  KIT_CHECK_EQ(kit_mmio_read32(win + 0x14), rid);
  KIT_CHECK_EQ(its_mapd(rid, 5, 1), 0);
  for (uint32_t v = 0; v < nvec; ++v) {
    KIT_CHECK_EQ(its_mapti(rid, v, GIC_FIRST_LPI + v, 0), 0);
    lpi_set_enabled(GIC_FIRST_LPI + v, 1);
  }
  KIT_CHECK_EQ(its_invall(0), 0);
  KIT_CHECK_EQ(its_sync(0), 0);
  for (uint32_t v = 0; v < nvec; ++v) {
    kit_mmio_write64(VEC(win, v, 8), kit_info.its_base + GITS_TRANSLATER);
    kit_mmio_write32(VEC(win, v, 4), v);
    kit_mmio_write32(VEC(win, v, 0), HWSIM_VEC_ENABLE);
  }
  mb->num_vectors = nvec;
  quiesced = 0;
  kit_printf("hotplug: attached device 0x%x, %u vectors\n", rid, nvec);
  __atomic_or_fetch(&mb->ready, 2, __ATOMIC_RELEASE);
}

static void quiesce(void) {
  for (uint32_t v = 0; v < nvec; ++v) kit_mmio_write32(VEC(win, v, 0), 0);
  for (uint32_t v = 0; v < nvec; ++v) KIT_CHECK_EQ(its_discard(rid, v), 0);
  KIT_CHECK_EQ(its_mapd(rid, 5, 0), 0);
  KIT_CHECK_EQ(its_sync(0), 0);
  quiesced = 1;
  kit_printf("hotplug: quiesced device 0x%x\n", rid);
  __atomic_and_fetch(&mb->ready, ~2u, __ATOMIC_RELEASE);
  __atomic_or_fetch(&mb->ready, 4, __ATOMIC_RELEASE);
}

static void on_intid(unsigned cpu, uint32_t intid) {
  (void)cpu;
  if (intid == HV_HOTPLUG_SPI) {
    const uint32_t ev = kit_mmio_read32(HP(HV_HOTPLUG_REG_EVENTS));
    for (uint32_t s = 0; s < 32; ++s) {
      if (!(ev >> s & 1)) continue;
      kit_mmio_write32(HP(HV_HOTPLUG_REG_SEL), s);
      const uint32_t st = kit_mmio_read32(HP(HV_HOTPLUG_REG_STATUS));
      if (st & HV_HOTPLUG_STATUS_EJECT_REQ) {
        if (!quiesced) quiesce();
        if (kit_info.user_arg == 1) {
          gic_disable_spi(HV_HOTPLUG_SPI); /* never acks */
        } else {
          kit_mmio_write32(HP(HV_HOTPLUG_REG_CMD), HV_HOTPLUG_CMD_EJECT_ACK);
        }
      } else if (st & HV_HOTPLUG_STATUS_PRESENT) {
        attach();
        kit_mmio_write32(HP(HV_HOTPLUG_REG_EVENTS), 1u << s);
      } else {
        kit_mmio_write32(HP(HV_HOTPLUG_REG_EVENTS), 1u << s);
      }
    }
  } else if (intid >= GIC_FIRST_LPI && intid < GIC_FIRST_LPI + nvec) {
    const uint32_t v = intid - GIC_FIRST_LPI;
    const uint64_t seq = kit_mmio_read64(VEC(win, v, 16));
    if (seq <= mb->msi_last_seq[v]) mb->seq_errors++;
    mb->msi_last_seq[v] = seq;
    mb->msi_count[v]++;
  } else {
    mb->unexpected++;
  }
}

int kit_main(void) {
  KIT_CHECK(kit_info.its_base != 0);
  KIT_CHECK_EQ(kit_mmio_read32(HP(HV_HOTPLUG_REG_MAGIC)), HV_HOTPLUG_MAGIC);
  kit_memset((void *)mb, 0, sizeof(*mb));
  gic_dist_init();
  lpi_table_init(16, 0xa0);
  gic_set_handler(on_intid);
  gic_cpu_init(0);
  lpi_cpu_enable(0);
  KIT_CHECK_EQ(its_init(), 0);
  KIT_CHECK_EQ(its_mapc(0, 0, 1), 0);
  gic_enable_spi(HV_HOTPLUG_SPI, 0, 0x80, /*edge=*/0);
  gic_enable_spi(PT_WAKE_SPI, 0, 0x80, /*edge=*/1);
  mb->magic = PT_MAGIC;
  __atomic_or_fetch(&mb->ready, 1, __ATOMIC_RELEASE);
  while (!__atomic_load_n(&mb->stop, __ATOMIC_ACQUIRE)) kit_sti_hlt();
  kit_cli();
  if (mb->seq_errors != 0) kit_fail("sequence numbers went backwards");
  kit_printf("PASS hotplug\n");
  return 0;
}
