// libFuzzer target: arbitrary bytes as the crashed instance's tables. The
// copy must never crash or read outside physical memory (ASan + bounds-
// checked PageWords), and must either refuse cleanly (nothing left
// allocated) or produce tables that verify equal to the old ones.
//
// Input: byte 0 picks the mode and strategy.
//  mode 0: bytes are raw table pages placed at the start of memory, RTADDR
//          taken from bytes 1..2 (page number);
//  mode 1: a valid table set is built by the driver and the bytes are
//          applied as (offset:u16, xor:u64) patches to the table pages.
#include <cstdint>
#include <cstdlib>
#include <cstring>

#include "iommu/crash_copy.h"
#include "iommu/test_util.h"

namespace iommu {
namespace {

constexpr uint64_t kDataPages = 32;  // raw-table area in mode 0
constexpr uint64_t kPoolPages = 32;
constexpr uint64_t kReservedPages = 64;

void Check(bool ok, const char* what) {
  if (!ok) {
    std::fprintf(stderr, "fuzz invariant violated: %s\n", what);
    std::abort();
  }
}

void Run(const uint8_t* data, size_t size) {
  if (size < 3) return;
  const bool patch_mode = (data[0] & 1) != 0;
  const CopyStrategy strategy =
      (data[0] & 2) ? CopyStrategy::kKeepPageTables : CopyStrategy::kDeepCopy;
  auto env_or =
      TestEnv::Create(kDataPages * kPageSize, kPoolPages, kReservedPages);
  Check(env_or.ok(), "env");
  TestEnv& env = **env_or;
  uint64_t rtaddr = 0;
  if (!patch_mode) {
    const size_t n = std::min<size_t>(size - 3, kDataPages * kPageSize);
    Check(env.mem->Write(0, data + 3, n).ok(), "write");
    rtaddr = (uint64_t{data[1]} | uint64_t{data[2]} << 8) * kPageSize;
  } else {
    auto drv = IommuDriver::Create(env.mem.get(), env.hw.get(), env.pool.get());
    Check(drv.ok(), "driver");
    const uint16_t d1 = *(*drv)->CreateDomain(3 + data[1] % 3);
    const uint16_t d2 = *(*drv)->CreateDomain(2 + data[2] % 4);
    const uint16_t pt = *(*drv)->CreatePassThroughDomain();
    Check((*drv)->Attach(MakeSid(0, 1), d1).ok(), "attach");
    Check((*drv)->Attach(MakeSid(0, 2), d1).ok(), "attach");
    Check((*drv)->Attach(MakeSid(1, 0), d2).ok(), "attach");
    Check((*drv)->Attach(MakeSid(2, 3), pt).ok(), "attach");
    Check((*drv)->Map(d1, 0x1000, 0x3000, 0x5000, kPermRW).ok(), "map");
    Check((*drv)->Map(d1, 0x200000, 0x200000, 0x200000, kPermR).ok(), "map");
    Check((*drv)->Map(d2, 0x7000, 0x9000, 0x2000, kPermW).ok(), "map");
    rtaddr = (*drv)->root_table();
    const uint64_t pool_base = env.pool->base();
    for (size_t i = 3; i + 10 <= size; i += 10) {
      uint16_t off;
      uint64_t x;
      std::memcpy(&off, data + i, 2);
      std::memcpy(&x, data + i + 2, 8);
      // Patch inside the used pool pages (8-byte aligned words).
      const uint64_t used = env.pool->allocated_pages() * kPageSize;
      const uint64_t addr = pool_base + (off * 8ull) % used;
      const uint64_t v = *env.mem->Load64(addr);
      Check(env.mem->Store64(addr, v ^ x).ok(), "patch");
    }
  }
  auto copy = CopyTables(env.mem.get(), rtaddr, env.reserved.get(), strategy);
  if (!copy.ok()) {
    Check(env.reserved->allocated_pages() == 0, "refused copy left pages");
    return;
  }
  for (uint64_t p : copy->new_pages) Check(env.reserved->Owns(p), "page owner");
  auto v =
      VerifyTranslationsEqual(*env.mem, copy->old_rtaddr, copy->new_rtaddr);
  if (!v.ok()) {
    std::fprintf(stderr, "%s\n", v.status().ToString().c_str());
  }
  Check(v.ok(), "accepted copy does not verify");
  Check(v->contexts == copy->stats.contexts, "context count");
  if (strategy == CopyStrategy::kDeepCopy) {
    Check(v->leaf_entries == copy->stats.leaf_entries, "leaf count");
  }
  ReleaseCopy(&*copy, env.reserved.get());
  Check(env.reserved->allocated_pages() == 0, "release");
}

}  // namespace
}  // namespace iommu

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  iommu::Run(data, size);
  return 0;
}
