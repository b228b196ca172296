// The kexec image model (kexec_load(2) / include/uapi/linux/kexec.h): an
// image is at most KEXEC_SEGMENT_MAX segments {buf, bufsz, mem, memsz} plus an
// entry point, and the rules of kernel/kexec_core.c's
// sanity_check_segment_list() decide whether it may be loaded. Validation
// happens before a single byte is copied; every failure is a distinct status
// naming the rule and the segment index (see GetSegmentViolation()).
//
// Error codes mirror the kernel's errno choices:
//   -EINVAL        → absl::InvalidArgument  (count, overlap, bufsz, size)
//   -EADDRNOTAVAIL → absl::OutOfRange       (wrap, alignment, RAM, crash
//   region)
#ifndef HV_LOADER_SEGMENT_H_
#define HV_LOADER_SEGMENT_H_

#include <cstddef>
#include <cstdint>
#include <optional>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "hv/memory/guest_memory.h"

namespace hv::loader {

inline constexpr uint64_t kPageSize = 4096;  // kexec works in 4 KiB
inline constexpr size_t kMaxSegments = 16;   // KEXEC_SEGMENT_MAX

// struct kexec_segment. `buf` is host memory owned by the caller (an ELF file
// buffer, a blob) and must stay valid for the duration of the load call.
struct Segment {
  const uint8_t* buf = nullptr;
  uint64_t bufsz = 0;
  uint64_t mem = 0;    // guest physical destination, page aligned
  uint64_t memsz = 0;  // bytes reserved at `mem`, page aligned, >= bufsz
};

struct Image {
  uint64_t entry = 0;  // guest physical entry point
  std::vector<Segment> segments;
};

// A guest-physical range [base, base + size); size 0 means "none".
struct GpaRange {
  uint64_t base = 0;
  uint64_t size = 0;
  uint64_t end() const { return base + size; }
  bool empty() const { return size == 0; }
  // True if [gpa, gpa + len) lies inside (len 0 → true iff gpa in [base,end]).
  bool Covers(uint64_t gpa, uint64_t len) const {
    return gpa >= base && gpa <= end() && len <= end() - gpa;
  }
  bool Intersects(uint64_t gpa, uint64_t len) const {
    return len > 0 && size > 0 && gpa < end() && base < gpa + len;
  }
};

enum class SegmentRule {
  kTooManySegments,     // > KEXEC_SEGMENT_MAX                  (EINVAL)
  kNullBuffer,          // bufsz > 0 but buf == nullptr         (EFAULT)
  kWrap,                // mem + memsz wraps past 2^64          (EADDRNOTAVAIL)
  kUnaligned,           // mem or memsz not page aligned        (EADDRNOTAVAIL)
  kOutsideRam,          // [mem, mem+memsz) not inside one RAM region
  kOverlap,             // two segments' [mem, mem+memsz) intersect (EINVAL)
  kBufszExceedsMemsz,   // bufsz > memsz                        (EINVAL)
  kTooLarge,            // a segment or the total > RAM pages / 2 (EINVAL)
  kOutsideCrashRegion,  // crash image segment outside crash region
  kInsideCrashRegion,   // normal image segment touches the crash region
  kInsideVmmReserved,   // segment touches memory the VMM reserved (boot data)
  kEntryOutsideRam,     // entry not inside guest RAM
  kEntryOutsideCrashRegion  // crash image entry outside crash region
};

absl::string_view SegmentRuleName(SegmentRule rule);

// Index value for violations that concern the whole image (count, total size,
// entry point).
inline constexpr size_t kWholeImage = static_cast<size_t>(-1);

struct SegmentViolation {
  SegmentRule rule;
  size_t segment;  // index into Image::segments, or kWholeImage
};

// Extracts the rule/segment payload a validation error carries; nullopt for
// any other status.
std::optional<SegmentViolation> GetSegmentViolation(const absl::Status& status);

// Builds the status for a violation (message names rule and segment).
absl::Status MakeSegmentError(SegmentRule rule, size_t segment,
                              absl::string_view detail);

struct ValidationPolicy {
  // For crash images (KEXEC_ON_CRASH): every segment and the entry must lie
  // inside this range. Empty → a normal image.
  GpaRange crash_region;
  // For normal images: a range the image must not touch (the VM's crash
  // region, reserved like crashkernel= memory the first kernel never uses).
  GpaRange reserved;
  // For every image: ranges the VMM keeps for itself (its boot structures,
  // e.g. below HV_VIRT_IMAGE_MIN). No segment may touch them.
  std::vector<GpaRange> vmm_reserved;
};

// sanity_check_segment_list() plus the crash-entry rule of
// kimage_crash_alloc(). Checks run in the kernel's order: count, then per
// segment wrap / alignment / RAM, then overlap, bufsz, size, crash region,
// entry. Never touches guest memory contents.
[[nodiscard]] absl::Status ValidateImage(const Image& image,
                                         const GuestMemory& memory,
                                         const ValidationPolicy& policy);

}  // namespace hv::loader

#endif  // HV_LOADER_SEGMENT_H_
