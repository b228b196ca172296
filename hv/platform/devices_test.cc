#include <string>

#include "gtest/gtest.h"
#include "hv/platform/platform_info.h"
#include "hv/platform/uart16550.h"

namespace hv {
namespace {

using Reg = Uart16550::Reg;

uint64_t R(Uart16550& u, Reg r) {
  uint64_t v = 0;
  EXPECT_TRUE(u.Read({}, static_cast<uint64_t>(r), 1, &v).ok());
  return v;
}
void W(Uart16550& u, Reg r, uint8_t v) {
  EXPECT_TRUE(u.Write({}, static_cast<uint64_t>(r), 1, v).ok());
}

TEST(Uart16550Test, TransmitsToSinkAndReportsEmpty) {
  std::string out;
  Uart16550 uart([&](char c) { out.push_back(c); });
  W(uart, Reg::kData, 'h');
  W(uart, Reg::kData, 'i');
  EXPECT_EQ(out, "hi");
  EXPECT_EQ(uart.bytes_written(), 2u);
  EXPECT_EQ(R(uart, Reg::kLsr) & 0x60, 0x60u);
  EXPECT_EQ(R(uart, Reg::kLsr) & 0x01, 0u);  // no data ready
}

TEST(Uart16550Test, DivisorLatchDoesNotTransmit) {
  std::string out;
  Uart16550 uart([&](char c) { out.push_back(c); });
  W(uart, Reg::kLcr, 0x83);  // DLAB | 8N1
  W(uart, Reg::kData, 0x0c);
  W(uart, Reg::kIer, 0x00);
  EXPECT_EQ(R(uart, Reg::kData), 0x0cu);
  W(uart, Reg::kLcr, 0x03);
  EXPECT_EQ(out, "");
  EXPECT_EQ(R(uart, Reg::kLcr), 0x03u);
  W(uart, Reg::kIer, 0xff);
  EXPECT_EQ(R(uart, Reg::kIer), 0x0fu);  // upper IER bits are reserved
  W(uart, Reg::kScr, 0x5a);
  EXPECT_EQ(R(uart, Reg::kScr), 0x5au);
  EXPECT_EQ(R(uart, Reg::kIirFcr) & 0x0f, 0x01u);  // no interrupt pending
}

TEST(Uart16550Test, RejectsWideAccess) {
  Uart16550 uart(nullptr);
  uint64_t v;
  EXPECT_FALSE(uart.Read({}, 0, 2, &v).ok());
  EXPECT_FALSE(uart.Write({}, 0, 4, 0).ok());
  EXPECT_FALSE(uart.Write({}, 8, 1, 0).ok());
}

TEST(PlatformInfoTest, ReadsFieldsAndIsReadOnly) {
  hv_virt_info in{};
  in.num_vcpus = 4;
  in.ram_size = 64 << 20;
  in.user_arg = 0x1234567890abcdefull;
  PlatformInfo info(in);
  uint64_t v = 0;
  ASSERT_TRUE(info.Read({}, 0, 8, &v).ok());
  EXPECT_EQ(v, HV_VIRT_INFO_MAGIC);
  ASSERT_TRUE(info.Read({}, offsetof(hv_virt_info, num_vcpus), 4, &v).ok());
  EXPECT_EQ(v, 4u);
  ASSERT_TRUE(info.Read({}, offsetof(hv_virt_info, user_arg), 8, &v).ok());
  EXPECT_EQ(v, 0x1234567890abcdefull);
  ASSERT_TRUE(info.Read({}, offsetof(hv_virt_info, ram_size) + 2, 2, &v).ok());
  EXPECT_EQ(v, (64u << 20) >> 16);
  ASSERT_TRUE(info.Read({}, 0x800, 8, &v).ok());
  EXPECT_EQ(v, 0u);
  EXPECT_FALSE(info.Read({}, 3, 4, &v).ok());      // unaligned
  EXPECT_FALSE(info.Read({}, 0xffc, 8, &v).ok());  // past the block
  EXPECT_FALSE(info.Write({}, 0, 8, 0).ok());
  info.set_boot_count(2);
  ASSERT_TRUE(info.Read({}, offsetof(hv_virt_info, boot_count), 8, &v).ok());
  EXPECT_EQ(v, 2u);
}

}  // namespace
}  // namespace hv
