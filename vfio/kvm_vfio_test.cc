#include "vfio/kvm_vfio.h"

#include "gtest/gtest.h"
#include "vfio/test_util.h"

namespace vfio {
namespace {

using testing::FakeArch;
using testing::Rig;
using testing::SeqLog;

constexpr uint32_t kMsix = kVfioPciMsixIrqIndex;

uint32_t Refs(Rig& rig, const char* dev) {
  return rig.core->GetDevice(dev)->refs;
}

TEST(KvmVfioTest, RefcountEqualsRegisteredForwards) {
  Rig rig;
  SeqLog guest;
  FakeArch arch(rig.core.get(), &guest);
  KvmVfio vm(1, rig.core.get(), &arch);
  for (uint32_t v = 0; v < 4; ++v) {
    ASSERT_TRUE(
        vm.Forward("0000:01:00.0", kMsix, v, GuestIrq::Msi(0x100, v)).ok());
    EXPECT_EQ(Refs(rig, "0000:01:00.0"), v + 1);
  }
  ASSERT_TRUE(vm.Forward("plat0", 0, 0, GuestIrq::Spi(40)).ok());
  EXPECT_EQ(Refs(rig, "plat0"), 1u);
  EXPECT_EQ(vm.List().size(), 5u);
  vm.Unforward("0000:01:00.0", kMsix, 2);
  EXPECT_EQ(Refs(rig, "0000:01:00.0"), 3u);
  EXPECT_EQ(rig.core->Status(rig.Msix("0000:01:00.0", 2))->mode,
            IrqMode::kHostOwned);
  EXPECT_EQ(rig.core->Status(rig.Msix("0000:01:00.0", 1))->mode,
            IrqMode::kForwardedMediated);
  vm.Destroy();
  EXPECT_EQ(Refs(rig, "0000:01:00.0"), 0u);
  EXPECT_EQ(Refs(rig, "plat0"), 0u);
  EXPECT_EQ(rig.core->GetDevice("0000:01:00.0")->owner, kHost);
  EXPECT_EQ(arch.ons, 5);
  EXPECT_EQ(arch.offs, 5);
  EXPECT_TRUE(vm.List().empty());
  vm.Destroy();  // idempotent
  EXPECT_EQ(arch.offs, 5);
}

TEST(KvmVfioTest, DuplicateForwardIsInvalidArgument) {
  Rig rig;
  SeqLog guest;
  FakeArch arch(rig.core.get(), &guest);
  KvmVfio vm(1, rig.core.get(), &arch);
  ASSERT_TRUE(vm.Forward("0000:01:00.0", kMsix, 0, GuestIrq::Msi(1, 0)).ok());
  // Same host IRQ again.
  EXPECT_EQ(vm.Forward("0000:01:00.0", kMsix, 0, GuestIrq::Msi(1, 9)).code(),
            absl::StatusCode::kInvalidArgument);
  // Same guest IRQ for another host IRQ.
  EXPECT_EQ(vm.Forward("0000:01:00.0", kMsix, 1, GuestIrq::Msi(1, 0)).code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(Refs(rig, "0000:01:00.0"), 1u);
  EXPECT_EQ(arch.ons, 1);
}

TEST(KvmVfioTest, DeviceOwnedElsewhereIsFailedPrecondition) {
  Rig rig;
  SeqLog guest;
  FakeArch arch1(rig.core.get(), &guest), arch2(rig.core.get(), &guest);
  KvmVfio vm1(1, rig.core.get(), &arch1);
  KvmVfio vm2(2, rig.core.get(), &arch2);
  ASSERT_TRUE(vm1.Forward("0000:03:00.0", kMsix, 0, GuestIrq::Msi(3, 0)).ok());
  EXPECT_EQ(vm2.Forward("0000:03:00.0", kMsix, 1, GuestIrq::Msi(3, 1)).code(),
            absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(arch2.ons, 0);
  EXPECT_EQ(Refs(rig, "0000:03:00.0"), 1u);
  vm1.Destroy();
  ASSERT_TRUE(vm2.Forward("0000:03:00.0", kMsix, 1, GuestIrq::Msi(3, 1)).ok());
  EXPECT_EQ(rig.core->GetDevice("0000:03:00.0")->owner, 2u);
}

TEST(KvmVfioTest, BadInputsAndArchFailureLeaveNoState) {
  Rig rig;
  SeqLog guest;
  FakeArch arch(rig.core.get(), &guest);
  KvmVfio vm(1, rig.core.get(), &arch);
  EXPECT_EQ(vm.Forward("nope", kMsix, 0, GuestIrq::Msi(1, 0)).code(),
            absl::StatusCode::kNotFound);
  EXPECT_EQ(vm.Forward("0000:01:00.0", kMsix, 99, GuestIrq::Msi(1, 0)).code(),
            absl::StatusCode::kInvalidArgument);
  arch.FailNext();
  EXPECT_EQ(vm.Forward("0000:01:00.0", kMsix, 0, GuestIrq::Msi(1, 0)).code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(Refs(rig, "0000:01:00.0"), 0u);
  EXPECT_EQ(rig.core->GetDevice("0000:01:00.0")->owner, kHost);
  EXPECT_TRUE(vm.List().empty());
}

TEST(KvmVfioTest, UnforwardOfUnknownIrqIsANoOp) {
  Rig rig;
  SeqLog guest;
  FakeArch arch(rig.core.get(), &guest);
  KvmVfio vm(1, rig.core.get(), &arch);
  ASSERT_TRUE(vm.Forward("0000:01:00.0", kMsix, 0, GuestIrq::Msi(1, 0)).ok());
  vm.Unforward("0000:01:00.0", kMsix, 1);  // registered device, other IRQ
  vm.Unforward("nope", 5, 5);
  vm.Unforward("0000:01:00.0", kMsix, 0);
  vm.Unforward("0000:01:00.0", kMsix, 0);  // twice
  EXPECT_EQ(vm.unknown_unforwards(), 3u);
  EXPECT_EQ(arch.offs, 1);
  EXPECT_EQ(Refs(rig, "0000:01:00.0"), 0u);
}

TEST(KvmVfioTest, DestructorDestroys) {
  Rig rig;
  SeqLog guest;
  FakeArch arch(rig.core.get(), &guest);
  {
    KvmVfio vm(7, rig.core.get(), &arch);
    ASSERT_TRUE(vm.Forward("0000:02:00.0", kMsix, 0, GuestIrq::Msi(2, 0)).ok());
    ASSERT_TRUE(vm.Forward("plat1", 0, 0, GuestIrq::Spi(33)).ok());
  }
  EXPECT_EQ(Refs(rig, "0000:02:00.0"), 0u);
  EXPECT_EQ(Refs(rig, "plat1"), 0u);
  EXPECT_EQ(arch.offs, 2);
}

}  // namespace
}  // namespace vfio
