// Per-VM kexec image slots (DESIGN §5, docs/kexec.md): the normal image
// (kexec_image: booted at start or by a guest kexec) and the crash image
// (kexec_crash_image: preloaded into the VM's crash region, started by
// crash_kexec).
//
// Concurrency — "one loader at a time": like kernel/kexec_core.c's
// kexec_trylock() (an atomic cmpxchg on __kexec_lock, taken by kexec_load,
// kexec_file_load and __crash_kexec), every operation that reads or changes a
// slot first *tries* `kexec_lock_`. If another load, unload, guest kexec,
// verification or crash switch holds it, the call fails at once with
// absl::Unavailable ("busy", the kernel's -EBUSY) and changes nothing; it never
// blocks and never waits for guest memory. `kexec_lock_` is the only lock in
// this class and is never held while calling out; there is no lock order to
// respect. Once a crash has begun (BeginCrash()), Load/Unload/GuestKexec fail
// with absl::FailedPrecondition: the crashed VM's memory must stay as it was.
//
// Guest memory is written only inside Load() (the image's segments; for a
// crash image these lie in the crash region), GuestKexec() (the copy plan's
// destinations, all outside the crash region) and PrepareCrashJump() (the core
// header, in the crash region, outside the crash image's segments).
#ifndef HV_LOADER_KEXEC_LOADER_H_
#define HV_LOADER_KEXEC_LOADER_H_

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "hv/base/locks.h"
#include "hv/loader/core_header.h"
#include "hv/loader/entry_list.h"
#include "hv/loader/segment.h"
#include "hv/loader/sha256.h"
#include "hv/memory/guest_memory.h"

namespace hv::loader {

enum class Slot { kNormal, kCrash };

struct LoadedSegment {
  uint64_t mem = 0;
  uint64_t memsz = 0;
  uint64_t bufsz = 0;
  Sha256Digest digest{};  // of the whole [mem, mem + memsz) after loading
};

struct LoadedImage {
  uint64_t entry = 0;
  std::vector<LoadedSegment> segments;
};

struct JumpTarget {
  uint64_t entry = 0;
};

// What the VMM does to start the crash image (see CrashKexec).
struct CrashJump {
  uint64_t entry = 0;
  uint64_t core_header_gpa = 0;  // ELF core header, inside the crash region
  uint64_t core_header_size = 0;
};

class KexecLoader {
 public:
  // `memory` must outlive the loader. `crash_region` (crashkernel= style) must
  // be page aligned and inside one RAM region, or empty (no crash slot).
  // `vmm_reserved`: ranges the VMM keeps (boot structures); no image segment
  // and no guest-kexec destination may touch them; they may not intersect
  // the crash region.
  [[nodiscard]] static absl::StatusOr<std::unique_ptr<KexecLoader>> Create(
      GuestMemory* memory, GpaRange crash_region,
      std::vector<GpaRange> vmm_reserved = {});

  KexecLoader(const KexecLoader&) = delete;
  KexecLoader& operator=(const KexecLoader&) = delete;

  // kexec_load(): validates every rule (segment.h) before copying anything,
  // then copies each segment's buf into guest memory, zeroes [bufsz, memsz),
  // and records a SHA-256 of every segment. A crash image is validated
  // against the crash region and written directly into it. 0 segments
  // unloads the slot. On error the slot is unchanged if validation failed;
  // if a copy failed midway the slot is emptied (guest memory was touched).
  // Unavailable if busy; FailedPrecondition after a crash, or for kCrash
  // without a crash region.
  [[nodiscard]] absl::Status Load(Slot slot, const Image& image);
  [[nodiscard]] absl::Status Unload(Slot slot);

  // The slot's image (copy), nullopt if empty. Unavailable if busy.
  [[nodiscard]] absl::StatusOr<std::optional<LoadedImage>> Describe(Slot slot);

  // Re-hashes every segment of the slot and compares with the digests
  // recorded at load (the purgatory check Xen and kexec-tools run before
  // entering a new kernel). DataLoss naming the first bad segment on a
  // mismatch; NotFound if the slot is empty; Unavailable if busy.
  [[nodiscard]] absl::StatusOr<JumpTarget> VerifyBeforeJump(Slot slot);

  // Guest-requested kexec (entry_list.h): validates the list at `head` and
  // the new `entry` (in RAM, outside the crash region), performs the copies,
  // and returns the entry to restart the vCPUs at. The normal slot is
  // emptied (its memory was just replaced by the guest's); the crash slot is
  // untouched (destinations may not enter the crash region).
  [[nodiscard]] absl::StatusOr<JumpTarget> GuestKexec(
      uint64_t head, uint64_t entry, const EntryListLimits& limits = {});

  // Crash path (called by CrashKexec, see crash_kexec.h). BeginCrash() makes
  // every later Load/Unload/GuestKexec fail with FailedPrecondition; it never
  // fails and never blocks. PrepareCrashJump() then tries the lock,
  // verifies the crash image and writes the ELF core header for `vcpus` into
  // the highest free space of the crash region. Errors: Unavailable (busy:
  // a load held the lock — __crash_kexec gives up the same way), NotFound
  // (no crash image), DataLoss (digest mismatch), ResourceExhausted (no room
  // for the header).
  void BeginCrash();
  [[nodiscard]] absl::StatusOr<CrashJump> PrepareCrashJump(
      absl::Span<const VcpuDump> vcpus);

  // Test seam: called by Load() with the kexec lock held, after validation
  // and before the first byte is copied, so tests can hold the lock
  // deterministically. Set it before any concurrent use; not for production.
  void SetLoadHookForTesting(std::function<void()> hook) {
    load_hook_ = std::move(hook);
  }

  const GpaRange& crash_region() const { return crash_region_; }
  GuestMemory* memory() const { return memory_; }

 private:
  KexecLoader(GuestMemory* memory, GpaRange crash_region,
              std::vector<GpaRange> vmm_reserved);

  absl::Status Busy(const char* op) const;
  absl::Status LoadLocked(Slot slot, const Image& image)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(kexec_lock_);
  absl::StatusOr<JumpTarget> VerifyLocked(Slot slot)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(kexec_lock_);
  std::optional<LoadedImage>& SlotRef(Slot slot)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(kexec_lock_);

  GuestMemory* const memory_;
  const GpaRange crash_region_;
  const std::vector<GpaRange> vmm_reserved_;
  // The kexec trylock. Only TryLock() is ever called on it: nothing waits.
  SpinLock kexec_lock_;
  std::atomic<bool> crashed_{false};
  std::function<void()> load_hook_;  // immutable once threads use the loader
  std::optional<LoadedImage> normal_ ABSL_GUARDED_BY(kexec_lock_);
  std::optional<LoadedImage> crash_ ABSL_GUARDED_BY(kexec_lock_);
};

}  // namespace hv::loader

#endif  // HV_LOADER_KEXEC_LOADER_H_
