#include "hv/loader/kexec_loader.h"

#include <algorithm>
#include <cstring>

#include "absl/strings/str_format.h"
#include "hv/base/status_macros.h"

namespace hv::loader {
namespace {

const char* SlotName(Slot slot) {
  return slot == Slot::kNormal ? "normal" : "crash";
}

constexpr uint64_t kLoadChunk = 256 << 10;

uint64_t RoundUpPage(uint64_t n) {
  return (n + kPageSize - 1) / kPageSize * kPageSize;
}

}  // namespace

absl::StatusOr<std::unique_ptr<KexecLoader>> KexecLoader::Create(
    GuestMemory* memory, GpaRange crash_region,
    std::vector<GpaRange> vmm_reserved) {
  if (memory == nullptr) return absl::InvalidArgumentError("no guest memory");
  if (!crash_region.empty()) {
    if (crash_region.base % kPageSize != 0 ||
        crash_region.size % kPageSize != 0) {
      return absl::InvalidArgumentError(
          absl::StrFormat("crash region [0x%x, +0x%x) not page aligned",
                          crash_region.base, crash_region.size));
    }
    if (!memory->Contains(crash_region.base, crash_region.size)) {
      return absl::OutOfRangeError(absl::StrFormat(
          "crash region [0x%x, +0x%x) not inside one guest RAM region",
          crash_region.base, crash_region.size));
    }
  }
  for (const GpaRange& r : vmm_reserved) {
    if (r.empty() || r.base + r.size < r.base) {
      return absl::InvalidArgumentError(
          absl::StrFormat("VMM-reserved range [0x%x, +0x%x) is empty or wraps",
                          r.base, r.size));
    }
    if (crash_region.Intersects(r.base, r.size)) {
      return absl::InvalidArgumentError(absl::StrFormat(
          "VMM-reserved range [0x%x, +0x%x) intersects the crash region",
          r.base, r.size));
    }
  }
  return std::unique_ptr<KexecLoader>(
      new KexecLoader(memory, crash_region, std::move(vmm_reserved)));
}

KexecLoader::KexecLoader(GuestMemory* memory, GpaRange crash_region,
                         std::vector<GpaRange> vmm_reserved)
    : memory_(memory),
      crash_region_(crash_region),
      vmm_reserved_(std::move(vmm_reserved)) {}

absl::Status KexecLoader::Busy(const char* op) const {
  return absl::UnavailableError(absl::StrFormat(
      "kexec busy: %s refused, another load/unload/crash is in progress "
      "(EBUSY); retry later",
      op));
}

std::optional<LoadedImage>& KexecLoader::SlotRef(Slot slot) {
  return slot == Slot::kNormal ? normal_ : crash_;
}

absl::Status KexecLoader::Load(Slot slot, const Image& image) {
  if (!kexec_lock_.TryLock()) return Busy("load");
  absl::Status status = LoadLocked(slot, image);
  kexec_lock_.Unlock();
  return status;
}

absl::Status KexecLoader::Unload(Slot slot) { return Load(slot, Image{}); }

absl::Status KexecLoader::LoadLocked(Slot slot, const Image& image) {
  if (crashed_.load(std::memory_order_acquire)) {
    return absl::FailedPreconditionError(
        "kexec: the VM has crashed; images can no longer be changed");
  }
  if (slot == Slot::kCrash && crash_region_.empty()) {
    return absl::FailedPreconditionError(
        "kexec: this VM has no crash region (crashkernel size 0)");
  }
  std::optional<LoadedImage>& target = SlotRef(slot);
  if (image.segments.empty()) {  // kexec_load with nr_segments == 0: unload
    target.reset();
    return absl::OkStatus();
  }
  ValidationPolicy policy;
  policy.vmm_reserved = vmm_reserved_;
  if (slot == Slot::kCrash) {
    policy.crash_region = crash_region_;
  } else {
    policy.reserved = crash_region_;
  }
  HV_RETURN_IF_ERROR(ValidateImage(image, *memory_, policy));
  if (load_hook_) load_hook_();

  // Validation passed: from here on guest memory changes. The old image in
  // this slot is gone as soon as the first byte is written (as the kernel
  // frees the old kimage when the new one is installed).
  target.reset();
  LoadedImage loaded;
  loaded.entry = image.entry;
  for (size_t i = 0; i < image.segments.size(); ++i) {
    const Segment& seg = image.segments[i];
    LoadedSegment out{seg.mem, seg.memsz, seg.bufsz, {}};
    if (seg.memsz > 0) {
      // Contains() was checked by ValidateImage; HostSpan re-checks.
      HV_ASSIGN_OR_RETURN(absl::Span<uint8_t> dst,
                          memory_->HostSpan(seg.mem, seg.memsz));
      // Copy/zero and hash chunk by chunk, so the digest is taken from the
      // guest bytes while they are still in cache.
      Sha256 hash;
      for (uint64_t off = 0; off < seg.memsz; off += kLoadChunk) {
        const uint64_t n = std::min(kLoadChunk, seg.memsz - off);
        uint8_t* d = dst.data() + off;
        const uint64_t from_buf =
            off < seg.bufsz ? std::min(n, seg.bufsz - off) : 0;
        if (from_buf > 0) std::memcpy(d, seg.buf + off, from_buf);
        if (from_buf < n) std::memset(d + from_buf, 0, n - from_buf);
        hash.Update(absl::MakeConstSpan(d, n));
      }
      out.digest = hash.Finish();
    } else {
      out.digest = Sha256Of({});
    }
    loaded.segments.push_back(out);
  }
  target = std::move(loaded);
  return absl::OkStatus();
}

absl::StatusOr<std::optional<LoadedImage>> KexecLoader::Describe(Slot slot) {
  if (!kexec_lock_.TryLock()) return Busy("describe");
  std::optional<LoadedImage> copy = SlotRef(slot);
  kexec_lock_.Unlock();
  return copy;
}

absl::StatusOr<JumpTarget> KexecLoader::VerifyLocked(Slot slot) {
  const std::optional<LoadedImage>& img = SlotRef(slot);
  if (!img.has_value()) {
    return absl::NotFoundError(
        absl::StrFormat("kexec: no %s image loaded", SlotName(slot)));
  }
  for (size_t i = 0; i < img->segments.size(); ++i) {
    const LoadedSegment& seg = img->segments[i];
    Sha256Digest now = Sha256Of({});
    if (seg.memsz > 0) {
      HV_ASSIGN_OR_RETURN(absl::Span<uint8_t> bytes,
                          memory_->HostSpan(seg.mem, seg.memsz));
      now = Sha256Of(bytes);
    }
    if (now != seg.digest) {
      return absl::DataLossError(absl::StrFormat(
          "kexec: %s image segment %u [0x%x, 0x%x) changed since load: "
          "sha256 %s, expected %s; refusing to jump",
          SlotName(slot), i, seg.mem, seg.mem + seg.memsz, DigestHex(now),
          DigestHex(seg.digest)));
    }
  }
  return JumpTarget{img->entry};
}

absl::StatusOr<JumpTarget> KexecLoader::VerifyBeforeJump(Slot slot) {
  if (!kexec_lock_.TryLock()) return Busy("verify");
  absl::StatusOr<JumpTarget> result = VerifyLocked(slot);
  kexec_lock_.Unlock();
  return result;
}

absl::StatusOr<JumpTarget> KexecLoader::GuestKexec(
    uint64_t head, uint64_t entry, const EntryListLimits& limits) {
  if (!kexec_lock_.TryLock()) return Busy("guest kexec");
  absl::StatusOr<JumpTarget> result = [&]() -> absl::StatusOr<JumpTarget> {
    kexec_lock_.AssertHeld();
    if (crashed_.load(std::memory_order_acquire)) {
      return absl::FailedPreconditionError("kexec: the VM has crashed");
    }
    if (!memory_->Contains(entry, 1)) {
      return absl::OutOfRangeError(absl::StrFormat(
          "guest kexec: entry 0x%x is not in guest RAM", entry));
    }
    if (crash_region_.Intersects(entry, 1)) {
      return absl::PermissionDeniedError(absl::StrFormat(
          "guest kexec: entry 0x%x is inside the crash region", entry));
    }
    HV_ASSIGN_OR_RETURN(
        CopyPlan plan,
        ParseEntryList(*memory_, head, crash_region_, limits, vmm_reserved_));
    normal_.reset();  // its memory is about to be replaced
    HV_RETURN_IF_ERROR(ExecuteCopyPlan(memory_, plan));
    return JumpTarget{entry};
  }();
  kexec_lock_.Unlock();
  return result;
}

void KexecLoader::BeginCrash() {
  crashed_.store(true, std::memory_order_release);
}

absl::StatusOr<CrashJump> KexecLoader::PrepareCrashJump(
    absl::Span<const VcpuDump> vcpus) {
  // __crash_kexec(): `if (kexec_trylock()) { ... }` — never wait for a load.
  if (!kexec_lock_.TryLock()) return Busy("crash switch");
  absl::StatusOr<CrashJump> result = [&]() -> absl::StatusOr<CrashJump> {
    kexec_lock_.AssertHeld();
    HV_ASSIGN_OR_RETURN(JumpTarget target, VerifyLocked(Slot::kCrash));
    CoreDescription core;
    core.preserved = PreservedRanges(*memory_, crash_region_);
    core.vcpus.assign(vcpus.begin(), vcpus.end());
    const uint64_t size =
        CoreHeaderSize(core.preserved.size(), core.vcpus.size());
    const uint64_t need = RoundUpPage(size);
    // Highest page-aligned spot in the crash region that no crash segment
    // uses: candidates are just below the region end and each segment start.
    std::vector<uint64_t> candidates;
    if (need <= crash_region_.size)
      candidates.push_back(crash_region_.end() - need);
    for (const LoadedSegment& seg : crash_->segments) {
      if (seg.mem >= crash_region_.base + need)
        candidates.push_back(seg.mem - need);
    }
    std::optional<uint64_t> where;
    for (uint64_t c : candidates) {
      bool free = true;
      for (const LoadedSegment& seg : crash_->segments) {
        if (GpaRange{seg.mem, seg.memsz}.Intersects(c, need)) free = false;
      }
      if (free && (!where.has_value() || c > *where)) where = c;
    }
    if (!where.has_value()) {
      return absl::ResourceExhaustedError(absl::StrFormat(
          "crash region has no free 0x%x bytes for the ELF core header", need));
    }
    HV_ASSIGN_OR_RETURN(std::vector<uint8_t> header,
                        BuildCoreHeader(*where, core));
    HV_RETURN_IF_ERROR(memory_->Fill(*where, 0, need));
    HV_RETURN_IF_ERROR(memory_->Write(*where, header.data(), header.size()));
    return CrashJump{target.entry, *where, header.size()};
  }();
  kexec_lock_.Unlock();
  return result;
}

}  // namespace hv::loader
