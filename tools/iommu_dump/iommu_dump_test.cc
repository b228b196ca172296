// Runs the iommu_dump binary on an image written by the driver and checks
// its output names devices, domains and ranges.
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <string>

#include "gtest/gtest.h"
#include "iommu/driver.h"
#include "iommu/test_util.h"

namespace iommu {
namespace {

std::string RunTool(const std::string& args) {
  const std::string bin = std::string(std::getenv("TEST_SRCDIR")) +
                          "/hv/tools/iommu_dump/iommu_dump " + args + " 2>&1";
  FILE* p = popen(bin.c_str(), "r");
  std::string out;
  char buf[4096];
  size_t n;
  while ((n = fread(buf, 1, sizeof(buf), p)) > 0) out.append(buf, n);
  pclose(p);
  return out;
}

TEST(IommuDumpTest, PrintsDevicesAndRangesFromImage) {
  auto env = *TestEnv::Create(2 << 20, 64, 16);
  auto drv =
      *IommuDriver::Create(env->mem.get(), env->hw.get(), env->pool.get());
  const uint16_t did = *drv->CreateDomain(4);
  ASSERT_TRUE(drv->Attach(MakeSid(0x3a, 0x11), did).ok());
  ASSERT_TRUE(drv->Map(did, 0x40000, 0x120000, 0x5000, kPermR).ok());
  ASSERT_TRUE(drv->Map(did, 0x600000, 0x600000, 0x200000, kPermRW).ok());
  const std::string image =
      std::string(std::getenv("TEST_TMPDIR")) + "/mem.img";
  {
    std::vector<char> bytes(env->mem->size());
    ASSERT_TRUE(env->mem->Read(0, bytes.data(), bytes.size()).ok());
    std::ofstream out(image, std::ios::binary);
    out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  }
  char rt[32];
  std::snprintf(rt, sizeof(rt), "0x%llx",
                static_cast<unsigned long long>(drv->root_table()));
  const std::string out = RunTool("--memory=" + image + " --rtaddr=" + rt);
  EXPECT_NE(out.find("3a:02.1 did=1 translated aw=2 (4-level, 48-bit)"),
            std::string::npos)
      << out;
  EXPECT_NE(out.find("iova 0x40000-0x44fff -> hpa 0x120000-0x124fff r- 4K"),
            std::string::npos)
      << out;
  EXPECT_NE(out.find("iova 0x600000-0x7fffff -> hpa 0x600000-0x7fffff rw 2M"),
            std::string::npos)
      << out;
  const std::string none =
      RunTool("--memory=" + image + " --rtaddr=" + rt + " --device=00:01.0");
  EXPECT_NE(none.find("0 device(s)"), std::string::npos) << none;
  EXPECT_NE(RunTool("--memory=" + image + " --rtaddr=0x7fff000000")
                .find("outside physical memory"),
            std::string::npos);
  EXPECT_NE(RunTool("--rtaddr=0x1000").find("usage"), std::string::npos);
}

}  // namespace
}  // namespace iommu
