// iommu_dump: prints an IOMMU's translation tables per device (context:
// DID, TT, AW; mappings as merged IOVA ranges) from a physical-memory image.
//
// Input: --memory=FILE is a raw image of host physical memory, HPA = file
// offset — hv-hwsim's physical-memory memfd (/proc/<hwsim-pid>/fd/<n>) or a
// saved copy of it; --rtaddr is the value of the unit's RTADDR register
// (hwsim logs it; a fault record's SID names the device to look at).
// --device=BB:DD.F limits the output to one source-id. Read only: the image
// is copied into private memory, never written.
//
//   iommu_dump --memory=/proc/1234/fd/5 --rtaddr=0x1000000 --device=01:00.0
#include <cstdio>
#include <fstream>
#include <iostream>
#include <iterator>
#include <optional>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/strings/numbers.h"
#include "iommu/formats.h"
#include "iommu/phys_memory.h"
#include "iommu/table_dump.h"

ABSL_FLAG(std::string, memory, "", "physical memory image (HPA = offset)");
ABSL_FLAG(std::string, rtaddr, "", "root-table address (RTADDR), hex");
ABSL_FLAG(std::string, device, "", "only this device, BB:DD.F (hex)");

namespace {

std::optional<uint16_t> ParseDevice(const std::string& s) {
  unsigned bus = 0, dev = 0, fn = 0;
  char tail = 0;
  if (std::sscanf(s.c_str(), "%x:%x.%x%c", &bus, &dev, &fn, &tail) != 3 ||
      bus > 0xff || dev > 0x1f || fn > 7) {
    return std::nullopt;
  }
  return iommu::MakeSid(static_cast<uint8_t>(bus),
                        static_cast<uint8_t>(dev << 3 | fn));
}

}  // namespace

int main(int argc, char** argv) {
  absl::SetProgramUsageMessage(
      "iommu_dump --memory=IMAGE --rtaddr=0xADDR [--device=BB:DD.F]");
  absl::ParseCommandLine(argc, argv);
  const std::string path = absl::GetFlag(FLAGS_memory);
  uint64_t rtaddr = 0;
  if (path.empty() ||
      !absl::SimpleHexAtoi(absl::GetFlag(FLAGS_rtaddr), &rtaddr)) {
    std::cerr << "usage: iommu_dump --memory=IMAGE --rtaddr=0xADDR "
                 "[--device=BB:DD.F]\n";
    return 2;
  }
  std::optional<uint16_t> sid;
  if (!absl::GetFlag(FLAGS_device).empty()) {
    sid = ParseDevice(absl::GetFlag(FLAGS_device));
    if (!sid) {
      std::cerr << "bad --device (want BB:DD.F in hex)\n";
      return 2;
    }
  }
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    std::cerr << "cannot open " << path << "\n";
    return 1;
  }
  std::vector<char> bytes((std::istreambuf_iterator<char>(in)),
                          std::istreambuf_iterator<char>());
  const uint64_t size = (bytes.size() + iommu::kPageSize - 1) /
                        iommu::kPageSize * iommu::kPageSize;
  if (size == 0) {
    std::cerr << path << " is empty\n";
    return 1;
  }
  auto mem = iommu::PhysMemory::Create(size);
  if (!mem.ok() || !(*mem)->Write(0, bytes.data(), bytes.size()).ok()) {
    std::cerr << "cannot load image: " << mem.status() << "\n";
    return 1;
  }
  const auto devices = iommu::DumpTables(**mem, rtaddr, sid);
  std::cout << "root table 0x" << std::hex << rtaddr << std::dec << ", "
            << devices.size() << " device(s)\n"
            << iommu::FormatDump(devices);
  return 0;
}
