#include "hv/control/vmm_control.h"

#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdio>
#include <cstring>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "absl/strings/numbers.h"
#include "hv/arch/kvm/kvm_vm.h"
#include "hv/base/locks.h"
#include "hv/control/failpoint.h"
#include "hv/control/vmm_devices.h"
#include "hv/control/wire.h"
#include "hv/vmm/vmm.h"
#include "proto/vmm_control.pb.h"

namespace hv::control {
namespace {

namespace pb = ::hv::vmm::v1;

constexpr int kExitUsage = 2;
constexpr int kExitSetup = 125;
constexpr int kExitCrash = 126;
constexpr size_t kConsoleChunk = 512;

// Serializes every send on the channel (console from vCPU threads, events
// from the main thread). Leaf lock.
class Channel {
 public:
  explicit Channel(int fd) : fd_(fd) {}
  void Send(pb::VmmEvent& ev) {
    MutexLock l(&mu_);
    ev.set_seq(++seq_);
    // A failed send means hvd is gone; the reader sees EOF and stops us.
    (void)SendRecord(fd_, ev);
  }
  // Console bytes are batched per line (or kConsoleChunk bytes).
  void ConsoleByte(char c) {
    MutexLock l(&mu_);
    console_.push_back(c);
    if (c == '\n' || console_.size() >= kConsoleChunk) FlushLocked();
  }
  void Flush() {
    MutexLock l(&mu_);
    FlushLocked();
  }

 private:
  void FlushLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    if (console_.empty()) return;
    pb::VmmEvent ev;
    ev.set_seq(++seq_);
    ev.set_console(console_);
    console_.clear();
    (void)SendRecord(fd_, ev);
  }
  const int fd_;
  Mutex mu_;
  uint64_t seq_ ABSL_GUARDED_BY(mu_) = 0;
  std::string console_ ABSL_GUARDED_BY(mu_);
};

void SendExited(Channel& ch, pb::Exited::Kind kind, int code,
                const std::string& message) {
  ch.Flush();
  pb::VmmEvent ev;
  ev.mutable_exited()->set_kind(kind);
  ev.mutable_exited()->set_exit_code(code);
  ev.mutable_exited()->set_message(message);
  ch.Send(ev);
}

bool ReadAll(int fd, std::vector<uint8_t>* out) {
  struct stat st;
  if (fstat(fd, &st) != 0 || st.st_size <= 0 ||
      st.st_size > (int64_t{1} << 30)) {
    return false;
  }
  out->resize(static_cast<size_t>(st.st_size));
  size_t off = 0;
  while (off < out->size()) {
    const ssize_t r = pread(fd, out->data() + off, out->size() - off,
                            static_cast<off_t>(off));
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) return false;
    off += static_cast<size_t>(r);
  }
  return true;
}

}  // namespace

int RunVmmControl(int argc, char** argv) {
  signal(SIGPIPE, SIG_IGN);
  int fd = -1;
  for (int i = 1; i < argc; ++i) {
    std::string_view a = argv[i];
    if (a.rfind(kControlFdFlag, 0) == 0) {
      a.remove_prefix(std::strlen(kControlFdFlag));
      if (!absl::SimpleAtoi(absl::string_view(a.data(), a.size()), &fd) ||
          fd < 0) {
        std::fprintf(stderr, "hv-vmm: bad --control_fd\n");
        return kExitUsage;
      }
    }
  }
  if (fd < 0) return kExitUsage;
  Channel ch(fd);

  pb::VmmCommand cmd;
  std::vector<int> fds;
  auto r = RecvRecord(fd, &cmd, &fds);
  // The image fd, plus the crash image fd when crash_mib != 0 (Boot).
  const size_t want_fds = cmd.has_boot() && cmd.boot().crash_mib() != 0 ? 2 : 1;
  if (!r.ok() || *r != RecvResult::kRecord || !cmd.has_boot() ||
      fds.size() != want_fds) {
    for (int f : fds) close(f);
    std::fprintf(stderr, "hv-vmm: expected a Boot command with %zu fd(s)\n",
                 want_fds);
    SendExited(ch, pb::Exited::KIND_SETUP_ERROR, kExitUsage,
               "expected a Boot command with one image fd (two with "
               "crash_mib)");
    return kExitUsage;
  }
  if (absl::Status s = Failpoint("vmm.boot"); !s.ok()) {
    for (int f : fds) close(f);
    SendExited(ch, pb::Exited::KIND_SETUP_ERROR, kExitSetup, s.ToString());
    return kExitSetup;
  }
  VmmConfig config;
  const bool read_ok = ReadAll(fds[0], &config.image);
  // As hv-vmm --crash_image/--crash_mib (hv/vmm/main.cc): the crash image
  // and its region size go to the Vmm's kexec config together.
  const bool crash_ok = want_fds == 1 || ReadAll(fds[1], &config.crash_image);
  for (int f : fds) close(f);
  if (!read_ok || !crash_ok) {
    SendExited(ch, pb::Exited::KIND_SETUP_ERROR, kExitSetup,
               read_ok ? "cannot read the crash image fd"
                       : "cannot read the image fd");
    return kExitSetup;
  }
  if (want_fds == 2) config.crash_mib = cmd.boot().crash_mib();
  config.vcpus = cmd.boot().vcpus();
  config.memory_mib = cmd.boot().memory_mib();
  config.guest_arg = cmd.boot().guest_arg();
  config.console = [&ch](char c) { ch.ConsoleByte(c); };
  // Room for the hot-plug controller's SPI (HV_HOTPLUG_SPI = 90).
  config.num_spis = 96;

  auto vm = arch::KvmVm::Create(arch::VmConfig{});
  if (!vm.ok()) {
    SendExited(ch, pb::Exited::KIND_SETUP_ERROR, kExitSetup,
               vm.status().ToString());
    return kExitSetup;
  }
  auto vmm = Vmm::Create(std::move(config), std::move(*vm));
  if (!vmm.ok()) {
    SendExited(ch, pb::Exited::KIND_SETUP_ERROR, kExitSetup,
               vmm.status().ToString());
    return kExitSetup;
  }
  // The hot-plug controller and attached devices (docs/management.md).
  auto devices =
      VmmDevices::Create(vmm->get(), [&ch](pb::VmmEvent& ev) { ch.Send(ev); });
  if (!devices.ok()) {
    SendExited(ch, pb::Exited::KIND_SETUP_ERROR, kExitSetup,
               devices.status().ToString());
    return kExitSetup;
  }
  if (absl::Status s = (*vmm)->Start(); !s.ok()) {
    SendExited(ch, pb::Exited::KIND_SETUP_ERROR, kExitSetup, s.ToString());
    return kExitSetup;
  }
  {
    pb::VmmEvent ev;
    ev.mutable_started()->set_pid(getpid());
    ch.Send(ev);
  }
  Vmm* v = vmm->get();
  VmmDevices* devs = devices->get();
  std::thread reader([fd, v, devs, &ch] {
    for (;;) {
      pb::VmmCommand c;
      std::vector<int> cfds;
      auto rr = RecvRecord(fd, &c, &cfds);
      if (!rr.ok() &&
          rr.status().code() == absl::StatusCode::kInvalidArgument) {
        continue;  // a malformed record was consumed (fds closed): ignore it
      }
      if (!rr.ok()) break;                    // socket error: like EOF
      if (*rr != RecvResult::kRecord) break;  // EOF: hvd is gone
      (void)Failpoint("vmm.command");
      if (c.has_stop()) {
        for (int f : cfds) close(f);
        break;
      }
      if (c.has_attach()) {
        absl::Status s = Failpoint("vmm.attach");
        if (s.ok()) {
          s = devs->Attach(c.attach(), std::move(cfds));
        } else {
          for (int f : cfds) close(f);
        }
        pb::VmmEvent ev;
        ev.mutable_attach_result()->set_command_seq(c.seq());
        ev.mutable_attach_result()->set_ok(s.ok());
        ev.mutable_attach_result()->set_message(std::string(s.message()));
        ch.Send(ev);
        continue;
      }
      for (int f : cfds) close(f);
      if (c.has_detach()) {
        if (absl::Status s = devs->Detach(c.detach()); !s.ok()) {
          std::fprintf(stderr, "hv-vmm: detach: %s\n", s.ToString().c_str());
        }
      }
    }
    v->Stop();
  });
  const VmmExit exit = v->Wait();
  int code = kExitSetup;
  switch (exit.kind) {
    case VmmExit::Kind::kPowerOff:
      code = exit.exit_code & 0xff;
      SendExited(ch, pb::Exited::KIND_POWER_OFF, exit.exit_code, "");
      break;
    case VmmExit::Kind::kCrash:
      code = kExitCrash;
      SendExited(ch, pb::Exited::KIND_CRASH, kExitCrash, exit.message);
      break;
    case VmmExit::Kind::kStopped:
      code = 0;
      SendExited(ch, pb::Exited::KIND_STOPPED, 0, "");
      break;
  }
  shutdown(fd, SHUT_RDWR);  // wakes the reader
  reader.join();
  return code;
}

}  // namespace hv::control
