// KVM smoke test: the build foundation's proof that real guests run here.
//
// Creates a VM with one page of RAM and one vCPU in real mode, runs a few
// guest instructions and asserts the exits KVM reports (port I/O, then MMIO,
// then HLT). Skips, with the reason printed, only when /dev/kvm is absent; a
// present-but-unusable /dev/kvm is a failure.
#include <fcntl.h>
#include <linux/kvm.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>
#include <cstring>

#include "gtest/gtest.h"

namespace {

class KvmSmokeTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (access("/dev/kvm", F_OK) != 0) {
      GTEST_SKIP() << "/dev/kvm is absent on this machine; KVM tests skipped";
    }
    kvm_ = open("/dev/kvm", O_RDWR | O_CLOEXEC);
    ASSERT_GE(kvm_, 0) << "/dev/kvm exists but cannot be opened: "
                       << std::strerror(errno);
    ASSERT_EQ(ioctl(kvm_, KVM_GET_API_VERSION, 0), KVM_API_VERSION);
    vm_ = ioctl(kvm_, KVM_CREATE_VM, 0);
    ASSERT_GE(vm_, 0) << "KVM_CREATE_VM: " << std::strerror(errno);
    mem_ = static_cast<uint8_t*>(mmap(nullptr, kMemSize, PROT_READ | PROT_WRITE,
                                      MAP_SHARED | MAP_ANONYMOUS, -1, 0));
    ASSERT_NE(mem_, MAP_FAILED);
    kvm_userspace_memory_region region{};
    region.slot = 0;
    region.guest_phys_addr = 0;
    region.memory_size = kMemSize;
    region.userspace_addr = reinterpret_cast<uint64_t>(mem_);
    ASSERT_EQ(ioctl(vm_, KVM_SET_USER_MEMORY_REGION, &region), 0)
        << std::strerror(errno);
    vcpu_ = ioctl(vm_, KVM_CREATE_VCPU, 0);
    ASSERT_GE(vcpu_, 0) << "KVM_CREATE_VCPU: " << std::strerror(errno);
    const int run_size = ioctl(kvm_, KVM_GET_VCPU_MMAP_SIZE, 0);
    ASSERT_GT(run_size, 0);
    run_size_ = static_cast<size_t>(run_size);
    run_ = static_cast<kvm_run*>(
        mmap(nullptr, run_size_, PROT_READ | PROT_WRITE, MAP_SHARED, vcpu_, 0));
    ASSERT_NE(run_, MAP_FAILED);
  }

  void TearDown() override {
    if (run_ != nullptr && run_ != MAP_FAILED) munmap(run_, run_size_);
    if (mem_ != nullptr && mem_ != MAP_FAILED) munmap(mem_, kMemSize);
    if (vcpu_ >= 0) close(vcpu_);
    if (vm_ >= 0) close(vm_);
    if (kvm_ >= 0) close(kvm_);
  }

  // Loads `code` at GPA 0x1000 and points the real-mode vCPU at it.
  void LoadAndReset(const uint8_t* code, size_t len) {
    std::memcpy(mem_ + kCodeGpa, code, len);
    kvm_sregs sregs{};
    ASSERT_EQ(ioctl(vcpu_, KVM_GET_SREGS, &sregs), 0);
    sregs.cs.base = 0;
    sregs.cs.selector = 0;
    ASSERT_EQ(ioctl(vcpu_, KVM_SET_SREGS, &sregs), 0);
    kvm_regs regs{};
    regs.rip = kCodeGpa;
    regs.rflags = 0x2;
    ASSERT_EQ(ioctl(vcpu_, KVM_SET_REGS, &regs), 0);
  }

  void Run() { ASSERT_EQ(ioctl(vcpu_, KVM_RUN, 0), 0) << std::strerror(errno); }

  static constexpr size_t kMemSize = 0x4000;
  static constexpr size_t kCodeGpa = 0x1000;
  int kvm_ = -1;
  int vm_ = -1;
  int vcpu_ = -1;
  uint8_t* mem_ = nullptr;
  kvm_run* run_ = nullptr;
  size_t run_size_ = 0;
};

TEST_F(KvmSmokeTest, PortIoThenHalt) {
  const uint8_t code[] = {
      0xb0, 0x42,  // mov al, 0x42
      0xe6, 0x10,  // out 0x10, al
      0xf4,        // hlt
  };
  LoadAndReset(code, sizeof(code));
  Run();
  ASSERT_EQ(run_->exit_reason, KVM_EXIT_IO);
  EXPECT_EQ(run_->io.direction, KVM_EXIT_IO_OUT);
  EXPECT_EQ(run_->io.port, 0x10);
  EXPECT_EQ(run_->io.size, 1);
  EXPECT_EQ(run_->io.count, 1u);
  const uint8_t* data =
      reinterpret_cast<const uint8_t*>(run_) + run_->io.data_offset;
  EXPECT_EQ(*data, 0x42);
  Run();
  EXPECT_EQ(run_->exit_reason, KVM_EXIT_HLT);
}

TEST_F(KvmSmokeTest, MmioWriteAndReadOutsideRam) {
  // GPA 0x8000 has no memory slot, so accesses exit to userspace as MMIO.
  const uint8_t code[] = {
      0xb8, 0x34, 0x12,  // mov ax, 0x1234
      0xa3, 0x00, 0x80,  // mov [0x8000], ax
      0xa1, 0x04, 0x80,  // mov ax, [0x8004]
      0xe6, 0x11,        // out 0x11, al   (reports what the read got)
      0xf4,              // hlt
  };
  LoadAndReset(code, sizeof(code));
  Run();
  ASSERT_EQ(run_->exit_reason, KVM_EXIT_MMIO);
  EXPECT_TRUE(run_->mmio.is_write);
  EXPECT_EQ(run_->mmio.phys_addr, 0x8000u);
  EXPECT_EQ(run_->mmio.len, 2u);
  EXPECT_EQ(run_->mmio.data[0], 0x34);
  EXPECT_EQ(run_->mmio.data[1], 0x12);
  Run();
  ASSERT_EQ(run_->exit_reason, KVM_EXIT_MMIO);
  EXPECT_FALSE(run_->mmio.is_write);
  EXPECT_EQ(run_->mmio.phys_addr, 0x8004u);
  run_->mmio.data[0] = 0x5a;  // the device model's answer
  run_->mmio.data[1] = 0x00;
  Run();
  ASSERT_EQ(run_->exit_reason, KVM_EXIT_IO);
  EXPECT_EQ(run_->io.port, 0x11);
  EXPECT_EQ(*(reinterpret_cast<const uint8_t*>(run_) + run_->io.data_offset),
            0x5a);
}

}  // namespace
