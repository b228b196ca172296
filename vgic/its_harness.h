// Drives an Its the way a guest driver does: programs GITS_BASER0/1, CBASER
// and CTLR through MMIO and issues commands through the queue in guest
// memory. Used by the ITS tests, fuzzers and benchmarks.
#ifndef VGIC_ITS_HARNESS_H_
#define VGIC_ITS_HARNESS_H_

#include <cstdint>
#include <memory>
#include <vector>

#include "absl/status/status.h"
#include "hv/memory/guest_memory.h"
#include "vgic/its.h"
#include "vgic/its_commands.h"
#include "vgic/lpi_sink.h"

namespace vgic {

class ItsHarness {
 public:
  // Guest memory layout used by the harness (all in the first 8 MiB).
  static constexpr uint64_t kCmdq = 0x10000;        // CBASER, cmdq_pages × 4K
  static constexpr uint64_t kDevTable = 0x100000;   // BASER0, 1 × 64 KiB
  static constexpr uint64_t kCollTable = 0x110000;  // BASER1, 1 × 64 KiB
  static constexpr uint64_t kL2Page = 0x120000;     // indirect level-2 page
  static constexpr uint64_t kIttBase = 0x200000;    // ITTs, 4 KiB apart
  static constexpr uint64_t kRamSize = 0x800000;

  ItsHarness(LpiSink* sink, ItsOptions opts = {}, uint32_t cmdq_pages = 1)
      : sink_(sink), cmdq_bytes_(uint64_t{cmdq_pages} * 4096) {
    mem_ = std::move(hv::GuestMemory::Create({{0, kRamSize}})).value();
    its_ = std::make_unique<Its>(sink, mem_.get(), opts);
  }

  Its& its() { return *its_; }
  hv::GuestMemory& mem() { return *mem_; }
  std::unique_ptr<Its>& its_ptr() { return its_; }

  absl::Status W64(uint64_t off, uint64_t v) {
    return its_->Write(hv::MmioContext{0, 0}, off, 8, v);
  }
  absl::Status W32(uint64_t off, uint64_t v) {
    return its_->Write(hv::MmioContext{0, 0}, off, 4, v);
  }
  uint64_t R64(uint64_t off) {
    uint64_t v = ~0ull;
    its_->Read(hv::MmioContext{0, 0}, off, 8, &v).IgnoreError();
    return v;
  }
  uint32_t R32(uint64_t off) {
    uint64_t v = ~0ull;
    its_->Read(hv::MmioContext{0, 0}, off, 4, &v).IgnoreError();
    return static_cast<uint32_t>(v);
  }

  // BASER0 (flat, or indirect with one valid level-1 entry for DeviceIDs
  // 0..8191), BASER1, CBASER, then GITS_CTLR.Enabled.
  void Enable(bool indirect = false) {
    const uint64_t valid = uint64_t{1} << 63;
    if (indirect) {
      mem_->WriteObj<uint64_t>(kDevTable, valid | kL2Page).IgnoreError();
      W64(0x100, valid | uint64_t{1} << 62 | kDevTable).IgnoreError();
    } else {
      W64(0x100, valid | kDevTable).IgnoreError();
    }
    W64(0x108, valid | kCollTable).IgnoreError();
    W64(0x80, valid | kCmdq | (cmdq_bytes_ / 4096 - 1)).IgnoreError();
    W32(0x0, 1).IgnoreError();
    cwriter_ = 0;
  }

  // Writes commands at CWRITER (wrapping) and rings the doorbell once.
  void Send(const std::vector<its::cmd::Raw>& cmds) {
    for (const auto& c : cmds) {
      mem_->Write(kCmdq + cwriter_, c.data(), 32).IgnoreError();
      cwriter_ = (cwriter_ + 32) % cmdq_bytes_;
    }
    W64(0x88, cwriter_).IgnoreError();
  }
  void Send(const its::cmd::Raw& c) { Send(std::vector<its::cmd::Raw>{c}); }

  static uint64_t Itt(uint32_t device) { return kIttBase + device * 0x1000ull; }
  uint32_t LastError() { return its_->GetErrorStats().last_error; }
  uint64_t cwriter() const { return cwriter_; }
  void set_cwriter(uint64_t v) { cwriter_ = v; }

 private:
  LpiSink* sink_;
  uint64_t cmdq_bytes_;
  uint64_t cwriter_ = 0;
  std::unique_ptr<hv::GuestMemory> mem_;
  std::unique_ptr<Its> its_;
};

}  // namespace vgic

#endif  // VGIC_ITS_HARNESS_H_
