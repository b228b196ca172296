// libFuzzer target: guest kexec entry lists. The input becomes up to four
// indirection pages in a 32-page guest; entries are decoded so that most are
// plausible (page numbers near RAM, one flag) or, in raw mode, taken as-is.
// Invariants: parsing never writes; an accepted plan, executed, leaves every
// destination equal to its source's original page, every other page and the
// crash region unchanged.
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "hv/loader/entry_list.h"
#include "hv/memory/guest_memory.h"

namespace {

using hv::GuestMemory;
using namespace hv::loader;

constexpr uint64_t kPages = 32;
constexpr uint64_t kRam = kPages * kPageSize;
constexpr GpaRange kCrash{28 * kPageSize, 4 * kPageSize};

void Check(bool ok) {
  if (!ok) std::abort();
}

// Initial guest contents: every page distinct.
const std::vector<uint8_t>& Initial() {
  static const auto* v = [] {
    auto* out = new std::vector<uint8_t>(kRam);
    for (uint64_t i = 0; i < kRam; ++i) {
      (*out)[i] = static_cast<uint8_t>((i / kPageSize) * 13 + i % 251);
    }
    return out;
  }();
  return *v;
}

GuestMemory* Memory() {
  static GuestMemory* m = GuestMemory::Create({{0, kRam}})->release();
  return m;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 2) return 0;
  GuestMemory* mem = Memory();
  auto span = mem->HostSpan(0, kRam);
  Check(span.ok());
  std::memcpy(span->data(), Initial().data(), kRam);
  const bool raw = data[0] & 0x80;
  const uint64_t head_page = 1 + data[0] % 4;
  std::vector<uint64_t> entries;
  constexpr uint64_t kFlags[4] = {kIndDestination, kIndIndirection, kIndSource,
                                  kIndDone};
  if (raw) {
    for (size_t i = 1; i + 8 <= size && entries.size() < 4 * kEntriesPerPage;
         i += 8) {
      uint64_t e;
      std::memcpy(&e, data + i, 8);
      entries.push_back(e);
    }
  } else {
    for (size_t i = 1; i + 2 <= size && entries.size() < 4 * kEntriesPerPage;
         i += 2) {
      const uint16_t w = static_cast<uint16_t>(data[i] | data[i + 1] << 8);
      const uint64_t page = (w >> 2) % (kPages + 6);  // a few beyond RAM
      entries.push_back(page * kPageSize | kFlags[w & 3]);
    }
  }
  Check(mem->Write(1 * kPageSize, entries.data(), entries.size() * 8).ok());
  const std::vector<uint8_t> before(span->begin(), span->end());

  auto plan = ParseEntryList(*mem, head_page * kPageSize | kIndIndirection,
                             kCrash, {.max_entries = 8 * kEntriesPerPage});
  Check(std::memcmp(before.data(), span->data(), kRam) == 0);  // no writes
  if (!plan.ok()) return 0;
  Check(ExecuteCopyPlan(mem, *plan).ok());
  absl::flat_hash_map<uint64_t, uint64_t> dst_to_src;
  for (const PageCopy& c : plan->copies) {
    Check(c.src % kPageSize == 0 && c.dst % kPageSize == 0);
    Check(c.dst < kRam && c.src < kRam);
    Check(!kCrash.Intersects(c.dst, kPageSize));
    Check(dst_to_src.emplace(c.dst, c.src).second);
  }
  for (uint64_t p = 0; p < kPages; ++p) {
    const uint64_t gpa = p * kPageSize;
    auto it = dst_to_src.find(gpa);
    const uint64_t from = it == dst_to_src.end() ? gpa : it->second;
    Check(std::memcmp(span->data() + gpa, before.data() + from, kPageSize) ==
          0);
  }
  return 0;
}
