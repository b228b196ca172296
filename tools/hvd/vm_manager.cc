#include "tools/hvd/vm_manager.h"

#include <dirent.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <iterator>

#include "absl/strings/str_cat.h"
#include "absl/types/span.h"
#include "hv/control/failpoint.h"
#include "hv/control/wire.h"
#include "hv/guest/builtin_images.h"
#include "hv/loader/crash_region.h"
#include "hv/loader/elf_image.h"
#include "hv/loader/segment.h"
#include "hv/platform/hv_virt.h"
#include "hv/vmm/vmm.h"

extern char** environ;

namespace hv::hvd {
namespace {

using control::Failpoint;
using control::RecvRecord;
using control::RecvResult;
using control::SendRecord;

constexpr char kBuiltinPrefix[] = "builtin:";
constexpr int kVmmControlFd = 3;

int PidfdOpen(pid_t pid) {
  return static_cast<int>(syscall(SYS_pidfd_open, pid, 0));
}
int PidfdSendSignal(int pidfd, int sig) {
  return static_cast<int>(
      syscall(SYS_pidfd_send_signal, pidfd, sig, nullptr, 0));
}

bool Running(v1::VmState s) {
  return s == v1::VM_STATE_STARTING || s == v1::VM_STATE_RUNNING ||
         s == v1::VM_STATE_STOPPING;
}

std::string StateName(v1::VmState s) {
  std::string n = v1::VmState_Name(s);
  return n.substr(std::strlen("VM_STATE_"));
}

// The crash region hv-vmm reserves for crash_mib (docs/kexec.md "Crash
// region"): loader::PlaceCrashRegion over the VMM's single RAM region
// [0, memory_mib MiB) with no offset: at most half of RAM, based at the
// highest kCrashRegionAlign-aligned address that fits. Errors name crash_mib.
absl::StatusOr<loader::GpaRange> CrashRegionFor(uint64_t memory_mib,
                                                uint64_t crash_mib) {
  if (crash_mib == 0) {
    return absl::InvalidArgumentError(
        "crash_mib: required with kind crash (the crash region size in MiB)");
  }
  if (crash_mib > memory_mib / 2) {
    return absl::InvalidArgumentError(
        absl::StrCat("crash_mib: ", crash_mib,
                     " MiB exceeds half of the VM's memory_mib ", memory_mib));
  }
  const uint64_t size = crash_mib << 20;
  const uint64_t top = (memory_mib << 20) - size;
  return loader::GpaRange{
      top / loader::kCrashRegionAlign * loader::kCrashRegionAlign, size};
}

// Crash image segments must lie inside the crash region, normal image
// segments outside it (the loader's kOutsideCrashRegion /
// kInsideCrashRegion, docs/kexec.md). `field` prefixes the error.
absl::Status CheckCrashLayout(absl::Span<const uint8_t> image,
                              absl::Span<const uint8_t> crash_image,
                              const loader::GpaRange& region,
                              absl::string_view field) {
  const uint64_t end = region.base + region.size;
  auto range = [&] {
    return absl::StrCat("the crash region [0x", absl::Hex(region.base), ", 0x",
                        absl::Hex(end), ")");
  };
  absl::StatusOr<loader::Image> crash = loader::ParseElfImage(crash_image);
  if (!crash.ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat(field, ": crash image: ", crash.status().message()));
  }
  for (size_t i = 0; i < crash->segments.size(); ++i) {
    const loader::Segment& sg = crash->segments[i];
    if (sg.mem < region.base || sg.mem + sg.memsz < sg.mem ||
        sg.mem + sg.memsz > end) {
      return absl::InvalidArgumentError(absl::StrCat(
          field, ": crash image segment ", i, " [0x", absl::Hex(sg.mem),
          ", +0x", absl::Hex(sg.memsz), ") is outside ", range()));
    }
  }
  absl::StatusOr<loader::Image> normal = loader::ParseElfImage(image);
  if (!normal.ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat(field, ": image: ", normal.status().message()));
  }
  for (size_t i = 0; i < normal->segments.size(); ++i) {
    const loader::Segment& sg = normal->segments[i];
    if (sg.mem < end && sg.mem + sg.memsz > region.base) {
      return absl::InvalidArgumentError(
          absl::StrCat(field, ": image segment ", i, " [0x", absl::Hex(sg.mem),
                       ", +0x", absl::Hex(sg.memsz), ") overlaps ", range()));
    }
  }
  return absl::OkStatus();
}

// A sealed memfd holding `bytes` (the VMM maps nothing it could change).
absl::StatusOr<int> SealedMemfd(const char* name,
                                const std::vector<uint8_t>& bytes) {
  const int memfd = memfd_create(name, MFD_CLOEXEC | MFD_ALLOW_SEALING);
  if (memfd < 0) {
    return absl::InternalError(
        absl::StrCat("memfd_create: ", std::strerror(errno)));
  }
  size_t off = 0;
  while (off < bytes.size()) {
    const ssize_t w = write(memfd, bytes.data() + off, bytes.size() - off);
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) {
      const int err = errno;
      close(memfd);
      return absl::InternalError(
          absl::StrCat("write image memfd: ", std::strerror(err)));
    }
    off += static_cast<size_t>(w);
  }
  (void)fcntl(memfd, F_ADD_SEALS,
              F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_WRITE | F_SEAL_SEAL);
  return memfd;
}

absl::Status Errno(absl::string_view what) {
  return absl::InternalError(absl::StrCat(what, ": ", std::strerror(errno)));
}

}  // namespace

// ------------------------------------------------------------- Watcher

void Watcher::Push(v1::VmEvent ev) {
  MutexLock l(&mu_);
  if (closed_) return;
  if (q_.size() >= kMaxQueued) {
    ++dropped_;  // a stalled client loses the oldest events, never blocks us
    q_.pop_front();
  }
  q_.push_back(std::move(ev));
  cv_.NotifyAll();
}

void Watcher::Close() {
  MutexLock l(&mu_);
  closed_ = true;
  cv_.NotifyAll();
}

bool Watcher::Pop(std::vector<v1::VmEvent>* out,
                  std::chrono::milliseconds timeout) {
  MutexLock l(&mu_);
  if (q_.empty() && !closed_) cv_.WaitFor(&mu_, timeout);
  while (!q_.empty()) {
    out->push_back(std::move(q_.front()));
    q_.pop_front();
  }
  return !(closed_ && out->empty());
}

// ------------------------------------------------------------- validation

absl::Status ValidateVmName(absl::string_view field, absl::string_view name) {
  if (name.empty() || name.size() > 63) {
    return absl::InvalidArgumentError(
        absl::StrCat(field, ": must be 1..63 characters"));
  }
  for (char c : name) {
    if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
          (c >= '0' && c <= '9') || c == '-' || c == '_' || c == '.')) {
      return absl::InvalidArgumentError(absl::StrCat(
          field, ": '", name, "' may only contain [A-Za-z0-9_.-]"));
    }
  }
  return absl::OkStatus();
}

absl::StatusOr<std::vector<uint8_t>> VmManager::ReadImage(
    const std::string& image, uint64_t memory_mib, v1::Image* info) {
  std::vector<uint8_t> bytes;
  if (image.empty()) {
    return absl::InvalidArgumentError(
        "image: required (builtin:NAME or an absolute path)");
  }
  if (image.rfind(kBuiltinPrefix, 0) == 0) {
    const std::string name = image.substr(std::strlen(kBuiltinPrefix));
    const guest::BuiltinImage* b = guest::FindBuiltinImage(name);
    if (b == nullptr) {
      return absl::NotFoundError(
          absl::StrCat("image: no built-in image '", name, "'"));
    }
    bytes.assign(b->data, b->data + b->size);
  } else {
    if (image[0] != '/') {
      return absl::InvalidArgumentError(absl::StrCat(
          "image: '", image, "' is neither builtin:NAME nor an absolute path"));
    }
    struct stat st;
    if (stat(image.c_str(), &st) != 0) {
      return absl::NotFoundError(
          absl::StrCat("image: ", image, ": ", std::strerror(errno)));
    }
    if (!S_ISREG(st.st_mode)) {
      return absl::InvalidArgumentError(
          absl::StrCat("image: ", image, " is not a regular file"));
    }
    if (st.st_size > (int64_t{256} << 20)) {
      return absl::ResourceExhaustedError(
          absl::StrCat("image: ", image, " is larger than 256 MiB"));
    }
    std::ifstream f(image, std::ios::binary);
    if (!f) {
      return absl::PermissionDeniedError(
          absl::StrCat("image: cannot read ", image));
    }
    bytes.assign(std::istreambuf_iterator<char>(f),
                 std::istreambuf_iterator<char>());
  }
  // Validate with the loader: ELF → kexec segments, each inside guest RAM
  // above the VMM's boot structures (hv_virt.h).
  absl::StatusOr<loader::Image> parsed = loader::ParseElfImage(bytes);
  if (!parsed.ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat("image: ", parsed.status().message()));
  }
  const uint64_t ram = memory_mib << 20;
  for (size_t i = 0; i < parsed->segments.size(); ++i) {
    const loader::Segment& s = parsed->segments[i];
    if (s.mem < HV_VIRT_IMAGE_MIN || s.mem + s.memsz < s.mem ||
        s.mem + s.memsz > ram) {
      return absl::InvalidArgumentError(absl::StrCat(
          "image: segment ", i, " [0x", absl::Hex(s.mem), ", +0x",
          absl::Hex(s.memsz), ") is outside guest RAM [0x",
          absl::Hex(HV_VIRT_IMAGE_MIN), ", 0x", absl::Hex(ram), ")"));
    }
  }
  if (info != nullptr) {
    info->set_size(bytes.size());
    info->set_segments(static_cast<uint32_t>(parsed->segments.size()));
    info->set_entry(parsed->entry);
  }
  return bytes;
}

// ------------------------------------------------------------- lifecycle

absl::StatusOr<std::unique_ptr<VmManager>> VmManager::Create(
    VmManagerOptions options, std::unique_ptr<Store> store) {
  std::unique_ptr<VmManager> m(
      new VmManager(std::move(options), std::move(store)));
  if (absl::Status s = m->Init(); !s.ok()) return s;
  return m;
}

void VmManager::KillLeftoverVmms() {
  // A previous hvd of this state dir was killed: its VMMs exit on their own
  // when the control socket closes; kill any that have not yet.
  const std::string mark = "--state_dir=" + options_.state_dir;
  DIR* d = opendir("/proc");
  if (d == nullptr) return;
  std::vector<pid_t> victims;
  while (dirent* de = readdir(d)) {
    const pid_t pid = static_cast<pid_t>(std::atoi(de->d_name));
    if (pid <= 0 || pid == getpid()) continue;
    std::ifstream f(absl::StrCat("/proc/", pid, "/cmdline"));
    std::string cmd((std::istreambuf_iterator<char>(f)),
                    std::istreambuf_iterator<char>());
    bool is_vmm = false, ours = false;
    size_t pos = 0;
    while (pos < cmd.size()) {
      const std::string arg = cmd.c_str() + pos;
      pos += arg.size() + 1;
      if (arg.rfind("--control_fd=", 0) == 0) is_vmm = true;
      if (arg == mark) ours = true;
    }
    if (is_vmm && ours) victims.push_back(pid);
  }
  closedir(d);
  for (pid_t pid : victims) {
    const int pfd = PidfdOpen(pid);
    if (pfd < 0) continue;
    PidfdSendSignal(pfd, SIGKILL);
    pollfd p{pfd, POLLIN, 0};
    (void)poll(&p, 1, 2000);
    close(pfd);
  }
}

absl::Status VmManager::Init() {
  KillLeftoverVmms();
  absl::StatusOr<std::vector<v1::Vm>> vms = store_->LoadVms();
  if (!vms.ok()) return vms.status();
  absl::StatusOr<std::vector<v1::Image>> images = store_->LoadImages();
  if (!images.ok()) return images.status();
  {
    MutexLock l(&mu_);
    for (v1::Vm& vm : *vms) {
      VmEntry& e = vms_[vm.name()];
      e.vm = std::move(vm);
      if (Running(e.vm.state())) {
        // Re-adopting live VMMs is a later step (DESIGN §2): the VM comes
        // back stopped.
        e.vm.set_pid(0);
        SetState(e, v1::VM_STATE_STOPPED, "hvd restarted", /*persist=*/true,
                 "recover");
      }
    }
    for (v1::Image& im : *images) {
      auto it = vms_.find(im.vm());
      if (it != vms_.end()) it->second.images[im.kind()] = std::move(im);
    }
  }
  // Every VM comes back stopped, so no device is attached any more: rows
  // left by a previous hvd are removed (each its own op).
  absl::StatusOr<std::vector<Store::AttachmentRow>> rows =
      store_->LoadAttachments();
  if (!rows.ok()) return rows.status();
  for (const Store::AttachmentRow& r : *rows) {
    if (absl::StatusOr<uint64_t> op =
            store_->DeleteAttachment("recover", r.vm, r.device);
        !op.ok()) {
      return op.status();
    }
  }
  epfd_ = epoll_create1(EPOLL_CLOEXEC);
  wake_fd_ = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  if (epfd_ < 0 || wake_fd_ < 0) return Errno("epoll/eventfd");
  epoll_event ev{};
  ev.events = EPOLLIN;
  ev.data.u64 = 0;
  if (epoll_ctl(epfd_, EPOLL_CTL_ADD, wake_fd_, &ev) != 0) {
    return Errno("epoll_ctl");
  }
  monitor_ = std::thread([this] { MonitorLoop(); });
  return absl::OkStatus();
}

VmManager::~VmManager() {
  {
    MutexLock l(&mu_);
    for (auto& [name, e] : vms_) {
      if (e.pidfd >= 0) {
        e.stop_requested = true;
        e.force = true;
        PidfdSendSignal(e.pidfd, SIGKILL);
      }
    }
    // Wait (bounded) for the monitor to reap them.
    const auto deadline =
        std::chrono::steady_clock::now() + std::chrono::seconds(5);
    for (;;) {
      bool any = false;
      for (auto& [name, e] : vms_) any |= e.pidfd >= 0;
      if (!any || std::chrono::steady_clock::now() > deadline) break;
      cv_.WaitFor(&mu_, std::chrono::milliseconds(50));
    }
    for (auto& [name, e] : vms_) {
      for (auto& w : e.watchers) w->Close();
    }
  }
  stopping_ = true;
  if (wake_fd_ >= 0) {
    const uint64_t one = 1;
    (void)!write(wake_fd_, &one, sizeof(one));
  }
  if (monitor_.joinable()) monitor_.join();
  MutexLock l(&mu_);
  for (auto& [name, e] : vms_) ReleaseProcess(e);
  if (epfd_ >= 0) close(epfd_);
  if (wake_fd_ >= 0) close(wake_fd_);
}

void VmManager::MonitorLoop() {
  epoll_event events[16];
  while (!stopping_) {
    // 100 ms: also the granularity of detach deadlines.
    const int n = epoll_wait(epfd_, events, 16, 100);
    if (n < 0 && errno != EINTR) break;
    {
      MutexLock l(&mu_);
      CheckDetachDeadlines();
    }
    for (int i = 0; i < n; ++i) {
      const uint64_t tok = events[i].data.u64;
      if (tok == 0) continue;  // wake_fd_
      MutexLock l(&mu_);
      auto t = tokens_.find(tok);
      if (t == tokens_.end()) continue;  // already torn down
      const Token token = t->second;
      if (token.is_pidfd) {
        OnVmmExit(token.name);
      } else {
        OnControlReadable(token.name);
      }
    }
  }
}

void VmManager::Broadcast(VmEntry& e, v1::VmEvent ev) {
  ev.set_vm(e.vm.name());
  ev.set_seq(++e.seq);
  for (auto& w : e.watchers) {
    if (ev.has_console() && !w->wants_console()) continue;
    w->Push(ev);
  }
}

void VmManager::SetState(VmEntry& e, v1::VmState state, std::string reason,
                         bool persist, absl::string_view op_kind) {
  e.vm.set_state(state);
  if (!reason.empty()) e.vm.set_last_exit_reason(reason);
  if (persist) {
    absl::StatusOr<uint64_t> op =
        store_->PutVm(std::string_view(op_kind.data(), op_kind.size()), e.vm);
    if (op.ok()) {
      e.vm.set_last_op_id(*op);
    } else {
      std::fprintf(stderr, "hvd: persisting %s: %s\n", e.vm.name().c_str(),
                   op.status().ToString().c_str());
    }
  }
  v1::VmEvent ev;
  ev.mutable_state()->set_state(state);
  ev.mutable_state()->set_reason(reason);
  ev.mutable_state()->set_exit_code(e.vm.last_exit_code());
  Broadcast(e, std::move(ev));
  cv_.NotifyAll();
}

void VmManager::HandleEvent(VmEntry& e, const vmm::v1::VmmEvent& ev) {
  if (ev.has_console()) {
    v1::VmEvent out;
    out.set_console(ev.console());
    Broadcast(e, std::move(out));
  } else if (ev.has_started()) {
    if (e.vm.state() == v1::VM_STATE_STARTING) {
      SetState(e, v1::VM_STATE_RUNNING, "", /*persist=*/true, "running");
    }
  } else if (ev.has_exited()) {
    e.exited_reported = true;
    e.exited = ev.exited();
  } else {
    HandleDeviceEvent(e, ev);
  }
}

void VmManager::DrainControl(VmEntry& e) {
  while (e.ctl >= 0) {
    vmm::v1::VmmEvent ev;
    absl::StatusOr<RecvResult> r = RecvRecord(e.ctl, &ev, nullptr, true);
    if (!r.ok() && r.status().code() == absl::StatusCode::kInvalidArgument) {
      continue;  // a malformed record from the VMM was consumed: dropped
    }
    if (!r.ok()) r = RecvResult::kEof;  // socket error: treat as EOF
    if (*r == RecvResult::kRecord) {
      HandleEvent(e, ev);
      continue;
    }
    if (*r == RecvResult::kEof) {
      // Keep the fd until the pidfd fires, but stop polling it.
      epoll_ctl(epfd_, EPOLL_CTL_DEL, e.ctl, nullptr);
      tokens_.erase(e.ctl_token);
      e.ctl_token = 0;
    }
    return;
  }
}

void VmManager::OnControlReadable(const std::string& name) {
  auto it = vms_.find(name);
  if (it == vms_.end()) return;
  DrainControl(it->second);
}

void VmManager::ReleaseProcess(VmEntry& e) {
  if (e.ctl_token != 0) tokens_.erase(e.ctl_token);
  if (e.pid_token != 0) tokens_.erase(e.pid_token);
  e.ctl_token = e.pid_token = 0;
  if (e.ctl >= 0) {
    epoll_ctl(epfd_, EPOLL_CTL_DEL, e.ctl, nullptr);
    close(e.ctl);
  }
  if (e.pidfd >= 0) {
    epoll_ctl(epfd_, EPOLL_CTL_DEL, e.pidfd, nullptr);
    close(e.pidfd);
  }
  e.ctl = e.pidfd = -1;
  e.pid = 0;
  e.vm.set_pid(0);
}

void VmManager::OnVmmExit(const std::string& name) {
  auto it = vms_.find(name);
  if (it == vms_.end()) return;
  VmEntry& e = it->second;
  DrainControl(e);  // console and Exited sent just before death
  int status = 0;
  siginfo_t si{};
  // The pidfd is readable: the child has exited; reap it now (P_PIDFD).
  if (waitid(static_cast<idtype_t>(3) /*P_PIDFD*/, e.pidfd, &si,
             WEXITED | WNOHANG) != 0 ||
      si.si_pid == 0) {
    if (waitpid(e.pid, &status, WNOHANG) <= 0) return;  // not yet
    si.si_code = WIFSIGNALED(status) ? CLD_KILLED : CLD_EXITED;
    si.si_status = WIFSIGNALED(status) ? WTERMSIG(status) : WEXITSTATUS(status);
  }
  // Tear down every host resource of this VM: attachments (kvm-vfio
  // destroy = unforward all, devices host-owned, rows removed, eventfds
  // closed), then control socket, pidfd, epoll registrations.
  ReleaseAttachments(e);
  ReleaseProcess(e);
  v1::VmState state;
  std::string reason;
  int code = 0;
  if (e.exited_reported) {
    code = e.exited.exit_code();
    switch (e.exited.kind()) {
      case vmm::v1::Exited::KIND_POWER_OFF:
        state = v1::VM_STATE_STOPPED;
        reason = "poweroff";
        break;
      case vmm::v1::Exited::KIND_STOPPED:
        state = v1::VM_STATE_STOPPED;
        reason = "stopped";
        break;
      case vmm::v1::Exited::KIND_CRASH:
        state = v1::VM_STATE_CRASHED;
        reason = "guest crashed: " + e.exited.message();
        break;
      default:
        state = v1::VM_STATE_CRASHED;
        reason = "vmm setup error: " + e.exited.message();
        break;
    }
  } else if (si.si_code == CLD_KILLED || si.si_code == CLD_DUMPED) {
    code = 128 + si.si_status;
    if (e.stop_requested && e.force) {
      state = v1::VM_STATE_STOPPED;
      reason = "force-stopped";
    } else {
      state = v1::VM_STATE_CRASHED;
      reason = absl::StrCat("vmm killed by signal ", si.si_status);
    }
  } else {
    code = si.si_status;
    state = v1::VM_STATE_CRASHED;
    reason = absl::StrCat("vmm exited with status ", si.si_status,
                          " without reporting");
  }
  e.vm.set_last_exit_code(code);
  e.stop_requested = e.force = e.exited_reported = false;
  SetState(e, state, reason, /*persist=*/true, "vmm-exit");
}

absl::StatusOr<v1::Vm> VmManager::CreateVm(const v1::CreateVmRequest& req) {
  if (absl::Status s = ValidateVmName("name", req.name()); !s.ok()) return s;
  if (req.vcpus() == 0 || req.vcpus() > HV_VIRT_MAX_VCPUS) {
    return absl::InvalidArgumentError(absl::StrCat(
        "vcpus: ", req.vcpus(), " is not in 1..", HV_VIRT_MAX_VCPUS));
  }
  if (req.memory_mib() < kMinMemoryMib) {
    return absl::InvalidArgumentError(
        absl::StrCat("memory_mib: ", req.memory_mib(), " is below the minimum ",
                     kMinMemoryMib));
  }
  if (req.memory_mib() > kMaxMemoryMib) {
    return absl::ResourceExhaustedError(
        absl::StrCat("memory_mib: ", req.memory_mib(), " exceeds the maximum ",
                     kMaxMemoryMib));
  }
  v1::Image info;
  absl::StatusOr<std::vector<uint8_t>> bytes =
      ReadImage(req.image(), req.memory_mib(), &info);
  if (!bytes.ok()) return bytes.status();

  MutexLock l(&mu_);
  if (vms_.count(req.name()) != 0) {
    return absl::AlreadyExistsError(
        absl::StrCat("name: vm '", req.name(), "' already exists"));
  }
  if (vms_.size() >= options_.max_vms) {
    return absl::ResourceExhaustedError(absl::StrCat(
        "name: hvd holds the maximum of ", options_.max_vms, " VMs"));
  }
  v1::Vm vm;
  vm.set_name(req.name());
  vm.set_vcpus(req.vcpus());
  vm.set_memory_mib(req.memory_mib());
  vm.set_image(req.image());
  vm.set_guest_arg(req.guest_arg());
  vm.set_state(v1::VM_STATE_STOPPED);
  if (absl::Status s = Failpoint("create.before_commit"); !s.ok()) return s;
  absl::StatusOr<uint64_t> op = store_->PutVm("create", vm);
  if (!op.ok()) return op.status();
  vm.set_last_op_id(*op);
  if (absl::Status s = Failpoint("create.after_commit"); !s.ok()) {
    // The row is committed; keep memory in sync with it.
    vms_[vm.name()].vm = vm;
    return s;
  }
  vms_[vm.name()].vm = vm;
  return vm;
}

absl::StatusOr<v1::Vm> VmManager::StartVm(const std::string& name) {
  {
    MutexLock l(&mu_);
    auto it = vms_.find(name);
    if (it == vms_.end()) {
      return absl::NotFoundError(absl::StrCat("name: no vm '", name, "'"));
    }
    if (Running(it->second.vm.state())) {
      return absl::FailedPreconditionError(absl::StrCat(
          "name: vm '", name, "' is ", StateName(it->second.vm.state())));
    }
  }
  // The image is read again at every start (a path may have changed).
  v1::Vm snapshot;
  {
    absl::StatusOr<v1::Vm> vm = GetVm(name);
    if (!vm.ok()) return vm.status();
    snapshot = *vm;
  }
  absl::StatusOr<std::vector<uint8_t>> bytes =
      ReadImage(snapshot.image(), snapshot.memory_mib(), nullptr);
  if (!bytes.ok()) {
    return absl::FailedPreconditionError(
        absl::StrCat("image: vm '", name,
                     "' image no longer valid: ", bytes.status().message()));
  }
  // The crash image (LoadImage kind=crash) and its region, checked again
  // like the image: it goes to the VMM as a second sealed memfd.
  std::vector<uint8_t> crash_bytes;
  if (!snapshot.crash_image().empty()) {
    absl::StatusOr<std::vector<uint8_t>> cb =
        ReadImage(snapshot.crash_image(), snapshot.memory_mib(), nullptr);
    absl::Status s = cb.status();
    if (s.ok()) {
      absl::StatusOr<loader::GpaRange> region =
          CrashRegionFor(snapshot.memory_mib(), snapshot.crash_mib());
      s = region.ok() ? CheckCrashLayout(*bytes, *cb, *region, "crash_mib")
                      : region.status();
    }
    if (!s.ok()) {
      return absl::FailedPreconditionError(
          absl::StrCat("crash_image: vm '", name,
                       "' crash image no longer valid: ", s.message()));
    }
    crash_bytes = std::move(*cb);
  }
  if (absl::Status s = Failpoint("start.before_spawn"); !s.ok()) return s;

  // Every fd we create below is closed on any failure path.
  absl::StatusOr<int> image_fd = SealedMemfd("hv-image", *bytes);
  if (!image_fd.ok()) return image_fd.status();
  const int memfd = *image_fd;
  int crash_memfd = -1;
  if (!crash_bytes.empty()) {
    absl::StatusOr<int> cfd = SealedMemfd("hv-crash-image", crash_bytes);
    if (!cfd.ok()) {
      close(memfd);
      return cfd.status();
    }
    crash_memfd = *cfd;
  }
  auto close_memfd = [&] {
    close(memfd);
    if (crash_memfd >= 0) close(crash_memfd);
  };
  int sv[2];
  if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) != 0) {
    close_memfd();
    return Errno("socketpair");
  }
  const std::string log_path =
      absl::StrCat(options_.state_dir, "/", name, ".vmm.log");
  const int logfd =
      open(log_path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
  std::vector<std::string> args = {
      options_.vmm_path, absl::StrCat("--control_fd=", kVmmControlFd),
      "--vm=" + name, "--state_dir=" + options_.state_dir};
  std::vector<char*> argv;
  for (auto& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
  if (logfd >= 0) {
    posix_spawn_file_actions_adddup2(&fa, logfd, 1);
    posix_spawn_file_actions_adddup2(&fa, logfd, 2);
  }
  // sv[1] → fd 3 (dup2 clears O_CLOEXEC). sv[1] is never 3 itself here:
  // fds 0..2 are open, and sv[0] is allocated first.
  posix_spawn_file_actions_adddup2(&fa, sv[1], kVmmControlFd);
  pid_t pid = 0;
  const int rc = posix_spawn(&pid, options_.vmm_path.c_str(), &fa, nullptr,
                             argv.data(), environ);
  posix_spawn_file_actions_destroy(&fa);
  if (logfd >= 0) close(logfd);
  close(sv[1]);
  if (rc != 0) {
    close(sv[0]);
    close_memfd();
    return absl::InternalError(
        absl::StrCat("spawn ", options_.vmm_path, ": ", std::strerror(rc)));
  }
  const int pidfd = PidfdOpen(pid);
  auto kill_child = [&] {
    if (pidfd >= 0) {
      PidfdSendSignal(pidfd, SIGKILL);
    } else {
      kill(pid, SIGKILL);
    }
    waitpid(pid, nullptr, 0);
    if (pidfd >= 0) close(pidfd);
    close(sv[0]);
  };
  if (pidfd < 0) {
    absl::Status s = Errno("pidfd_open");
    kill_child();
    close_memfd();
    return s;
  }
  vmm::v1::VmmCommand boot;
  boot.set_seq(1);
  boot.mutable_boot()->set_vcpus(snapshot.vcpus());
  boot.mutable_boot()->set_memory_mib(snapshot.memory_mib());
  boot.mutable_boot()->set_guest_arg(snapshot.guest_arg());
  boot.mutable_boot()->set_image_name(snapshot.image());
  std::vector<int> fds = {memfd};
  if (crash_memfd >= 0) {
    boot.mutable_boot()->set_crash_mib(snapshot.crash_mib());
    boot.mutable_boot()->set_crash_image_name(snapshot.crash_image());
    fds.push_back(crash_memfd);
  }
  absl::Status sent = SendRecord(sv[0], boot, fds);
  close_memfd();
  if (!sent.ok()) {
    kill_child();
    return sent;
  }
  if (absl::Status s = Failpoint("start.after_spawn"); !s.ok()) {
    kill_child();
    return s;
  }

  MutexLock l(&mu_);
  auto it = vms_.find(name);
  if (it == vms_.end() || Running(it->second.vm.state())) {
    // Deleted or started concurrently.
    kill_child();
    return absl::FailedPreconditionError(
        absl::StrCat("name: vm '", name, "' changed during start"));
  }
  VmEntry& e = it->second;
  e.pid = pid;
  e.pidfd = pidfd;
  e.ctl = sv[0];
  e.stop_requested = e.force = e.exited_reported = false;
  e.cmd_seq = 1;
  e.pid_token = next_token_++;
  e.ctl_token = next_token_++;
  tokens_[e.pid_token] = Token{name, true};
  tokens_[e.ctl_token] = Token{name, false};
  epoll_event pev{};
  pev.events = EPOLLIN;
  pev.data.u64 = e.pid_token;
  epoll_event cev{};
  cev.events = EPOLLIN;
  cev.data.u64 = e.ctl_token;
  if (epoll_ctl(epfd_, EPOLL_CTL_ADD, pidfd, &pev) != 0 ||
      epoll_ctl(epfd_, EPOLL_CTL_ADD, sv[0], &cev) != 0) {
    absl::Status s = Errno("epoll_ctl");
    ReleaseProcess(e);
    kill(pid, SIGKILL);
    waitpid(pid, nullptr, 0);
    return s;
  }
  e.vm.set_pid(pid);
  e.vm.set_start_count(e.vm.start_count() + 1);
  e.vm.set_last_exit_code(0);
  SetState(e, v1::VM_STATE_STARTING, "", /*persist=*/true, "start");
  // Wait for Started (or an early exit).
  const auto deadline =
      std::chrono::steady_clock::now() + options_.start_timeout;
  while (e.vm.state() == v1::VM_STATE_STARTING &&
         std::chrono::steady_clock::now() < deadline) {
    cv_.WaitFor(&mu_, std::chrono::milliseconds(50));
    if (vms_.find(name) == vms_.end()) {
      return absl::AbortedError(
          absl::StrCat("name: vm '", name, "' deleted during start"));
    }
  }
  return e.vm;
}

absl::StatusOr<v1::Vm> VmManager::StopVm(const v1::StopVmRequest& req) {
  MutexLock l(&mu_);
  auto it = vms_.find(req.name());
  if (it == vms_.end()) {
    return absl::NotFoundError(absl::StrCat("name: no vm '", req.name(), "'"));
  }
  VmEntry& e = it->second;
  if (!Running(e.vm.state()) || e.pidfd < 0) {
    return absl::FailedPreconditionError(absl::StrCat(
        "name: vm '", req.name(), "' is ", StateName(e.vm.state())));
  }
  if (absl::Status s = Failpoint("stop.before_signal"); !s.ok()) return s;
  const bool force = req.mode() == v1::STOP_MODE_FORCE;
  e.stop_requested = true;
  const uint64_t starts = e.vm.start_count();
  if (force) {
    e.force = true;
    PidfdSendSignal(e.pidfd, SIGKILL);
  } else {
    vmm::v1::VmmCommand cmd;
    cmd.mutable_stop();
    if (!SendRecord(e.ctl, cmd).ok()) {
      e.force = true;
      PidfdSendSignal(e.pidfd, SIGKILL);
    }
  }
  if (e.vm.state() != v1::VM_STATE_STOPPING) {
    SetState(e, v1::VM_STATE_STOPPING, "", /*persist=*/false, "");
  }
  const auto timeout = std::chrono::milliseconds(
      req.timeout_ms() == 0 ? 5000 : req.timeout_ms());
  auto deadline = std::chrono::steady_clock::now() + timeout;
  bool escalated = force;
  for (;;) {
    it = vms_.find(req.name());
    if (it == vms_.end()) break;
    VmEntry& cur = it->second;
    if (cur.vm.start_count() != starts || !Running(cur.vm.state())) {
      return cur.vm;
    }
    if (std::chrono::steady_clock::now() >= deadline) {
      if (escalated) {
        return absl::DeadlineExceededError(
            absl::StrCat("name: vm '", req.name(), "' did not stop"));
      }
      escalated = true;
      cur.force = true;
      PidfdSendSignal(cur.pidfd, SIGKILL);
      deadline = std::chrono::steady_clock::now() + std::chrono::seconds(5);
    }
    cv_.WaitFor(&mu_, std::chrono::milliseconds(50));
  }
  return absl::NotFoundError(
      absl::StrCat("name: vm '", req.name(), "' deleted while stopping"));
}

absl::StatusOr<uint64_t> VmManager::DeleteVm(const std::string& name) {
  MutexLock l(&mu_);
  auto it = vms_.find(name);
  if (it == vms_.end()) {
    return absl::NotFoundError(absl::StrCat("name: no vm '", name, "'"));
  }
  if (Running(it->second.vm.state())) {
    return absl::FailedPreconditionError(
        absl::StrCat("name: vm '", name, "' is ",
                     StateName(it->second.vm.state()), "; stop it first"));
  }
  if (!it->second.attachments.empty()) {
    return absl::FailedPreconditionError(
        absl::StrCat("name: vm '", name, "' has an attach in progress"));
  }
  if (absl::Status s = Failpoint("delete.before_commit"); !s.ok()) return s;
  absl::StatusOr<uint64_t> op = store_->DeleteVm(name);
  if (!op.ok()) return op.status();
  for (auto& w : it->second.watchers) w->Close();
  vms_.erase(it);
  cv_.NotifyAll();
  return *op;
}

absl::StatusOr<v1::Vm> VmManager::GetVm(const std::string& name) {
  MutexLock l(&mu_);
  auto it = vms_.find(name);
  if (it == vms_.end()) {
    return absl::NotFoundError(absl::StrCat("name: no vm '", name, "'"));
  }
  return WithAttachments(it->second);
}

std::vector<v1::Vm> VmManager::ListVms() {
  MutexLock l(&mu_);
  std::vector<v1::Vm> out;
  for (auto& [name, e] : vms_) out.push_back(WithAttachments(e));
  return out;
}

absl::StatusOr<std::shared_ptr<Watcher>> VmManager::Watch(
    const v1::WatchVmRequest& req) {
  MutexLock l(&mu_);
  auto it = vms_.find(req.name());
  if (it == vms_.end()) {
    return absl::NotFoundError(absl::StrCat("name: no vm '", req.name(), "'"));
  }
  auto w = std::make_shared<Watcher>(req.console());
  if (req.current_state()) {
    v1::VmEvent ev;
    ev.set_vm(req.name());
    ev.set_seq(it->second.seq);
    ev.mutable_state()->set_state(it->second.vm.state());
    ev.mutable_state()->set_reason(it->second.vm.last_exit_reason());
    ev.mutable_state()->set_exit_code(it->second.vm.last_exit_code());
    w->Push(std::move(ev));
  }
  it->second.watchers.push_back(w);
  return w;
}

void VmManager::Unwatch(const std::string& name,
                        const std::shared_ptr<Watcher>& w) {
  MutexLock l(&mu_);
  auto it = vms_.find(name);
  if (it == vms_.end()) return;
  auto& ws = it->second.watchers;
  for (size_t i = 0; i < ws.size(); ++i) {
    if (ws[i] == w) {
      ws.erase(ws.begin() + static_cast<ptrdiff_t>(i));
      break;
    }
  }
}

// ------------------------------------------------------------- images

absl::StatusOr<v1::Image> VmManager::LoadImage(
    const v1::LoadImageRequest& req) {
  if (req.path().empty() == req.builtin().empty()) {
    return absl::InvalidArgumentError(
        "path: exactly one of path and builtin must be set");
  }
  const v1::ImageKind kind = req.kind() == v1::IMAGE_KIND_CRASH
                                 ? v1::IMAGE_KIND_CRASH
                                 : v1::IMAGE_KIND_NORMAL;
  if (kind == v1::IMAGE_KIND_NORMAL && req.crash_mib() != 0) {
    return absl::InvalidArgumentError(
        "crash_mib: only with kind crash (the crash region size)");
  }
  const std::string source =
      req.builtin().empty() ? req.path() : kBuiltinPrefix + req.builtin();
  v1::Vm vm;
  {
    absl::StatusOr<v1::Vm> got = GetVm(req.vm());
    if (!got.ok()) {
      return absl::NotFoundError(absl::StrCat("vm: no vm '", req.vm(), "'"));
    }
    vm = *got;
  }
  v1::Image info;
  absl::StatusOr<std::vector<uint8_t>> bytes =
      ReadImage(source, vm.memory_mib(), &info);
  if (!bytes.ok()) {
    absl::Status s = bytes.status();
    const std::string field = req.builtin().empty() ? "path" : "builtin";
    std::string msg(s.message());
    if (msg.rfind("image: ", 0) == 0) msg = field + ": " + msg.substr(7);
    return absl::Status(s.code(), msg);
  }
  info.set_vm(req.vm());
  info.set_kind(kind);
  info.set_source(source);
  // The crash region (chosen here, kind = crash) must hold the crash image
  // and stay clear of the normal image: check the pair as it will boot.
  const bool crash_kind = kind == v1::IMAGE_KIND_CRASH;
  const uint64_t crash_mib = crash_kind ? req.crash_mib() : vm.crash_mib();
  if (crash_kind || !vm.crash_image().empty()) {
    absl::StatusOr<loader::GpaRange> region =
        CrashRegionFor(vm.memory_mib(), crash_mib);
    if (!region.ok()) return region.status();
    absl::StatusOr<std::vector<uint8_t>> other = ReadImage(
        crash_kind ? vm.image() : vm.crash_image(), vm.memory_mib(), nullptr);
    if (!other.ok()) {
      return absl::FailedPreconditionError(absl::StrCat(
          "vm: '", req.vm(), "' ", crash_kind ? "image" : "crash image",
          " no longer valid: ", other.status().message()));
    }
    // A normal image that collides with the region names its own field.
    const std::string field =
        crash_kind ? "crash_mib" : (req.builtin().empty() ? "path" : "builtin");
    if (absl::Status s = crash_kind
                             ? CheckCrashLayout(*other, *bytes, *region, field)
                             : CheckCrashLayout(*bytes, *other, *region, field);
        !s.ok()) {
      return s;
    }
    if (crash_kind) info.set_crash_mib(crash_mib);
  }

  MutexLock l(&mu_);
  auto it = vms_.find(req.vm());
  if (it == vms_.end()) {
    return absl::NotFoundError(absl::StrCat("vm: no vm '", req.vm(), "'"));
  }
  VmEntry& e = it->second;
  if (Running(e.vm.state())) {
    return absl::FailedPreconditionError(
        absl::StrCat("vm: '", req.vm(), "' is ", StateName(e.vm.state()),
                     "; images load into a stopped VM"));
  }
  v1::Vm updated = e.vm;
  if (e.vm.memory_mib() != vm.memory_mib() ||
      (!crash_kind && (e.vm.crash_image() != vm.crash_image() ||
                       e.vm.crash_mib() != vm.crash_mib())) ||
      (crash_kind && e.vm.image() != vm.image())) {
    return absl::AbortedError(
        absl::StrCat("vm: '", req.vm(), "' changed concurrently; retry"));
  }
  if (kind == v1::IMAGE_KIND_CRASH) {
    updated.set_crash_image(source);
    updated.set_crash_mib(crash_mib);
  } else {
    updated.set_image(source);
  }
  absl::StatusOr<uint64_t> op = store_->PutImage(info, updated);
  if (!op.ok()) return op.status();
  info.set_op_id(*op);
  updated.set_last_op_id(*op);
  e.vm = updated;
  e.images[kind] = info;
  return info;
}

absl::StatusOr<uint64_t> VmManager::UnloadImage(
    const v1::UnloadImageRequest& req) {
  const v1::ImageKind kind = req.kind() == v1::IMAGE_KIND_CRASH
                                 ? v1::IMAGE_KIND_CRASH
                                 : v1::IMAGE_KIND_NORMAL;
  MutexLock l(&mu_);
  auto it = vms_.find(req.vm());
  if (it == vms_.end()) {
    return absl::NotFoundError(absl::StrCat("vm: no vm '", req.vm(), "'"));
  }
  VmEntry& e = it->second;
  if (Running(e.vm.state())) {
    return absl::FailedPreconditionError(
        absl::StrCat("vm: '", req.vm(), "' is ", StateName(e.vm.state())));
  }
  if (kind == v1::IMAGE_KIND_NORMAL) {
    // A VM always has a kernel; only the crash kernel can be unloaded.
    return absl::FailedPreconditionError(
        "kind: the normal image cannot be unloaded (load another instead)");
  }
  if (e.vm.crash_image().empty()) {
    return absl::NotFoundError(
        absl::StrCat("kind: vm '", req.vm(), "' has no crash image"));
  }
  v1::Vm updated = e.vm;
  updated.clear_crash_image();
  updated.clear_crash_mib();
  absl::StatusOr<uint64_t> op = store_->DeleteImage(req.vm(), kind, updated);
  if (!op.ok()) return op.status();
  updated.set_last_op_id(*op);
  e.vm = updated;
  e.images.erase(kind);
  return *op;
}

std::vector<v1::Image> VmManager::ListImages() {
  MutexLock l(&mu_);
  std::vector<v1::Image> out;
  for (auto& [name, e] : vms_) {
    for (auto& [kind, im] : e.images) out.push_back(im);
  }
  return out;
}

}  // namespace hv::hvd
