#include "tools/hvd/store.h"

#include <stdlib.h>

#include <filesystem>
#include <string>

#include "gtest/gtest.h"
#include "hv/control/failpoint.h"
#include "tools/hvd/vm_manager.h"

namespace hv::hvd {
namespace {

class StoreTest : public ::testing::Test {
 protected:
  void SetUp() override {
    const char* t = std::getenv("TEST_TMPDIR");
    std::string tmpl = std::string(t ? t : "/tmp") + "/store.XXXXXX";
    ASSERT_NE(mkdtemp(tmpl.data()), nullptr);
    dir_ = tmpl;
  }
  void TearDown() override {
    ASSERT_TRUE(control::SetFailpoints("").ok());
    std::filesystem::remove_all(dir_);
  }
  static v1::Vm Vm(const std::string& name) {
    v1::Vm vm;
    vm.set_name(name);
    vm.set_vcpus(2);
    vm.set_memory_mib(64);
    vm.set_image("builtin:idle");
    vm.set_state(v1::VM_STATE_STOPPED);
    vm.set_last_exit_reason("poweroff");
    return vm;
  }
  std::string dir_;
};

TEST_F(StoreTest, RoundTripWithIncreasingOpIds) {
  auto store = Store::Open(dir_);
  ASSERT_TRUE(store.ok()) << store.status();
  auto op1 = (*store)->PutVm("create", Vm("a"));
  auto op2 = (*store)->PutVm("create", Vm("b"));
  ASSERT_TRUE(op1.ok() && op2.ok());
  EXPECT_LT(*op1, *op2);
  v1::Image im;
  im.set_vm("a");
  im.set_kind(v1::IMAGE_KIND_CRASH);
  im.set_source("builtin:hello");
  im.set_segments(2);
  im.set_crash_mib(16);
  v1::Vm a = Vm("a");
  a.set_crash_image("builtin:hello");
  a.set_crash_mib(16);
  auto op3 = (*store)->PutImage(im, a);
  ASSERT_TRUE(op3.ok());
  store->reset();

  // Reopen: everything is there, stamped with its op id.
  store = Store::Open(dir_);
  ASSERT_TRUE(store.ok());
  auto vms = (*store)->LoadVms();
  ASSERT_TRUE(vms.ok());
  ASSERT_EQ(vms->size(), 2u);
  EXPECT_EQ((*vms)[0].name(), "a");
  EXPECT_EQ((*vms)[0].crash_image(), "builtin:hello");
  EXPECT_EQ((*vms)[0].crash_mib(), 16u);
  EXPECT_EQ((*vms)[1].crash_mib(), 0u);
  EXPECT_EQ((*vms)[0].last_op_id(), *op3);
  EXPECT_EQ((*vms)[0].vcpus(), 2u);
  EXPECT_EQ((*vms)[0].last_exit_reason(), "poweroff");
  EXPECT_EQ((*vms)[1].last_op_id(), *op2);
  auto images = (*store)->LoadImages();
  ASSERT_TRUE(images.ok());
  ASSERT_EQ(images->size(), 1u);
  EXPECT_EQ((*images)[0].op_id(), *op3);
  EXPECT_EQ((*images)[0].segments(), 2u);
  EXPECT_EQ((*images)[0].crash_mib(), 16u);
  EXPECT_EQ(*(*store)->OpCount(), 3u);

  // Delete takes the VM's images with it, in one op.
  auto op4 = (*store)->DeleteVm("a");
  ASSERT_TRUE(op4.ok());
  EXPECT_EQ((*store)->LoadVms()->size(), 1u);
  EXPECT_TRUE((*store)->LoadImages()->empty());
  EXPECT_EQ(*(*store)->OpCount(), 4u);
}

TEST_F(StoreTest, FailedCommitLeavesNothing) {
  auto store = Store::Open(dir_);
  ASSERT_TRUE(store.ok());
  ASSERT_TRUE((*store)->PutVm("create", Vm("a")).ok());
  ASSERT_TRUE(control::SetFailpoints("sqlite.commit=error*1").ok());
  EXPECT_EQ((*store)->PutVm("create", Vm("b")).status().code(),
            absl::StatusCode::kInternal);
  EXPECT_EQ((*store)->LoadVms()->size(), 1u);
  EXPECT_EQ(*(*store)->OpCount(), 1u);  // the op row rolled back too
  // The connection is usable afterwards.
  EXPECT_TRUE((*store)->PutVm("create", Vm("b")).ok());
  EXPECT_EQ((*store)->LoadVms()->size(), 2u);
}

TEST_F(StoreTest, UsesWal) {
  auto store = Store::Open(dir_);
  ASSERT_TRUE(store.ok());
  ASSERT_TRUE((*store)->PutVm("create", Vm("a")).ok());
  EXPECT_TRUE(std::filesystem::exists(dir_ + "/hvd.sqlite-wal"));
}

TEST_F(StoreTest, UnopenableDirNamesStateDir) {
  auto store = Store::Open(dir_ + "/does/not/exist");
  ASSERT_FALSE(store.ok());
  EXPECT_EQ(store.status().message().substr(0, 10), "state_dir:");
}

TEST(ValidateVmName, Rules) {
  EXPECT_TRUE(ValidateVmName("name", "web-1.a_b").ok());
  EXPECT_FALSE(ValidateVmName("name", "").ok());
  EXPECT_FALSE(ValidateVmName("name", std::string(64, 'a')).ok());
  EXPECT_TRUE(ValidateVmName("name", std::string(63, 'a')).ok());
  for (const char* bad : {"a/b", "a b", "../x", "é"}) {
    absl::Status s = ValidateVmName("name", bad);
    EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << bad;
    EXPECT_EQ(s.message().substr(0, 5), "name:");
  }
}

}  // namespace
}  // namespace hv::hvd
