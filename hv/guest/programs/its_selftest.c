/* its-selftest: the kvm-unit-tests "its-trigger" scenario end to end on the
 * hv-virt GICv3 + ITS, driven the way an OS driver does it (tables in guest
 * memory, command queue, CREADR polling):
 *   - MAPC one collection per vCPU, MAPD two devices, MAPTI two events;
 *   - INT dev2/20 lands exactly once, on vCPU 3; INT dev7/255 on vCPU 2;
 *   - a disabled LPI (config byte + INV) does not fire; re-enabled it does;
 *   - MOVI moves dev7/255 to vCPU 1;
 *   - MAPD V=0 stops delivery for dev2;
 *   - a command queue outside guest RAM stalls the ITS (CREADR.Stalled)
 *     without hurting the VM; the queue is then restored and works.
 * Written for 4 vCPUs (kvm-unit-tests' targets); with fewer, target vCPU n
 * folds onto n % num_vcpus. Prints PASS and exits 0, or FAIL and exits 1. */
#include "hv/guest/kit/gic.h"

#define MAXCPU 8
#define NLPI 64
#define LPI(n) (GIC_FIRST_LPI + (n))
#define QUIET_MS 50
#define WAIT_MS 2000

static volatile uint32_t hits[MAXCPU][NLPI];
static volatile int online[MAXCPU];
static unsigned ncpu;

static void on_intid(unsigned cpu, uint32_t intid) {
  if (cpu < MAXCPU && intid >= GIC_FIRST_LPI && intid < LPI(NLPI)) {
    __atomic_add_fetch(&hits[cpu][intid - GIC_FIRST_LPI], 1, __ATOMIC_SEQ_CST);
  }
}

static uint32_t total(uint32_t intid) {
  uint32_t t = 0;
  for (unsigned c = 0; c < ncpu; ++c) t += hits[c][intid - GIC_FIRST_LPI];
  return t;
}

static void spin_ms(uint64_t ms) {
  const uint64_t t0 = kit_rdtsc();
  kit_sti();
  while (kit_ns_since(t0) < ms * 1000000ull) kit_pause();
}

struct snapshot {
  uint32_t n[MAXCPU];
};
static struct snapshot snap(uint32_t intid) {
  struct snapshot s;
  for (unsigned c = 0; c < MAXCPU; ++c) s.n[c] = hits[c][intid - GIC_FIRST_LPI];
  return s;
}

/* After `before` was taken: waits until LPI `intid` was taken `want` more
 * times in total, then a quiet period; checks every one landed on `cpu`
 * (exactly `want` there, none elsewhere). */
static void expect_hits(const struct snapshot *before, uint32_t intid,
                        unsigned cpu, uint32_t want, const char *what) {
  uint32_t base = 0;
  for (unsigned c = 0; c < ncpu; ++c) base += before->n[c];
  const uint64_t t0 = kit_rdtsc();
  kit_sti();
  while (total(intid) - base < want &&
         kit_ns_since(t0) < WAIT_MS * 1000000ull) {
    kit_pause();
  }
  spin_ms(QUIET_MS);
  for (unsigned c = 0; c < ncpu; ++c) {
    const uint32_t got = hits[c][intid - GIC_FIRST_LPI] - before->n[c];
    const uint32_t exp = c == cpu ? want : 0;
    if (got != exp) {
      kit_fail("%s: LPI %u taken %u times on vCPU %u, expected %u", what, intid,
               got, c, exp);
    }
  }
  kit_printf("ok: %s\n", what);
}

static void secondary(unsigned cpu) {
  gic_cpu_init(cpu);
  lpi_cpu_enable(cpu);
  __atomic_store_n(&online[cpu], 1, __ATOMIC_RELEASE);
  for (;;) kit_sti_hlt();
}

#define CHECK_CMD(call) KIT_CHECK_EQ((call), 0)

int kit_main(void) {
  ncpu = kit_info.num_vcpus;
  if (ncpu > MAXCPU) kit_fail("its-selftest supports up to %d vCPUs", MAXCPU);
  KIT_CHECK(kit_info.its_base != 0);
  /* kvm-unit-tests' targets on 4 vCPUs; folded onto fewer vCPUs. */
  const unsigned cpu3 = 3 % ncpu, cpu2 = 2 % ncpu, cpu1 = 1 % ncpu;
  gic_dist_init();
  lpi_table_init(16, 0xa0);
  gic_set_handler(on_intid);
  gic_cpu_init(0);
  lpi_cpu_enable(0);
  for (unsigned c = 1; c < ncpu; ++c) {
    KIT_CHECK_EQ(kit_cpu_on(c, secondary), PSCI_RET_SUCCESS);
    if (!kit_wait_flag(&online[c], 10000)) kit_fail("vCPU %u offline", c);
  }
  KIT_CHECK_EQ(its_init(), 0);

  for (unsigned c = 0; c < 4; ++c) CHECK_CMD(its_mapc(c, c % ncpu, 1));
  CHECK_CMD(its_mapd(2, 8, 1));
  CHECK_CMD(its_mapd(7, 8, 1));
  CHECK_CMD(its_mapti(2, 20, LPI(3), 3));
  CHECK_CMD(its_mapti(7, 255, LPI(4), 2));
  lpi_set_enabled(LPI(3), 1);
  lpi_set_enabled(LPI(4), 1);
  for (unsigned c = 0; c < 4; ++c) CHECK_CMD(its_invall(c));
  CHECK_CMD(its_sync(cpu3));
  spin_ms(QUIET_MS);
  KIT_CHECK_EQ(total(LPI(3)) + total(LPI(4)), 0);

  struct snapshot s = snap(LPI(3));
  CHECK_CMD(its_int(2, 20));
  expect_hits(&s, LPI(3), cpu3, 1, "dev2/event20 -> LPI 8195 once on its vCPU");
  s = snap(LPI(4));
  CHECK_CMD(its_int(7, 255));
  expect_hits(&s, LPI(4), cpu2, 1,
              "dev7/event255 -> LPI 8196 once on its vCPU");

  /* Disabled LPI: no delivery. */
  lpi_set_enabled(LPI(3), 0);
  CHECK_CMD(its_inv(2, 20));
  s = snap(LPI(3));
  CHECK_CMD(its_int(2, 20));
  expect_hits(&s, LPI(3), cpu3, 0, "disabled LPI 8195 is not delivered");
  /* Re-enabled: an INT is delivered. An INT that arrived while the LPI was
   * disabled may fire now as well (GICv3 leaves it pending), so the count is
   * taken after the INV settles. */
  lpi_set_enabled(LPI(3), 1);
  CHECK_CMD(its_inv(2, 20));
  spin_ms(QUIET_MS);
  s = snap(LPI(3));
  CHECK_CMD(its_int(2, 20));
  expect_hits(&s, LPI(3), cpu3, 1, "re-enabled LPI 8195 is delivered");

  /* MOVI: dev7/event255 now targets collection 1. */
  CHECK_CMD(its_movi(7, 255, 1));
  s = snap(LPI(4));
  CHECK_CMD(its_int(7, 255));
  expect_hits(&s, LPI(4), cpu1, 1, "MOVI moved LPI 8196 to collection 1");

  /* MAPD V=0: the device is unmapped, INT translates to nothing. */
  CHECK_CMD(its_mapd(2, 8, 0));
  s = snap(LPI(3));
  CHECK_CMD(its_int(2, 20));
  expect_hits(&s, LPI(3), cpu3, 0, "MAPD V=0 stops delivery for dev2");

  /* Command queue outside guest RAM: the ITS stalls, the VM keeps going. */
  KIT_CHECK_EQ(its_set_enabled(0), 0);
  const uint64_t outside = (kit_info.ram_size + 0x10000000ull) & ~0xffffull;
  its_write64(GITS_CBASER, (1ull << 63) | outside);
  KIT_CHECK_EQ(its_set_enabled(1), 0);
  its_write64(GITS_CWRITER, 32);
  const uint64_t t0 = kit_rdtsc();
  while (!(its_read64(GITS_CREADR) & GITS_CREADR_STALLED) &&
         kit_ns_since(t0) < WAIT_MS * 1000000ull) {
    kit_pause();
  }
  KIT_CHECK(its_read64(GITS_CREADR) & GITS_CREADR_STALLED);
  kit_printf("ok: command queue outside RAM stalls the ITS\n");
  /* Recover: drop the unreadable command (CWRITER = CREADR), which empties
   * the queue so the ITS can quiesce, then install the good queue. */
  its_write64(GITS_CWRITER, its_read64(GITS_CREADR) & ~0x1full);
  KIT_CHECK_EQ(its_set_enabled(0), 0);
  its_reset_queue();
  KIT_CHECK_EQ(its_set_enabled(1), 0);
  s = snap(LPI(4));
  CHECK_CMD(its_int(7, 255));
  expect_hits(&s, LPI(4), cpu1, 1, "restored command queue works");

  kit_printf("PASS its-selftest (%u vCPUs)\n", ncpu);
  return 0;
}
