// End to end: a real hvd spawning real hv-vmm processes on KVM, driven over
// gRPC (and hvctl), with kill -9 of VMMs and of hvd at failpoints.
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <random>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "hv/base/locks.h"
#include "tests/mgmt/hvd_harness.h"

namespace hv::test {
namespace {

using std::chrono::milliseconds;
using ::testing::HasSubstr;
using ::testing::StartsWith;

#define REQUIRE_KVM()                                                          \
  do {                                                                         \
    if (!HaveKvm())                                                            \
      GTEST_SKIP() << "/dev/kvm is absent on this machine; KVM tests skipped"; \
  } while (0)

grpc::Status Create(HvdProcess& h, const std::string& name,
                    const std::string& image, uint32_t vcpus = 1,
                    uint64_t mem = 64, v1::Vm* out = nullptr) {
  v1::CreateVmRequest req;
  req.set_name(name);
  req.set_image(image);
  req.set_vcpus(vcpus);
  req.set_memory_mib(mem);
  grpc::ClientContext ctx;
  v1::Vm vm;
  grpc::Status s = h.vms()->CreateVm(&ctx, req, &vm);
  if (out) *out = vm;
  return s;
}

grpc::Status Start(HvdProcess& h, const std::string& name,
                   v1::Vm* out = nullptr) {
  v1::VmRef req;
  req.set_name(name);
  grpc::ClientContext ctx;
  v1::Vm vm;
  grpc::Status s = h.vms()->StartVm(&ctx, req, &vm);
  if (out) *out = vm;
  return s;
}

grpc::Status Stop(HvdProcess& h, const std::string& name, bool force,
                  v1::Vm* out = nullptr) {
  v1::StopVmRequest req;
  req.set_name(name);
  req.set_mode(force ? v1::STOP_MODE_FORCE : v1::STOP_MODE_GRACEFUL);
  grpc::ClientContext ctx;
  v1::Vm vm;
  grpc::Status s = h.vms()->StopVm(&ctx, req, &vm);
  if (out) *out = vm;
  return s;
}

grpc::Status Delete(HvdProcess& h, const std::string& name) {
  v1::VmRef req;
  req.set_name(name);
  grpc::ClientContext ctx;
  v1::DeleteVmResponse resp;
  return h.vms()->DeleteVm(&ctx, req, &resp);
}

grpc::Status Get(HvdProcess& h, const std::string& name, v1::Vm* out) {
  v1::VmRef req;
  req.set_name(name);
  grpc::ClientContext ctx;
  return h.vms()->GetVm(&ctx, req, out);
}

// Polls GetVm until `pred` holds (or 10 s pass).
template <typename Pred>
v1::Vm WaitVm(HvdProcess& h, const std::string& name, Pred pred) {
  v1::Vm vm;
  const auto deadline = std::chrono::steady_clock::now() + milliseconds(10000);
  while (std::chrono::steady_clock::now() < deadline) {
    if (Get(h, name, &vm).ok() && pred(vm)) return vm;
    std::this_thread::sleep_for(milliseconds(5));
  }
  return vm;
}

bool NotRunning(const v1::Vm& vm) {
  return vm.state() == v1::VM_STATE_STOPPED ||
         vm.state() == v1::VM_STATE_CRASHED;
}

void WaitNoVmms(const std::string& state_dir) {
  const auto deadline = std::chrono::steady_clock::now() + milliseconds(5000);
  while (!VmmProcesses(state_dir).empty() &&
         std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(milliseconds(10));
  }
}

class MgmtTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = MakeTempDir();
    ASSERT_FALSE(dir_.empty());
  }
  void TearDown() override {
    // Every HvdProcess is gone by now; its VMMs exit on EOF.
    WaitNoVmms(dir_ + "/state");
    std::error_code ec;
    std::filesystem::remove_all(dir_, ec);
  }
  std::unique_ptr<HvdProcess> Launch(std::string failpoints = "",
                                     std::vector<std::string> extra = {}) {
    auto h = std::make_unique<HvdProcess>(dir_, failpoints, extra);
    EXPECT_TRUE(h->Start())
        << "hvd did not come up; see " << dir_ << "/hvd.log";
    return h;
  }
  std::string dir_;
};

TEST_F(MgmtTest, SocketIsPrivateAndHealthServes) {
  auto h = Launch();
  struct stat st;
  ASSERT_EQ(stat(h->socket().c_str(), &st), 0);
  EXPECT_TRUE(S_ISSOCK(st.st_mode));
  EXPECT_EQ(st.st_mode & 0777, 0600u);
  ASSERT_EQ(stat(h->state_dir().c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0077, 0u);
  // SIGTERM: clean exit, socket removed.
  h->Term();
  const int status = h->Wait(milliseconds(5000));
  ASSERT_TRUE(WIFEXITED(status)) << status;
  EXPECT_EQ(WEXITSTATUS(status), 0);
  EXPECT_NE(access(h->socket().c_str(), F_OK), 0);
}

// TCP is opt-in and bound to loopback only.
TEST_F(MgmtTest, LoopbackTcpOnlyWhenAsked) {
  const int port = 20000 + static_cast<int>(getpid() % 20000);
  auto h = Launch("", {"--listen_tcp=" + std::to_string(port)});
  auto ch = grpc::CreateChannel("127.0.0.1:" + std::to_string(port),
                                grpc::InsecureChannelCredentials());
  auto stub = v1::VmService::NewStub(ch);
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + milliseconds(5000));
  v1::ListVmsResponse resp;
  EXPECT_TRUE(stub->ListVms(&ctx, v1::ListVmsRequest(), &resp).ok());
  // Bound to 127.0.0.1, not the wildcard address.
  // IPv4, or gRPC's dual-stack socket bound to the v4-mapped address.
  char want[32], any[32];
  std::snprintf(want, sizeof(want), "0100007F:%04X", port);
  std::snprintf(any, sizeof(any), "00000000:%04X", port);
  bool found = false;
  for (const char* file : {"/proc/net/tcp", "/proc/net/tcp6"}) {
    std::ifstream tcp(file);
    std::string line;
    while (std::getline(tcp, line)) {
      if (line.find(want) != std::string::npos) found = true;
      EXPECT_EQ(line.find(any), std::string::npos) << line;
    }
  }
  EXPECT_TRUE(found);
  // Without the flag nothing listens on TCP.
  h->Term();
  h->Wait(milliseconds(5000));
  h = Launch();
  grpc::ClientContext ctx2;
  ctx2.set_deadline(std::chrono::system_clock::now() + milliseconds(500));
  EXPECT_FALSE(stub->ListVms(&ctx2, v1::ListVmsRequest(), &resp).ok());
}

TEST_F(MgmtTest, LifecycleAndConsoleStreaming) {
  REQUIRE_KVM();
  auto h = Launch();
  v1::Vm vm;
  ASSERT_TRUE(Create(*h, "hello", "builtin:hello", 2, 64, &vm).ok());
  EXPECT_EQ(vm.state(), v1::VM_STATE_STOPPED);
  EXPECT_GT(vm.last_op_id(), 0u);

  for (int round = 1; round <= 2; ++round) {
    // Watch console + state changes from before the start.
    grpc::ClientContext wctx;
    v1::WatchVmRequest wreq;
    wreq.set_name("hello");
    wreq.set_console(true);
    auto reader = h->vms()->WatchVm(&wctx, wreq);
    std::string console;
    std::vector<v1::VmState> states;
    std::thread watch([&] {
      v1::VmEvent ev;
      while (reader->Read(&ev)) {
        EXPECT_EQ(ev.vm(), "hello");
        if (ev.has_console()) console += ev.console();
        if (ev.has_state()) {
          states.push_back(ev.state().state());
          if (ev.state().state() == v1::VM_STATE_STOPPED) break;
        }
      }
      wctx.TryCancel();
    });
    // Let the watch register before starting.
    std::this_thread::sleep_for(milliseconds(100));
    ASSERT_TRUE(Start(*h, "hello", &vm).ok());
    watch.join();
    (void)reader->Finish();
    EXPECT_THAT(console, HasSubstr("hello from vCPU 0 of 2"));
    EXPECT_THAT(console, HasSubstr("hello from vCPU 1"));
    EXPECT_THAT(console, HasSubstr("PASS hello (2 vCPUs)"));
    ASSERT_GE(states.size(), 2u);
    EXPECT_EQ(states.front(), v1::VM_STATE_STARTING);
    EXPECT_EQ(states.back(), v1::VM_STATE_STOPPED);
    vm = WaitVm(*h, "hello", NotRunning);
    EXPECT_EQ(vm.state(), v1::VM_STATE_STOPPED);
    EXPECT_EQ(vm.last_exit_reason(), "poweroff");
    EXPECT_EQ(vm.last_exit_code(), 0);
    EXPECT_EQ(vm.start_count(), static_cast<uint64_t>(round));
    EXPECT_EQ(vm.pid(), 0);
  }
  EXPECT_TRUE(Delete(*h, "hello").ok());
  EXPECT_EQ(Get(*h, "hello", &vm).error_code(), grpc::StatusCode::NOT_FOUND);
}

// Runs `name` to its end under a WatchVm (console + states): returns the
// console text and the states seen.
std::string WatchRun(HvdProcess& h, const std::string& name,
                     std::vector<v1::VmState>* states, v1::StateChange* last) {
  grpc::ClientContext wctx;
  v1::WatchVmRequest wreq;
  wreq.set_name(name);
  wreq.set_console(true);
  auto reader = h.vms()->WatchVm(&wctx, wreq);
  std::string console;
  std::thread watch([&] {
    v1::VmEvent ev;
    while (reader->Read(&ev)) {
      if (ev.has_console()) console += ev.console();
      if (ev.has_state()) {
        states->push_back(ev.state().state());
        *last = ev.state();
        if (ev.state().state() == v1::VM_STATE_STOPPED ||
            ev.state().state() == v1::VM_STATE_CRASHED) {
          break;
        }
      }
    }
    wctx.TryCancel();
  });
  std::this_thread::sleep_for(milliseconds(100));
  EXPECT_TRUE(Start(h, name).ok());
  watch.join();
  (void)reader->Finish();
  return console;
}

// "<prefix>region R 0x…+0x… sum=…" lines, prefix stripped, in order.
std::vector<std::string> RegionLines(const std::string& console,
                                     const std::string& prefix) {
  std::vector<std::string> out;
  std::istringstream in(console);
  for (std::string line; std::getline(in, line);) {
    if (line.rfind(prefix + "region ", 0) == 0) {
      out.push_back(line.substr(prefix.size()));
    }
  }
  return out;
}

// LoadImage(kind=crash, crash_mib) reaches hv-vmm: a panicking guest
// switches to the crash image (kdump, linked at 48 MiB: memory_mib=64,
// crash_mib=16), which finds the panicked kernel's memory intact and powers
// off with its own exit code.
TEST_F(MgmtTest, CrashImageTakesOverAfterPanic) {
  REQUIRE_KVM();
  auto h = Launch();
  v1::Vm vm;
  ASSERT_TRUE(Create(*h, "k", "builtin:panic", 1, 64, &vm).ok());

  // Without a crash image the panic ends the VM as crashed.
  std::vector<v1::VmState> states;
  v1::StateChange last;
  std::string console = WatchRun(*h, "k", &states, &last);
  EXPECT_EQ(last.state(), v1::VM_STATE_CRASHED);
  EXPECT_THAT(console, HasSubstr("panic: calling HV_CALL_PANIC"));
  EXPECT_THAT(console, ::testing::Not(HasSubstr("kdump:")));
  vm = WaitVm(*h, "k", NotRunning);
  EXPECT_EQ(vm.state(), v1::VM_STATE_CRASHED);
  EXPECT_THAT(vm.last_exit_reason(), StartsWith("guest crashed"));
  EXPECT_EQ(vm.last_exit_code(), 126);

  v1::LoadImageRequest req;
  req.set_vm("k");
  req.set_kind(v1::IMAGE_KIND_CRASH);
  req.set_builtin("kdump");
  req.set_crash_mib(16);
  {
    grpc::ClientContext ctx;
    v1::Image im;
    ASSERT_TRUE(h->images()->LoadImage(&ctx, req, &im).ok());
  }
  states.clear();
  console = WatchRun(*h, "k", &states, &last);
  // The switch happened: kdump ran from its link address and walked the
  // core header of the panicked kernel.
  EXPECT_THAT(console, HasSubstr("panic: calling HV_CALL_PANIC"));
  EXPECT_THAT(console, HasSubstr("kdump: running at 0x3000000"));
  EXPECT_THAT(console, HasSubstr("kdump: done"));
  // The panicked kernel's regions, checksummed again by kdump, are intact.
  const std::vector<std::string> before = RegionLines(console, "panic: ");
  const std::vector<std::string> after = RegionLines(console, "kdump: ");
  EXPECT_EQ(before.size(), 3u) << console;
  EXPECT_EQ(before, after) << console;
  ASSERT_FALSE(states.empty());
  EXPECT_EQ(states.back(), v1::VM_STATE_STOPPED);
  EXPECT_EQ(last.exit_code(), 0x4b);
  for (v1::VmState st : states) EXPECT_NE(st, v1::VM_STATE_CRASHED);
  vm = WaitVm(*h, "k", NotRunning);
  EXPECT_EQ(vm.state(), v1::VM_STATE_STOPPED);
  EXPECT_EQ(vm.last_exit_reason(), "poweroff");
  EXPECT_EQ(vm.last_exit_code(), 0x4b);  // KDUMP_EXIT_OK, the crash image's
  EXPECT_EQ(vm.crash_mib(), 16u);
  EXPECT_TRUE(Delete(*h, "k").ok());
}

TEST_F(MgmtTest, GracefulAndForcedStop) {
  REQUIRE_KVM();
  auto h = Launch();
  ASSERT_TRUE(Create(*h, "idle", "builtin:idle", 2).ok());
  v1::Vm vm;
  ASSERT_TRUE(Start(*h, "idle", &vm).ok());
  EXPECT_EQ(vm.state(), v1::VM_STATE_RUNNING);
  const pid_t pid = vm.pid();
  ASSERT_GT(pid, 0);
  EXPECT_EQ(VmmProcesses(h->state_dir()), std::vector<pid_t>{pid});
  ASSERT_TRUE(Stop(*h, "idle", /*force=*/false, &vm).ok());
  EXPECT_EQ(vm.state(), v1::VM_STATE_STOPPED);
  EXPECT_EQ(vm.last_exit_reason(), "stopped");
  EXPECT_TRUE(VmmProcesses(h->state_dir()).empty());

  ASSERT_TRUE(Start(*h, "idle", &vm).ok());
  ASSERT_TRUE(Stop(*h, "idle", /*force=*/true, &vm).ok());
  EXPECT_EQ(vm.state(), v1::VM_STATE_STOPPED);
  EXPECT_EQ(vm.last_exit_reason(), "force-stopped");
  EXPECT_EQ(vm.last_exit_code(), 128 + SIGKILL);
  EXPECT_EQ(vm.start_count(), 2u);
  EXPECT_TRUE(VmmProcesses(h->state_dir()).empty());
}

void ExpectError(const grpc::Status& s, grpc::StatusCode code,
                 const std::string& field) {
  EXPECT_EQ(s.error_code(), code) << s.error_message();
  EXPECT_THAT(s.error_message(), StartsWith(field + ":"));
}

TEST_F(MgmtTest, EveryErrorCodeNamesTheFieldAndLeavesNoState) {
  REQUIRE_KVM();
  auto h = Launch("", {"--max_vms=3"});
  const std::string not_elf = dir_ + "/not-an-elf";
  std::ofstream(not_elf) << "this is not an ELF file";

  ASSERT_TRUE(Create(*h, "a", "builtin:idle").ok());
  ExpectError(Create(*h, "a", "builtin:idle"), grpc::StatusCode::ALREADY_EXISTS,
              "name");
  ExpectError(Create(*h, "", "builtin:idle"),
              grpc::StatusCode::INVALID_ARGUMENT, "name");
  ExpectError(Create(*h, "bad/name", "builtin:idle"),
              grpc::StatusCode::INVALID_ARGUMENT, "name");
  ExpectError(Create(*h, "z", "builtin:idle", 0),
              grpc::StatusCode::INVALID_ARGUMENT, "vcpus");
  ExpectError(Create(*h, "z", "builtin:idle", 100000),
              grpc::StatusCode::INVALID_ARGUMENT, "vcpus");
  ExpectError(Create(*h, "z", "builtin:idle", 1, 1),
              grpc::StatusCode::INVALID_ARGUMENT, "memory_mib");
  ExpectError(Create(*h, "z", "builtin:idle", 1, uint64_t{1} << 40),
              grpc::StatusCode::RESOURCE_EXHAUSTED, "memory_mib");
  ExpectError(Create(*h, "z", ""), grpc::StatusCode::INVALID_ARGUMENT, "image");
  ExpectError(Create(*h, "z", "relative/path.elf"),
              grpc::StatusCode::INVALID_ARGUMENT, "image");
  ExpectError(Create(*h, "z", "/nonexistent/kernel.elf"),
              grpc::StatusCode::NOT_FOUND, "image");
  ExpectError(Create(*h, "z", not_elf), grpc::StatusCode::INVALID_ARGUMENT,
              "image");
  ExpectError(Create(*h, "z", "builtin:no-such-guest"),
              grpc::StatusCode::NOT_FOUND, "image");
  // An image that does not fit the VM's RAM (idle links above 2 MiB?) is
  // rejected by the loader check only if it does; 2 MiB RAM is below the
  // 1 MiB image base + image size for every built-in guest.
  ExpectError(Create(*h, "z", "builtin:idle", 1, 1),
              grpc::StatusCode::INVALID_ARGUMENT, "memory_mib");

  // Unknown VM on every VM verb.
  v1::Vm vm;
  ExpectError(Start(*h, "nope"), grpc::StatusCode::NOT_FOUND, "name");
  ExpectError(Stop(*h, "nope", false), grpc::StatusCode::NOT_FOUND, "name");
  ExpectError(Delete(*h, "nope"), grpc::StatusCode::NOT_FOUND, "name");
  ExpectError(Get(*h, "nope", &vm), grpc::StatusCode::NOT_FOUND, "name");
  {
    grpc::ClientContext ctx;
    v1::WatchVmRequest req;
    req.set_name("nope");
    auto r = h->vms()->WatchVm(&ctx, req);
    v1::VmEvent ev;
    EXPECT_FALSE(r->Read(&ev));
    ExpectError(r->Finish(), grpc::StatusCode::NOT_FOUND, "name");
  }
  // State preconditions.
  ExpectError(Stop(*h, "a", false), grpc::StatusCode::FAILED_PRECONDITION,
              "name");
  ASSERT_TRUE(Start(*h, "a").ok());
  ExpectError(Start(*h, "a"), grpc::StatusCode::FAILED_PRECONDITION, "name");
  ExpectError(Delete(*h, "a"), grpc::StatusCode::FAILED_PRECONDITION, "name");
  // Images.
  {
    v1::LoadImageRequest req;
    req.set_vm("a");
    req.set_builtin("hello");
    grpc::ClientContext ctx;
    v1::Image im;
    ExpectError(h->images()->LoadImage(&ctx, req, &im),
                grpc::StatusCode::FAILED_PRECONDITION, "vm");
  }
  ASSERT_TRUE(Stop(*h, "a", true).ok());
  auto load = [&](const std::string& vmname, const std::string& path,
                  const std::string& builtin, v1::ImageKind kind,
                  v1::Image* out, uint64_t crash_mib = 0) {
    v1::LoadImageRequest req;
    req.set_vm(vmname);
    req.set_path(path);
    req.set_builtin(builtin);
    req.set_kind(kind);
    req.set_crash_mib(crash_mib);
    grpc::ClientContext ctx;
    return h->images()->LoadImage(&ctx, req, out);
  };
  v1::Image im;
  ExpectError(load("nope", "", "hello", v1::IMAGE_KIND_NORMAL, &im),
              grpc::StatusCode::NOT_FOUND, "vm");
  ExpectError(load("a", "/x", "hello", v1::IMAGE_KIND_NORMAL, &im),
              grpc::StatusCode::INVALID_ARGUMENT, "path");
  ExpectError(load("a", "", "", v1::IMAGE_KIND_NORMAL, &im),
              grpc::StatusCode::INVALID_ARGUMENT, "path");
  ExpectError(load("a", not_elf, "", v1::IMAGE_KIND_NORMAL, &im),
              grpc::StatusCode::INVALID_ARGUMENT, "path");
  ExpectError(load("a", "rel.elf", "", v1::IMAGE_KIND_CRASH, &im),
              grpc::StatusCode::INVALID_ARGUMENT, "path");
  ExpectError(load("a", "", "nonesuch", v1::IMAGE_KIND_CRASH, &im),
              grpc::StatusCode::NOT_FOUND, "builtin");
  // The crash region (a 64 MiB VM; kdump is linked at 48 MiB).
  ExpectError(load("a", "", "kdump", v1::IMAGE_KIND_CRASH, &im),
              grpc::StatusCode::INVALID_ARGUMENT, "crash_mib");  // missing
  ExpectError(load("a", "", "kdump", v1::IMAGE_KIND_CRASH, &im, 33),
              grpc::StatusCode::INVALID_ARGUMENT, "crash_mib");  // > RAM/2
  ExpectError(load("a", "", "kdump", v1::IMAGE_KIND_CRASH, &im, 8),
              grpc::StatusCode::INVALID_ARGUMENT, "crash_mib");  // [56, 64)
  ExpectError(load("a", "", "hello", v1::IMAGE_KIND_CRASH, &im, 16),
              grpc::StatusCode::INVALID_ARGUMENT, "crash_mib");  // linked low
  ExpectError(load("a", "", "hello", v1::IMAGE_KIND_NORMAL, &im, 16),
              grpc::StatusCode::INVALID_ARGUMENT, "crash_mib");  // not crash
  ASSERT_TRUE(Get(*h, "a", &vm).ok());
  EXPECT_TRUE(vm.crash_image().empty());
  EXPECT_EQ(vm.crash_mib(), 0u);
  ASSERT_TRUE(load("a", "", "kdump", v1::IMAGE_KIND_CRASH, &im, 16).ok());
  EXPECT_EQ(im.source(), "builtin:kdump");
  EXPECT_EQ(im.crash_mib(), 16u);
  EXPECT_GT(im.segments(), 0u);
  ASSERT_TRUE(Get(*h, "a", &vm).ok());
  EXPECT_EQ(vm.crash_image(), "builtin:kdump");
  EXPECT_EQ(vm.crash_mib(), 16u);
  EXPECT_EQ(vm.last_op_id(), im.op_id());
  // A normal image may not reach into the crash region.
  ExpectError(load("a", "", "kdump", v1::IMAGE_KIND_NORMAL, &im),
              grpc::StatusCode::INVALID_ARGUMENT, "builtin");
  {
    v1::UnloadImageRequest req;
    req.set_vm("a");
    req.set_kind(v1::IMAGE_KIND_CRASH);
    grpc::ClientContext c1;
    v1::UnloadImageResponse resp;
    EXPECT_TRUE(h->images()->UnloadImage(&c1, req, &resp).ok());
    grpc::ClientContext c2;
    ExpectError(h->images()->UnloadImage(&c2, req, &resp),
                grpc::StatusCode::NOT_FOUND, "kind");
  }
  // Attachments: unknown VM.
  {
    v1::AttachDeviceRequest req;
    req.set_vm("nope");
    req.set_device("0000:00:01.0");
    grpc::ClientContext ctx;
    v1::Attachment at;
    ExpectError(h->attachments()->AttachDevice(&ctx, req, &at),
                grpc::StatusCode::NOT_FOUND, "vm");
  }
  // The VM limit.
  ASSERT_TRUE(Create(*h, "b", "builtin:idle").ok());
  ASSERT_TRUE(Create(*h, "c", "builtin:idle").ok());
  ExpectError(Create(*h, "d", "builtin:idle"),
              grpc::StatusCode::RESOURCE_EXHAUSTED, "name");

  // No partial state: exactly the three good VMs, all stopped.
  grpc::ClientContext ctx;
  v1::ListVmsResponse list;
  ASSERT_TRUE(h->vms()->ListVms(&ctx, v1::ListVmsRequest(), &list).ok());
  ASSERT_EQ(list.vms_size(), 3);
  EXPECT_EQ(list.vms(0).name(), "a");
  EXPECT_EQ(list.vms(1).name(), "b");
  EXPECT_EQ(list.vms(2).name(), "c");
  for (const v1::Vm& v : list.vms()) {
    EXPECT_EQ(v.state(), v1::VM_STATE_STOPPED);
  }
  EXPECT_TRUE(VmmProcesses(h->state_dir()).empty());
}

// kill -9 of a VMM: hvd notices at once (pidfd), records `crashed`, frees
// every fd it held for the VM, the other VM is untouched, and the VM starts
// again. Random kill instants; 20 rounds in the default suite
// (HV_KILL_ROUNDS overrides it for the soak target).
TEST_F(MgmtTest, KillNineOfAVmm) {
  REQUIRE_KVM();
  int rounds = 20;
  if (const char* r = std::getenv("HV_KILL_ROUNDS")) rounds = std::atoi(r);
  auto h = Launch();
  ASSERT_TRUE(Create(*h, "A", "builtin:idle", 2).ok());
  ASSERT_TRUE(Create(*h, "B", "builtin:idle", 1).ok());
  v1::Vm b;
  ASSERT_TRUE(Start(*h, "B", &b).ok());
  ASSERT_EQ(b.state(), v1::VM_STATE_RUNNING);
  const int baseline_fds = h->OpenFds();
  ASSERT_GT(baseline_fds, 0);
  std::mt19937 rng(1234);
  for (int i = 0; i < rounds; ++i) {
    v1::Vm a;
    ASSERT_TRUE(Start(*h, "A", &a).ok()) << "round " << i;
    ASSERT_EQ(a.state(), v1::VM_STATE_RUNNING);
    ASSERT_GT(a.pid(), 0);
    EXPECT_EQ(h->OpenFds(), baseline_fds + 2);  // control socket + pidfd
    std::this_thread::sleep_for(std::chrono::microseconds(rng() % 20000));
    const auto t0 = std::chrono::steady_clock::now();
    ASSERT_EQ(kill(a.pid(), SIGKILL), 0);
    a = WaitVm(*h, "A", NotRunning);
    const auto detect = std::chrono::steady_clock::now() - t0;
    EXPECT_EQ(a.state(), v1::VM_STATE_CRASHED) << "round " << i;
    EXPECT_EQ(a.last_exit_reason(), "vmm killed by signal 9");
    EXPECT_EQ(a.pid(), 0);
    EXPECT_LT(detect, milliseconds(2000));
    EXPECT_EQ(h->OpenFds(), baseline_fds) << "round " << i;
    ASSERT_TRUE(Get(*h, "B", &b).ok());
    EXPECT_EQ(b.state(), v1::VM_STATE_RUNNING);
    EXPECT_EQ(VmmProcesses(h->state_dir()), std::vector<pid_t>{b.pid()});
  }
  // Crashed is what SQLite holds, too: it survives an hvd restart.
  h->Term();
  ASSERT_TRUE(WIFEXITED(h->Wait(milliseconds(10000))));
  WaitNoVmms(h->state_dir());
  EXPECT_TRUE(VmmProcesses(h->state_dir()).empty());
  h = Launch();
  v1::Vm a;
  ASSERT_TRUE(Get(*h, "A", &a).ok());
  EXPECT_EQ(a.state(), v1::VM_STATE_CRASHED);
  EXPECT_EQ(a.start_count(), static_cast<uint64_t>(rounds));
  ASSERT_TRUE(Start(*h, "A", &a).ok());
  EXPECT_EQ(a.state(), v1::VM_STATE_RUNNING);
}

// kill -9 of hvd exactly at each failpoint on the create path: after a
// restart the operation is fully applied or fully absent.
TEST_F(MgmtTest, KillNineOfHvdMidCreate) {
  REQUIRE_KVM();
  struct Case {
    const char* failpoint;
    bool present_after;
  };
  const Case cases[] = {{"create.before_commit", false},
                        {"sqlite.commit", false},
                        {"create.after_commit", true}};
  int n = 0;
  for (const Case& c : cases) {
    const std::string name = "vm" + std::to_string(n++);
    {
      auto h = Launch(std::string(c.failpoint) + "=abort");
      grpc::Status s = Create(*h, name, "builtin:idle");
      EXPECT_EQ(s.error_code(), grpc::StatusCode::UNAVAILABLE)
          << c.failpoint << ": " << s.error_message();
      const int status = h->Wait(milliseconds(5000));
      ASSERT_TRUE(WIFSIGNALED(status)) << c.failpoint;
      EXPECT_EQ(WTERMSIG(status), SIGKILL);
    }
    auto h = Launch();
    v1::Vm vm;
    grpc::Status s = Get(*h, name, &vm);
    if (c.present_after) {
      ASSERT_TRUE(s.ok()) << c.failpoint;
      EXPECT_EQ(vm.state(), v1::VM_STATE_STOPPED);
      EXPECT_GT(vm.last_op_id(), 0u);
      ASSERT_TRUE(Start(*h, name, &vm).ok());
      EXPECT_EQ(vm.state(), v1::VM_STATE_RUNNING);
      ASSERT_TRUE(Stop(*h, name, false).ok());
    } else {
      EXPECT_EQ(s.error_code(), grpc::StatusCode::NOT_FOUND) << c.failpoint;
      // The name is free: creating it now works.
      EXPECT_TRUE(Create(*h, name, "builtin:idle").ok()) << c.failpoint;
    }
    h->Term();
    h->Wait(milliseconds(5000));
  }
}

// kill -9 of hvd inside DeleteVm and LoadImage transactions: after a
// restart the VM and its image are exactly as before the call.
TEST_F(MgmtTest, KillNineOfHvdMidDeleteAndLoadImage) {
  REQUIRE_KVM();
  {
    auto h = Launch();
    ASSERT_TRUE(Create(*h, "keep", "builtin:idle").ok());
    h->Term();
    h->Wait(milliseconds(5000));
  }
  for (const char* fp : {"delete.before_commit", "sqlite.commit"}) {
    {
      auto h = Launch(std::string(fp) + "=abort");
      EXPECT_EQ(Delete(*h, "keep").error_code(), grpc::StatusCode::UNAVAILABLE)
          << fp;
      ASSERT_TRUE(WIFSIGNALED(h->Wait(milliseconds(5000)))) << fp;
    }
    auto h = Launch();
    v1::Vm vm;
    ASSERT_TRUE(Get(*h, "keep", &vm).ok()) << fp;
    EXPECT_EQ(vm.image(), "builtin:idle");
    h->Term();
    h->Wait(milliseconds(5000));
  }
  {
    auto h = Launch("sqlite.commit=abort");
    v1::LoadImageRequest req;
    req.set_vm("keep");
    req.set_builtin("hello");
    grpc::ClientContext ctx;
    v1::Image im;
    EXPECT_EQ(h->images()->LoadImage(&ctx, req, &im).error_code(),
              grpc::StatusCode::UNAVAILABLE);
    ASSERT_TRUE(WIFSIGNALED(h->Wait(milliseconds(5000))));
  }
  auto h = Launch();
  v1::Vm vm;
  ASSERT_TRUE(Get(*h, "keep", &vm).ok());
  EXPECT_EQ(vm.image(), "builtin:idle");  // the load is fully absent
  grpc::ClientContext ctx;
  v1::ListImagesResponse images;
  ASSERT_TRUE(
      h->images()->ListImages(&ctx, v1::ListImagesRequest(), &images).ok());
  EXPECT_EQ(images.images_size(), 0);
  EXPECT_TRUE(Delete(*h, "keep").ok());
}

// kill -9 of hvd mid-start (after the VMM was spawned) and with VMs
// running: the VMMs exit on their own (EOF on the control socket), a
// restarted hvd shows them stopped, and they start again.
TEST_F(MgmtTest, KillNineOfHvdMidStartAndWhileRunning) {
  REQUIRE_KVM();
  {
    auto h = Launch("start.after_spawn=abort");
    ASSERT_TRUE(Create(*h, "s", "builtin:idle").ok());
    EXPECT_EQ(Start(*h, "s").error_code(), grpc::StatusCode::UNAVAILABLE);
    ASSERT_TRUE(WIFSIGNALED(h->Wait(milliseconds(5000))));
  }
  WaitNoVmms(dir_ + "/state");
  EXPECT_TRUE(VmmProcesses(dir_ + "/state").empty()) << "orphan hv-vmm";
  {
    auto h = Launch();
    v1::Vm vm;
    ASSERT_TRUE(Get(*h, "s", &vm).ok());
    EXPECT_EQ(vm.state(), v1::VM_STATE_STOPPED);
    ASSERT_TRUE(Create(*h, "t", "builtin:idle").ok());
    ASSERT_TRUE(Start(*h, "s").ok());
    ASSERT_TRUE(Start(*h, "t").ok());
    EXPECT_EQ(VmmProcesses(h->state_dir()).size(), 2u);
    h->Kill9();
    ASSERT_TRUE(WIFSIGNALED(h->Wait(milliseconds(5000))));
  }
  WaitNoVmms(dir_ + "/state");
  EXPECT_TRUE(VmmProcesses(dir_ + "/state").empty()) << "orphan hv-vmm";
  auto h = Launch();
  for (const char* name : {"s", "t"}) {
    v1::Vm vm;
    ASSERT_TRUE(Get(*h, name, &vm).ok());
    EXPECT_EQ(vm.state(), v1::VM_STATE_STOPPED) << name;
    EXPECT_EQ(vm.last_exit_reason(), "hvd restarted") << name;
    EXPECT_EQ(vm.pid(), 0);
    ASSERT_TRUE(Start(*h, name, &vm).ok()) << name;
    EXPECT_EQ(vm.state(), v1::VM_STATE_RUNNING);
  }
}

// Failpoints that return errors leave no partial state; a VMM-side failpoint
// (inherited through the environment) makes the VM `crashed` with the
// reason, and the VM can start again afterwards.
TEST_F(MgmtTest, ErrorFailpointsLeaveNoPartialState) {
  REQUIRE_KVM();
  auto h = Launch(
      "create.before_commit=error*1,sqlite.commit=error*1,"
      "start.before_spawn=error*1,start.after_spawn=error*1,"
      "vmm.boot=error*1");
  EXPECT_EQ(Create(*h, "x", "builtin:idle").error_code(),
            grpc::StatusCode::INTERNAL);
  EXPECT_EQ(Create(*h, "x", "builtin:idle").error_code(),
            grpc::StatusCode::INTERNAL);  // sqlite.commit
  v1::Vm vm;
  EXPECT_EQ(Get(*h, "x", &vm).error_code(), grpc::StatusCode::NOT_FOUND);
  ASSERT_TRUE(Create(*h, "x", "builtin:idle").ok());
  EXPECT_EQ(Start(*h, "x").error_code(), grpc::StatusCode::INTERNAL);
  EXPECT_EQ(Start(*h, "x").error_code(), grpc::StatusCode::INTERNAL);
  ASSERT_TRUE(Get(*h, "x", &vm).ok());
  EXPECT_EQ(vm.state(), v1::VM_STATE_STOPPED);
  EXPECT_EQ(vm.start_count(), 0u);
  WaitNoVmms(h->state_dir());
  EXPECT_TRUE(VmmProcesses(h->state_dir()).empty());
  // vmm.boot=error: every spawned VMM inherits the spec and fails its first
  // boot (the count is per process), so the VM ends up crashed.
  ASSERT_TRUE(Start(*h, "x", &vm).ok());
  vm = WaitVm(*h, "x", NotRunning);
  EXPECT_EQ(vm.state(), v1::VM_STATE_CRASHED);
  EXPECT_THAT(vm.last_exit_reason(), HasSubstr("failpoint vmm.boot"));
}

// kill -9 of a VMM exactly while it processes a command (the vmm.command
// failpoint, inherited through the environment): a graceful stop returns the
// VM as crashed, hvd's fds return to baseline, and the VM starts again.
TEST_F(MgmtTest, VmmKilledWhileProcessingStop) {
  REQUIRE_KVM();
  auto h = Launch("vmm.command=abort");
  ASSERT_TRUE(Create(*h, "v", "builtin:idle").ok());
  const int baseline_fds = h->OpenFds();
  for (int i = 0; i < 3; ++i) {
    v1::Vm vm;
    ASSERT_TRUE(Start(*h, "v", &vm).ok());
    ASSERT_EQ(vm.state(), v1::VM_STATE_RUNNING);
    ASSERT_TRUE(Stop(*h, "v", /*force=*/false, &vm).ok());
    EXPECT_EQ(vm.state(), v1::VM_STATE_CRASHED);
    EXPECT_EQ(vm.last_exit_reason(), "vmm killed by signal 9");
    EXPECT_EQ(h->OpenFds(), baseline_fds);
    EXPECT_TRUE(VmmProcesses(h->state_dir()).empty());
  }
}

// hvctl: tables, --json, exit codes from the gRPC status, --help per verb.
// hvd owns the host-device inventory (in-process hv-hwsim, bus drivers, vfio
// core): ListHostDevices reports every device host-owned with per-IRQ state,
// and the host driver's counters move when the hardware fires.
TEST_F(MgmtTest, HostDeviceInventory) {
  auto h =
      Launch("", {"--hwsim_fire=0000:02:00.0,3,4", "--hwsim_fire=plat0,0,1"});
  auto devs = v1::HostDeviceService::NewStub(h->channel());
  v1::ListHostDevicesResponse resp;
  const auto deadline = std::chrono::steady_clock::now() + milliseconds(5000);
  auto handled = [&](int dev, int irq) -> uint64_t {
    return resp.devices_size() == 6 ? resp.devices(dev).irqs(irq).host_handled()
                                    : 0;
  };
  do {
    resp.Clear();
    grpc::ClientContext ctx;
    ASSERT_TRUE(
        devs->ListHostDevices(&ctx, v1::ListHostDevicesRequest(), &resp).ok());
    if (handled(1, 3) == 4 && handled(4, 0) == 1) break;
    std::this_thread::sleep_for(milliseconds(10));
  } while (std::chrono::steady_clock::now() < deadline);
  ASSERT_EQ(resp.devices_size(), 6);
  const v1::HostDevice& pci = resp.devices(1);
  EXPECT_EQ(pci.id(), "0000:02:00.0");
  EXPECT_EQ(pci.kind(), "pci");
  EXPECT_EQ(pci.requester_id(), 0x200u);
  ASSERT_EQ(pci.irqs_size(), 8);
  EXPECT_EQ(pci.irqs(3).count(), 4u);
  EXPECT_EQ(pci.irqs(3).host_handled(), 4u);
  EXPECT_EQ(pci.irqs(2).count(), 0u);
  EXPECT_EQ(resp.devices(4).id(), "plat0");
  EXPECT_TRUE(resp.devices(4).irqs(0).level());
  EXPECT_EQ(resp.devices(4).irqs(0).host_handled(), 1u);
  EXPECT_FALSE(resp.devices(4).irqs(0).masked());  // acked and unmasked
  for (const v1::HostDevice& d : resp.devices()) {
    EXPECT_EQ(d.owner(), "host") << d.id();
    for (const v1::IrqState& q : d.irqs()) {
      EXPECT_EQ(q.mode(), v1::VECTOR_MODE_HOST) << d.id();
    }
  }

  // Attach requests are validated: unknown device, stopped VM.
  ASSERT_TRUE(Create(*h, "a", "builtin:idle").ok());
  v1::AttachDeviceRequest req;
  req.set_vm("a");
  req.set_device("0000:09:00.0");
  grpc::ClientContext c1;
  v1::Attachment at;
  ExpectError(h->attachments()->AttachDevice(&c1, req, &at),
              grpc::StatusCode::NOT_FOUND, "device");
  req.set_device("0000:02:00.0");
  grpc::ClientContext c2;
  ExpectError(h->attachments()->AttachDevice(&c2, req, &at),
              grpc::StatusCode::FAILED_PRECONDITION, "vm");
  v1::DetachDeviceRequest dreq;
  dreq.set_vm("a");
  dreq.set_device("nope");
  grpc::ClientContext c3;
  ExpectError(h->attachments()->DetachDevice(&c3, dreq, &at),
              grpc::StatusCode::NOT_FOUND, "device");
  dreq.set_device("0000:02:00.0");
  grpc::ClientContext c4;
  ExpectError(h->attachments()->DetachDevice(&c4, dreq, &at),
              grpc::StatusCode::NOT_FOUND, "device");
}

TEST_F(MgmtTest, HvctlVerbsAndExitCodes) {
  REQUIRE_KVM();
  auto h = Launch();
  const std::string hvctl =
      Runfile("tools/hvctl/hvctl") + " --socket=" + h->socket();
  auto run = [&](const std::string& args, std::string* out) {
    FILE* p = popen((hvctl + " " + args + " 2>&1").c_str(), "r");
    std::string s;
    char buf[4096];
    size_t n;
    while ((n = fread(buf, 1, sizeof(buf), p)) > 0) s.append(buf, n);
    const int status = pclose(p);
    if (out) *out = s;
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  };
  std::string out;
  EXPECT_EQ(run("vm create web --image=builtin:hello --vcpus=2", &out), 0)
      << out;
  EXPECT_THAT(out, HasSubstr("web"));
  EXPECT_EQ(run("vm create web", &out), 6) << out;  // ALREADY_EXISTS
  EXPECT_THAT(out, HasSubstr("name:"));
  EXPECT_EQ(run("vm create x --vcpus=0", &out), 3) << out;
  EXPECT_EQ(run("vm show nope", &out), 5) << out;
  EXPECT_EQ(run("vm frobnicate", &out), 64) << out;
  EXPECT_EQ(run("vm create", &out), 64) << out;
  EXPECT_EQ(run("vm create web --bogus=1", &out), 64) << out;
  EXPECT_EQ(run("--json vm ls", &out), 0) << out;
  EXPECT_THAT(out, HasSubstr("\"name\": \"web\""));
  EXPECT_THAT(out, HasSubstr("\"state\": \"VM_STATE_STOPPED\""));
  // `vm console` streams until the guest powers off.
  std::string console_out;
  int console_rc = -1;
  std::thread console(
      [&] { console_rc = run("vm console web", &console_out); });
  std::this_thread::sleep_for(milliseconds(300));
  EXPECT_EQ(run("vm start web", &out), 0) << out;
  console.join();
  EXPECT_EQ(console_rc, 0);
  EXPECT_THAT(console_out, HasSubstr("PASS hello (2 vCPUs)"));
  EXPECT_EQ(run("vm ls", &out), 0) << out;
  EXPECT_THAT(out, HasSubstr("NAME"));
  for (const char* verb :
       {"vm create", "vm start", "vm stop", "vm rm", "vm ls", "vm show",
        "vm console", "image load", "image unload", "image ls", "dev ls",
        "dev attach", "dev detach", "attach ls"}) {
    EXPECT_EQ(run(std::string(verb) + " --help", &out), 0) << verb;
    EXPECT_THAT(out, HasSubstr("usage: hvctl " + std::string(verb)));
  }
  EXPECT_EQ(run("dev ls", &out), 0) << out;
  EXPECT_THAT(out, HasSubstr("0000:01:00.0"));
  EXPECT_THAT(out, HasSubstr("host"));
  EXPECT_EQ(run("--json dev ls", &out), 0) << out;
  EXPECT_THAT(out, HasSubstr("VECTOR_MODE_HOST"));
  EXPECT_EQ(run("attach ls", &out), 0) << out;
  EXPECT_EQ(run("vm create sleeper --image=builtin:idle", &out), 0) << out;
  EXPECT_EQ(run("vm start sleeper", &out), 0) << out;
  EXPECT_THAT(out, HasSubstr("running"));
  EXPECT_EQ(run("image load sleeper --builtin=hello", &out), 9) << out;
  EXPECT_EQ(run("vm rm sleeper", &out), 9) << out;  // FAILED_PRECONDITION
  EXPECT_EQ(run("vm stop sleeper --force", &out), 0) << out;
  EXPECT_THAT(out, HasSubstr("force-stopped"));
  EXPECT_EQ(run("image load sleeper --builtin=kdump --crash", &out), 3)
      << out;  // INVALID_ARGUMENT: no --crash_mib
  EXPECT_THAT(out, HasSubstr("crash_mib"));
  EXPECT_EQ(
      run("image load sleeper --builtin=kdump --crash --crash_mib=16", &out), 0)
      << out;
  EXPECT_THAT(out, HasSubstr("crash region: 16 MiB"));
  EXPECT_EQ(run("vm show sleeper", &out), 0) << out;
  EXPECT_THAT(out, HasSubstr("crash_mib:   16"));
  EXPECT_EQ(run("--json image ls", &out), 0) << out;
  EXPECT_THAT(out, HasSubstr("builtin:kdump"));
  EXPECT_EQ(run("vm rm sleeper", &out), 0) << out;
}

}  // namespace
}  // namespace hv::test
