#include "hv/arch/fake_vm.h"

#include "absl/strings/str_format.h"

namespace hv::arch {

void FakeVcpu::PushExit(const VcpuExit& exit) {
  MutexLock lock(&mu_);
  script_.push_back(Item{false, exit});
  cv_.NotifyAll();
}

void FakeVcpu::PushHalt() {
  MutexLock lock(&mu_);
  script_.push_back(Item{true, {}});
  cv_.NotifyAll();
}

std::vector<BootState> FakeVcpu::resets() const {
  MutexLock lock(&mu_);
  return resets_;
}
std::vector<uint64_t> FakeVcpu::read_completions() const {
  MutexLock lock(&mu_);
  return reads_;
}
std::vector<uint64_t> FakeVcpu::hypercall_results() const {
  MutexLock lock(&mu_);
  return hypercalls_;
}
bool FakeVcpu::line_level() const {
  MutexLock lock(&mu_);
  return line_;
}
int FakeVcpu::line_raises() const {
  MutexLock lock(&mu_);
  return raises_;
}
int FakeVcpu::kicks() const {
  MutexLock lock(&mu_);
  return kicks_;
}
int FakeVcpu::runs() const {
  MutexLock lock(&mu_);
  return runs_;
}

bool FakeVcpu::WaitIdle(std::chrono::milliseconds timeout) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  MutexLock lock(&mu_);
  while (!(script_.empty() && waiting_)) {
    const auto now = std::chrono::steady_clock::now();
    if (now >= deadline) return false;
    cv_.WaitFor(&mu_, deadline - now);
  }
  return true;
}

absl::Status FakeVcpu::Reset(const BootState& state) {
  MutexLock lock(&mu_);
  resets_.push_back(state);
  last_.reset();
  return absl::OkStatus();
}

absl::StatusOr<CpuRegisters> FakeVcpu::GetRegisters() {
  MutexLock lock(&mu_);
  CpuRegisters r{};
  if (!resets_.empty()) {
    const BootState& b = resets_.back();
    r.rip = b.rip;
    r.rsp = b.rsp;
    r.rdi = b.rdi;
    r.rsi = b.rsi;
    r.rdx = b.rdx;
    r.rcx = b.rcx;
    r.cr3 = b.cr3;
    r.cr0 = 0x80050033;  // PE|MP|ET|NE|WP|AM|PG
    r.efer = 0x500;      // LME|LMA
  }
  r.rflags = 0x2;
  return r;
}

absl::StatusOr<VcpuExit> FakeVcpu::Run() {
  MutexLock lock(&mu_);
  ++runs_;
  for (;;) {
    if (kicked_) {
      kicked_ = false;
      VcpuExit e;
      e.kind = VcpuExit::Kind::kInterrupted;
      return e;
    }
    if (!script_.empty()) {
      Item& front = script_.front();
      if (!front.halt) {
        VcpuExit e = front.exit;
        script_.pop_front();
        last_ = e;
        return e;
      }
      if (line_) {  // halt completed by the IRQ line
        script_.pop_front();
        continue;
      }
    }
    waiting_ = true;
    cv_.NotifyAll();
    cv_.Wait(&mu_);
    waiting_ = false;
  }
}

absl::Status FakeVcpu::CompleteRead(uint64_t value) {
  MutexLock lock(&mu_);
  if (!last_ || last_->is_write ||
      (last_->kind != VcpuExit::Kind::kMmio &&
       last_->kind != VcpuExit::Kind::kPio)) {
    return absl::FailedPreconditionError("no read exit to complete");
  }
  reads_.push_back(value);
  last_.reset();
  return absl::OkStatus();
}

absl::Status FakeVcpu::CompleteHypercall(uint64_t result) {
  MutexLock lock(&mu_);
  if (!last_ || last_->kind != VcpuExit::Kind::kHypercall) {
    return absl::FailedPreconditionError("no hypercall exit to complete");
  }
  hypercalls_.push_back(result);
  last_.reset();
  return absl::OkStatus();
}

void FakeVcpu::Kick() {
  MutexLock lock(&mu_);
  kicked_ = true;
  ++kicks_;
  cv_.NotifyAll();
}

void FakeVcpu::SetLevel(bool high) {
  MutexLock lock(&mu_);
  if (high && !line_) ++raises_;
  line_ = high;
  cv_.NotifyAll();
}

absl::Status FakeVm::MapMemory(GuestMemory& memory) {
  MutexLock lock(&mu_);
  if (memory_ != nullptr) {
    return absl::FailedPreconditionError("memory already mapped");
  }
  memory_ = &memory;
  return absl::OkStatus();
}

absl::StatusOr<std::unique_ptr<Vcpu>> FakeVm::CreateVcpu(uint32_t index) {
  MutexLock lock(&mu_);
  if (index >= max_vcpus_) {
    return absl::InvalidArgumentError(
        absl::StrFormat("vcpu index %u >= max %u", index, max_vcpus_));
  }
  if (vcpus_.size() <= index) vcpus_.resize(index + 1, nullptr);
  if (vcpus_[index] != nullptr) {
    return absl::AlreadyExistsError(absl::StrFormat("vcpu %u exists", index));
  }
  auto vcpu = std::make_unique<FakeVcpu>(index);
  vcpus_[index] = vcpu.get();
  return std::unique_ptr<Vcpu>(std::move(vcpu));
}

FakeVcpu* FakeVm::vcpu(uint32_t index) const {
  MutexLock lock(&mu_);
  return index < vcpus_.size() ? vcpus_[index] : nullptr;
}

GuestMemory* FakeVm::memory() const {
  MutexLock lock(&mu_);
  return memory_;
}

}  // namespace hv::arch
