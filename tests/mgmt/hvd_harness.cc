#include "tests/mgmt/hvd_harness.h"

#include <dirent.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <cstring>
#include <fstream>
#include <iterator>
#include <thread>

#include "tests/mgmt/health.grpc.pb.h"

extern char** environ;

namespace hv::test {

std::string Runfile(const std::string& path) {
  const char* srcdir = std::getenv("TEST_SRCDIR");
  const char* ws = std::getenv("TEST_WORKSPACE");
  if (srcdir != nullptr) {
    return std::string(srcdir) + "/" + (ws ? ws : "hv") + "/" + path;
  }
  // `bazel run` / a built binary: <binary>.runfiles/hv/...
  char exe[4096];
  const ssize_t n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
  if (n > 0)
    return std::string(exe, static_cast<size_t>(n)) + ".runfiles/hv/" + path;
  return path;
}

// Skips happen only where /dev/kvm is absent; a present but unusable
// /dev/kvm lets the test run and fail loudly (BUILD-NOTES).
bool HaveKvm() { return access("/dev/kvm", F_OK) == 0; }

std::string MakeTempDir() {
  // A short path: a Unix socket path must fit in sun_path (108 bytes), and
  // TEST_TMPDIR is deep inside Bazel's output tree.
  std::string tmpl = "/tmp/hvd-test.XXXXXX";
  if (mkdtemp(tmpl.data()) != nullptr) return tmpl;
  const char* t = std::getenv("TEST_TMPDIR");
  tmpl = std::string(t ? t : ".") + "/hvd.XXXXXX";
  if (mkdtemp(tmpl.data()) == nullptr) return "";
  return tmpl;
}

HvdProcess::HvdProcess(std::string dir, std::string env_failpoints,
                       std::vector<std::string> extra_args)
    : dir_(std::move(dir)),
      failpoints_(std::move(env_failpoints)),
      extra_(std::move(extra_args)) {}

HvdProcess::~HvdProcess() {
  if (pid_ > 0) {
    Kill9();
    Wait(std::chrono::seconds(5));
  }
  if (pidfd_ >= 0) close(pidfd_);
}

bool HvdProcess::Start() {
  std::vector<std::string> args = {
      Runfile("tools/hvd/hvd"), "--socket=" + socket(),
      "--state_dir=" + state_dir(), "--vmm_path=" + Runfile("hv/vmm/hv-vmm")};
  for (auto& e : extra_) args.push_back(e);
  std::vector<char*> argv;
  for (auto& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);
  std::vector<std::string> env_s;
  for (char** e = environ; *e; ++e) {
    if (std::string(*e).rfind("HV_FAILPOINTS=", 0) != 0) env_s.push_back(*e);
  }
  if (!failpoints_.empty()) env_s.push_back("HV_FAILPOINTS=" + failpoints_);
  std::vector<char*> envp;
  for (auto& e : env_s) envp.push_back(e.data());
  envp.push_back(nullptr);
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  const std::string log = dir_ + "/hvd.log";
  posix_spawn_file_actions_addopen(&fa, 2, log.c_str(),
                                   O_WRONLY | O_CREAT | O_APPEND, 0600);
  const int rc =
      posix_spawn(&pid_, argv[0], &fa, nullptr, argv.data(), envp.data());
  posix_spawn_file_actions_destroy(&fa);
  if (rc != 0) return false;
  if (pidfd_ >= 0) close(pidfd_);
  pidfd_ = static_cast<int>(syscall(SYS_pidfd_open, pid_, 0));
  // Wait for the socket to accept connections first, so gRPC's reconnect
  // backoff never kicks in; keep that backoff short anyway.
  const auto sock_deadline =
      std::chrono::steady_clock::now() + std::chrono::seconds(20);
  while (std::chrono::steady_clock::now() < sock_deadline) {
    const int fd = socket_fd();
    if (fd >= 0) {
      close(fd);
      break;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  grpc::ChannelArguments ca;
  ca.SetInt(GRPC_ARG_INITIAL_RECONNECT_BACKOFF_MS, 50);
  ca.SetInt(GRPC_ARG_MIN_RECONNECT_BACKOFF_MS, 50);
  ca.SetInt(GRPC_ARG_MAX_RECONNECT_BACKOFF_MS, 200);
  channel_ = grpc::CreateCustomChannel("unix:" + socket(),
                                       grpc::InsecureChannelCredentials(), ca);
  auto health = grpc::health::v1::Health::NewStub(channel_);
  const auto deadline =
      std::chrono::steady_clock::now() + std::chrono::seconds(20);
  while (std::chrono::steady_clock::now() < deadline) {
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() +
                     std::chrono::milliseconds(500));
    grpc::health::v1::HealthCheckRequest req;
    grpc::health::v1::HealthCheckResponse resp;
    if (health->Check(&ctx, req, &resp).ok() &&
        resp.status() == grpc::health::v1::HealthCheckResponse::SERVING) {
      return true;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  return false;
}

int HvdProcess::socket_fd() const {
  const int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  const std::string path = socket();
  if (fd < 0 || path.size() >= sizeof(addr.sun_path)) {
    if (fd >= 0) close(fd);
    return -1;
  }
  std::memcpy(addr.sun_path, path.c_str(), path.size() + 1);
  if (connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) {
    close(fd);
    return -1;
  }
  return fd;
}

void HvdProcess::Kill9() {
  if (pid_ > 0) kill(pid_, SIGKILL);
}
void HvdProcess::Term() {
  if (pid_ > 0) kill(pid_, SIGTERM);
}

int HvdProcess::Wait(std::chrono::milliseconds timeout) {
  if (pid_ <= 0) return -1;
  pollfd p{pidfd_, POLLIN, 0};
  if (poll(&p, 1, static_cast<int>(timeout.count())) <= 0) return -1;
  int status = 0;
  if (waitpid(pid_, &status, 0) != pid_) return -1;
  pid_ = 0;
  return status;
}

int HvdProcess::OpenFds() const {
  DIR* d = opendir(("/proc/" + std::to_string(pid_) + "/fd").c_str());
  if (d == nullptr) return -1;
  int n = 0;
  while (dirent* de = readdir(d)) {
    if (de->d_name[0] != '.') ++n;
  }
  closedir(d);
  return n;
}

std::vector<pid_t> VmmProcesses(const std::string& state_dir) {
  std::vector<pid_t> out;
  DIR* d = opendir("/proc");
  if (d == nullptr) return out;
  const std::string mark = "--state_dir=" + state_dir;
  while (dirent* de = readdir(d)) {
    const pid_t pid = static_cast<pid_t>(std::atoi(de->d_name));
    if (pid <= 0) continue;
    std::ifstream f("/proc/" + std::to_string(pid) + "/cmdline");
    std::string cmd((std::istreambuf_iterator<char>(f)),
                    std::istreambuf_iterator<char>());
    bool vmm = false, ours = false;
    for (size_t pos = 0; pos < cmd.size();) {
      const std::string arg = cmd.c_str() + pos;
      pos += arg.size() + 1;
      vmm |= arg.rfind("--control_fd=", 0) == 0;
      ours |= arg == mark;
    }
    // Zombies (already dead, not yet reaped) have an empty cmdline.
    if (vmm && ours) out.push_back(pid);
  }
  closedir(d);
  return out;
}

}  // namespace hv::test
