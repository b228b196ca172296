#include "hv/loader/segment.h"

#include <string>

#include "absl/strings/cord.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"

namespace hv::loader {
namespace {

constexpr absl::string_view kPayloadUrl = "type.hv/loader.SegmentViolation";

constexpr SegmentRule kAllRules[] = {SegmentRule::kTooManySegments,
                                     SegmentRule::kNullBuffer,
                                     SegmentRule::kWrap,
                                     SegmentRule::kUnaligned,
                                     SegmentRule::kOutsideRam,
                                     SegmentRule::kOverlap,
                                     SegmentRule::kBufszExceedsMemsz,
                                     SegmentRule::kTooLarge,
                                     SegmentRule::kOutsideCrashRegion,
                                     SegmentRule::kInsideCrashRegion,
                                     SegmentRule::kInsideVmmReserved,
                                     SegmentRule::kEntryOutsideRam,
                                     SegmentRule::kEntryOutsideCrashRegion};

bool IsEaddrnotavail(SegmentRule rule) {
  switch (rule) {
    case SegmentRule::kWrap:
    case SegmentRule::kUnaligned:
    case SegmentRule::kOutsideRam:
    case SegmentRule::kOutsideCrashRegion:
    case SegmentRule::kInsideCrashRegion:
    case SegmentRule::kInsideVmmReserved:
    case SegmentRule::kEntryOutsideRam:
    case SegmentRule::kEntryOutsideCrashRegion:
      return true;
    default:
      return false;
  }
}

uint64_t PageCount(uint64_t bytes) {
  return bytes / kPageSize + (bytes % kPageSize != 0 ? 1 : 0);
}

}  // namespace

absl::string_view SegmentRuleName(SegmentRule rule) {
  switch (rule) {
    case SegmentRule::kTooManySegments:
      return "too_many_segments";
    case SegmentRule::kNullBuffer:
      return "null_buffer";
    case SegmentRule::kWrap:
      return "wrap";
    case SegmentRule::kUnaligned:
      return "unaligned";
    case SegmentRule::kOutsideRam:
      return "outside_ram";
    case SegmentRule::kOverlap:
      return "overlap";
    case SegmentRule::kBufszExceedsMemsz:
      return "bufsz_exceeds_memsz";
    case SegmentRule::kTooLarge:
      return "too_large";
    case SegmentRule::kOutsideCrashRegion:
      return "outside_crash_region";
    case SegmentRule::kInsideCrashRegion:
      return "inside_crash_region";
    case SegmentRule::kInsideVmmReserved:
      return "inside_vmm_reserved";
    case SegmentRule::kEntryOutsideRam:
      return "entry_outside_ram";
    case SegmentRule::kEntryOutsideCrashRegion:
      return "entry_outside_crash_region";
  }
  return "unknown";
}

absl::Status MakeSegmentError(SegmentRule rule, size_t segment,
                              absl::string_view detail) {
  const std::string where = segment == kWholeImage
                                ? std::string("image")
                                : absl::StrCat("segment ", segment);
  std::string message =
      absl::StrCat("kexec ", where, ": ", SegmentRuleName(rule), ": ", detail);
  absl::Status status = IsEaddrnotavail(rule)
                            ? absl::OutOfRangeError(message)
                            : absl::InvalidArgumentError(message);
  const std::string index =
      segment == kWholeImage ? std::string("image") : absl::StrCat(segment);
  status.SetPayload(
      kPayloadUrl, absl::Cord(absl::StrCat(SegmentRuleName(rule), ":", index)));
  return status;
}

std::optional<SegmentViolation> GetSegmentViolation(
    const absl::Status& status) {
  auto payload = status.GetPayload(kPayloadUrl);
  if (!payload.has_value()) return std::nullopt;
  const std::string text(*payload);
  std::vector<std::string> parts = absl::StrSplit(text, ':');
  if (parts.size() != 2) return std::nullopt;
  for (SegmentRule rule : kAllRules) {
    if (SegmentRuleName(rule) != parts[0]) continue;
    if (parts[1] == "image") return SegmentViolation{rule, kWholeImage};
    size_t index = 0;
    if (!absl::SimpleAtoi(parts[1], &index)) return std::nullopt;
    return SegmentViolation{rule, index};
  }
  return std::nullopt;
}

absl::Status ValidateImage(const Image& image, const GuestMemory& memory,
                           const ValidationPolicy& policy) {
  const std::vector<Segment>& segs = image.segments;
  // kexec_load(): nr_segments > KEXEC_SEGMENT_MAX → -EINVAL.
  if (segs.size() > kMaxSegments) {
    return MakeSegmentError(
        SegmentRule::kTooManySegments, kWholeImage,
        absl::StrFormat("%u segments, at most %u", segs.size(), kMaxSegments));
  }
  // Per segment: wrap, alignment, destination inside RAM (the kernel's
  // KEXEC_DESTINATION_MEMORY_LIMIT check; here RAM has holes, so the whole
  // range must sit inside one RAM region).
  for (size_t i = 0; i < segs.size(); ++i) {
    const Segment& s = segs[i];
    if (s.bufsz > 0 && s.buf == nullptr) {
      return MakeSegmentError(
          SegmentRule::kNullBuffer, i,
          absl::StrFormat("bufsz 0x%x with no buffer", s.bufsz));
    }
    if (s.mem + s.memsz < s.mem) {
      return MakeSegmentError(
          SegmentRule::kWrap, i,
          absl::StrFormat("mem 0x%x + memsz 0x%x wraps", s.mem, s.memsz));
    }
    if (s.mem % kPageSize != 0 || s.memsz % kPageSize != 0) {
      return MakeSegmentError(
          SegmentRule::kUnaligned, i,
          absl::StrFormat("mem 0x%x / memsz 0x%x not 4 KiB aligned", s.mem,
                          s.memsz));
    }
    if (s.memsz > 0 && !memory.Contains(s.mem, s.memsz)) {
      return MakeSegmentError(
          SegmentRule::kOutsideRam, i,
          absl::StrFormat("[0x%x, 0x%x) is not inside guest RAM", s.mem,
                          s.mem + s.memsz));
    }
  }
  // Overlap: the kernel's pairwise test (mend > pstart && mstart < pend);
  // empty segments intersect nothing.
  for (size_t i = 0; i < segs.size(); ++i) {
    for (size_t j = 0; j < i; ++j) {
      const uint64_t mstart = segs[i].mem, mend = mstart + segs[i].memsz;
      const uint64_t pstart = segs[j].mem, pend = pstart + segs[j].memsz;
      if (mend > pstart && mstart < pend) {
        return MakeSegmentError(
            SegmentRule::kOverlap, i,
            absl::StrFormat("[0x%x, 0x%x) overlaps segment %u [0x%x, 0x%x)",
                            mstart, mend, j, pstart, pend));
      }
    }
  }
  for (size_t i = 0; i < segs.size(); ++i) {
    if (segs[i].bufsz > segs[i].memsz) {
      return MakeSegmentError(SegmentRule::kBufszExceedsMemsz, i,
                              absl::StrFormat("bufsz 0x%x > memsz 0x%x",
                                              segs[i].bufsz, segs[i].memsz));
    }
  }
  // No more than half of RAM (the kernel uses totalram_pages()).
  const uint64_t nr_pages = memory.total_size() / kPageSize;
  uint64_t total_pages = 0;
  for (size_t i = 0; i < segs.size(); ++i) {
    const uint64_t pages = PageCount(segs[i].memsz);
    if (pages > nr_pages / 2) {
      return MakeSegmentError(
          SegmentRule::kTooLarge, i,
          absl::StrFormat("%u pages > half of %u RAM pages", pages, nr_pages));
    }
    total_pages += pages;  // ≤ 16 * nr_pages/2: cannot overflow
  }
  if (total_pages > nr_pages / 2) {
    return MakeSegmentError(
        SegmentRule::kTooLarge, kWholeImage,
        absl::StrFormat("%u pages in total > half of %u RAM pages", total_pages,
                        nr_pages));
  }
  const GpaRange& crash = policy.crash_region;
  if (!crash.empty()) {
    for (size_t i = 0; i < segs.size(); ++i) {
      if (!crash.Covers(segs[i].mem, segs[i].memsz)) {
        return MakeSegmentError(
            SegmentRule::kOutsideCrashRegion, i,
            absl::StrFormat("[0x%x, 0x%x) outside crash region [0x%x, 0x%x)",
                            segs[i].mem, segs[i].mem + segs[i].memsz,
                            crash.base, crash.end()));
      }
    }
  }
  const GpaRange& reserved = policy.reserved;
  for (size_t i = 0; i < segs.size(); ++i) {
    if (reserved.Intersects(segs[i].mem, segs[i].memsz)) {
      return MakeSegmentError(
          SegmentRule::kInsideCrashRegion, i,
          absl::StrFormat("[0x%x, 0x%x) touches the crash region [0x%x, 0x%x)",
                          segs[i].mem, segs[i].mem + segs[i].memsz,
                          reserved.base, reserved.end()));
    }
  }
  for (size_t i = 0; i < segs.size(); ++i) {
    for (const GpaRange& r : policy.vmm_reserved) {
      if (r.Intersects(segs[i].mem, segs[i].memsz)) {
        return MakeSegmentError(
            SegmentRule::kInsideVmmReserved, i,
            absl::StrFormat("[0x%x, 0x%x) touches VMM-reserved [0x%x, 0x%x)",
                            segs[i].mem, segs[i].mem + segs[i].memsz, r.base,
                            r.end()));
      }
    }
  }
  // The entry point: kimage_crash_alloc() refuses a crash entry outside
  // crashk_res (-EADDRNOTAVAIL). For every image hv also requires the entry
  // to be in RAM, since a vCPU started elsewhere can only fault.
  if (!memory.Contains(image.entry, 1)) {
    return MakeSegmentError(
        SegmentRule::kEntryOutsideRam, kWholeImage,
        absl::StrFormat("entry 0x%x is not in guest RAM", image.entry));
  }
  if (!crash.empty() &&
      !(image.entry >= crash.base && image.entry < crash.end())) {
    return MakeSegmentError(
        SegmentRule::kEntryOutsideCrashRegion, kWholeImage,
        absl::StrFormat("entry 0x%x outside crash region [0x%x, 0x%x)",
                        image.entry, crash.base, crash.end()));
  }
  return absl::OkStatus();
}

}  // namespace hv::loader
