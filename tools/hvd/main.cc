// hvd: the hv management daemon (DESIGN §2, §7; docs/management.md).
//
//   hvd [--socket=PATH] [--state_dir=DIR] [--listen_tcp=PORT]
//       [--vmm_path=PATH] [--failpoints=SPEC] [--max_vms=N]
//       [--hwsim_config=FILE] [--hwsim_fire=ID,VECTOR,COUNT]...
//
// Serves hv.v1 (proto/hv.proto), grpc.health.v1 and server reflection on a
// Unix socket (mode 0600). TCP is opt-in and loopback only. SIGTERM/SIGINT
// stop every VMM and exit 0.
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <climits>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "grpcpp/ext/proto_server_reflection_plugin.h"
#include "grpcpp/grpcpp.h"
#include "grpcpp/health_check_service_interface.h"
#include "hv/control/failpoint.h"
#include "tools/hvd/host_devices.h"
#include "tools/hvd/service.h"
#include "tools/hvd/store.h"
#include "tools/hvd/vm_manager.h"

namespace {

constexpr char kUsage[] =
    "usage: hvd [--socket=PATH] [--state_dir=DIR] [--listen_tcp=PORT]\n"
    "           [--vmm_path=PATH] [--failpoints=SPEC] [--max_vms=N]\n"
    "           [--hwsim_config=FILE] [--hwsim_fire=ID,VECTOR,COUNT]...\n"
    "\n"
    "  --socket=PATH     Unix socket (mode 0600); default\n"
    "                    $XDG_RUNTIME_DIR/hv/hvd.sock, else /run/hv/hvd.sock\n"
    "  --state_dir=DIR   SQLite state and VMM logs; default\n"
    "                    $XDG_STATE_HOME/hv, ~/.local/state/hv, or\n"
    "                    /var/lib/hv for root\n"
    "  --listen_tcp=PORT also listen on 127.0.0.1:PORT (loopback only)\n"
    "  --vmm_path=PATH   hv-vmm binary; default: next to hvd or the Bazel\n"
    "                    output tree\n"
    "  --failpoints=SPEC fault injection, e.g. create.after_commit=abort\n"
    "                    (same syntax as $HV_FAILPOINTS)\n"
    "  --max_vms=N       VM limit (default 64)\n"
    "  --hwsim_config=FILE host-device inventory (hv-hwsim config format);\n"
    "                    default: 4 PCI functions + 2 platform devices\n"
    "  --hwsim_fire=ID,VECTOR,COUNT fire a simulated device's vector COUNT\n"
    "                    times at startup (host-owned: the host driver\n"
    "                    handles them)\n";

std::string DefaultSocket() {
  if (const char* x = std::getenv("XDG_RUNTIME_DIR"); x && *x) {
    return std::string(x) + "/hv/hvd.sock";
  }
  return "/run/hv/hvd.sock";
}

std::string DefaultStateDir() {
  if (geteuid() == 0) return "/var/lib/hv";
  if (const char* x = std::getenv("XDG_STATE_HOME"); x && *x) {
    return std::string(x) + "/hv";
  }
  if (const char* h = std::getenv("HOME"); h && *h) {
    return std::string(h) + "/.local/state/hv";
  }
  return "/tmp/hv-state";
}

std::string SelfDir() {
  char buf[PATH_MAX];
  const ssize_t n = readlink("/proc/self/exe", buf, sizeof(buf) - 1);
  if (n <= 0) return ".";
  std::string p(buf, static_cast<size_t>(n));
  return p.substr(0, p.rfind('/'));
}

std::string DefaultVmmPath() {
  const std::string dir = SelfDir();
  for (const std::string& c : {dir + "/hv-vmm", dir + "/../../hv/vmm/hv-vmm"}) {
    if (access(c.c_str(), X_OK) == 0) return c;
  }
  return "hv-vmm";
}

bool MkdirP(const std::string& path, mode_t mode) {
  std::string cur;
  size_t pos = 0;
  while (pos != std::string::npos) {
    pos = path.find('/', pos + 1);
    cur = path.substr(0, pos);
    if (cur.empty()) continue;
    if (mkdir(cur.c_str(), mode) != 0 && errno != EEXIST) return false;
  }
  return true;
}

std::string Absolute(const std::string& p) {
  if (!p.empty() && p[0] == '/') return p;
  char buf[PATH_MAX];
  if (getcwd(buf, sizeof(buf)) == nullptr) return p;
  return std::string(buf) + "/" + p;
}

}  // namespace

int main(int argc, char** argv) {
  std::string socket_path = DefaultSocket();
  std::string state_dir = DefaultStateDir();
  std::string vmm_path;
  int tcp_port = -1;
  uint32_t max_vms = 64;
  std::string hwsim_config;
  struct Fire {
    std::string id;
    uint32_t vector = 0;
    uint64_t count = 0;
  };
  std::vector<Fire> fires;
  for (int i = 1; i < argc; ++i) {
    std::string_view a = argv[i];
    auto value = [&](std::string_view name, std::string* v) {
      const std::string prefix = "--" + std::string(name) + "=";
      if (a.substr(0, prefix.size()) != prefix) return false;
      *v = std::string(a.substr(prefix.size()));
      return true;
    };
    std::string v;
    if (a == "--help" || a == "-h") {
      std::fputs(kUsage, stdout);
      return 0;
    } else if (value("socket", &v)) {
      socket_path = v;
    } else if (value("state_dir", &v)) {
      state_dir = v;
    } else if (value("vmm_path", &v)) {
      vmm_path = v;
    } else if (value("listen_tcp", &v)) {
      if (!absl::SimpleAtoi(v, &tcp_port) || tcp_port <= 0 ||
          tcp_port > 65535) {
        std::fprintf(stderr, "hvd: --listen_tcp must be a port number\n");
        return 2;
      }
    } else if (value("max_vms", &v)) {
      if (!absl::SimpleAtoi(v, &max_vms) || max_vms == 0) {
        std::fprintf(stderr, "hvd: --max_vms must be a positive number\n");
        return 2;
      }
    } else if (value("hwsim_config", &v)) {
      hwsim_config = v;
    } else if (value("hwsim_fire", &v)) {
      std::vector<std::string> f = absl::StrSplit(v, ',');
      Fire fire;
      if (f.size() != 3 || !absl::SimpleAtoi(f[1], &fire.vector) ||
          !absl::SimpleAtoi(f[2], &fire.count)) {
        std::fprintf(stderr, "hvd: --hwsim_fire must be ID,VECTOR,COUNT\n");
        return 2;
      }
      fire.id = f[0];
      fires.push_back(fire);
    } else if (value("failpoints", &v)) {
      if (absl::Status s = hv::control::SetFailpoints(v); !s.ok()) {
        std::fprintf(stderr, "hvd: %s\n", s.ToString().c_str());
        return 2;
      }
    } else {
      std::fprintf(stderr, "hvd: unknown argument '%s'\n%s", argv[i], kUsage);
      return 2;
    }
  }
  if (vmm_path.empty()) vmm_path = DefaultVmmPath();
  state_dir = Absolute(state_dir);
  socket_path = Absolute(socket_path);
  vmm_path = Absolute(vmm_path);

  // Block the stop signals in every thread; one thread sigwaits for them.
  sigset_t stop_sigs;
  sigemptyset(&stop_sigs);
  sigaddset(&stop_sigs, SIGTERM);
  sigaddset(&stop_sigs, SIGINT);
  pthread_sigmask(SIG_BLOCK, &stop_sigs, nullptr);
  signal(SIGPIPE, SIG_IGN);

  if (!MkdirP(state_dir, 0700)) {
    std::fprintf(stderr, "hvd: state_dir: cannot create %s: %s\n",
                 state_dir.c_str(), std::strerror(errno));
    return 1;
  }
  const std::string sock_dir = socket_path.substr(0, socket_path.rfind('/'));
  if (!sock_dir.empty() && !MkdirP(sock_dir, 0700)) {
    std::fprintf(stderr, "hvd: socket: cannot create %s: %s\n",
                 sock_dir.c_str(), std::strerror(errno));
    return 1;
  }
  auto store = hv::hvd::Store::Open(state_dir);
  if (!store.ok()) {
    std::fprintf(stderr, "hvd: %s\n", store.status().ToString().c_str());
    return 1;
  }
  // The host-device inventory: the hv-hwsim library runs inside hvd (first
  // step, docs/management.md), with the bus drivers and the vfio core.
  auto spec = hv::hvd::HostDevices::LoadSpec(hwsim_config);
  if (!spec.ok()) {
    std::fprintf(stderr, "hvd: %s\n", spec.status().ToString().c_str());
    return 2;
  }
  auto devices = hv::hvd::HostDevices::Create(*spec);
  if (!devices.ok()) {
    std::fprintf(stderr, "hvd: hwsim: %s\n",
                 devices.status().ToString().c_str());
    return 1;
  }
  for (const Fire& f : fires) {
    hwsim::Device* d = (*devices)->machine()->Find(f.id);
    if (d == nullptr) {
      std::fprintf(stderr, "hvd: --hwsim_fire: no device '%s'\n", f.id.c_str());
      return 2;
    }
    for (uint64_t i = 0; i < f.count; ++i) {
      if (absl::StatusOr<uint64_t> seq = d->Fire(f.vector); !seq.ok()) {
        std::fprintf(stderr, "hvd: --hwsim_fire: %s\n",
                     seq.status().ToString().c_str());
        return 2;
      }
    }
  }
  hv::hvd::VmManagerOptions opts;
  opts.vmm_path = vmm_path;
  opts.state_dir = state_dir;
  opts.max_vms = max_vms;
  opts.devices = devices->get();
  auto manager = hv::hvd::VmManager::Create(opts, std::move(*store));
  if (!manager.ok()) {
    std::fprintf(stderr, "hvd: %s\n", manager.status().ToString().c_str());
    return 1;
  }

  hv::hvd::VmServiceImpl vm_service(manager->get());
  hv::hvd::ImageServiceImpl image_service(manager->get());
  hv::hvd::HostDeviceServiceImpl device_service(devices->get(), manager->get());
  hv::hvd::AttachmentServiceImpl attachment_service(manager->get());
  grpc::EnableDefaultHealthCheckService(true);
  grpc::reflection::InitProtoReflectionServerBuilderPlugin();
  grpc::ServerBuilder builder;
  unlink(socket_path.c_str());  // a stale socket of a killed hvd
  builder.AddListeningPort("unix:" + socket_path,
                           grpc::InsecureServerCredentials());
  if (tcp_port > 0) {
    builder.AddListeningPort(absl::StrCat("127.0.0.1:", tcp_port),
                             grpc::InsecureServerCredentials());
  }
  builder.RegisterService(&vm_service);
  builder.RegisterService(&image_service);
  builder.RegisterService(&device_service);
  builder.RegisterService(&attachment_service);
  const mode_t old_umask = umask(0177);  // the socket is created 0600
  std::unique_ptr<grpc::Server> server = builder.BuildAndStart();
  umask(old_umask);
  if (server == nullptr) {
    std::fprintf(stderr, "hvd: socket: cannot listen on %s\n",
                 socket_path.c_str());
    return 1;
  }
  chmod(socket_path.c_str(), 0600);
  std::fprintf(stderr, "hvd: listening on unix:%s (state %s, vmm %s)\n",
               socket_path.c_str(), state_dir.c_str(), vmm_path.c_str());

  std::thread signals([&server, &stop_sigs] {
    int sig = 0;
    sigwait(&stop_sigs, &sig);
    server->Shutdown(std::chrono::system_clock::now() +
                     std::chrono::milliseconds(300));
  });
  server->Wait();
  manager->reset();  // stops every VMM
  devices->reset();  // stops the vfio dispatcher, then the machine
  signals.join();
  unlink(socket_path.c_str());
  return 0;
}
