#include "hv/loader/crash_region.h"

#include <cstdlib>
#include <string>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "hv/base/status_macros.h"

namespace hv::loader {
namespace {

absl::Status Bad(absl::string_view spec, absl::string_view why) {
  return absl::InvalidArgumentError(
      absl::StrCat("crashkernel=\"", spec, "\": ", why));
}

// memparse(): a number with an optional K/M/G/T suffix.
absl::StatusOr<uint64_t> ParseAmount(absl::string_view spec,
                                     absl::string_view text) {
  if (text.empty()) return Bad(spec, "missing number");
  const bool hex =
      text.size() > 2 && text[0] == '0' && (text[1] == 'x' || text[1] == 'X');
  size_t i = hex ? 2 : 0;
  uint64_t value = 0;
  const size_t digits_start = i;
  for (; i < text.size(); ++i) {
    const char c = text[i];
    uint64_t d;
    if (c >= '0' && c <= '9') {
      d = c - '0';
    } else if (hex && c >= 'a' && c <= 'f') {
      d = c - 'a' + 10;
    } else if (hex && c >= 'A' && c <= 'F') {
      d = c - 'A' + 10;
    } else {
      break;
    }
    const uint64_t base = hex ? 16 : 10;
    if (value > (UINT64_MAX - d) / base) return Bad(spec, "number overflows");
    value = value * base + d;
  }
  if (i == digits_start) return Bad(spec, "missing number");
  int shift = 0;
  if (i < text.size()) {
    switch (text[i]) {
      case 'k':
      case 'K':
        shift = 10;
        break;
      case 'm':
      case 'M':
        shift = 20;
        break;
      case 'g':
      case 'G':
        shift = 30;
        break;
      case 't':
      case 'T':
        shift = 40;
        break;
      default:
        return Bad(spec, absl::StrCat("unexpected '", text.substr(i, 1), "'"));
    }
    ++i;
  }
  if (i != text.size()) return Bad(spec, "trailing characters");
  if (shift > 0 && value > (UINT64_MAX >> shift)) {
    return Bad(spec, "number overflows");
  }
  return value << shift;
}

}  // namespace

absl::StatusOr<CrashKernelSpec> ParseCrashKernelSpec(absl::string_view spec) {
  CrashKernelSpec out;
  const size_t at = spec.find('@');
  HV_ASSIGN_OR_RETURN(out.size, ParseAmount(spec, spec.substr(0, at)));
  if (out.size == 0) return Bad(spec, "size is 0");
  if (at != absl::string_view::npos) {
    HV_ASSIGN_OR_RETURN(uint64_t offset,
                        ParseAmount(spec, spec.substr(at + 1)));
    out.offset = offset;
  }
  return out;
}

absl::StatusOr<GpaRange> PlaceCrashRegion(const GuestMemory& memory,
                                          const CrashKernelSpec& spec) {
  if (spec.size == 0 || spec.size > UINT64_MAX - (kPageSize - 1)) {
    return absl::InvalidArgumentError("crash region: bad size");
  }
  const uint64_t size = (spec.size + kPageSize - 1) / kPageSize * kPageSize;
  if (size > memory.total_size() / 2) {
    return absl::ResourceExhaustedError(absl::StrFormat(
        "crash region of 0x%x bytes exceeds half of the 0x%x bytes of RAM",
        size, memory.total_size()));
  }
  if (spec.offset.has_value()) {
    const uint64_t base = *spec.offset;
    if (base % kPageSize != 0) {
      return absl::InvalidArgumentError(
          absl::StrFormat("crash region offset 0x%x not page aligned", base));
    }
    if (base > UINT64_MAX - size || !memory.Contains(base, size)) {
      return absl::OutOfRangeError(absl::StrFormat(
          "crash region [0x%x, +0x%x) is not inside one RAM region", base,
          size));
    }
    return GpaRange{base, size};
  }
  const auto& regions = memory.regions();
  for (auto it = regions.rbegin(); it != regions.rend(); ++it) {
    if (it->size < size) continue;
    const uint64_t top = it->gpa + it->size - size;
    const uint64_t base = top / kCrashRegionAlign * kCrashRegionAlign;
    if (base >= it->gpa) return GpaRange{base, size};
  }
  return absl::ResourceExhaustedError(absl::StrFormat(
      "no RAM region fits a 0x%x-byte crash region at 0x%x alignment", size,
      kCrashRegionAlign));
}

}  // namespace hv::loader
