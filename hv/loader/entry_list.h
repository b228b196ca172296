// Guest-initiated kexec: the guest hands hv a kexec entry list in its own
// memory, in the format of kernel/kexec_core.c (kimage_entry_t words, 4 KiB
// pages) that relocate_kernel walks:
//   IND_DESTINATION (0x1)  addr = next destination page
//   IND_INDIRECTION (0x2)  addr = page holding the next entries
//   IND_DONE        (0x4)  end of list
//   IND_SOURCE      (0x8)  copy page addr to the destination, advance it
// Each entry is `page address | flag`. The list starts with `head` (like
// kimage->head, itself an entry, typically IND_INDIRECTION | first page).
//
// ParseEntryList() reads and validates the whole list before anything is
// written; ExecuteCopyPlan() then performs the copies. Copy semantics
// ("snapshot"): every destination receives the contents its source page had
// when the request was made, whatever the order of the entries and even when
// a source page is another entry's destination. Linux's kimage_alloc_page()
// arranges the list so that relocate_kernel's in-order copy never clobbers a
// source it still needs; a guest list is untrusted and need not be arranged,
// so hv stages every source page that is also some destination in host memory
// before the first write, and copies the others directly. For lists the
// kernel builds both semantics agree.
#ifndef HV_LOADER_ENTRY_LIST_H_
#define HV_LOADER_ENTRY_LIST_H_

#include <cstdint>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "hv/loader/segment.h"
#include "hv/memory/guest_memory.h"

namespace hv::loader {

enum KexecEntryFlag : uint64_t {
  kIndDestination = 0x1,
  kIndIndirection = 0x2,
  kIndDone = 0x4,
  kIndSource = 0x8,
};
inline constexpr uint64_t kEntryFlagMask = 0xfff;  // low bits of a page addr
inline constexpr uint64_t kEntriesPerPage = kPageSize / sizeof(uint64_t);

struct EntryListLimits {
  // Entries read in total (including IND_INDIRECTION and IND_DESTINATION).
  uint64_t max_entries = 1u << 20;
  // Pages copied; 0 → half of guest RAM (the kexec_load size rule).
  uint64_t max_copied_pages = 0;
};

struct PageCopy {
  uint64_t src = 0;
  uint64_t dst = 0;
};

struct CopyPlan {
  std::vector<PageCopy> copies;             // in list order
  std::vector<uint64_t> indirection_pages;  // every page walked, in order
};

// Walks the list from `head`. Errors (InvalidArgument unless noted):
//   unknown or multiple flag bits / non-zero bits below the page in an
//     address; an entry that is 0;
//   IND_SOURCE before any IND_DESTINATION;
//   running off the end of an indirection page without IND_INDIRECTION or
//     IND_DONE;
//   an indirection page visited twice (cycle);
//   more than max_entries entries or max_copied_pages copies
//     (ResourceExhausted);
//   an indirection, source or destination page outside RAM (OutOfRange);
//   a destination inside `crash_region` or one of `vmm_reserved`
//     (PermissionDenied: the crash image's / the VMM's memory);
//   the same destination page written twice (AlreadyExists).
[[nodiscard]] absl::StatusOr<CopyPlan> ParseEntryList(
    const GuestMemory& memory, uint64_t head, const GpaRange& crash_region,
    const EntryListLimits& limits = {},
    absl::Span<const GpaRange> vmm_reserved = {});

// Performs a validated plan with snapshot semantics (see above). Staging
// memory is bounded by the plan (≤ max_copied_pages pages).
[[nodiscard]] absl::Status ExecuteCopyPlan(GuestMemory* memory,
                                           const CopyPlan& plan);

}  // namespace hv::loader

#endif  // HV_LOADER_ENTRY_LIST_H_
