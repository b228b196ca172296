#include "hv/vmm/vmm.h"

#include <algorithm>

#include "absl/strings/str_format.h"
#include "hv/arch/x86_boot.h"
#include "hv/base/status_macros.h"

namespace hv {
namespace {

// Scratch stack pointer handed to a starting vCPU (top of page 0, below the
// GDT). The guest switches to its own stack before using it for more than a
// few words; several vCPUs starting at once would share it.
constexpr uint64_t kScratchStack = HV_VIRT_BOOT_GDT;

}  // namespace

absl::StatusOr<std::unique_ptr<Vmm>> Vmm::Create(VmmConfig config,
                                                 std::unique_ptr<arch::Vm> vm) {
  if (vm == nullptr) return absl::InvalidArgumentError("no arch Vm");
  const uint32_t max_vcpus =
      std::min<uint32_t>(HV_VIRT_MAX_VCPUS, vm->max_vcpus());
  if (config.vcpus == 0 || config.vcpus > max_vcpus) {
    return absl::InvalidArgumentError(
        absl::StrFormat("vcpus=%u is out of range: must be between 1 and %u",
                        config.vcpus, max_vcpus));
  }
  if (config.memory_mib < kMinMemoryMib || config.memory_mib > kMaxMemoryMib) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "memory_mib=%u is out of range: must be between %u and %u",
        config.memory_mib, kMinMemoryMib, kMaxMemoryMib));
  }
  if (config.crash_image.empty() != (config.crash_mib == 0)) {
    return absl::InvalidArgumentError(
        "crash_image and crash_mib must be given together");
  }
  std::unique_ptr<Vmm> vmm(new Vmm(std::move(config), std::move(vm)));
  HV_RETURN_IF_ERROR(vmm->Init());
  return vmm;
}

absl::Status Vmm::InitGic(hv_virt_info* info) {
  if (!config_.gic) {
    if (config_.its) {
      return absl::InvalidArgumentError("the ITS needs the GIC (gic=false)");
    }
    info->irq_delivery = HV_IRQ_DELIVERY_NONE;
    return absl::OkStatus();
  }
  vgic::VgicConfig gc;
  gc.num_vcpus = config_.vcpus;
  gc.num_spis = config_.num_spis;
  gc.memory = memory_.get();
  gc.irq_line = [this](uint32_t v, bool level) {
    if (v < vcpus_.size()) vcpus_[v]->irq_line().SetLevel(level);
  };
  HV_ASSIGN_OR_RETURN(vgic_, vgic::Vgic::Create(std::move(gc)));
  HV_RETURN_IF_ERROR(mmio_.Register(HV_VIRT_GICD_BASE, HV_VIRT_GICD_SIZE,
                                    &vgic_->distributor(), "gicd"));
  HV_RETURN_IF_ERROR(mmio_.Register(HV_VIRT_GICR_BASE,
                                    vgic_->redistributor_region_size(),
                                    &vgic_->redistributors(), "gicr"));
  HV_RETURN_IF_ERROR(mmio_.Register(HV_VIRT_GICC_BASE, HV_VIRT_GICC_SIZE,
                                    &vgic_->cpu_interface(), "gic-cpuif"));
  info->gic_present = 1;
  info->gicd_base = HV_VIRT_GICD_BASE;
  info->gicr_base = HV_VIRT_GICR_BASE;
  info->gicr_stride = HV_VIRT_GICR_STRIDE;
  info->gicc_base = HV_VIRT_GICC_BASE;
  if (config_.its) {
    its_ = std::make_unique<vgic::Its>(vgic_.get(), memory_.get());
    HV_RETURN_IF_ERROR(
        mmio_.Register(HV_VIRT_ITS_BASE, HV_VIRT_ITS_SIZE, its_.get(), "its"));
    info->its_base = HV_VIRT_ITS_BASE;
  }
  return absl::OkStatus();
}

absl::Status Vmm::Init() {
  HV_ASSIGN_OR_RETURN(memory_,
                      GuestMemory::Create({{0, config_.memory_mib << 20}}));
  HV_RETURN_IF_ERROR(vm_->MapMemory(*memory_));
  HV_ASSIGN_OR_RETURN(boot_template_, arch::BuildBootTables(*memory_));
  HV_ASSIGN_OR_RETURN(
      kexec_, VmmKexec::Create(memory_.get(), &config_.image,
                               &config_.crash_image, config_.crash_mib));
  HV_ASSIGN_OR_RETURN(entry_, kexec_->Reload());

  uart_ = std::make_unique<Uart16550>(config_.console);
  HV_RETURN_IF_ERROR(pio_.Register(HV_VIRT_UART_PORT, Uart16550::kNumPorts,
                                   uart_.get(), "uart16550"));
  for (uint32_t i = 0; i < config_.vcpus; ++i) {
    HV_ASSIGN_OR_RETURN(std::unique_ptr<arch::Vcpu> vcpu, vm_->CreateVcpu(i));
    vcpus_.push_back(std::move(vcpu));
  }
  hv_virt_info info{};
  info.num_vcpus = config_.vcpus;
  const arch::VmConfig& vc = vm_->config();
  info.irq_delivery = vc.irq_delivery == arch::IrqDelivery::kLapic
                          ? HV_IRQ_DELIVERY_LAPIC
                          : HV_IRQ_DELIVERY_INJECT;
  info.irq_vector = vc.irq_vector;
  info.ram_base = 0;
  info.ram_size = memory_->total_size();
  info.uart_port = HV_VIRT_UART_PORT;
  info.hypercall_port = vc.hypercall_port;
  info.tsc_khz = vm_->tsc_khz();
  info.user_arg = config_.guest_arg;
  HV_RETURN_IF_ERROR(InitGic(&info));
  info_ = std::make_unique<PlatformInfo>(info);
  HV_RETURN_IF_ERROR(mmio_.Register(HV_VIRT_INFO_BASE, HV_VIRT_INFO_SIZE,
                                    info_.get(), "platform-info"));
  for (auto& vcpu : vcpus_) {
    threads_.push_back(std::make_unique<VcpuThread>(
        vcpu.get(), static_cast<ExitHandler*>(this)));
  }
  kexec_->Attach(&threads_, &vcpus_);
  return absl::OkStatus();
}

Vmm::~Vmm() { StopAll(); }

absl::Status Vmm::Start() {
  {
    MutexLock lock(&mu_);
    if (started_) return absl::FailedPreconditionError("already started");
    started_ = true;
  }
  for (auto& t : threads_) t->Start();
  arch::BootState boot = boot_template_;
  boot.rip = entry_;
  boot.rsp = kScratchStack;
  boot.rdi = HV_VIRT_INFO_BASE;
  boot.rsi = 0;
  if (threads_[0]->PowerOn(boot) != VcpuThread::PowerOnResult::kOk) {
    return absl::InternalError("vCPU 0 did not power on");
  }
  return absl::OkStatus();
}

std::optional<VmmExit> Vmm::WaitUntil(
    std::optional<std::chrono::steady_clock::time_point> deadline) {
  for (;;) {
    std::optional<VmmExit> done;
    std::optional<Restart> restart;
    {
      MutexLock lock(&mu_);
      while (!outcome_ && !reset_requested_ && !restart_) {
        if (!deadline) {
          cv_.Wait(&mu_);
          continue;
        }
        const auto now = std::chrono::steady_clock::now();
        if (now >= *deadline) return std::nullopt;
        cv_.WaitFor(&mu_, *deadline - now);
      }
      if (outcome_) {
        done = *outcome_;
      } else if (!reset_requested_) {
        restart = std::move(restart_);
        restart_.reset();
      } else {
        reset_requested_ = false;
        restart_.reset();  // a system reset wins over a pending restart
      }
    }
    if (done) {
      StopAll();
      return done;
    }
    if (restart) {
      DoRestart(*restart);
      continue;
    }
    absl::Status s = DoReset();
    if (!s.ok()) {
      Finish(VmmExit{VmmExit::Kind::kCrash, 0,
                     absl::StrFormat("system reset failed: %s", s.message())});
    }
  }
}

VmmExit Vmm::Wait() { return *WaitUntil(std::nullopt); }

std::optional<VmmExit> Vmm::WaitFor(std::chrono::milliseconds timeout) {
  return WaitUntil(std::chrono::steady_clock::now() + timeout);
}

absl::Status Vmm::DoReset() {
  for (auto& t : threads_) t->RequestPause();
  for (auto& t : threads_) t->WaitPaused();
  for (auto& t : threads_) t->ForceOff();
  HV_RETURN_IF_ERROR(memory_->Fill(0, 0, memory_->total_size()));
  if (vgic_ != nullptr) {
    // Fresh GIC and ITS (reset state, IHI 0069 register reset values): no
    // vCPU runs, so no frame access is in flight.
    HV_RETURN_IF_ERROR(mmio_.Unregister(HV_VIRT_GICD_BASE));
    HV_RETURN_IF_ERROR(mmio_.Unregister(HV_VIRT_GICR_BASE));
    HV_RETURN_IF_ERROR(mmio_.Unregister(HV_VIRT_GICC_BASE));
    if (its_ != nullptr) HV_RETURN_IF_ERROR(mmio_.Unregister(HV_VIRT_ITS_BASE));
    its_.reset();
    vgic_.reset();
    for (auto& v : vcpus_) v->irq_line().SetLevel(false);
    hv_virt_info info = info_->info();
    HV_RETURN_IF_ERROR(InitGic(&info));
  }
  HV_ASSIGN_OR_RETURN(boot_template_, arch::BuildBootTables(*memory_));
  HV_ASSIGN_OR_RETURN(entry_, kexec_->Reload());
  uint64_t count;
  {
    MutexLock lock(&mu_);
    count = ++boot_count_;
  }
  info_->set_boot_count(count);
  arch::BootState boot = boot_template_;
  boot.rip = entry_;
  boot.rsp = kScratchStack;
  boot.rdi = HV_VIRT_INFO_BASE;
  boot.rsi = 0;
  threads_[0]->PowerOn(boot);
  for (auto& t : threads_) t->Resume();
  return absl::OkStatus();
}

void Vmm::Pause() {
  for (auto& t : threads_) t->RequestPause();
  for (auto& t : threads_) t->WaitPaused();
}

void Vmm::Resume() {
  for (auto& t : threads_) t->Resume();
}

void Vmm::Stop() { Finish(VmmExit{VmmExit::Kind::kStopped, 0, ""}); }

void Vmm::StopAll() {
  for (auto& t : threads_) t->Stop();
}

void Vmm::Finish(VmmExit exit) {
  MutexLock lock(&mu_);
  if (!outcome_) outcome_ = std::move(exit);
  cv_.NotifyAll();
}

uint64_t Vmm::boot_count() const {
  MutexLock lock(&mu_);
  return boot_count_;
}

uint64_t Vmm::OnMmio(uint32_t vcpu, const arch::VcpuExit& exit) {
  MmioContext ctx;
  ctx.vcpu = vcpu;
  uint64_t v = 0;
  if (exit.is_write) {
    mmio_.Write(ctx, exit.addr, exit.size, exit.data);
  } else {
    mmio_.Read(ctx, exit.addr, exit.size, &v);
  }
  return v;
}

uint64_t Vmm::OnPio(uint32_t vcpu, const arch::VcpuExit& exit) {
  MmioContext ctx;
  ctx.vcpu = vcpu;
  uint64_t v = 0;
  if (exit.is_write) {
    pio_.Write(ctx, exit.addr, exit.size, exit.data);
  } else {
    pio_.Read(ctx, exit.addr, exit.size, &v);
  }
  return v;
}

int64_t Vmm::CpuOn(uint64_t target, uint64_t entry, uint64_t context) {
  // DEN0022D §5.6: INVALID_PARAMETERS for a bad target, INVALID_ADDRESS for
  // an entry point the caller could not execute.
  if (target >= threads_.size()) return PSCI_RET_INVALID_PARAMETERS;
  if (!memory_->Contains(entry, 1)) return PSCI_RET_INVALID_ADDRESS;
  arch::BootState boot = boot_template_;
  boot.rip = entry;
  boot.rsp = kScratchStack;
  boot.rdi = context;
  boot.rsi = target;
  switch (threads_[target]->PowerOn(boot)) {
    case VcpuThread::PowerOnResult::kOk:
      return PSCI_RET_SUCCESS;
    case VcpuThread::PowerOnResult::kAlreadyOn:
      return PSCI_RET_ALREADY_ON;
    case VcpuThread::PowerOnResult::kOnPending:
      return PSCI_RET_ON_PENDING;
    case VcpuThread::PowerOnResult::kStopped:
      return PSCI_RET_DENIED;
  }
  return PSCI_RET_INTERNAL_FAILURE;
}

uint64_t Vmm::OnHypercall(uint32_t vcpu, const arch::VcpuExit& exit) {
  const uint32_t fn = static_cast<uint32_t>(exit.args[0]);
  int64_t ret = PSCI_RET_NOT_SUPPORTED;
  switch (fn) {
    case PSCI_VERSION:
      ret = 0x00010000;  // PSCI 1.0
      break;
    case PSCI_CPU_ON:
      ret = CpuOn(exit.args[1], exit.args[2], exit.args[3]);
      break;
    case PSCI_CPU_OFF:
      threads_[vcpu]->PowerOffSelf();
      ret = PSCI_RET_SUCCESS;
      break;
    case PSCI_AFFINITY_INFO: {
      // Returns 0 ON, 1 OFF, 2 ON_PENDING (DEN0022D §5.7).
      if (exit.args[1] >= threads_.size() || exit.args[2] != 0) {
        ret = PSCI_RET_INVALID_PARAMETERS;
        break;
      }
      switch (threads_[exit.args[1]]->power()) {
        case VcpuThread::Power::kOn:
          ret = 0;
          break;
        case VcpuThread::Power::kOff:
          ret = 1;
          break;
        case VcpuThread::Power::kOnPending:
          ret = 2;
          break;
      }
      break;
    }
    case PSCI_SYSTEM_OFF:
      threads_[vcpu]->PowerOffSelf();
      Finish(VmmExit{VmmExit::Kind::kPowerOff,
                     static_cast<int>(exit.args[1] & 0xff), ""});
      ret = PSCI_RET_SUCCESS;
      break;
    case HV_CALL_PANIC:
      ret = PanicCall(vcpu, exit.args[1]);
      break;
    case HV_CALL_KEXEC:
      ret = KexecCall(vcpu, exit.args[1], exit.args[2]);
      break;
    case PSCI_SYSTEM_RESET: {
      threads_[vcpu]->PowerOffSelf();
      MutexLock lock(&mu_);
      if (!outcome_) reset_requested_ = true;
      cv_.NotifyAll();
      ret = PSCI_RET_SUCCESS;
      break;
    }
    default:
      break;
  }
  return static_cast<uint64_t>(ret);
}

void Vmm::OnFatal(uint32_t vcpu, const std::string& reason) {
  Finish(VmmExit{VmmExit::Kind::kCrash, 0,
                 absl::StrFormat("vCPU %u: %s", vcpu, reason)});
}

}  // namespace hv
