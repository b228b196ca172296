#include "hv/arch/kvm/kvm_vm.h"

#include <fcntl.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "absl/strings/str_format.h"
#include "hv/arch/kvm/kvm_abi.h"
#include "hv/arch/kvm/kvm_vcpu.h"
#include "hv/platform/hv_virt.h"

namespace hv::arch {
namespace {

absl::Status Errno(const char* what) {
  return absl::InternalError(
      absl::StrFormat("%s: %s", what, std::strerror(errno)));
}

// Addresses KVM needs for Intel's real-mode TSS/identity map when an
// in-kernel irqchip is used; in the 4 GiB MMIO hole, clear of our frames.
constexpr uint64_t kTssAddr = 0xfffbd000;
constexpr uint64_t kIdentityMapAddr = 0xfffbc000;

}  // namespace

bool KvmAvailable() { return access("/dev/kvm", F_OK) == 0; }

absl::StatusOr<std::unique_ptr<KvmVm>> KvmVm::Create(const VmConfig& config) {
  if (!KvmAvailable()) return absl::UnavailableError("/dev/kvm is absent");
  std::unique_ptr<KvmVm> vm(new KvmVm(config));
  vm->kvm_fd_ = open("/dev/kvm", O_RDWR | O_CLOEXEC);
  if (vm->kvm_fd_ < 0) return Errno("open /dev/kvm");
  if (ioctl(vm->kvm_fd_, KVM_GET_API_VERSION, 0) != KVM_API_VERSION) {
    return absl::InternalError("unexpected KVM API version");
  }
  for (int cap :
       {KVM_CAP_IMMEDIATE_EXIT, KVM_CAP_USER_MEMORY, KVM_CAP_SET_TSS_ADDR}) {
    if (ioctl(vm->kvm_fd_, KVM_CHECK_EXTENSION, cap) <= 0) {
      return absl::UnavailableError(
          absl::StrFormat("KVM lacks required capability %d", cap));
    }
  }
  vm->vm_fd_ = ioctl(vm->kvm_fd_, KVM_CREATE_VM, 0);
  if (vm->vm_fd_ < 0) return Errno("KVM_CREATE_VM");
  vm->run_size_ = ioctl(vm->kvm_fd_, KVM_GET_VCPU_MMAP_SIZE, 0);
  if (vm->run_size_ <= 0) return Errno("KVM_GET_VCPU_MMAP_SIZE");
  int max = ioctl(vm->kvm_fd_, KVM_CHECK_EXTENSION, KVM_CAP_MAX_VCPUS);
  if (max <= 0) max = ioctl(vm->kvm_fd_, KVM_CHECK_EXTENSION, KVM_CAP_NR_VCPUS);
  if (max <= 0) max = 1;
  vm->max_vcpus_ = static_cast<uint32_t>(max);
  if (ioctl(vm->vm_fd_, KVM_SET_TSS_ADDR, kTssAddr) < 0) {
    return Errno("KVM_SET_TSS_ADDR");
  }
  uint64_t identity = kIdentityMapAddr;
  if (ioctl(vm->vm_fd_, KVM_SET_IDENTITY_MAP_ADDR, &identity) < 0) {
    return Errno("KVM_SET_IDENTITY_MAP_ADDR");
  }
  if (config.irq_delivery == IrqDelivery::kLapic) {
    if (ioctl(vm->vm_fd_, KVM_CREATE_IRQCHIP, 0) < 0) {
      return Errno("KVM_CREATE_IRQCHIP");
    }
  }
  // Supported CPUID: needed so the guest may set EFER.LME (KVM refuses long
  // mode unless CPUID advertises LM).
  uint32_t nent = 128;
  for (;;) {
    std::vector<uint8_t> buf(sizeof(kvm_abi::Cpuid2Header) +
                             nent * sizeof(kvm_cpuid_entry2));
    auto* h = reinterpret_cast<kvm_abi::Cpuid2Header*>(buf.data());
    h->nent = nent;
    if (ioctl(vm->kvm_fd_, kvm_abi::kGetSupportedCpuid, buf.data()) == 0) {
      buf.resize(sizeof(kvm_abi::Cpuid2Header) +
                 h->nent * sizeof(kvm_cpuid_entry2));
      vm->cpuid_ = std::move(buf);
      break;
    }
    if (errno != E2BIG || nent > 4096) return Errno("KVM_GET_SUPPORTED_CPUID");
    nent *= 2;
  }
  return vm;
}

KvmVm::~KvmVm() {
  if (vm_fd_ >= 0) close(vm_fd_);
  if (kvm_fd_ >= 0) close(kvm_fd_);
}

absl::Status KvmVm::MapMemory(GuestMemory& memory) {
  const auto& regions = memory.regions();
  for (size_t i = 0; i < regions.size(); ++i) {
    kvm_userspace_memory_region r{};
    r.slot = static_cast<uint32_t>(i);
    r.guest_phys_addr = regions[i].gpa;
    r.memory_size = regions[i].size;
    r.userspace_addr = reinterpret_cast<uint64_t>(memory.region_host_base(i));
    if (ioctl(vm_fd_, KVM_SET_USER_MEMORY_REGION, &r) < 0) {
      return Errno("KVM_SET_USER_MEMORY_REGION");
    }
  }
  return absl::OkStatus();
}

absl::StatusOr<std::unique_ptr<Vcpu>> KvmVm::CreateVcpu(uint32_t index) {
  if (index >= max_vcpus_) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "vCPU index %u is above KVM's limit of %u", index, max_vcpus_));
  }
  {
    MutexLock lock(&mu_);
    if (created_.size() <= index) created_.resize(index + 1, false);
    if (created_[index]) {
      return absl::AlreadyExistsError(
          absl::StrFormat("vCPU %u already created", index));
    }
    created_[index] = true;
  }
  return KvmVcpu::Create(this, index);
}

absl::Status KvmVm::SignalMsi(uint32_t index, uint8_t vector) {
  kvm_msi msi{};
  msi.address_lo = static_cast<uint32_t>(HV_VIRT_LAPIC_BASE) | (index << 12);
  msi.address_hi = 0;
  msi.data = vector;  // fixed delivery, edge
  const int r = ioctl(vm_fd_, KVM_SIGNAL_MSI, &msi);
  if (r < 0) return Errno("KVM_SIGNAL_MSI");
  return absl::OkStatus();
}

absl::StatusOr<int> KvmVm::CreateMsiIrqfd(uint32_t index, uint8_t vector) {
  if (config_.irq_delivery != IrqDelivery::kLapic) {
    return absl::FailedPreconditionError("irqfd needs the in-kernel LAPIC");
  }
  MutexLock lock(&mu_);
  // GSIs 0..23 belong to the in-kernel IOAPIC/PIC; start MSI routes above.
  const uint32_t gsi = 32 + static_cast<uint32_t>(routes_.size());
  kvm_irq_routing_entry e{};
  e.gsi = gsi;
  e.type = KVM_IRQ_ROUTING_MSI;
  e.u.msi.address_lo =
      static_cast<uint32_t>(HV_VIRT_LAPIC_BASE) | (index << 12);
  e.u.msi.data = vector;
  routes_.push_back(e);
  std::vector<uint8_t> buf(sizeof(kvm_abi::IrqRoutingHeader) +
                           routes_.size() * sizeof(kvm_irq_routing_entry));
  auto* table = reinterpret_cast<kvm_abi::IrqRoutingHeader*>(buf.data());
  table->nr = static_cast<uint32_t>(routes_.size());
  table->flags = 0;
  std::memcpy(buf.data() + sizeof(kvm_abi::IrqRoutingHeader), routes_.data(),
              routes_.size() * sizeof(kvm_irq_routing_entry));
  if (ioctl(vm_fd_, kvm_abi::kSetGsiRouting, buf.data()) < 0) {
    routes_.pop_back();
    return Errno("KVM_SET_GSI_ROUTING");
  }
  const int efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  if (efd < 0) return Errno("eventfd");
  kvm_irqfd irqfd{};
  irqfd.fd = static_cast<uint32_t>(efd);
  irqfd.gsi = gsi;
  if (ioctl(vm_fd_, KVM_IRQFD, &irqfd) < 0) {
    const absl::Status s = Errno("KVM_IRQFD");
    close(efd);
    return s;
  }
  return efd;
}

}  // namespace hv::arch
