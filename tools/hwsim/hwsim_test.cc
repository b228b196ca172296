#include "tools/hwsim/hwsim.h"

#include <sys/eventfd.h>
#include <sys/mman.h>
#include <unistd.h>

#include <thread>

#include "gtest/gtest.h"

namespace hwsim {
namespace {

uint64_t ReadEventfd(int fd) {
  uint64_t v = 0;
  if (read(fd, &v, 8) != 8) return 0;
  return v;
}

TEST(InventoryTest, DefaultInventory) {
  auto m = Machine::Create(InventorySpec::Default());
  ASSERT_TRUE(m.ok()) << m.status();
  ASSERT_EQ((*m)->devices().size(), 6u);
  Device* d = (*m)->Find("0000:01:00.0");
  ASSERT_NE(d, nullptr);
  EXPECT_EQ(d->kind(), DeviceKind::kPci);
  EXPECT_EQ(d->num_vectors(), 8u);
  EXPECT_EQ(d->requester_id(), 0x0100);
  EXPECT_EQ(d->regs()->magic, HWSIM_MAGIC);
  EXPECT_EQ(d->regs()->requester_id, 0x0100u);
  Device* p = (*m)->Find("plat1");
  ASSERT_NE(p, nullptr);
  EXPECT_TRUE(p->level());
  EXPECT_EQ(p->num_vectors(), 1u);
  EXPECT_EQ((*m)->Find("nope"), nullptr);
}

TEST(InventoryTest, ParseAndErrors) {
  auto s = InventorySpec::Parse(
      "# comment\npci 0000:03:1f.7 vectors=4\n\nplatform uart\n");
  ASSERT_TRUE(s.ok()) << s.status();
  ASSERT_EQ(s->pci.size(), 1u);
  EXPECT_EQ(s->pci[0].vectors, 4u);
  EXPECT_EQ(*ParseBdf("0000:03:1f.7"), 0x03ff);
  for (const char* bad :
       {"pci 0000:03:20.0", "pci 0000:03:00.8", "pci 0000:01:00.0 vectors=0",
        "pci 0000:01:00.0 vectors=33", "disk x", "pci", "platform a b",
        "platform a\nplatform a", "pci 1:2:3.4"}) {
    auto r = InventorySpec::Parse(bad);
    EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument) << bad;
  }
}

TEST(DeviceTest, FireQueuesSequenceNumbersAndSignals) {
  auto m = Machine::Create(InventorySpec::Default());
  ASSERT_TRUE(m.ok());
  Device* d = (*m)->Find("0000:02:00.0");
  for (uint64_t i = 1; i <= 5; ++i) EXPECT_EQ(*d->Fire(3), i);
  EXPECT_EQ(*d->Fire(4), 1u);  // per-vector numbering
  EXPECT_EQ(ReadEventfd(d->irq_fd(3)), 5u);
  std::vector<uint64_t> seqs;
  EXPECT_EQ(d->Drain(3, &seqs), 5u);
  EXPECT_EQ(seqs, (std::vector<uint64_t>{1, 2, 3, 4, 5}));
  EXPECT_EQ(d->Fire(8).status().code(), absl::StatusCode::kInvalidArgument);
  const auto c = d->counters(3);
  EXPECT_EQ(c.fired, 5u);
  EXPECT_EQ(c.consumed, 5u);
  EXPECT_EQ(c.queued, 0u);
}

TEST(DeviceTest, MaskedVectorHoldsMessagesUntilUnmask) {
  auto m = Machine::Create(InventorySpec::Default());
  Device* d = (*m)->Find("0000:01:00.0");
  d->SetMasked(0, true);
  ASSERT_TRUE(d->Fire(0).ok());
  ASSERT_TRUE(d->Fire(0).ok());
  EXPECT_EQ(ReadEventfd(d->irq_fd(0)), 0u);  // nothing signalled
  d->SetMasked(0, false);
  EXPECT_EQ(ReadEventfd(d->irq_fd(0)), 1u);
  std::vector<uint64_t> seqs;
  EXPECT_EQ(d->Drain(0, &seqs), 2u);
}

TEST(DeviceTest, RingOverflowIsCountedExplicitly) {
  auto m = Machine::Create(InventorySpec::Default());
  Device* d = (*m)->Find("0000:01:00.0");
  for (int i = 0; i < HWSIM_RING_SLOTS + 10; ++i) ASSERT_TRUE(d->Fire(1).ok());
  const auto c = d->counters(1);
  EXPECT_EQ(c.ring_overflow, 10u);
  EXPECT_EQ(c.queued, uint64_t{HWSIM_RING_SLOTS});
  EXPECT_EQ(c.fired, c.queued + c.ring_overflow);
}

TEST(DeviceTest, LevelLineAssertsUntilStatusCleared) {
  auto m = Machine::Create(InventorySpec::Default());
  Device* p = (*m)->Find("plat0");
  EXPECT_FALSE(p->asserted());
  EXPECT_EQ(*p->Fire(0), 1u);
  EXPECT_TRUE(p->asserted());
  EXPECT_EQ(*p->Fire(0), 2u);  // coalesced into the assertion
  EXPECT_EQ(ReadEventfd(p->irq_fd(0)), 1u);
  EXPECT_EQ(p->counters(0).level_coalesced, 1u);
  // Mask, clear nothing, unmask: a still-asserted line re-signals.
  p->SetMasked(0, true);
  p->SetMasked(0, false);
  EXPECT_EQ(ReadEventfd(p->irq_fd(0)), 1u);
  p->ClearStatus();
  EXPECT_FALSE(p->asserted());
  p->SetMasked(0, true);
  p->SetMasked(0, false);
  EXPECT_EQ(ReadEventfd(p->irq_fd(0)), 0u);
}

TEST(DeviceTest, PostedEntrySetsBitAndRingsDoorbell) {
  auto m = Machine::Create(InventorySpec::Default());
  Device* d = (*m)->Find("0000:01:00.0");
  const uint64_t per_vcpu = 8192;  // 2^16 INTIDs
  int fd = memfd_create("pend", MFD_CLOEXEC);
  ASSERT_EQ(ftruncate(fd, per_vcpu * 2), 0);
  auto region = PostedRegion::Map(fd, per_vcpu, 2);
  ASSERT_TRUE(region.ok()) << region.status();
  int bell = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  EXPECT_EQ(d->SetPosted(0, {*region, 2, 8200, bell}).code(),
            absl::StatusCode::kInvalidArgument);  // vCPU out of range
  EXPECT_EQ(d->SetPosted(0, {*region, 1, 100, bell}).code(),
            absl::StatusCode::kInvalidArgument);  // not an LPI
  ASSERT_TRUE(d->SetPosted(0, {*region, 1, 8200, bell}).ok());
  ASSERT_TRUE(d->Fire(0).ok());
  ASSERT_TRUE(d->Fire(0).ok());
  EXPECT_EQ(ReadEventfd(bell), 2u);
  EXPECT_EQ(ReadEventfd(d->irq_fd(0)), 0u);  // no host signal
  auto* words = static_cast<uint64_t*>(
      mmap(nullptr, per_vcpu * 2, PROT_READ, MAP_SHARED, fd, 0));
  const uint64_t* v1 = words + per_vcpu / 8;
  EXPECT_TRUE(v1[8200 / 64] & (uint64_t{1} << (8200 % 64)));
  EXPECT_TRUE(v1[(8200 / 64) / 64] & (uint64_t{1} << ((8200 / 64) % 64)));
  EXPECT_EQ(words[8200 / 64], 0u);  // not vCPU 0
  auto c = d->counters(0);
  EXPECT_EQ(c.posted_delivered, 1u);
  EXPECT_EQ(c.posted_coalesced, 1u);
  d->ClearPosted(0);
  ASSERT_TRUE(d->Fire(0).ok());
  EXPECT_EQ(ReadEventfd(d->irq_fd(0)), 1u);
  munmap(words, per_vcpu * 2);
  close(bell);
  close(fd);
}

TEST(DeviceTest, WindowMmioSideEffects) {
  auto m = Machine::Create(InventorySpec::Default());
  Device* p = (*m)->Find("plat0");
  WindowMmio w(m->get(), p);
  uint64_t v = 0;
  ASSERT_TRUE(w.Read({}, 0, 8, &v).ok());
  EXPECT_EQ(v, HWSIM_MAGIC);
  ASSERT_TRUE(w.Write({}, offsetof(hwsim_regs, fire), 4, 0).ok());
  EXPECT_TRUE(p->asserted());
  ASSERT_TRUE(w.Write({}, offsetof(hwsim_regs, status), 4, 1).ok());
  EXPECT_FALSE(p->asserted());
  EXPECT_FALSE(w.Read({}, 2, 4, &v).ok());
  EXPECT_FALSE(w.Write({}, HWSIM_WINDOW_GUEST_SIZE, 4, 0).ok());
  EXPECT_FALSE(w.Write({}, offsetof(hwsim_regs, fire), 4, 5).ok());
  // Vector control through the window masks the vector.
  Device* d = (*m)->Find("0000:01:00.0");
  WindowMmio wd(m->get(), d);
  ASSERT_TRUE(wd.Write({}, HWSIM_OFF_VECTORS + 2 * HWSIM_VECTOR_STRIDE, 4,
                       HWSIM_VEC_ENABLE | HWSIM_VEC_MASK)
                  .ok());
  EXPECT_TRUE(d->masked(2));
  ASSERT_TRUE(
      wd.Write({}, HWSIM_OFF_VECTORS + 2 * HWSIM_VECTOR_STRIDE + 4, 4, 77)
          .ok());
  EXPECT_EQ(d->regs()->vectors[2].msg_data, 77u);
}

TEST(MachineTest, GeneratorFiresCount) {
  auto m = Machine::Create(InventorySpec::Default());
  ASSERT_TRUE((*m)->StartGenerator("0000:03:00.0", 5, 100, 4, 0).ok());
  (*m)->WaitGenerator("0000:03:00.0");
  Device* d = (*m)->Find("0000:03:00.0");
  const auto c = d->counters(5);
  EXPECT_EQ(c.fired, 100u);
  EXPECT_EQ(c.queued + c.ring_overflow, 100u);
  EXPECT_EQ((*m)->StartGenerator("x", 0, 1, 1, 0).code(),
            absl::StatusCode::kNotFound);
  EXPECT_EQ((*m)->StartGenerator("0000:03:00.0", 9, 1, 1, 0).code(),
            absl::StatusCode::kInvalidArgument);
  // A rate-limited generator can be stopped early.
  ASSERT_TRUE((*m)->StartGenerator("0000:03:00.0", 6, 1000000, 1, 10).ok());
  (*m)->StopGenerator("0000:03:00.0");
  EXPECT_LT(d->counters(6).fired, 1000000u);
}

}  // namespace
}  // namespace hwsim
