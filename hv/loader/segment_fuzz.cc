// libFuzzer target: arbitrary segment lists through KexecLoader::Load().
// Invariants: a rejected image changes no byte of guest memory and carries a
// SegmentViolation; an accepted one leaves exactly buf + zero tail in each
// segment, nothing outside, and verifies.
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <vector>

#include "hv/loader/kexec_loader.h"
#include "hv/memory/guest_memory.h"

namespace {

using hv::GuestMemory;
using namespace hv::loader;

constexpr uint64_t kRegion = 0x10000;
constexpr uint64_t kRegion1 = 0x20000;  // second region, after a hole
constexpr GpaRange kCrash{0x28000, 0x8000};
constexpr uint8_t kFill = 0xcc;

void Check(bool ok) {
  if (!ok) std::abort();
}

struct Reader {
  const uint8_t* p;
  size_t n;
  uint64_t U64() {
    uint64_t v = 0;
    const size_t take = n < 8 ? n : 8;
    std::memcpy(&v, p, take);
    p += take;
    n -= take;
    return v;
  }
  uint8_t U8() { return static_cast<uint8_t>(n ? (--n, *p++) : 0); }
};

GuestMemory* Memory() {
  static GuestMemory* m =
      GuestMemory::Create({{0, kRegion}, {kRegion1, kRegion}})->release();
  return m;
}

const std::vector<uint8_t>& Source() {
  static const std::vector<uint8_t>* s = [] {
    auto* v = new std::vector<uint8_t>(2 * kRegion);  // ≥ half of RAM
    for (size_t i = 0; i < v->size(); ++i)
      (*v)[i] = static_cast<uint8_t>(i * 31 + 7);
    return v;
  }();
  return *s;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  Reader in{data, size};
  GuestMemory* mem = Memory();
  Check(mem->Fill(0, kFill, kRegion).ok());
  Check(mem->Fill(kRegion1, kFill, kRegion).ok());
  auto loader = KexecLoader::Create(mem, kCrash);
  Check(loader.ok());

  const uint8_t ctl = in.U8();
  const Slot slot = (ctl & 1) ? Slot::kCrash : Slot::kNormal;
  const size_t count = (ctl >> 1) % 20;
  Image image;
  const uint8_t ectl = in.U8();
  image.entry = (ectl & 1) ? in.U64() : (in.U8() % 0x30) * 0x1000 + (ectl >> 1);
  for (size_t i = 0; i < count; ++i) {
    const uint8_t sctl = in.U8();
    Segment s;
    // Mostly plausible values (so the copy path runs), sometimes raw ones.
    s.mem = (sctl & 1) ? in.U64() : (in.U8() % 0x30) * 0x1000;
    s.memsz = (sctl & 2) ? in.U64() : (in.U8() % 8) * 0x1000;
    if (sctl & 4) s.memsz += in.U8() % 7;  // unaligned
    // Plausible bufsz: up to memsz + 0x100 (the modulus wraps to 0 for a
    // raw memsz near 2^64; then take the raw value).
    const uint64_t bufsz_mod = s.memsz + 0x101;
    const uint64_t raw_bufsz = in.U64();
    s.bufsz = (sctl & 8) || bufsz_mod == 0 ? raw_bufsz : raw_bufsz % bufsz_mod;
    s.buf = (sctl & 16) ? nullptr : Source().data() + (i * 97) % 4096;
    image.segments.push_back(s);
  }
  absl::Status status = (*loader)->Load(slot, image);
  if (!status.ok()) {
    Check(GetSegmentViolation(status).has_value());
    static const std::vector<uint8_t> untouched(kRegion, kFill);
    for (uint64_t base : {uint64_t{0}, kRegion1}) {
      auto span = mem->HostSpan(base, kRegion);
      Check(span.ok());
      Check(std::memcmp(span->data(), untouched.data(), kRegion) == 0);
    }
    return 0;
  }
  // Accepted: the rules hold and memory is exactly as described.
  Check(image.segments.size() <= kMaxSegments);
  for (uint64_t base : {uint64_t{0}, kRegion1}) {
    std::vector<uint8_t> expect(kRegion, kFill);
    for (const Segment& s : image.segments) {
      if (s.memsz == 0 || s.mem < base || s.mem >= base + kRegion) continue;
      Check(s.mem % kPageSize == 0 && s.bufsz <= s.memsz);
      Check(s.mem - base + s.memsz <= kRegion);
      if (slot == Slot::kCrash) Check(kCrash.Covers(s.mem, s.memsz));
      if (slot == Slot::kNormal) Check(!kCrash.Intersects(s.mem, s.memsz));
      uint8_t* at = expect.data() + (s.mem - base);
      if (s.bufsz > 0) std::memcpy(at, s.buf, s.bufsz);
      std::memset(at + s.bufsz, 0, s.memsz - s.bufsz);
    }
    auto span = mem->HostSpan(base, kRegion);
    Check(span.ok());
    Check(std::memcmp(span->data(), expect.data(), kRegion) == 0);
  }
  if (image.segments.empty()) {  // 0 segments: the slot is unloaded
    Check(!(*loader)->Describe(slot)->has_value());
  } else {
    Check((*loader)->VerifyBeforeJump(slot).ok());
  }
  return 0;
}
