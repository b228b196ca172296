#include "hv/arch/kvm/kvm_vcpu.h"

#include <signal.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <mutex>

#include "absl/strings/str_format.h"
#include "hv/arch/kvm/kvm_abi.h"
#include "hv/arch/x86_boot.h"

namespace hv::arch {
namespace {

// The signal used to kick a vCPU thread out of KVM_RUN.
const int kKickSignal = SIGUSR1;

void NoopHandler(int) {}

void InstallKickHandler() {
  static std::once_flag once;
  std::call_once(once, [] {
    struct sigaction sa {};
    sa.sa_handler = NoopHandler;
    sigemptyset(&sa.sa_mask);
    sa.sa_flags = 0;  // no SA_RESTART: KVM_RUN must see EINTR
    sigaction(kKickSignal, &sa, nullptr);
  });
}

absl::Status Errno(const char* what, uint32_t index) {
  return absl::InternalError(
      absl::StrFormat("vCPU %u: %s: %s", index, what, std::strerror(errno)));
}

void StoreImmediateExit(kvm_run* run, uint8_t v) {
  __atomic_store_n(&run->immediate_exit, v, __ATOMIC_SEQ_CST);
}

kvm_segment Segment(uint16_t selector, uint8_t type, bool code) {
  kvm_segment s{};
  s.base = 0;
  s.limit = 0xffffffff;
  s.selector = selector;
  s.type = type;
  s.present = 1;
  s.dpl = 0;
  s.s = 1;
  s.g = 1;
  s.l = code ? 1 : 0;
  s.db = code ? 0 : 1;
  return s;
}

}  // namespace

absl::StatusOr<std::unique_ptr<Vcpu>> KvmVcpu::Create(KvmVm* vm,
                                                      uint32_t index) {
  InstallKickHandler();
  std::unique_ptr<KvmVcpu> v(new KvmVcpu(vm, index));
  v->fd_ = ioctl(vm->vm_fd(), KVM_CREATE_VCPU, index);
  if (v->fd_ < 0) return Errno("KVM_CREATE_VCPU", index);
  void* run = mmap(nullptr, vm->run_size(), PROT_READ | PROT_WRITE, MAP_SHARED,
                   v->fd_, 0);
  if (run == MAP_FAILED) return Errno("mmap kvm_run", index);
  v->run_ = static_cast<kvm_run*>(run);
  // CPUID: KVM's supported set, with this vCPU's APIC ID (leaf 1 EBX[31:24],
  // leaf 0xB EDX = x2APIC ID; SDM Vol. 2A CPUID).
  std::vector<uint8_t> buf = vm->cpuid();
  auto* h = reinterpret_cast<kvm_abi::Cpuid2Header*>(buf.data());
  auto* entries = reinterpret_cast<kvm_cpuid_entry2*>(
      buf.data() + sizeof(kvm_abi::Cpuid2Header));
  for (uint32_t i = 0; i < h->nent; ++i) {
    kvm_cpuid_entry2& e = entries[i];
    if (e.function == 1) {
      e.ebx = (e.ebx & 0x00ffffff) | (index << 24);
    } else if (e.function == 0xb || e.function == 0x1f) {
      e.edx = index;
    }
  }
  if (ioctl(v->fd_, kvm_abi::kSetCpuid2, buf.data()) < 0) {
    return Errno("KVM_SET_CPUID2", index);
  }
  if (vm->config().irq_delivery == IrqDelivery::kLapic) {
    // The LAPIC as KVM created it (ID = vCPU index, software-disabled);
    // restored on every Reset() so a SYSTEM_RESET or a second CPU_ON starts
    // from a clean LAPIC (no stale ISR/IRR bits).
    v->pristine_lapic_ = std::make_unique<kvm_lapic_state>();
    if (ioctl(v->fd_, KVM_GET_LAPIC, v->pristine_lapic_.get()) < 0) {
      return Errno("KVM_GET_LAPIC", index);
    }
  }
  if (vm->tsc_khz() == 0) {
    const int khz = ioctl(v->fd_, KVM_GET_TSC_KHZ, 0);
    if (khz > 0) vm->set_tsc_khz(static_cast<uint64_t>(khz));
  }
  return std::unique_ptr<Vcpu>(std::move(v));
}

KvmVcpu::~KvmVcpu() {
  if (run_ != nullptr) munmap(run_, vm_->run_size());
  if (fd_ >= 0) close(fd_);
}

absl::Status KvmVcpu::Reset(const BootState& state) {
  kvm_sregs sregs{};
  if (ioctl(fd_, KVM_GET_SREGS, &sregs) < 0) {
    return Errno("KVM_GET_SREGS", index_);
  }
  sregs.cs = Segment(kCodeSelector, 0xb, true);  // execute/read, accessed
  const kvm_segment data = Segment(kDataSelector, 0x3, false);
  sregs.ds = sregs.es = sregs.fs = sregs.gs = sregs.ss = data;
  sregs.tr = kvm_segment{};
  sregs.tr.base = state.gdt_base + kTssOffset;
  sregs.tr.limit = kTssLimit;
  sregs.tr.selector = kTssSelector;
  sregs.tr.type = 0xb;  // busy 64-bit TSS
  sregs.tr.present = 1;
  sregs.ldt = kvm_segment{};
  sregs.ldt.type = 0x2;
  sregs.ldt.present = 1;
  sregs.ldt.unusable = 1;
  sregs.gdt.base = state.gdt_base;
  sregs.gdt.limit = state.gdt_limit;
  sregs.idt.base = 0;
  sregs.idt.limit = 0;
  sregs.cr0 = kCr0Pe | kCr0Mp | kCr0Et | kCr0Ne | kCr0Wp | kCr0Am | kCr0Pg;
  sregs.cr3 = state.cr3;
  sregs.cr4 = kCr4Pae | kCr4Osfxsr | kCr4Osxmmexcpt;
  sregs.efer = kEferLme | kEferLma;
  std::memset(sregs.interrupt_bitmap, 0, sizeof(sregs.interrupt_bitmap));
  if (ioctl(fd_, KVM_SET_SREGS, &sregs) < 0) {
    return Errno("KVM_SET_SREGS", index_);
  }
  kvm_regs regs{};
  regs.rip = state.rip;
  regs.rsp = state.rsp;
  regs.rdi = state.rdi;
  regs.rsi = state.rsi;
  regs.rdx = state.rdx;
  regs.rcx = state.rcx;
  regs.rflags = 0x2;  // reserved bit 1; IF=0
  if (ioctl(fd_, KVM_SET_REGS, &regs) < 0) {
    return Errno("KVM_SET_REGS", index_);
  }
  if (pristine_lapic_ != nullptr &&
      ioctl(fd_, KVM_SET_LAPIC, pristine_lapic_.get()) < 0) {
    return Errno("KVM_SET_LAPIC", index_);
  }
  if (vm_->config().irq_delivery == IrqDelivery::kLapic) {
    // Application processors start in "wait for SIPI" with an in-kernel
    // LAPIC; PSCI CPU_ON replaces INIT/SIPI, so make them runnable.
    kvm_mp_state mp{};
    mp.mp_state = KVM_MP_STATE_RUNNABLE;
    if (ioctl(fd_, KVM_SET_MP_STATE, &mp) < 0) {
      return Errno("KVM_SET_MP_STATE", index_);
    }
  }
  pending_ = Pending::kNone;
  run_->request_interrupt_window = 0;
  ReadTscOffset();
  MutexLock lock(&mu_);
  halted_ = false;
  return absl::OkStatus();
}

absl::Status KvmVcpu::PrepareInjection() {
  if (!line_.load()) {
    run_->request_interrupt_window = 0;
    return absl::OkStatus();
  }
  if (run_->ready_for_interrupt_injection && run_->if_flag) {
    kvm_interrupt irq{};
    irq.irq = vm_->config().irq_vector;
    if (ioctl(fd_, KVM_INTERRUPT, &irq) < 0) {
      return Errno("KVM_INTERRUPT", index_);
    }
    injections_.fetch_add(1, std::memory_order_relaxed);
    run_->request_interrupt_window = 0;
  } else {
    run_->request_interrupt_window = 1;
  }
  return absl::OkStatus();
}

absl::StatusOr<VcpuExit> KvmVcpu::Run() {
  {
    MutexLock lock(&mu_);
    thread_ = pthread_self();
    has_thread_ = true;
  }
  // Signals go only to a thread inside Run(): between Runs the kick_ flag
  // and line_ are checked on entry, and a thread that has exited must never
  // be signalled.
  struct Leave {
    KvmVcpu* self;
    ~Leave() {
      MutexLock lock(&self->mu_);
      self->has_thread_ = false;
    }
  } leave{this};
  const bool inject = vm_->config().irq_delivery == IrqDelivery::kInject;
  VcpuExit exit;
  for (;;) {
    {
      MutexLock lock(&mu_);
      while (halted_ && !line_.load() && !kick_.load()) {
        in_halt_wait_.store(true);
        cv_.Wait(&mu_);
        in_halt_wait_.store(false);
      }
      if (kick_.exchange(false)) {
        exit.kind = VcpuExit::Kind::kInterrupted;
        return exit;
      }
      halted_ = false;
    }
    StoreImmediateExit(run_, 0);
    // A Kick() between here and KVM_RUN sets immediate_exit again.
    if (kick_.exchange(false)) {
      exit.kind = VcpuExit::Kind::kInterrupted;
      return exit;
    }
    if (inject) {
      absl::Status s = PrepareInjection();
      if (!s.ok()) return s;
    }
    const int r = ioctl(fd_, KVM_RUN, 0);
    if (r < 0) {
      if (errno == EINTR || errno == EAGAIN) {
        if (kick_.exchange(false)) {
          exit.kind = VcpuExit::Kind::kInterrupted;
          return exit;
        }
        continue;  // an IRQ-line kick: inject and re-enter
      }
      return Errno("KVM_RUN", index_);
    }
    switch (run_->exit_reason) {
      case KVM_EXIT_IO: {
        const auto& io = run_->io;
        uint8_t* data = reinterpret_cast<uint8_t*>(run_) + io.data_offset;
        if (io.count != 1) {
          exit.kind = VcpuExit::Kind::kError;
          exit.reason = absl::StrFormat(
              "string port I/O (rep ins/outs) at port 0x%x is not supported",
              io.port);
          return exit;
        }
        if (io.port == vm_->config().hypercall_port &&
            io.direction == KVM_EXIT_IO_OUT) {
          if (ioctl(fd_, KVM_GET_REGS, &hypercall_regs_) < 0) {
            return Errno("KVM_GET_REGS", index_);
          }
          exit.kind = VcpuExit::Kind::kHypercall;
          exit.args[0] = hypercall_regs_.rax & 0xffffffff;
          exit.args[1] = hypercall_regs_.rdi;
          exit.args[2] = hypercall_regs_.rsi;
          exit.args[3] = hypercall_regs_.r8;
          pending_ = Pending::kHypercall;
          return exit;
        }
        exit.kind = VcpuExit::Kind::kPio;
        exit.addr = io.port;
        exit.size = io.size;
        exit.is_write = io.direction == KVM_EXIT_IO_OUT;
        exit.data = 0;
        if (exit.is_write) {
          std::memcpy(&exit.data, data, io.size);
        } else {
          pending_ = Pending::kPioIn;
        }
        return exit;
      }
      case KVM_EXIT_MMIO: {
        const auto& m = run_->mmio;
        exit.kind = VcpuExit::Kind::kMmio;
        exit.addr = m.phys_addr;
        exit.size = static_cast<uint8_t>(m.len);
        exit.is_write = m.is_write != 0;
        exit.data = 0;
        if (exit.is_write) {
          std::memcpy(&exit.data, m.data, std::min<uint32_t>(m.len, 8));
        } else {
          pending_ = Pending::kMmioRead;
        }
        return exit;
      }
      case KVM_EXIT_HLT: {
        MutexLock lock(&mu_);
        halted_ = true;
        continue;
      }
      case KVM_EXIT_IRQ_WINDOW_OPEN:
      case KVM_EXIT_INTR:
        continue;
      case KVM_EXIT_SHUTDOWN:
        exit.kind = VcpuExit::Kind::kShutdown;
        exit.reason = "shutdown (triple fault)";
        return exit;
      case KVM_EXIT_FAIL_ENTRY:
        exit.kind = VcpuExit::Kind::kError;
        exit.reason = absl::StrFormat(
            "VM entry failed, hardware reason 0x%llx",
            static_cast<unsigned long long>(
                run_->fail_entry.hardware_entry_failure_reason));
        return exit;
      case KVM_EXIT_INTERNAL_ERROR:
        exit.kind = VcpuExit::Kind::kError;
        exit.reason = absl::StrFormat("KVM internal error, suberror %u",
                                      run_->internal.suberror);
        return exit;
      default:
        exit.kind = VcpuExit::Kind::kError;
        exit.reason =
            absl::StrFormat("unexpected KVM exit reason %u", run_->exit_reason);
        return exit;
    }
  }
}

absl::Status KvmVcpu::CompleteRead(uint64_t value) {
  switch (pending_) {
    case Pending::kPioIn: {
      uint8_t* data = reinterpret_cast<uint8_t*>(run_) + run_->io.data_offset;
      std::memcpy(data, &value, run_->io.size);
      break;
    }
    case Pending::kMmioRead:
      std::memcpy(run_->mmio.data, &value,
                  std::min<uint32_t>(run_->mmio.len, 8));
      break;
    default:
      return absl::FailedPreconditionError("no read exit to complete");
  }
  pending_ = Pending::kNone;
  return absl::OkStatus();
}

absl::Status KvmVcpu::CompleteHypercall(uint64_t result) {
  if (pending_ != Pending::kHypercall) {
    return absl::FailedPreconditionError("no hypercall exit to complete");
  }
  pending_ = Pending::kNone;
  // RIP is unchanged; KVM skips the OUT on the next KVM_RUN.
  hypercall_regs_.rax = result;
  if (ioctl(fd_, KVM_SET_REGS, &hypercall_regs_) < 0) {
    return Errno("KVM_SET_REGS", index_);
  }
  return absl::OkStatus();
}

absl::StatusOr<int64_t> KvmVcpu::GuestTscOffset() const {
  if (!tsc_offset_known_.load()) {
    return absl::UnavailableError(absl::StrFormat(
        "vCPU %u: TSC offset unknown (vCPU not reset yet, or KVM lacks "
        "KVM_VCPU_TSC_OFFSET)",
        index_));
  }
  return tsc_offset_.load();
}

void KvmVcpu::ReadTscOffset() {
  // A vCPU ioctl: only from the vCPU thread (KVM serialises vCPU ioctls
  // against KVM_RUN).
  uint64_t offset = 0;
  kvm_device_attr attr{};
  attr.group = KVM_VCPU_TSC_CTRL;
  attr.attr = KVM_VCPU_TSC_OFFSET;
  attr.addr = reinterpret_cast<uint64_t>(&offset);
  if (ioctl(fd_, KVM_GET_DEVICE_ATTR, &attr) == 0) {
    tsc_offset_.store(static_cast<int64_t>(offset));
    tsc_offset_known_.store(true);
  }
}

void KvmVcpu::SignalThread() {
  StoreImmediateExit(run_, 1);
  MutexLock lock(&mu_);
  if (has_thread_ && !in_halt_wait_.load()) pthread_kill(thread_, kKickSignal);
  cv_.NotifyAll();
}

void KvmVcpu::Kick() {
  kick_.store(true);
  SignalThread();
}

void KvmVcpu::SetLevel(bool high) {
  const bool was = line_.exchange(high);
  if (!high || was) return;
  if (vm_->config().irq_delivery == IrqDelivery::kLapic) {
    (void)vm_->SignalMsi(index_, vm_->config().irq_vector);
    return;
  }
  SignalThread();
}

}  // namespace hv::arch
