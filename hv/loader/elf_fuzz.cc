// libFuzzer target: the ELF64 image parser and the ELF core header parser.
// Inputs are either raw files or byte mutations of valid seeds (so the
// deterministic driver reaches deep into both parsers too). Invariants: no
// crash; every accepted segment lies inside the file and obeys the page
// rules; an accepted core header re-serialises to an equal description.
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <vector>

#include "hv/loader/core_header.h"
#include "hv/loader/elf_image.h"
#include "hv/loader/test_util.h"

namespace {

using namespace hv::loader;

void Check(bool ok) {
  if (!ok) std::abort();
}

const std::vector<uint8_t>& ElfSeed() {
  static const auto* seed = new std::vector<uint8_t>(testing::BuildElf(
      0x100040, {{0x100000, testing::Pattern(0x300, 1), 0x2000},
                 {0x103123, testing::Pattern(0x80, 2), 0x100},
                 {0x200000, {}, 0, 4 /* PT_NOTE */}}));
  return *seed;
}

constexpr uint64_t kHeaderGpa = 0x7f000;

const std::vector<uint8_t>& CoreSeed() {
  static const auto* seed = [] {
    CoreDescription core;
    core.preserved = {{0, 0x7f000}, {0x100000, 0x100000}};
    core.vcpus.resize(2);
    core.vcpus[1].vcpu_id = 1;
    core.vcpus[1].state.rip = 0x1234;
    return new std::vector<uint8_t>(*BuildCoreHeader(kHeaderGpa, core));
  }();
  return *seed;
}

// XORs (position, value) pairs from `data` into a copy of `seed`.
std::vector<uint8_t> Mutate(const std::vector<uint8_t>& seed,
                            const uint8_t* data, size_t size) {
  std::vector<uint8_t> out = seed;
  for (size_t i = 0; i + 2 < size; i += 3) {
    const size_t pos = (size_t{data[i]} << 8 | data[i + 1]) % out.size();
    out[pos] ^= data[i + 2];
  }
  if (size % 5 == 1) out.resize(out.size() - (data[0] % out.size()));
  return out;
}

void FuzzElf(const std::vector<uint8_t>& file) {
  auto image = ParseElfImage(file);
  if (!image.ok()) return;
  Check(!image->segments.empty() && image->segments.size() <= kMaxSegments);
  for (const Segment& s : image->segments) {
    Check(s.mem % kPageSize == 0 && s.memsz % kPageSize == 0);
    Check(s.bufsz <= s.memsz);
    if (s.bufsz > 0) {
      Check(s.buf >= file.data());
      Check(s.bufsz <=
            static_cast<uint64_t>(file.data() + file.size() - s.buf));
    }
  }
}

void FuzzCore(const std::vector<uint8_t>& bytes) {
  auto core = ParseCoreHeader(bytes, kHeaderGpa);
  if (!core.ok()) return;
  auto rebuilt = BuildCoreHeader(kHeaderGpa, *core);
  Check(rebuilt.ok());
  auto again = ParseCoreHeader(*rebuilt, kHeaderGpa);
  Check(again.ok());
  Check(again->preserved.size() == core->preserved.size());
  Check(again->vcpus.size() == core->vcpus.size());
  for (size_t i = 0; i < core->vcpus.size(); ++i) {
    Check(std::memcmp(&again->vcpus[i].state, &core->vcpus[i].state,
                      sizeof(X86VcpuState)) == 0);
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  const uint8_t mode = data[0];
  const std::vector<uint8_t> raw(data + 1, data + size);
  if (mode & 2) {
    FuzzCore((mode & 1) ? raw : Mutate(CoreSeed(), data + 1, size - 1));
  } else {
    FuzzElf((mode & 1) ? raw : Mutate(ElfSeed(), data + 1, size - 1));
  }
  return 0;
}
