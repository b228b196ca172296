#include "hv/loader/entry_list.h"

#include <cstring>
#include <memory>

#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "absl/strings/str_format.h"
#include "hv/base/status_macros.h"

namespace hv::loader {
namespace {

absl::Status PageInRam(const GuestMemory& memory, uint64_t page,
                       const char* what, uint64_t entry_index) {
  if (!memory.Contains(page, kPageSize)) {
    return absl::OutOfRangeError(
        absl::StrFormat("kexec entry %u: %s page 0x%x is outside guest RAM",
                        entry_index, what, page));
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<CopyPlan> ParseEntryList(
    const GuestMemory& memory, uint64_t head, const GpaRange& crash_region,
    const EntryListLimits& limits, absl::Span<const GpaRange> vmm_reserved) {
  const uint64_t max_copies = limits.max_copied_pages != 0
                                  ? limits.max_copied_pages
                                  : memory.total_size() / kPageSize / 2;
  CopyPlan plan;
  absl::flat_hash_set<uint64_t> visited;       // indirection pages
  absl::flat_hash_set<uint64_t> destinations;  // destination pages
  bool have_dest = false;
  uint64_t dest = 0;
  uint64_t entry = head;
  // Location of the next entry: (indirection page, slot); none while the
  // current entry is `head` itself.
  bool in_page = false;
  uint64_t page = 0, slot = 0;
  for (uint64_t n = 0;; ++n) {
    if (n >= limits.max_entries) {
      return absl::ResourceExhaustedError(absl::StrFormat(
          "kexec entry list longer than %u entries", limits.max_entries));
    }
    const uint64_t flags = entry & kEntryFlagMask;
    const uint64_t addr = entry & ~kEntryFlagMask;
    switch (flags) {
      case kIndDone:
        if (addr != 0) {
          return absl::InvalidArgumentError(absl::StrFormat(
              "kexec entry %u: IND_DONE with address bits 0x%x", n, addr));
        }
        return plan;
      case kIndDestination:
        HV_RETURN_IF_ERROR(PageInRam(memory, addr, "destination", n));
        dest = addr;
        have_dest = true;
        break;
      case kIndIndirection:
        HV_RETURN_IF_ERROR(PageInRam(memory, addr, "indirection", n));
        if (!visited.insert(addr).second) {
          return absl::InvalidArgumentError(absl::StrFormat(
              "kexec entry %u: indirection page 0x%x visited twice (cycle)", n,
              addr));
        }
        plan.indirection_pages.push_back(addr);
        in_page = true;
        page = addr;
        slot = 0;
        break;
      case kIndSource: {
        if (!have_dest) {
          return absl::InvalidArgumentError(absl::StrFormat(
              "kexec entry %u: IND_SOURCE before any IND_DESTINATION", n));
        }
        HV_RETURN_IF_ERROR(PageInRam(memory, addr, "source", n));
        HV_RETURN_IF_ERROR(PageInRam(memory, dest, "destination", n));
        if (crash_region.Intersects(dest, kPageSize)) {
          return absl::PermissionDeniedError(absl::StrFormat(
              "kexec entry %u: destination 0x%x is inside the crash region", n,
              dest));
        }
        for (const GpaRange& r : vmm_reserved) {
          if (r.Intersects(dest, kPageSize)) {
            return absl::PermissionDeniedError(absl::StrFormat(
                "kexec entry %u: destination 0x%x is VMM-reserved memory", n,
                dest));
          }
        }
        if (!destinations.insert(dest).second) {
          return absl::AlreadyExistsError(absl::StrFormat(
              "kexec entry %u: destination 0x%x written twice", n, dest));
        }
        if (plan.copies.size() >= max_copies) {
          return absl::ResourceExhaustedError(absl::StrFormat(
              "kexec entry list copies more than %u pages", max_copies));
        }
        plan.copies.push_back(PageCopy{addr, dest});
        if (dest > UINT64_MAX - kPageSize) {
          return absl::OutOfRangeError(absl::StrFormat(
              "kexec entry %u: destination run wraps past 2^64", n));
        }
        dest += kPageSize;  // the next page of the same destination run
        break;
      }
      default:
        return absl::InvalidArgumentError(absl::StrFormat(
            "kexec entry %u: 0x%x has no single valid IND_* flag", n, entry));
    }
    // Fetch the next entry (the IND_INDIRECTION case just reset the slot).
    if (!in_page) {
      return absl::InvalidArgumentError(
          "kexec entry list: head must be IND_INDIRECTION or IND_DONE");
    }
    if (slot >= kEntriesPerPage) {
      return absl::InvalidArgumentError(absl::StrFormat(
          "kexec entry list: indirection page 0x%x ends without "
          "IND_INDIRECTION or IND_DONE",
          page));
    }
    HV_ASSIGN_OR_RETURN(entry, memory.ReadObj<uint64_t>(page + slot * 8));
    ++slot;
  }
}

absl::Status ExecuteCopyPlan(GuestMemory* memory, const CopyPlan& plan) {
  absl::flat_hash_set<uint64_t> dests;
  dests.reserve(plan.copies.size());
  for (const PageCopy& c : plan.copies) dests.insert(c.dst);
  // Stage every source that some copy overwrites, before the first write.
  absl::flat_hash_map<uint64_t, size_t> staged_index;
  size_t staged_count = 0;
  for (const PageCopy& c : plan.copies) {
    if (c.src != c.dst && dests.contains(c.src) &&
        staged_index.emplace(c.src, staged_count).second) {
      ++staged_count;
    }
  }
  auto staging = std::make_unique<uint8_t[]>(staged_count * kPageSize);
  for (const auto& [src, idx] : staged_index) {
    HV_RETURN_IF_ERROR(
        memory->Read(src, staging.get() + idx * kPageSize, kPageSize));
  }
  for (const PageCopy& c : plan.copies) {
    if (c.src == c.dst) continue;
    HV_ASSIGN_OR_RETURN(absl::Span<uint8_t> dst,
                        memory->HostSpan(c.dst, kPageSize));
    auto it = staged_index.find(c.src);
    if (it != staged_index.end()) {
      std::memcpy(dst.data(), staging.get() + it->second * kPageSize,
                  kPageSize);
    } else {
      // Not a destination of any copy: its contents are still the original.
      HV_RETURN_IF_ERROR(memory->Read(c.src, dst.data(), kPageSize));
    }
  }
  return absl::OkStatus();
}

}  // namespace hv::loader
