// hv-vmm: boots one guest on KVM with the hv-virt platform.
//
//   hv-vmm --image=PATH|builtin:NAME [--vcpus=N] [--memory_mib=M]
//          [--guest_arg=X] [--irq_delivery=lapic|inject]
//          [--crash_image=PATH|builtin:NAME --crash_mib=N]
//   hv-vmm --list_builtin | --help
//
// The guest's console (UART) goes to stdout; the process exits with the
// guest's SYSTEM_OFF argument (low 8 bits) — after a crash switch, the
// crash image's. VMM failures use exit codes the
// guest kit never produces by convention: 2 usage, 125 setup error, 126 the
// guest crashed (triple fault, entry failure).
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <iterator>
#include <string>
#include <string_view>

#include "absl/strings/numbers.h"
#include "hv/arch/kvm/kvm_vm.h"
#include "hv/control/vmm_control.h"
#include "hv/guest/builtin_images.h"
#include "hv/vmm/vmm.h"

namespace {

constexpr int kExitUsage = 2;
constexpr int kExitSetup = 125;
constexpr int kExitCrash = 126;

constexpr char kUsage[] =
    "usage: hv-vmm --image=PATH|builtin:NAME [--vcpus=N] [--memory_mib=M]\n"
    "              [--guest_arg=X] [--irq_delivery=lapic|inject]\n"
    "              [--crash_image=PATH|builtin:NAME --crash_mib=N]\n"
    "       hv-vmm --list_builtin | --help\n"
    "\n"
    "Boots a static ELF64 x86-64 image on KVM (hv-virt platform, see\n"
    "docs/hv-core.md). The guest console goes to stdout; the exit code is the\n"
    "guest's SYSTEM_OFF argument. VMM errors exit 2 (usage), 125 (setup),\n"
    "126 (guest crashed).\n"
    "\n"
    "  --image=PATH|builtin:NAME  image file, or an image built into hv-vmm\n"
    "  --vcpus=N                  number of vCPUs (default 1)\n"
    "  --memory_mib=M             guest RAM in MiB (default 64)\n"
    "  --guest_arg=X              value the guest reads as user_arg\n"
    "  --irq_delivery=MODE        how the GIC line reaches a vCPU: lapic\n"
    "                             (in-kernel LAPIC + MSI, default) or inject\n"
    "                             (userspace KVM_INTERRUPT)\n"
    "  --crash_image=PATH|builtin:NAME\n"
    "                             crash (kdump) image, loaded into the crash\n"
    "                             region; on a guest panic (HV_CALL_PANIC) or\n"
    "                             triple fault the VM switches to it (rdx =\n"
    "                             ELF core header, rcx = its size) and the\n"
    "                             exit code is the crash image's\n"
    "  --crash_mib=N              crash region size in MiB (crashkernel=N M,\n"
    "                             at the top of RAM, 2 MiB aligned); needs\n"
    "                             --crash_image\n"
    "  --list_builtin             print the built-in image names and exit\n"
    "  --help                     print this text and exit\n";

void ConsoleByte(char c) {
  while (write(STDOUT_FILENO, &c, 1) < 0 && errno == EINTR) {
  }
}

bool ParseU64(std::string_view flag, std::string_view text, uint64_t* out) {
  if (!absl::SimpleAtoi(absl::string_view(text.data(), text.size()), out)) {
    std::fprintf(stderr, "hv-vmm: --%.*s=%.*s is not a number\n",
                 static_cast<int>(flag.size()), flag.data(),
                 static_cast<int>(text.size()), text.data());
    return false;
  }
  return true;
}

// --image / --crash_image: a file or a built-in image. 0 or an exit code.
int ReadImage(const std::string& arg, std::vector<uint8_t>* out) {
  if (arg.rfind("builtin:", 0) == 0) {
    const std::string name = arg.substr(8);
    const hv::guest::BuiltinImage* img = hv::guest::FindBuiltinImage(name);
    if (img == nullptr) {
      std::fprintf(stderr,
                   "hv-vmm: no built-in image '%s' (see --list_builtin)\n",
                   name.c_str());
      return kExitUsage;
    }
    out->assign(img->data, img->data + img->size);
    return 0;
  }
  std::ifstream f(arg, std::ios::binary);
  if (!f) {
    std::fprintf(stderr, "hv-vmm: cannot open image '%s': %s\n", arg.c_str(),
                 std::strerror(errno));
    return kExitSetup;
  }
  out->assign(std::istreambuf_iterator<char>(f),
              std::istreambuf_iterator<char>());
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  // Spawned by hvd: the control-socket mode (hv/control/vmm_control.h).
  if (argc >= 2 &&
      std::string_view(argv[1]).rfind(hv::control::kControlFdFlag, 0) == 0) {
    return hv::control::RunVmmControl(argc, argv);
  }
  std::string image_arg, crash_image_arg;
  uint64_t crash_mib = 0;
  uint64_t vcpus = 1, memory_mib = 64, guest_arg = 0;
  hv::arch::VmConfig vm_config;
  for (int i = 1; i < argc; ++i) {
    std::string_view a = argv[i];
    auto value = [&](std::string_view name, std::string_view* v) {
      const std::string prefix = "--" + std::string(name) + "=";
      if (a.substr(0, prefix.size()) != prefix) return false;
      *v = a.substr(prefix.size());
      return true;
    };
    std::string_view v;
    if (a == "--help" || a == "-h") {
      std::fputs(kUsage, stdout);
      return 0;
    } else if (a == "--list_builtin") {
      for (size_t k = 0; k < hv::guest::kNumBuiltinImages; ++k) {
        std::printf("%s\n", hv::guest::kBuiltinImages[k].name);
      }
      return 0;
    } else if (value("image", &v)) {
      image_arg = std::string(v);
    } else if (value("vcpus", &v)) {
      if (!ParseU64("vcpus", v, &vcpus)) return kExitUsage;
    } else if (value("memory_mib", &v)) {
      if (!ParseU64("memory_mib", v, &memory_mib)) return kExitUsage;
    } else if (value("guest_arg", &v)) {
      if (!ParseU64("guest_arg", v, &guest_arg)) return kExitUsage;
    } else if (value("crash_image", &v)) {
      crash_image_arg = std::string(v);
    } else if (value("crash_mib", &v)) {
      if (!ParseU64("crash_mib", v, &crash_mib)) return kExitUsage;
    } else if (value("irq_delivery", &v)) {
      if (v == "lapic") {
        vm_config.irq_delivery = hv::arch::IrqDelivery::kLapic;
      } else if (v == "inject") {
        vm_config.irq_delivery = hv::arch::IrqDelivery::kInject;
      } else {
        std::fprintf(stderr,
                     "hv-vmm: --irq_delivery must be lapic or inject\n");
        return kExitUsage;
      }
    } else {
      std::fprintf(stderr, "hv-vmm: unknown argument '%s'\n%s", argv[i],
                   kUsage);
      return kExitUsage;
    }
  }
  if (image_arg.empty()) {
    std::fprintf(stderr, "hv-vmm: --image is required\n%s", kUsage);
    return kExitUsage;
  }
  if (vcpus > UINT32_MAX) vcpus = UINT32_MAX;

  if (crash_image_arg.empty() != (crash_mib == 0)) {
    std::fprintf(stderr,
                 "hv-vmm: --crash_image and --crash_mib go together\n%s",
                 kUsage);
    return kExitUsage;
  }
  hv::VmmConfig config;
  if (int rc = ReadImage(image_arg, &config.image); rc != 0) return rc;
  if (!crash_image_arg.empty()) {
    if (int rc = ReadImage(crash_image_arg, &config.crash_image); rc != 0) {
      return rc;
    }
    config.crash_mib = crash_mib;
  }
  config.vcpus = static_cast<uint32_t>(vcpus);
  config.memory_mib = memory_mib;
  config.guest_arg = guest_arg;
  config.console = ConsoleByte;

  auto vm = hv::arch::KvmVm::Create(vm_config);
  if (!vm.ok()) {
    std::fprintf(stderr, "hv-vmm: %s\n", vm.status().ToString().c_str());
    return kExitSetup;
  }
  auto vmm = hv::Vmm::Create(std::move(config), std::move(*vm));
  if (!vmm.ok()) {
    std::fprintf(stderr, "hv-vmm: %s\n", vmm.status().ToString().c_str());
    return kExitSetup;
  }
  if (absl::Status s = (*vmm)->Start(); !s.ok()) {
    std::fprintf(stderr, "hv-vmm: %s\n", s.ToString().c_str());
    return kExitSetup;
  }
  const hv::VmmExit exit = (*vmm)->Wait();
  const uint64_t unhandled = (*vmm)->mmio_bus().unhandled_count() +
                             (*vmm)->pio_bus().unhandled_count();
  if (unhandled > 0) {
    std::fprintf(stderr, "hv-vmm: %llu unhandled MMIO/PIO accesses\n",
                 static_cast<unsigned long long>(unhandled));
  }
  switch (exit.kind) {
    case hv::VmmExit::Kind::kPowerOff:
      return exit.exit_code;
    case hv::VmmExit::Kind::kCrash:
      std::fprintf(stderr, "hv-vmm: guest crashed: %s\n", exit.message.c_str());
      return kExitCrash;
    case hv::VmmExit::Kind::kStopped:
      return kExitSetup;
  }
  return kExitSetup;
}
