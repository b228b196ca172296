// crash_kexec and guest kexec end to end on KVM (docs/kexec.md): the panic
// guest program with the kdump crash image, through the Vmm API and the
// hv-vmm binary.
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <map>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "gtest/gtest.h"
#include "hv/arch/kvm/kvm_vm.h"
#include "hv/base/locks.h"
#include "hv/guest/builtin_images.h"
#include "hv/guest/programs/kdump_abi.h"
#include "hv/loader/elf_image.h"
#include "hv/vmm/vmm.h"
#include "tests/util/run_vmm.h"

namespace hv {
namespace {

using loader::CrashState;
using namespace std::chrono_literals;

constexpr uint64_t kMemoryMib = 64;
constexpr uint64_t kCrashMib = 16;  // region [48, 64) MiB: kdump's home

class Console {
 public:
  void Put(char c) {
    MutexLock lock(&mu_);
    text_.push_back(c);
  }
  std::string text() const {
    MutexLock lock(&mu_);
    return text_;
  }

 private:
  mutable Mutex mu_;
  std::string text_ ABSL_GUARDED_BY(mu_);
};

std::vector<uint8_t> Builtin(const std::string& name) {
  const guest::BuiltinImage* img = guest::FindBuiltinImage(name);
  EXPECT_NE(img, nullptr) << name;
  if (img == nullptr) return {};
  return std::vector<uint8_t>(img->data, img->data + img->size);
}

// "<prefix>: region N 0x..+0x.. sum=HEX" lines → {N: HEX}.
std::map<int, std::string> RegionSums(const std::string& console,
                                      const std::string& prefix) {
  std::map<int, std::string> sums;
  for (absl::string_view line : absl::StrSplit(console, '\n')) {
    if (!absl::ConsumePrefix(&line, prefix + ": region ")) continue;
    const size_t sp = line.find(' ');
    const size_t sum = line.find("sum=");
    int n = -1;
    if (sp == absl::string_view::npos || sum == absl::string_view::npos ||
        !absl::SimpleAtoi(line.substr(0, sp), &n)) {
      continue;
    }
    sums[n] = std::string(line.substr(sum + 4));
  }
  return sums;
}

std::string HostRegionSum(GuestMemory& mem, int r) {
  std::vector<uint64_t> buf(kdump_regions[r].size / 8);
  EXPECT_TRUE(
      mem.Read(kdump_regions[r].base, buf.data(), kdump_regions[r].size).ok());
  char hex[17];
  snprintf(hex, sizeof(hex), "%016lx",
           static_cast<unsigned long>(
               kdump_checksum(buf.data(), kdump_regions[r].size)));
  return hex;
}

class KexecKvmTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!arch::KvmAvailable()) {
      GTEST_SKIP() << "/dev/kvm is absent on this machine; KVM tests skipped";
    }
  }

  std::unique_ptr<Vmm> Make(const std::string& image, uint32_t vcpus,
                            bool crash_image, uint64_t guest_arg = 0) {
    auto vm = arch::KvmVm::Create(arch::VmConfig{});
    EXPECT_TRUE(vm.ok()) << vm.status();
    if (!vm.ok()) return nullptr;
    VmmConfig c;
    c.image = Builtin(image);
    c.vcpus = vcpus;
    c.memory_mib = kMemoryMib;
    c.guest_arg = guest_arg;
    if (crash_image) {
      c.crash_image = Builtin("kdump");
      c.crash_mib = kCrashMib;
    }
    c.console = [this](char ch) { console_.Put(ch); };
    auto vmm = Vmm::Create(std::move(c), std::move(*vm));
    EXPECT_TRUE(vmm.ok()) << vmm.status();
    return vmm.ok() ? std::move(*vmm) : nullptr;
  }

  VmmExit Run(Vmm& vmm) {
    EXPECT_TRUE(vmm.Start().ok());
    auto exit = vmm.WaitFor(60s);
    EXPECT_TRUE(exit.has_value()) << "guest hung; console:\n"
                                  << console_.text();
    if (!exit) {
      vmm.Stop();
      return vmm.Wait();
    }
    return *exit;
  }

  // The first kernel's and kdump's region checksums are all present and
  // equal.
  void ExpectKdumpSumsMatch() {
    const std::string text = console_.text();
    const auto before = RegionSums(text, "panic");
    const auto after = RegionSums(text, "kdump");
    EXPECT_EQ(before.size(), static_cast<size_t>(KDUMP_NUM_REGIONS)) << text;
    EXPECT_EQ(after, before) << text;
  }

  Console console_;
};

// Snapshots RAM below the crash region at the moment every other vCPU is
// stopped (the old memory as the crash image will see it).
struct Snapshot {
  std::vector<uint8_t> bytes;
  void Arm(Vmm& vmm) {
    Vmm* v = &vmm;
    vmm.kexec().SetStoppedHook([this, v] {
      bytes.resize(v->crash_region().base);
      EXPECT_TRUE(v->memory().Read(0, bytes.data(), bytes.size()).ok());
    });
  }
  bool Unchanged(Vmm& vmm) const {
    std::vector<uint8_t> now(bytes.size());
    EXPECT_TRUE(vmm.memory().Read(0, now.data(), now.size()).ok());
    int shown = 0;
    for (size_t i = 0; i < now.size() && i < bytes.size() && shown < 10; ++i) {
      if (now[i] != bytes[i]) {
        ADD_FAILURE() << "byte 0x" << std::hex << i << ": 0x" << int(bytes[i])
                      << " -> 0x" << int(now[i]);
        ++shown;
      }
    }
    return !bytes.empty() && now == bytes;
  }
};

TEST_F(KexecKvmTest, PanicSwitchesToKdumpWhichSeesTheOldMemory) {
  auto vmm = Make("panic", 2, /*crash_image=*/true);
  ASSERT_NE(vmm, nullptr);
  EXPECT_EQ(vmm->crash_region().base, (kMemoryMib - kCrashMib) << 20);
  Snapshot snap;
  snap.Arm(*vmm);
  const VmmExit exit = Run(*vmm);
  const std::string text = console_.text();
  ASSERT_EQ(exit.kind, VmmExit::Kind::kPowerOff) << exit.message << text;
  EXPECT_EQ(exit.exit_code, KDUMP_EXIT_OK) << text;
  EXPECT_EQ(vmm->crash_state(), CrashState::kCrashImageRunning);
  EXPECT_EQ(vmm->crash_switches(), 1u);
  EXPECT_NE(text.find("switching to the crash image at 0x3000000"),
            std::string::npos)
      << text;
  EXPECT_NE(text.find("kdump: 1 PT_LOAD, 2 vCPU notes"), std::string::npos)
      << text;
  ExpectKdumpSumsMatch();
  // Nothing outside the crash region changed between the stop and the end
  // of the crash image's run (the switch and kdump wrote only the region).
  EXPECT_TRUE(snap.Unchanged(*vmm));
  for (int r = 0; r < KDUMP_NUM_REGIONS; ++r) {
    EXPECT_EQ(HostRegionSum(vmm->memory(), r), RegionSums(text, "panic")[r]);
  }
}

TEST_F(KexecKvmTest, SimultaneousPanicsSwitchOnce) {
  auto vmm = Make("panic", 4, /*crash_image=*/true, /*guest_arg=*/2);
  ASSERT_NE(vmm, nullptr);
  const VmmExit exit = Run(*vmm);
  const std::string text = console_.text();
  ASSERT_EQ(exit.kind, VmmExit::Kind::kPowerOff) << exit.message << text;
  EXPECT_EQ(exit.exit_code, KDUMP_EXIT_OK) << text;
  EXPECT_EQ(vmm->crash_switches(), 1u);
  size_t switches = 0;
  for (size_t at = 0; (at = text.find("switching to the crash image", at)) !=
                      std::string::npos;
       ++at) {
    ++switches;
  }
  EXPECT_EQ(switches, 1u) << text;
  EXPECT_NE(text.find("4 vCPU notes"), std::string::npos) << text;
  ExpectKdumpSumsMatch();
}

TEST_F(KexecKvmTest, TripleFaultSwitchesToKdump) {
  auto vmm = Make("panic", 1, /*crash_image=*/true, /*guest_arg=*/1);
  ASSERT_NE(vmm, nullptr);
  Snapshot snap;
  snap.Arm(*vmm);
  const VmmExit exit = Run(*vmm);
  const std::string text = console_.text();
  ASSERT_EQ(exit.kind, VmmExit::Kind::kPowerOff) << exit.message << text;
  EXPECT_EQ(exit.exit_code, KDUMP_EXIT_OK) << text;
  EXPECT_NE(text.find("hv: triple fault"), std::string::npos) << text;
  ExpectKdumpSumsMatch();
  EXPECT_TRUE(snap.Unchanged(*vmm));
}

TEST_F(KexecKvmTest, WithoutCrashImageTheVmCrashesAndKeepsMemory) {
  auto vmm = Make("panic", 2, /*crash_image=*/false);
  ASSERT_NE(vmm, nullptr);
  const VmmExit exit = Run(*vmm);
  const std::string text = console_.text();
  ASSERT_EQ(exit.kind, VmmExit::Kind::kCrash) << text;
  EXPECT_NE(exit.message.find("guest panic, code 0xdead"), std::string::npos)
      << exit.message;
  EXPECT_NE(exit.message.find("no crash image"), std::string::npos)
      << exit.message;
  EXPECT_EQ(vmm->crash_state(), CrashState::kCrashed);
  const auto sums = RegionSums(text, "panic");
  ASSERT_EQ(sums.size(), static_cast<size_t>(KDUMP_NUM_REGIONS)) << text;
  for (int r = 0; r < KDUMP_NUM_REGIONS; ++r) {
    EXPECT_EQ(HostRegionSum(vmm->memory(), r), sums.at(r));
  }
}

TEST_F(KexecKvmTest, TripleFaultWithoutCrashImageCrashes) {
  auto vmm = Make("panic", 1, /*crash_image=*/false, /*guest_arg=*/1);
  ASSERT_NE(vmm, nullptr);
  const VmmExit exit = Run(*vmm);
  EXPECT_EQ(exit.kind, VmmExit::Kind::kCrash);
  EXPECT_NE(exit.message.find("triple fault"), std::string::npos)
      << exit.message;
}

TEST_F(KexecKvmTest, ApiTriggerCrashStartsKdump) {
  auto vmm = Make("idle", 2, /*crash_image=*/true);
  ASSERT_NE(vmm, nullptr);
  EXPECT_EQ(vmm->TriggerCrash().code(), absl::StatusCode::kFailedPrecondition);
  ASSERT_TRUE(vmm->Start().ok());
  std::this_thread::sleep_for(200ms);  // let idle bring up its vCPUs
  ASSERT_TRUE(vmm->TriggerCrash().ok());
  auto exit = vmm->WaitFor(60s);
  ASSERT_TRUE(exit.has_value()) << console_.text();
  EXPECT_EQ(exit->kind, VmmExit::Kind::kPowerOff) << exit->message;
  EXPECT_EQ(exit->exit_code, KDUMP_EXIT_OK) << console_.text();
  EXPECT_NE(console_.text().find("hv: API request"), std::string::npos)
      << console_.text();
  EXPECT_NE(console_.text().find("2 vCPU notes"), std::string::npos)
      << console_.text();
}

TEST_F(KexecKvmTest, ApiTriggerCrashWithoutImageEntersCrashedState) {
  auto vmm = Make("idle", 1, /*crash_image=*/false);
  ASSERT_NE(vmm, nullptr);
  ASSERT_TRUE(vmm->Start().ok());
  ASSERT_TRUE(vmm->TriggerCrash().ok());
  auto exit = vmm->WaitFor(30s);
  ASSERT_TRUE(exit.has_value());
  EXPECT_EQ(exit->kind, VmmExit::Kind::kCrash);
  EXPECT_EQ(vmm->crash_state(), CrashState::kCrashed);
}

TEST_F(KexecKvmTest, GuestKexecRunsTheSecondImage) {
  {  // 2 vCPUs: the program also checks the "other vCPUs on" refusal
    auto vmm = Make("kexec", 2, /*crash_image=*/true);
    ASSERT_NE(vmm, nullptr);
    const VmmExit exit = Run(*vmm);
    const std::string text = console_.text();
    EXPECT_EQ(exit.kind, VmmExit::Kind::kPowerOff) << exit.message << text;
    EXPECT_EQ(exit.exit_code, 0) << text;
    EXPECT_NE(text.find("PASS kexec"), std::string::npos) << text;
    // The crash slot survives a guest kexec.
    auto crash = vmm->kexec().loader().Describe(loader::Slot::kCrash);
    ASSERT_TRUE(crash.ok());
    EXPECT_TRUE(crash->has_value());
  }
}

// A load holding the kexec lock when the guest panics: the crash does not
// wait (like __crash_kexec's trylock) — the VM enters the crashed state with
// a "busy" reason and later loads are refused.
TEST_F(KexecKvmTest, LoadRacingACrashMakesTheCrashReportBusy) {
  auto vmm = Make("panic", 1, /*crash_image=*/true);
  ASSERT_NE(vmm, nullptr);
  Vmm* v = vmm.get();
  std::atomic<bool> in_hook{false};
  vmm->kexec().loader().SetLoadHookForTesting([&] {
    in_hook = true;
    const auto end = std::chrono::steady_clock::now() + 30s;
    while (v->crash_state() != CrashState::kCrashed &&
           std::chrono::steady_clock::now() < end) {
      std::this_thread::sleep_for(1ms);
    }
  });
  const loader::Image* crash = vmm->kexec().crash_image();
  ASSERT_NE(crash, nullptr);
  absl::Status load_status;
  std::thread loader_thread([&] {
    load_status = v->kexec().loader().Load(loader::Slot::kCrash, *crash);
  });
  while (!in_hook) std::this_thread::sleep_for(1ms);
  const VmmExit exit = Run(*vmm);
  loader_thread.join();
  EXPECT_EQ(exit.kind, VmmExit::Kind::kCrash) << exit.message;
  EXPECT_NE(exit.message.find("busy"), std::string::npos) << exit.message;
  EXPECT_EQ(vmm->crash_state(), CrashState::kCrashed);
  const absl::Status later =
      vmm->kexec().loader().Load(loader::Slot::kCrash, *crash);
  EXPECT_EQ(later.code(), absl::StatusCode::kFailedPrecondition) << later;
  (void)load_status;  // validated before the crash: OK or refused, both fine
}

// ---- hv-vmm ----

using test::RunVmm;
using Result = test::VmmResult;

TEST_F(KexecKvmTest, HvVmmCrashImageFlags) {
  Result r = RunVmm({"--image=builtin:panic", "--vcpus=2",
                     "--crash_image=builtin:kdump", "--crash_mib=16"});
  EXPECT_EQ(r.exit_code, KDUMP_EXIT_OK) << r.out << r.err;
  EXPECT_NE(r.out.find("hv: panic hypercall"), std::string::npos) << r.out;
  EXPECT_EQ(RegionSums(r.out, "kdump"), RegionSums(r.out, "panic")) << r.out;
  EXPECT_EQ(RegionSums(r.out, "kdump").size(),
            static_cast<size_t>(KDUMP_NUM_REGIONS));

  Result plain = RunVmm({"--image=builtin:panic"});
  EXPECT_EQ(plain.exit_code, 126) << plain.err;
  EXPECT_NE(plain.err.find("no crash image"), std::string::npos) << plain.err;

  Result help = RunVmm({"--help"});
  EXPECT_EQ(help.exit_code, 0);
  EXPECT_NE(help.out.find("--crash_image="), std::string::npos);
  EXPECT_NE(help.out.find("--crash_mib="), std::string::npos);

  struct Bad {
    std::vector<std::string> args;
    int code;
    std::string message;
  };
  for (const Bad& b : std::vector<Bad>{
           {{"--image=builtin:panic", "--crash_mib=16"}, 2, "go together"},
           {{"--image=builtin:panic", "--crash_image=builtin:kdump"},
            2,
            "go together"},
           {{"--image=builtin:panic", "--crash_image=builtin:kdump",
             "--crash_mib=48"},
            125,
            "crash_mib=48"},
           {{"--image=builtin:panic", "--crash_image=builtin:hello",
             "--crash_mib=16"},
            125,
            "crash image"},
       }) {
    Result x = RunVmm(b.args);
    EXPECT_EQ(x.exit_code, b.code) << x.err;
    EXPECT_NE(x.err.find(b.message), std::string::npos) << x.err;
  }
}

}  // namespace
}  // namespace hv
