// A 16550A UART (transmit side) on the PIO bus at HV_VIRT_UART_PORT.
//
// Register set per the National Semiconductor PC16550D datasheet, Table II:
// RBR/THR/DLL(0) IER/DLM(1) IIR/FCR(2) LCR(3) MCR(4) LSR(5) MSR(6) SCR(7).
// Bytes written to THR go to the sink immediately, so LSR always reports
// THRE|TEMT (transmitter empty). There is no receive path: LSR.DR stays 0 and
// RBR reads 0. Interrupts are not generated (IIR reads "no interrupt
// pending"); IER is stored and read back. MCR loopback is stored but not
// emulated.
//
// Locking: `mu_` guards the registers and serialises calls to the sink, so
// output from several vCPUs is never interleaved inside a byte stream write.
// The sink must not call back into the UART. Leaf lock.
#ifndef HV_PLATFORM_UART16550_H_
#define HV_PLATFORM_UART16550_H_

#include <cstdint>
#include <functional>

#include "hv/base/locks.h"
#include "hv/mmio/mmio_device.h"

namespace hv {

class Uart16550 : public MmioDevice {
 public:
  static constexpr uint64_t kNumPorts = 8;
  enum class Reg : uint64_t {
    kData = 0,    // RBR (read) / THR (write); DLL when LCR.DLAB
    kIer = 1,     // DLM when LCR.DLAB
    kIirFcr = 2,  // IIR (read) / FCR (write)
    kLcr = 3,
    kMcr = 4,
    kLsr = 5,
    kMsr = 6,
    kScr = 7,
  };
  static constexpr uint8_t kLcrDlab = 0x80;
  static constexpr uint8_t kLsrThre = 0x20;
  static constexpr uint8_t kLsrTemt = 0x40;
  static constexpr uint8_t kIirNoInterrupt = 0x01;
  static constexpr uint8_t kIirFifoEnabled = 0xc0;
  static constexpr uint8_t kMsrDcdDsrCts = 0xb0;

  explicit Uart16550(std::function<void(char)> sink) : sink_(std::move(sink)) {}

  absl::Status Read(const MmioContext& ctx, uint64_t offset, uint8_t size,
                    uint64_t* value) override;
  absl::Status Write(const MmioContext& ctx, uint64_t offset, uint8_t size,
                     uint64_t value) override;

  uint64_t bytes_written() const;

 private:
  const std::function<void(char)> sink_;
  mutable Mutex mu_;
  uint8_t ier_ ABSL_GUARDED_BY(mu_) = 0;
  uint8_t lcr_ ABSL_GUARDED_BY(mu_) = 0x03;  // 8N1
  uint8_t mcr_ ABSL_GUARDED_BY(mu_) = 0;
  uint8_t scr_ ABSL_GUARDED_BY(mu_) = 0;
  uint8_t dll_ ABSL_GUARDED_BY(mu_) = 0x01;  // 115200 baud
  uint8_t dlm_ ABSL_GUARDED_BY(mu_) = 0;
  bool fifo_enabled_ ABSL_GUARDED_BY(mu_) = false;
  uint64_t bytes_ ABSL_GUARDED_BY(mu_) = 0;
};

}  // namespace hv

#endif  // HV_PLATFORM_UART16550_H_
