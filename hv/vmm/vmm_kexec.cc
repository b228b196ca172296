#include "hv/vmm/vmm_kexec.h"

#include "absl/strings/str_format.h"
#include "hv/base/status_macros.h"
#include "hv/loader/crash_region.h"
#include "hv/loader/elf_image.h"
#include "hv/loader/segment.h"
#include "hv/platform/hv_virt.h"

namespace hv {
namespace {

using loader::CrashKexec;
using loader::GpaRange;
using loader::Slot;

// Keeps the message hv-vmm always gave for an image that does not fit RAM.
absl::Status ExplainLoadError(const absl::Status& s, const loader::Image& image,
                              const GuestMemory& memory, const char* what) {
  std::optional<loader::SegmentViolation> v = loader::GetSegmentViolation(s);
  if (v && v->rule == loader::SegmentRule::kOutsideRam &&
      v->segment < image.segments.size()) {
    const loader::Segment& seg = image.segments[v->segment];
    return absl::OutOfRangeError(absl::StrFormat(
        "%s: segment [0x%x, 0x%x) does not fit in guest RAM (%u MiB)", what,
        seg.mem, seg.mem + seg.memsz, memory.total_size() >> 20));
  }
  return absl::Status(s.code(), absl::StrCat(what, ": ", s.message()));
}

}  // namespace

absl::StatusOr<std::unique_ptr<VmmKexec>> VmmKexec::Create(
    GuestMemory* memory, const std::vector<uint8_t>* image,
    const std::vector<uint8_t>* crash_image, uint64_t crash_mib) {
  absl::StatusOr<loader::Image> normal = loader::ParseElfImage(*image);
  if (!normal.ok()) {
    return absl::Status(normal.status().code(),
                        absl::StrCat("ELF image: ", normal.status().message()));
  }
  std::optional<loader::Image> crash;
  GpaRange region;
  if (!crash_image->empty() || crash_mib != 0) {
    if (crash_image->empty() || crash_mib == 0) {
      return absl::InvalidArgumentError(
          "crash_image and crash_mib must be given together");
    }
    absl::StatusOr<loader::Image> c = loader::ParseElfImage(*crash_image);
    if (!c.ok()) {
      return absl::Status(c.status().code(),
                          absl::StrCat("crash image: ", c.status().message()));
    }
    crash = std::move(*c);
    absl::StatusOr<GpaRange> r =
        loader::PlaceCrashRegion(*memory, {crash_mib << 20, std::nullopt});
    if (!r.ok()) {
      return absl::Status(
          r.status().code(),
          absl::StrCat("crash_mib=", crash_mib, ": ", r.status().message()));
    }
    region = *r;
  }
  return std::unique_ptr<VmmKexec>(
      new VmmKexec(memory, std::move(*normal), std::move(crash), region));
}

void VmmKexec::Attach(std::vector<std::unique_ptr<VcpuThread>>* threads,
                      std::vector<std::unique_ptr<arch::Vcpu>>* vcpus) {
  threads_ = threads;
  vcpus_ = vcpus;
  generation_ = std::make_unique<std::atomic<uint32_t>[]>(threads->size());
  for (size_t i = 0; i < threads->size(); ++i) {
    generation_[i].store(CrashKexec::kFirstKernel);
  }
}

absl::StatusOr<uint64_t> VmmKexec::Reload() {
  MutexLock lock(&mu_);
  // The boot structures below HV_VIRT_IMAGE_MIN belong to the VMM.
  HV_ASSIGN_OR_RETURN(
      loader_, loader::KexecLoader::Create(memory_, crash_region_,
                                           {GpaRange{0, HV_VIRT_IMAGE_MIN}}));
  if (absl::Status s = loader_->Load(Slot::kNormal, image_); !s.ok()) {
    return ExplainLoadError(s, image_, *memory_, "ELF image");
  }
  if (crash_image_) {
    if (absl::Status s = loader_->Load(Slot::kCrash, *crash_image_); !s.ok()) {
      return ExplainLoadError(s, *crash_image_, *memory_, "crash image");
    }
  }
  HV_ASSIGN_OR_RETURN(loader::JumpTarget target,
                      loader_->VerifyBeforeJump(Slot::kNormal));
  crash_ = std::make_unique<CrashKexec>(loader_.get(), this, this, 0);
  if (generation_ != nullptr) {
    for (size_t i = 0; i < threads_->size(); ++i) {
      generation_[i].store(CrashKexec::kFirstKernel);
    }
  }
  return target.entry;
}

loader::CrashOutcome VmmKexec::Crash(loader::CrashReason reason,
                                     uint32_t vcpu) {
  return crash_->TriggerCrash(reason, vcpu, generation_[vcpu].load());
}

loader::CrashOutcome VmmKexec::CrashFromApi(uint32_t keep) {
  MutexLock lock(&mu_);
  return crash_->TriggerCrash(loader::CrashReason::kApiRequest, keep,
                              crash_->generation());
}

absl::StatusOr<uint64_t> VmmKexec::GuestKexec(uint32_t vcpu, uint64_t head,
                                              uint64_t entry) {
  // kernel_kexec() → machine_shutdown(): the other CPUs are stopped before
  // relocate_kernel runs. hv asks the guest to have done that (CPU_OFF).
  for (size_t i = 0; i < threads_->size(); ++i) {
    if (i != vcpu && (*threads_)[i]->power() != VcpuThread::Power::kOff) {
      return absl::PermissionDeniedError(absl::StrFormat(
          "kexec: vCPU %u is still on; power off every other vCPU first", i));
    }
  }
  HV_ASSIGN_OR_RETURN(loader::JumpTarget t, loader_->GuestKexec(head, entry));
  return t.entry;
}

void VmmKexec::SetGeneration(uint32_t vcpu, uint32_t generation) {
  generation_[vcpu].store(generation);
}

loader::CrashState VmmKexec::state() { return crash_->state(); }

size_t VmmKexec::NumVcpus() const { return threads_->size(); }

absl::Status VmmKexec::StopAllExcept(size_t keep) {
  // crash_smp_send_stop(): kick everyone else out of KVM_RUN and wait until
  // each is parked outside Run(); they stay paused until the VMM restarts
  // them (the crash restart resumes every thread).
  for (size_t i = 0; i < threads_->size(); ++i) {
    if (i != keep) (*threads_)[i]->RequestPause();
  }
  for (size_t i = 0; i < threads_->size(); ++i) {
    if (i != keep) (*threads_)[i]->WaitPaused();
  }
  if (stopped_hook_) stopped_hook_();
  return absl::OkStatus();
}

absl::StatusOr<loader::X86VcpuState> VmmKexec::CaptureState(size_t vcpu) {
  if (vcpu >= vcpus_->size()) {
    return absl::OutOfRangeError(absl::StrFormat("no vCPU %u", vcpu));
  }
  HV_ASSIGN_OR_RETURN(arch::CpuRegisters r, (*vcpus_)[vcpu]->GetRegisters());
  loader::X86VcpuState s{};
  s.rax = r.rax;
  s.rbx = r.rbx;
  s.rcx = r.rcx;
  s.rdx = r.rdx;
  s.rsi = r.rsi;
  s.rdi = r.rdi;
  s.rbp = r.rbp;
  s.rsp = r.rsp;
  s.r8 = r.r8;
  s.r9 = r.r9;
  s.r10 = r.r10;
  s.r11 = r.r11;
  s.r12 = r.r12;
  s.r13 = r.r13;
  s.r14 = r.r14;
  s.r15 = r.r15;
  s.rip = r.rip;
  s.rflags = r.rflags;
  s.cs = r.cs;
  s.ss = r.ss;
  s.ds = r.ds;
  s.es = r.es;
  s.fs = r.fs;
  s.gs = r.gs;
  s.fs_base = r.fs_base;
  s.gs_base = r.gs_base;
  s.cr0 = r.cr0;
  s.cr2 = r.cr2;
  s.cr3 = r.cr3;
  s.cr4 = r.cr4;
  s.efer = r.efer;
  return s;
}

}  // namespace hv
