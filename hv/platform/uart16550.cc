#include "hv/platform/uart16550.h"

#include "absl/strings/str_format.h"

namespace hv {

absl::Status Uart16550::Read(const MmioContext& /*ctx*/, uint64_t offset,
                             uint8_t size, uint64_t* value) {
  if (size != 1 || offset >= kNumPorts) {
    return absl::InvalidArgumentError(
        absl::StrFormat("uart: %u-byte read at +%u", size, offset));
  }
  MutexLock lock(&mu_);
  const bool dlab = (lcr_ & kLcrDlab) != 0;
  switch (static_cast<Reg>(offset)) {
    case Reg::kData:
      *value = dlab ? dll_ : 0;  // no receive path: RBR empty
      break;
    case Reg::kIer:
      *value = dlab ? dlm_ : ier_;
      break;
    case Reg::kIirFcr:
      *value = kIirNoInterrupt | (fifo_enabled_ ? kIirFifoEnabled : 0);
      break;
    case Reg::kLcr:
      *value = lcr_;
      break;
    case Reg::kMcr:
      *value = mcr_;
      break;
    case Reg::kLsr:
      *value = kLsrThre | kLsrTemt;
      break;
    case Reg::kMsr:
      *value = kMsrDcdDsrCts;
      break;
    case Reg::kScr:
      *value = scr_;
      break;
  }
  return absl::OkStatus();
}

absl::Status Uart16550::Write(const MmioContext& /*ctx*/, uint64_t offset,
                              uint8_t size, uint64_t value) {
  if (size != 1 || offset >= kNumPorts) {
    return absl::InvalidArgumentError(
        absl::StrFormat("uart: %u-byte write at +%u", size, offset));
  }
  const uint8_t v = static_cast<uint8_t>(value);
  MutexLock lock(&mu_);
  const bool dlab = (lcr_ & kLcrDlab) != 0;
  switch (static_cast<Reg>(offset)) {
    case Reg::kData:
      if (dlab) {
        dll_ = v;
      } else {
        ++bytes_;
        if (sink_) sink_(static_cast<char>(v));
      }
      break;
    case Reg::kIer:
      if (dlab) {
        dlm_ = v;
      } else {
        ier_ = v & 0x0f;
      }
      break;
    case Reg::kIirFcr:
      fifo_enabled_ = (v & 1) != 0;
      break;
    case Reg::kLcr:
      lcr_ = v;
      break;
    case Reg::kMcr:
      mcr_ = v & 0x1f;
      break;
    case Reg::kLsr:
    case Reg::kMsr:
      break;  // read-only; writes ignored
    case Reg::kScr:
      scr_ = v;
      break;
  }
  return absl::OkStatus();
}

uint64_t Uart16550::bytes_written() const {
  MutexLock lock(&mu_);
  return bytes_;
}

}  // namespace hv
