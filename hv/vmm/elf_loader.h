// Loads a static ELF64 x86-64 executable (the guest kit's images, or any
// freestanding kernel linked the same way) into guest RAM.
//
// Every field taken from the file is validated (System V gABI, ELF-64
// Object File Format 1.5): magic, class, data, machine, type ET_EXEC,
// program-header table inside the file, PT_LOAD segments with
// p_filesz <= p_memsz, file ranges inside the file, no address wrap, no two
// segments overlapping, each segment inside guest RAM and at or above
// HV_VIRT_IMAGE_MIN (below it live the VMM's boot structures), entry inside a
// loaded executable segment. At most kMaxSegments PT_LOAD segments (the
// kexec limit, DESIGN §5).
#ifndef HV_VMM_ELF_LOADER_H_
#define HV_VMM_ELF_LOADER_H_

#include <cstdint>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "hv/memory/guest_memory.h"

namespace hv {

struct ElfSegment {
  uint64_t file_offset = 0;
  uint64_t file_size = 0;
  uint64_t gpa = 0;
  uint64_t mem_size = 0;
  bool executable = false;
};

struct ElfImage {
  uint64_t entry = 0;
  std::vector<ElfSegment> segments;
};

inline constexpr size_t kMaxElfSegments = 16;

// Parses and checks the file alone (InvalidArgument naming the bad field).
[[nodiscard]] absl::StatusOr<ElfImage> ParseElf(absl::Span<const uint8_t> file);

// Checks the segments against `memory` (OutOfRange naming the segment and the
// RAM size when an image does not fit), then copies file bytes and zeroes
// the rest of each segment. Returns the entry point.
[[nodiscard]] absl::StatusOr<uint64_t> LoadElf(absl::Span<const uint8_t> file,
                                               GuestMemory& memory);

}  // namespace hv

#endif  // HV_VMM_ELF_LOADER_H_
