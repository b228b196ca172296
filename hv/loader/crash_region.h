// Reserving a VM's crash region from a crashkernel= style specification
// (Documentation/admin-guide/kernel-parameters.txt:
// "crashkernel=size[KMG][@offset[KMG]]"), as hv-vmm's --crash_mib / the API's
// crash-kernel size will. The region is fixed at VM creation and handed to
// KexecLoader::Create().
#ifndef HV_LOADER_CRASH_REGION_H_
#define HV_LOADER_CRASH_REGION_H_

#include <cstdint>
#include <optional>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "hv/loader/segment.h"
#include "hv/memory/guest_memory.h"

namespace hv::loader {

// Alignment of an automatically placed crash region (one x86 large page;
// Linux's x86 CRASH_ALIGN is 16 MiB, too coarse for small test VMs).
inline constexpr uint64_t kCrashRegionAlign = 2ull << 20;

struct CrashKernelSpec {
  uint64_t size = 0;
  std::optional<uint64_t> offset;  // explicit base ("@offset")
};

// Parses "size[KMGT][@offset[KMGT]]"; numbers are decimal or 0x-hex, the
// suffix (either case) multiplies by 2^10/2^20/2^30/2^40 (the kernel's
// memparse()). InvalidArgument naming the problem: empty, junk, zero size,
// overflow.
[[nodiscard]] absl::StatusOr<CrashKernelSpec> ParseCrashKernelSpec(
    absl::string_view spec);

// Chooses the region: size rounded up to 4 KiB; at most half of guest RAM (the
// first kernel keeps the rest). With an offset: it must be page aligned and
// [offset, offset+size) inside one RAM region. Without: the highest
// kCrashRegionAlign-aligned base in the highest RAM region that fits.
// OutOfRange / ResourceExhausted / InvalidArgument otherwise.
[[nodiscard]] absl::StatusOr<GpaRange> PlaceCrashRegion(
    const GuestMemory& memory, const CrashKernelSpec& spec);

}  // namespace hv::loader

#endif  // HV_LOADER_CRASH_REGION_H_
