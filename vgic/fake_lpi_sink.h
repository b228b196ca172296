// A test double for vgic::LpiSink: per-vCPU pending bitmaps with atomic bit
// operations (the shape the vGIC core uses), a configuration-byte table the
// test sets directly (standing in for the guest's LPI configuration table),
// and counters for the calls the ITS makes. Thread-safe.
#ifndef VGIC_FAKE_LPI_SINK_H_
#define VGIC_FAKE_LPI_SINK_H_

#include <atomic>
#include <cstdint>
#include <memory>
#include <vector>

#include "vgic/lpi_sink.h"

namespace vgic {

class FakeLpiSink : public LpiSink {
 public:
  FakeLpiSink(uint32_t num_vcpus, uint32_t id_bits)
      : num_vcpus_(num_vcpus),
        id_bits_(id_bits),
        words_((size_t{1} << id_bits) / 64),
        pending_(new std::atomic<uint64_t>[num_vcpus * words_]),
        config_(new std::atomic<uint8_t>[size_t{1} << id_bits]),
        applied_(new std::atomic<int>[size_t{1} << id_bits]) {
    for (size_t i = 0; i < num_vcpus * words_; ++i) pending_[i] = 0;
    for (size_t i = 0; i < (size_t{1} << id_bits); ++i) {
      config_[i] = 0;
      applied_[i] = -1;
    }
  }

  uint32_t num_vcpus() const override { return num_vcpus_; }
  uint32_t id_bits() const override { return id_bits_; }

  bool SetPending(uint32_t vcpu, uint32_t intid) override {
    set_calls.fetch_add(1, std::memory_order_relaxed);
    const uint64_t bit = uint64_t{1} << (intid % 64);
    return !(Word(vcpu, intid).fetch_or(bit) & bit);
  }
  bool ClearPending(uint32_t vcpu, uint32_t intid) override {
    const uint64_t bit = uint64_t{1} << (intid % 64);
    return Word(vcpu, intid).fetch_and(~bit) & bit;
  }
  void MovePending(uint32_t from, uint32_t to, uint32_t intid) override {
    move_calls.fetch_add(1, std::memory_order_relaxed);
    if (ClearPending(from, intid)) SetPending(to, intid);
  }
  void MoveAllPending(uint32_t from, uint32_t to) override {
    move_all_calls.fetch_add(1, std::memory_order_relaxed);
    if (from == to || from >= num_vcpus_ || to >= num_vcpus_) return;
    for (size_t w = 0; w < words_; ++w) {
      const uint64_t bits = pending_[from * words_ + w].exchange(0);
      if (bits != 0) pending_[to * words_ + w].fetch_or(bits);
    }
  }
  bool IsPending(uint32_t vcpu, uint32_t intid) const override {
    const uint64_t bit = uint64_t{1} << (intid % 64);
    return Word(vcpu, intid).load() & bit;
  }
  absl::StatusOr<uint8_t> ReadConfigByte(uint32_t,
                                         uint32_t intid) const override {
    read_config_calls.fetch_add(1);
    if (!config_table_ready)
      return absl::FailedPreconditionError("no PROPBASER");
    return config_[intid].load();
  }
  void ApplyConfigByte(uint32_t intid, uint8_t config) override {
    applied_[intid] = config;
  }
  absl::Status InvalidateAll(uint32_t vcpu) override {
    invalidate_all_calls.fetch_add(1);
    last_invalidate_all_vcpu = vcpu;
    return absl::OkStatus();
  }
  bool LpisEnabled(uint32_t) const override { return true; }

  // Test controls.
  void SetConfig(uint32_t intid, uint8_t config) { config_[intid] = config; }
  int Applied(uint32_t intid) const { return applied_[intid].load(); }
  int PendingCount(uint32_t vcpu) const {
    int n = 0;
    for (size_t w = 0; w < words_; ++w) {
      n += __builtin_popcountll(pending_[vcpu * words_ + w].load());
    }
    return n;
  }

  std::atomic<bool> config_table_ready{true};
  std::atomic<uint64_t> set_calls{0};
  std::atomic<uint64_t> move_calls{0};
  std::atomic<uint64_t> move_all_calls{0};
  mutable std::atomic<uint64_t> read_config_calls{0};
  std::atomic<uint64_t> invalidate_all_calls{0};
  std::atomic<uint32_t> last_invalidate_all_vcpu{0};

 private:
  std::atomic<uint64_t>& Word(uint32_t vcpu, uint32_t intid) const {
    return pending_[vcpu * words_ + intid / 64];
  }

  const uint32_t num_vcpus_;
  const uint32_t id_bits_;
  const size_t words_;
  std::unique_ptr<std::atomic<uint64_t>[]> pending_;
  std::unique_ptr<std::atomic<uint8_t>[]> config_;
  std::unique_ptr<std::atomic<int>[]> applied_;
};

}  // namespace vgic

#endif  // VGIC_FAKE_LPI_SINK_H_
