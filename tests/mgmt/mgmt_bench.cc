// (1) CreateVm + StartVm → first console byte through hvd (p50 over 20),
// against a baseline measured in the same run: spawning `hv-vmm
// --image=builtin:hello` directly and reading its first stdout byte.
//
// (2) 32 tiny VMs started and stopped concurrently through the API, and
// hvd's RSS per running VM.
//
// (3) Hot-attach of a device to a running `hotplug-counter` VM: the
// AttachDevice RPC, attach → the guest has seen an MSI on every vector
// (console), and a forced DetachDevice, p50 over 20, against a GetVm round
// trip measured in the same run.
//
//   bazel run -c opt //tests/mgmt:mgmt_bench
#include <fcntl.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "benchmark/benchmark.h"
#include "tests/mgmt/hvd_harness.h"

extern char** environ;

namespace {

using Clock = std::chrono::steady_clock;
std::vector<double> g_direct_ms, g_api_ms;

double Ms(Clock::duration d) {
  return std::chrono::duration<double, std::milli>(d).count();
}

void BM_DirectVmmFirstByte(benchmark::State& state) {
  const std::string vmm = hv::test::Runfile("hv/vmm/hv-vmm");
  for (auto _ : state) {
    int pfd[2];
    if (pipe2(pfd, O_CLOEXEC) != 0) {
      state.SkipWithError("pipe");
      return;
    }
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_adddup2(&fa, pfd[1], 1);
    std::string a0 = vmm, a1 = "--image=builtin:hello";
    char* argv[] = {a0.data(), a1.data(), nullptr};
    const auto t0 = Clock::now();
    pid_t pid;
    posix_spawn(&pid, vmm.c_str(), &fa, nullptr, argv, environ);
    posix_spawn_file_actions_destroy(&fa);
    close(pfd[1]);
    char c;
    const bool got = read(pfd[0], &c, 1) == 1;
    const auto t1 = Clock::now();
    char buf[4096];
    while (read(pfd[0], buf, sizeof(buf)) > 0) {
    }
    close(pfd[0]);
    waitpid(pid, nullptr, 0);
    if (!got) {
      state.SkipWithError("no console byte");
      return;
    }
    state.SetIterationTime(Ms(t1 - t0) / 1000.0);
    g_direct_ms.push_back(Ms(t1 - t0));
  }
}

void BM_ApiCreateStartFirstByte(benchmark::State& state) {
  const std::string dir = hv::test::MakeTempDir();
  hv::test::HvdProcess hvd(dir);
  if (!hvd.Start()) {
    state.SkipWithError("hvd did not start");
    return;
  }
  auto stub = hvd.vms();
  int i = 0;
  for (auto _ : state) {
    const std::string name = "bench" + std::to_string(i++);
    const auto t0 = Clock::now();
    grpc::ClientContext cctx;
    hv::v1::CreateVmRequest creq;
    creq.set_name(name);
    creq.set_vcpus(1);
    creq.set_memory_mib(64);
    creq.set_image("builtin:hello");
    hv::v1::Vm vm;
    if (!stub->CreateVm(&cctx, creq, &vm).ok()) {
      state.SkipWithError("CreateVm");
      return;
    }
    grpc::ClientContext wctx;
    hv::v1::WatchVmRequest wreq;
    wreq.set_name(name);
    wreq.set_console(true);
    wreq.set_current_state(true);
    auto reader = stub->WatchVm(&wctx, wreq);
    hv::v1::VmEvent ev;
    reader->Read(&ev);  // the current state: the watch is registered
    grpc::ClientContext sctx;
    hv::v1::VmRef ref;
    ref.set_name(name);
    if (!stub->StartVm(&sctx, ref, &vm).ok()) {
      state.SkipWithError("StartVm");
      return;
    }
    bool got = false;
    while (reader->Read(&ev)) {
      if (ev.has_console()) {
        got = true;
        break;
      }
    }
    const auto t1 = Clock::now();
    wctx.TryCancel();
    (void)reader->Finish();
    if (!got) {
      state.SkipWithError("no console byte");
      return;
    }
    state.SetIterationTime(Ms(t1 - t0) / 1000.0);
    g_api_ms.push_back(Ms(t1 - t0));
    // Clean up outside the measured span (hello powers off by itself).
    for (int k = 0; k < 200; ++k) {
      grpc::ClientContext gctx;
      if (stub->GetVm(&gctx, ref, &vm).ok() &&
          vm.state() == hv::v1::VM_STATE_STOPPED) {
        break;
      }
      usleep(5000);
    }
    grpc::ClientContext dctx;
    hv::v1::DeleteVmResponse dresp;
    (void)stub->DeleteVm(&dctx, ref, &dresp);
  }
  hvd.Term();
  hvd.Wait(std::chrono::seconds(5));
  std::string cmd = "rm -rf " + dir;
  (void)!system(cmd.c_str());
}

long RssKib(pid_t pid) {
  FILE* f =
      std::fopen(("/proc/" + std::to_string(pid) + "/status").c_str(), "r");
  if (f == nullptr) return -1;
  char line[256];
  long kib = -1;
  while (std::fgets(line, sizeof(line), f) != nullptr) {
    if (std::sscanf(line, "VmRSS: %ld kB", &kib) == 1) break;
  }
  std::fclose(f);
  return kib;
}

double g_one_start_ms = 0, g_32_start_ms = 0, g_32_stop_ms = 0,
       g_kib_per_vm = 0;

// 32 tiny VMs (idle guest, 1 vCPU, 16 MiB) started and stopped through the
// API from 32 client threads at once; baseline: one VM started alone.
void BM_Api32ConcurrentStartStop(benchmark::State& state) {
  constexpr int kVms = 32;
  const std::string dir = hv::test::MakeTempDir();
  hv::test::HvdProcess hvd(dir);
  if (!hvd.Start()) {
    state.SkipWithError("hvd did not start");
    return;
  }
  auto stub = hvd.vms();
  auto call = [&](const char* what, auto fn) {
    grpc::ClientContext ctx;
    grpc::Status s = fn(&ctx);
    if (!s.ok())
      std::fprintf(stderr, "%s: %s\n", what, s.error_message().c_str());
    return s.ok();
  };
  for (int i = 0; i < kVms; ++i) {
    hv::v1::CreateVmRequest req;
    req.set_name("tiny" + std::to_string(i));
    req.set_vcpus(1);
    req.set_memory_mib(16);
    req.set_image("builtin:idle");
    hv::v1::Vm vm;
    call("create",
         [&](grpc::ClientContext* c) { return stub->CreateVm(c, req, &vm); });
  }
  auto start = [&](int i) {
    hv::v1::VmRef ref;
    ref.set_name("tiny" + std::to_string(i));
    hv::v1::Vm vm;
    return call("start", [&](grpc::ClientContext* c) {
      return stub->StartVm(c, ref, &vm);
    });
  };
  auto stop = [&](int i) {
    hv::v1::StopVmRequest req;
    req.set_name("tiny" + std::to_string(i));
    hv::v1::Vm vm;
    return call("stop", [&](grpc::ClientContext* c) {
      return stub->StopVm(c, req, &vm);
    });
  };
  for (auto _ : state) {
    auto t0 = Clock::now();
    start(0);
    g_one_start_ms = Ms(Clock::now() - t0);
    stop(0);
    const long rss0 = RssKib(hvd.pid());
    std::vector<std::thread> ts;
    t0 = Clock::now();
    for (int i = 0; i < kVms; ++i) ts.emplace_back([&, i] { start(i); });
    for (auto& t : ts) t.join();
    g_32_start_ms = Ms(Clock::now() - t0);
    const long rss1 = RssKib(hvd.pid());
    g_kib_per_vm = static_cast<double>(rss1 - rss0) / kVms;
    ts.clear();
    t0 = Clock::now();
    for (int i = 0; i < kVms; ++i) ts.emplace_back([&, i] { stop(i); });
    for (auto& t : ts) t.join();
    g_32_stop_ms = Ms(Clock::now() - t0);
    state.SetIterationTime((g_32_start_ms + g_32_stop_ms) / 1000.0);
  }
  state.counters["start32_ms"] = g_32_start_ms;
  state.counters["stop32_ms"] = g_32_stop_ms;
  state.counters["hvd_kib_per_vm"] = g_kib_per_vm;
  hvd.Term();
  hvd.Wait(std::chrono::seconds(10));
  std::string cmd = "rm -rf " + dir;
  (void)!system(cmd.c_str());
}

std::vector<double> g_getvm_ms, g_attach_ms, g_first_msi_ms, g_detach_ms;

void BM_AttachFirstMsiDetach(benchmark::State& state) {
  const std::string dir = hv::test::MakeTempDir();
  hv::test::HvdProcess hvd(dir);
  if (!hvd.Start()) {
    state.SkipWithError("hvd did not start");
    return;
  }
  auto stub = hvd.vms();
  auto att = hvd.attachments();
  {
    grpc::ClientContext c;
    hv::v1::CreateVmRequest req;
    req.set_name("hp");
    req.set_vcpus(1);
    req.set_memory_mib(64);
    req.set_image("builtin:hotplug-counter");
    hv::v1::Vm vm;
    grpc::ClientContext c2;
    hv::v1::VmRef ref;
    ref.set_name("hp");
    if (!stub->CreateVm(&c, req, &vm).ok() ||
        !stub->StartVm(&c2, ref, &vm).ok()) {
      state.SkipWithError("vm");
      return;
    }
  }
  std::mutex mu;
  std::string console;
  grpc::ClientContext wctx;
  hv::v1::WatchVmRequest wreq;
  wreq.set_name("hp");
  wreq.set_console(true);
  auto reader = stub->WatchVm(&wctx, wreq);
  std::thread watch([&] {
    hv::v1::VmEvent ev;
    while (reader->Read(&ev)) {
      if (ev.has_console()) {
        std::lock_guard<std::mutex> l(mu);
        console += ev.console();
      }
    }
  });
  auto occurrences = [&](const std::string& needle) {
    std::lock_guard<std::mutex> l(mu);
    size_t n = 0;
    for (size_t p = console.find(needle); p != std::string::npos;
         p = console.find(needle, p + 1)) {
      ++n;
    }
    return n;
  };
  const std::string last_vector = "irq: 0000:02:00.0 vector 7 count 1\n";
  usleep(300000);  // the guest's driver comes up
  for (auto _ : state) {
    hv::v1::VmRef ref;
    ref.set_name("hp");
    hv::v1::Vm vm;
    auto t0 = Clock::now();
    grpc::ClientContext gctx;
    (void)stub->GetVm(&gctx, ref, &vm);
    g_getvm_ms.push_back(Ms(Clock::now() - t0));

    const size_t before = occurrences(last_vector);
    hv::v1::AttachDeviceRequest areq;
    areq.set_vm("hp");
    areq.set_device("0000:02:00.0");
    hv::v1::Attachment at;
    t0 = Clock::now();
    grpc::ClientContext actx;
    if (!att->AttachDevice(&actx, areq, &at).ok()) {
      state.SkipWithError("AttachDevice");
      break;
    }
    const auto t1 = Clock::now();
    while (occurrences(last_vector) == before) {
      if (Clock::now() - t0 > std::chrono::seconds(10)) {
        state.SkipWithError("no MSI in the guest");
        break;
      }
      usleep(100);
    }
    const auto t2 = Clock::now();
    hv::v1::DetachDeviceRequest dreq;
    dreq.set_vm("hp");
    dreq.set_device("0000:02:00.0");
    dreq.set_force(true);
    grpc::ClientContext dctx;
    if (!att->DetachDevice(&dctx, dreq, &at).ok()) {
      state.SkipWithError("DetachDevice");
      break;
    }
    const auto t3 = Clock::now();
    state.SetIterationTime(Ms(t3 - t0) / 1000.0);
    g_attach_ms.push_back(Ms(t1 - t0));
    g_first_msi_ms.push_back(Ms(t2 - t0));
    g_detach_ms.push_back(Ms(t3 - t2));
  }
  wctx.TryCancel();
  watch.join();
  (void)reader->Finish();
  hvd.Term();
  hvd.Wait(std::chrono::seconds(10));
  std::string cmd = "rm -rf " + dir;
  (void)!system(cmd.c_str());
}

BENCHMARK(BM_DirectVmmFirstByte)
    ->Iterations(20)
    ->UseManualTime()
    ->Unit(benchmark::kMillisecond);
BENCHMARK(BM_ApiCreateStartFirstByte)
    ->Iterations(20)
    ->UseManualTime()
    ->Unit(benchmark::kMillisecond);

BENCHMARK(BM_Api32ConcurrentStartStop)
    ->Iterations(1)
    ->UseManualTime()
    ->Unit(benchmark::kMillisecond);
BENCHMARK(BM_AttachFirstMsiDetach)
    ->Iterations(20)
    ->UseManualTime()
    ->Unit(benchmark::kMillisecond);

double P50(std::vector<double> v) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

}  // namespace

int main(int argc, char** argv) {
  benchmark::Initialize(&argc, argv);
  benchmark::RunSpecifiedBenchmarks();
  const double d = P50(g_direct_ms), a = P50(g_api_ms);
  std::printf(
      "\nfirst console byte p50 over %zu/%zu runs: direct hv-vmm %.2f ms, "
      "hvd CreateVm+StartVm %.2f ms, ratio api/direct %.2f\n",
      g_direct_ms.size(), g_api_ms.size(), d, a, d > 0 ? a / d : 0.0);
  std::printf(
      "32 tiny VMs through the API: start all %.1f ms, stop all %.1f ms; one "
      "VM alone %.1f ms (ratio 32-concurrent/one %.2f); hvd RSS %.1f KiB per "
      "running VM\n",
      g_32_start_ms, g_32_stop_ms, g_one_start_ms,
      g_one_start_ms > 0 ? g_32_start_ms / g_one_start_ms : 0.0, g_kib_per_vm);
  const double g = P50(g_getvm_ms);
  std::printf(
      "hot-attach p50 over %zu: AttachDevice RPC %.2f ms, attach -> MSI seen "
      "on every vector in the guest %.2f ms, forced DetachDevice %.2f ms; "
      "baseline GetVm %.3f ms (ratios %.1f / %.1f / %.1f)\n",
      g_attach_ms.size(), P50(g_attach_ms), P50(g_first_msi_ms),
      P50(g_detach_ms), g, g > 0 ? P50(g_attach_ms) / g : 0.0,
      g > 0 ? P50(g_first_msi_ms) / g : 0.0,
      g > 0 ? P50(g_detach_ms) / g : 0.0);
  benchmark::Shutdown();
  return 0;
}
