/* passthrough: guest drivers for the hwsim devices (issue 8 guest kit).
 *   PCI function (window 0): reads its identity, maps its DeviceID in the ITS
 *   (MAPD, MAPC, MAPTI EventID v → LPI 8192 + v, INVALL, SYNC), programs the
 *   MSI-X table (message address = GITS_TRANSLATER, data = EventID) and
 *   enables the vectors. Each LPI handler counts and checks the vector's
 *   sequence number (read from the device) never goes backwards.
 *   Platform device (window 1): level SPI PT_PLATFORM_SPI; the handler clears
 *   the device status (W1C), then returns so the kit EOIs (the forwarded
 *   physical line is unmasked at that deactivation).
 * Runs until the host sets mailbox.stop, then prints per-vector counts. */
#include "hv/guest/kit/gic.h"
#include "tests/passthrough/pt_guest_abi.h"
#include "tools/hwsim/hwsim_regs.h"

#define WIN(n) (PT_WINDOW_BASE + (n)*PT_WINDOW_STRIDE)
#define VEC(n, v, field) \
  (WIN(n) + HWSIM_OFF_VECTORS + (v)*HWSIM_VECTOR_STRIDE + (field))
#define VEC_CTRL 0
#define VEC_DATA 4
#define VEC_ADDR 8
#define VEC_FIRED 16

static volatile struct pt_mailbox *const mb =
    (volatile struct pt_mailbox *)PT_MAILBOX;
static uint32_t nvec;

static void on_intid(unsigned cpu, uint32_t intid) {
  (void)cpu;
  if (intid >= GIC_FIRST_LPI && intid < GIC_FIRST_LPI + nvec) {
    const uint32_t v = intid - GIC_FIRST_LPI;
    const uint64_t seq = kit_mmio_read64(VEC(0, v, VEC_FIRED));
    if (seq <= mb->msi_last_seq[v]) mb->seq_errors++;
    mb->msi_last_seq[v] = seq;
    mb->msi_count[v]++;
  } else if (intid == PT_PLATFORM_SPI) {
    const uint32_t st = kit_mmio_read32(WIN(1) + 0x18);
    if (!(st & HWSIM_STATUS_ASSERTED)) mb->spi_spurious++;
    kit_mmio_write32(WIN(1) + 0x18, HWSIM_STATUS_ASSERTED); /* W1C */
    mb->spi_count++;
  } else if (intid == PT_WAKE_SPI) {
    mb->wakes++;
  } else {
    mb->unexpected++;
  }
}

int kit_main(void) {
  KIT_CHECK(kit_info.its_base != 0);
  KIT_CHECK_EQ(kit_mmio_read64(WIN(0)), HWSIM_MAGIC);
  KIT_CHECK_EQ(kit_mmio_read32(WIN(0) + 0x0c), HWSIM_KIND_PCI);
  KIT_CHECK_EQ(kit_mmio_read32(WIN(1) + 0x0c), HWSIM_KIND_PLATFORM);
  nvec = kit_mmio_read32(WIN(0) + 0x10);
  const uint32_t rid = kit_mmio_read32(WIN(0) + 0x14);
  KIT_CHECK(nvec >= 1 && nvec <= PT_MAX_VECTORS);
  kit_memset((void *)mb, 0, sizeof(*mb));
  mb->num_vectors = nvec;

  gic_dist_init();
  lpi_table_init(16, 0xa0);
  gic_set_handler(on_intid);
  gic_cpu_init(0);
  lpi_cpu_enable(0);
  KIT_CHECK_EQ(its_init(), 0);
  KIT_CHECK_EQ(its_mapc(0, 0, 1), 0);
  KIT_CHECK_EQ(its_mapd(rid, 5, 1), 0);
  for (uint32_t v = 0; v < nvec; ++v) {
    KIT_CHECK_EQ(its_mapti(rid, v, GIC_FIRST_LPI + v, 0), 0);
    lpi_set_enabled(GIC_FIRST_LPI + v, 1);
  }
  KIT_CHECK_EQ(its_invall(0), 0);
  KIT_CHECK_EQ(its_sync(0), 0);
  /* MSI-X table: address/data, then enable (unmasked). */
  for (uint32_t v = 0; v < nvec; ++v) {
    kit_mmio_write64(VEC(0, v, VEC_ADDR), kit_info.its_base + GITS_TRANSLATER);
    kit_mmio_write32(VEC(0, v, VEC_DATA), v);
    kit_mmio_write32(VEC(0, v, VEC_CTRL), HWSIM_VEC_ENABLE);
  }
  gic_enable_spi(PT_PLATFORM_SPI, 0, 0x80, /*edge=*/0);
  gic_enable_spi(PT_WAKE_SPI, 0, 0x80, /*edge=*/1);
  kit_printf("passthrough: device 0x%x, %u vectors, ready\n", rid, nvec);
  mb->magic = PT_MAGIC;
  __atomic_store_n(&mb->ready, 1, __ATOMIC_RELEASE);

  while (!__atomic_load_n(&mb->stop, __ATOMIC_ACQUIRE)) kit_sti_hlt();
  kit_cli();
  for (uint32_t v = 0; v < nvec; ++v) {
    kit_printf("vector %u: %lu\n", v, (unsigned long)mb->msi_count[v]);
  }
  kit_printf("spi: %lu spurious %lu unexpected %lu seq_errors %lu\n",
             (unsigned long)mb->spi_count, (unsigned long)mb->spi_spurious,
             (unsigned long)mb->unexpected, (unsigned long)mb->seq_errors);
  if (mb->seq_errors != 0) kit_fail("sequence numbers went backwards");
  kit_printf("PASS passthrough\n");
  return 0;
}
