// Test helpers: build small ELF64 executables in memory.
#ifndef HV_LOADER_TEST_UTIL_H_
#define HV_LOADER_TEST_UTIL_H_

#include <cstddef>
#include <cstdint>
#include <vector>

namespace hv::loader::testing {

struct ElfLoadSpec {
  uint64_t paddr = 0;
  std::vector<uint8_t> data;  // p_filesz bytes
  uint64_t memsz = 0;         // p_memsz (≥ data.size())
  uint32_t type = 1;          // PT_LOAD
};

// An ET_EXEC, EM_X86_64 ELF64 file: header, program headers, then each
// segment's data at a file offset congruent to its p_paddr modulo 4096.
std::vector<uint8_t> BuildElf(uint64_t entry,
                              const std::vector<ElfLoadSpec>& loads);

// `n` bytes of a deterministic pattern seeded by `seed`.
std::vector<uint8_t> Pattern(size_t n, uint32_t seed);

}  // namespace hv::loader::testing

#endif  // HV_LOADER_TEST_UTIL_H_
