#include "vfio/vfio_core.h"

#include "gtest/gtest.h"
#include "vfio/test_util.h"

namespace vfio {
namespace {

using testing::RecordingHandler;
using testing::Rig;
using testing::SeqLog;

TEST(BusDriverTest, IndexSubindexDecoding) {
  Rig rig;
  EXPECT_EQ(rig.core->HostIrqFor("0000:01:00.0", 2, 7).status().code(),
            absl::StatusCode::kOk);
  EXPECT_EQ(rig.core->HostIrqFor("0000:01:00.0", 2, 8).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(rig.core->HostIrqFor("0000:01:00.0", 0, 0).status().code(),
            absl::StatusCode::kInvalidArgument);  // INTx not implemented
  EXPECT_EQ(rig.core->HostIrqFor("plat0", 0, 1).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(rig.core->HostIrqFor("plat0", 1, 0).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(rig.core->HostIrqFor("nope", 0, 0).status().code(),
            absl::StatusCode::kNotFound);
  EXPECT_EQ(PciDevice::Probe(rig.Dev("plat0")).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(PlatformDevice::Probe(rig.Dev("0000:01:00.0")).status().code(),
            absl::StatusCode::kInvalidArgument);
  // Distinct host IRQs for every line.
  EXPECT_NE(rig.Msix("0000:01:00.0", 0), rig.Msix("0000:02:00.0", 0));
  EXPECT_EQ(rig.Msix("0000:01:00.0", 1), rig.Msix("0000:01:00.0", 0) + 1);
}

TEST(VfioCoreTest, RegistryAndOwnership) {
  Rig rig;
  EXPECT_EQ(
      rig.core
          ->AddDevice(
              std::move(PciDevice::Probe(rig.Dev("0000:01:00.0"))).value())
          .code(),
      absl::StatusCode::kAlreadyExists);
  auto list = rig.core->ListDevices();
  ASSERT_EQ(list.size(), 6u);
  EXPECT_EQ(list[0].bus, "pci");
  EXPECT_EQ(list[0].requester_id, 0x100);
  EXPECT_EQ(list[4].bus, "platform");

  EXPECT_EQ(rig.core->AcquireRef("0000:01:00.0", kHost).code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(rig.core->AcquireRef("zz", 1).code(), absl::StatusCode::kNotFound);
  ASSERT_TRUE(rig.core->AcquireRef("0000:01:00.0", 1).ok());
  ASSERT_TRUE(rig.core->AcquireRef("0000:01:00.0", 1).ok());
  EXPECT_EQ(rig.core->AcquireRef("0000:01:00.0", 2).code(),
            absl::StatusCode::kFailedPrecondition);
  auto d = rig.core->GetDevice("0000:01:00.0");
  EXPECT_EQ(d->owner, 1u);
  EXPECT_EQ(d->refs, 2u);
  rig.core->ReleaseRef("0000:01:00.0", 2);  // not the owner: ignored
  EXPECT_EQ(rig.core->GetDevice("0000:01:00.0")->refs, 2u);
  rig.core->ReleaseRef("0000:01:00.0", 1);
  rig.core->ReleaseRef("0000:01:00.0", 1);
  rig.core->ReleaseRef("0000:01:00.0", 1);  // extra: ignored
  d = rig.core->GetDevice("0000:01:00.0");
  EXPECT_EQ(d->owner, kHost);
  EXPECT_EQ(d->refs, 0u);
  ASSERT_TRUE(rig.core->AcquireRef("0000:01:00.0", 2).ok());  // free again
}

TEST(VfioCoreTest, HostOwnedEdgeDeliversEverySeq) {
  Rig rig;
  const HostIrq irq = rig.Msix("0000:02:00.0", 3);
  for (int i = 0; i < 5; ++i)
    ASSERT_TRUE(rig.Dev("0000:02:00.0")->Fire(3).ok());
  rig.core->Dispatch(irq);
  EXPECT_EQ(rig.host_log.For(irq), (std::vector<uint64_t>{1, 2, 3, 4, 5}));
  auto st = rig.core->Status(irq);
  ASSERT_TRUE(st.ok());
  EXPECT_EQ(st->mode, IrqMode::kHostOwned);
  EXPECT_EQ(st->fired, 5u);
  EXPECT_EQ(st->host_handled, 5u);
  EXPECT_EQ(rig.core->Status(kMaxHostIrqs).status().code(),
            absl::StatusCode::kNotFound);
}

TEST(VfioCoreTest, ForwardedHandlerGetsInterruptsAndSwapsBack) {
  Rig rig;
  SeqLog guest;
  const HostIrq irq = rig.Msix("0000:01:00.0", 0);
  hwsim::Device* d = rig.Dev("0000:01:00.0");
  ASSERT_TRUE(d->Fire(0).ok());
  rig.core->Dispatch(irq);
  rig.core->SetForwarded(irq, std::make_unique<RecordingHandler>(&guest));
  EXPECT_EQ(rig.core->Status(irq)->mode, IrqMode::kForwardedMediated);
  ASSERT_TRUE(d->Fire(0).ok());
  ASSERT_TRUE(d->Fire(0).ok());
  rig.core->Dispatch(irq);
  rig.core->SetHostOwned(irq);
  ASSERT_TRUE(d->Fire(0).ok());
  rig.core->Dispatch(irq);
  EXPECT_EQ(rig.host_log.For(irq), (std::vector<uint64_t>{1, 4}));
  EXPECT_EQ(guest.For(irq), (std::vector<uint64_t>{2, 3}));
  auto st = rig.core->Status(irq);
  EXPECT_EQ(st->guest_delivered, 2u);
  EXPECT_EQ(st->host_handled, 2u);
  EXPECT_EQ(st->mode, IrqMode::kHostOwned);
}

TEST(VfioCoreTest, HostOwnedLevelLineMaskAckUnmask) {
  Rig rig;
  const HostIrq irq = rig.Plat("plat0");
  hwsim::Device* p = rig.Dev("plat0");
  ASSERT_TRUE(p->Fire(0).ok());
  ASSERT_TRUE(p->Fire(0).ok());  // coalesced into the assertion
  rig.core->Dispatch(irq);
  // The host driver consumed it, acked the source and unmasked.
  EXPECT_EQ(rig.host_log.For(irq), (std::vector<uint64_t>{1}));
  EXPECT_FALSE(p->asserted());
  EXPECT_FALSE(p->masked(0));
  ASSERT_TRUE(p->Fire(0).ok());
  rig.core->Dispatch(irq);
  EXPECT_EQ(rig.host_log.For(irq), (std::vector<uint64_t>{1, 3}));
  auto st = rig.core->Status(irq);
  EXPECT_TRUE(st->level);
  EXPECT_EQ(st->fired, 3u);
  EXPECT_EQ(st->host_handled + st->coalesced, 3u);
}

TEST(VfioCoreTest, ForwardedLevelLineStaysMaskedUntilUnmask) {
  Rig rig;
  SeqLog guest;
  const HostIrq irq = rig.Plat("plat1");
  hwsim::Device* p = rig.Dev("plat1");
  rig.core->SetForwarded(irq, std::make_unique<RecordingHandler>(&guest));
  ASSERT_TRUE(p->Fire(0).ok());
  rig.core->Dispatch(irq);
  EXPECT_EQ(guest.For(irq), (std::vector<uint64_t>{1}));
  EXPECT_TRUE(p->masked(0));
  EXPECT_TRUE(p->asserted());
  // Guest clears the device and a new fire re-asserts while still masked:
  // nothing is signalled until the owner unmasks.
  p->ClearStatus();
  ASSERT_TRUE(p->Fire(0).ok());
  rig.core->Dispatch(irq);
  EXPECT_EQ(guest.size(), 1u);
  rig.core->Unmask(irq);
  rig.core->Dispatch(irq);
  EXPECT_EQ(guest.For(irq), (std::vector<uint64_t>{1, 2}));
  // Unmask with the line still asserted and no new fire: re-trigger (seq 0).
  rig.core->Unmask(irq);
  rig.core->Dispatch(irq);
  EXPECT_EQ(guest.For(irq), (std::vector<uint64_t>{1, 2, 0}));
  EXPECT_TRUE(rig.host_log.For(irq).empty());
}

TEST(VfioCoreTest, DispatcherThreadDelivers) {
  Rig rig;
  ASSERT_TRUE(rig.core->Start().ok());
  ASSERT_TRUE(rig.core->Start().ok());  // idempotent
  const HostIrq irq = rig.Msix("0000:04:00.0", 7);
  for (int i = 0; i < 100; ++i)
    ASSERT_TRUE(rig.Dev("0000:04:00.0")->Fire(7).ok());
  EXPECT_TRUE(
      testing::WaitFor([&] { return rig.host_log.For(irq).size() == 100; }));
  rig.core->Stop();
  rig.core->Stop();
}

TEST(VfioCoreTest, PostedNeedsForwardedEdge) {
  Rig rig;
  EXPECT_EQ(rig.core->SetPosted(rig.Msix("0000:01:00.0", 0), {}).code(),
            absl::StatusCode::kFailedPrecondition);
  SeqLog guest;
  rig.core->SetForwarded(rig.Plat("plat0"),
                         std::make_unique<RecordingHandler>(&guest));
  EXPECT_EQ(rig.core->SetPosted(rig.Plat("plat0"), {}).code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_STREQ(IrqModeName(IrqMode::kForwardedPosted), "forwarded-posted");
}

}  // namespace
}  // namespace vfio

namespace vfio {
namespace {

TEST(VfioCoreTest, LastReleaseReinitialisesTheDeviceForTheHost) {
  testing::Rig rig;
  hwsim::Device* d = rig.Dev("0000:03:00.0");
  ASSERT_TRUE(rig.core->AcquireRef("0000:03:00.0", 5).ok());
  // The guest driver disabled one vector and masked another.
  d->SetEnabled(1, false);
  d->SetMasked(2, true);
  rig.core->ReleaseRef("0000:03:00.0", 5);
  EXPECT_FALSE(d->masked(2));
  ASSERT_TRUE(d->Fire(1).ok());
  rig.core->Dispatch(rig.Msix("0000:03:00.0", 1));
  EXPECT_EQ(rig.host_log.For(rig.Msix("0000:03:00.0", 1)),
            (std::vector<uint64_t>{1}));
}

}  // namespace
}  // namespace vfio
