#include "iommu/table_dump.h"

#include "gtest/gtest.h"
#include "iommu/test_util.h"

namespace iommu {
namespace {

TEST(TableDumpTest, PerDeviceRangesMerged) {
  auto env = *TestEnv::Create(4 << 20, 256, 16);
  auto drv =
      *IommuDriver::Create(env->mem.get(), env->hw.get(), env->pool.get());
  const uint16_t did = *drv->CreateDomain(3);
  const uint16_t pt = *drv->CreatePassThroughDomain();
  ASSERT_TRUE(drv->Attach(MakeSid(0, 0x08), did).ok());
  ASSERT_TRUE(drv->Attach(MakeSid(0, 0x10), pt).ok());
  ASSERT_TRUE(drv->Map(did, 0x10000, 0x100000, 0x3000, kPermRW).ok());
  ASSERT_TRUE(drv->Map(did, 0x13000, 0x103000, 0x1000, kPermR).ok());
  ASSERT_TRUE(drv->Map(did, 0x200000, 0x200000, 0x200000, kPermW).ok());
  auto devs = DumpTables(*env->mem, drv->root_table(), std::nullopt);
  ASSERT_EQ(devs.size(), 2u);
  ASSERT_EQ(devs[0].ranges.size(), 3u);
  EXPECT_EQ(devs[0].ranges[0].size, 0x3000u);
  EXPECT_EQ(devs[0].ranges[1].perms, kPermR);
  EXPECT_EQ(devs[0].ranges[2].page_size, uint64_t{1} << 21);
  const std::string text = FormatDump(devs);
  EXPECT_NE(text.find("00:01.0 did="), std::string::npos) << text;
  EXPECT_NE(text.find("iova 0x10000-0x12fff -> hpa 0x100000-0x102fff rw 4K"),
            std::string::npos)
      << text;
  EXPECT_NE(text.find("00:02.0 did=2 pass-through"), std::string::npos) << text;
  auto one = DumpTables(*env->mem, drv->root_table(), MakeSid(0, 0x10));
  ASSERT_EQ(one.size(), 1u);
  EXPECT_EQ(one[0].context.tt(), TranslationType::kPassThrough);
}

TEST(TableDumpTest, MalformedTablesReportedNotFollowed) {
  auto env = *TestEnv::Create(1 << 20, 64, 16);
  auto drv =
      *IommuDriver::Create(env->mem.get(), env->hw.get(), env->pool.get());
  const uint16_t did = *drv->CreateDomain(3);
  const uint16_t sid = MakeSid(2, 0);
  ASSERT_TRUE(drv->Attach(sid, did).ok());
  ASSERT_TRUE(drv->Map(did, 0x1000, 0x1000, 0x1000, kPermRW).ok());
  const uint64_t re = *env->mem->Load64(drv->root_table() + 2 * 16);
  const uint64_t ctx = RootEntry{re, 0}.ctp();
  const uint64_t slpt = *env->mem->Load64(ctx) & kAddrMask;
  // Entry 3 of the level-3 table points back at the level-3 table.
  ASSERT_TRUE(env->mem->Store64(slpt + 3 * 8, slpt | kPermRW).ok());
  auto devs = DumpTables(*env->mem, drv->root_table(), sid);
  ASSERT_EQ(devs.size(), 1u);
  EXPECT_NE(devs[0].error.find("reached twice"), std::string::npos)
      << devs[0].error;
  EXPECT_NE(FormatDump(devs).find("ERROR"), std::string::npos);
}

}  // namespace
}  // namespace iommu
