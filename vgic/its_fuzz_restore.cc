// libFuzzer target: RestoreTables over arbitrary table contents. The input
// supplies GITS_BASER0/1 (valid/indirect/size, a 64 KiB-aligned address) and
// the bytes of guest RAM the tables live in. Invariants: no crash / leak /
// access outside guest RAM; a failed restore leaves the previous state
// intact; a successful restore yields only in-range translations, and a
// save of it restores again.
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <vector>

#include "hv/memory/guest_memory.h"
#include "vgic/fake_lpi_sink.h"
#include "vgic/its.h"

namespace {

constexpr uint64_t kRam = 256 << 10;  // 256 KiB at GPA 0
constexpr uint32_t kVcpus = 4;

void Check(bool cond, const char* what) {
  if (!cond) {
    std::fprintf(stderr, "invariant violated: %s\n", what);
    std::abort();
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 16) return 0;
  uint64_t b0, b1;
  std::memcpy(&b0, data, 8);
  std::memcpy(&b1, data + 8, 8);
  data += 16;
  size -= 16;
  auto mem = std::move(hv::GuestMemory::Create({{0, kRam}})).value();
  // The rest of the input is guest RAM, repeated if short (so tables that
  // are not at offset 0 still see fuzz data).
  if (size > 0) {
    std::vector<uint8_t> ram(kRam);
    const uint64_t first = std::min<uint64_t>(size, kRam);
    std::memcpy(ram.data(), data, first);
    for (uint64_t filled = first; filled < kRam; filled *= 2) {
      std::memcpy(ram.data() + filled, ram.data(),
                  std::min<uint64_t>(filled, kRam - filled));
    }
    if (!mem->Write(0, ram.data(), kRam).ok()) std::abort();
  }
  vgic::FakeLpiSink sink(kVcpus, 14);
  vgic::ItsOptions opts;
  opts.restore_scan_budget = 1 << 16;
  vgic::Its its(&sink, mem.get(), opts);
  // Keep the address bits mostly inside (but sometimes beyond) RAM.
  const uint64_t addr_mask = 0x70000;  // 0..512 KiB: half outside RAM
  vgic::ItsRegisters regs;
  regs.enabled = true;
  regs.cbaser = uint64_t{1} << 63;
  regs.baser[0] = (b0 & (3ull << 62 | 0x3)) | (b0 & addr_mask);
  regs.baser[1] = (b1 & (1ull << 63 | 0x3)) | (b1 & addr_mask);
  Check(its.SetRegisters(regs).ok(), "SetRegisters");
  const absl::Status s = its.RestoreTables();
  if (!s.ok()) {
    // Nothing of a failed restore remains.
    for (uint32_t d = 0; d < 64; ++d) {
      for (uint32_t e = 0; e < 4; ++e) {
        Check(!its.Translate(d, e).has_value(), "failed restore left state");
      }
    }
    return 0;
  }
  for (uint32_t d = 0; d < 256; ++d) {
    for (uint32_t e = 0; e < 8; ++e) {
      if (auto t = its.Translate(d, e)) {
        Check(t->vcpu < kVcpus, "vCPU in range");
        Check(t->intid >= 8192 && t->intid < (1u << 14), "LPI in range");
        Check(its.InjectMsi(d, e) == vgic::its::Error::kNone, "MSI delivers");
        Check(sink.IsPending(t->vcpu, t->intid), "pending set");
      }
    }
  }
  // Save and restore again: must not crash or leak. (Guest tables may
  // overlap each other, so the second restore may legitimately see different
  // contents and fail; that is checked by its_tables_test on sane layouts.)
  if (its.SaveTables().ok()) {
    vgic::Its again(&sink, mem.get(), opts);
    Check(again.SetRegisters(its.GetRegisters()).ok(), "SetRegisters again");
    again.RestoreTables().IgnoreError();
  }
  return 0;
}
