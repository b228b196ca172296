// A drain barrier between in-flight DMA and invalidation commands.
//
// VT-d invalidation completes only when no request still using the old
// translation is in flight (the IOTLB register's drain-read/drain-write
// semantics, §6.5.5). Every translation/DMA holds the gate shared for its
// whole duration (translate + memory access); an invalidation, after
// updating the caches, calls Drain(), which waits until every request that
// entered before has left. New requests back off while a drain is pending,
// so a drain cannot be starved. Atomics only (seq_cst Dekker handshake), so
// the DMA fast path takes no mutex for it and TSan sees every edge.
#ifndef IOMMU_DMA_GATE_H_
#define IOMMU_DMA_GATE_H_

#include <atomic>
#include <cstdint>
#include <thread>

namespace iommu {

class DmaGate {
 public:
  void Enter() {
    for (;;) {
      readers_.fetch_add(1);
      if (draining_.load() == 0) return;
      readers_.fetch_sub(1);
      while (draining_.load() != 0) std::this_thread::yield();
    }
  }
  void Exit() { readers_.fetch_sub(1); }
  // Must not be called by a thread that is inside the gate.
  void Drain() {
    draining_.fetch_add(1);
    while (readers_.load() != 0) std::this_thread::yield();
    draining_.fetch_sub(1);
  }

  class Scope {
   public:
    explicit Scope(DmaGate* g) : g_(g) { g_->Enter(); }
    ~Scope() { g_->Exit(); }
    Scope(const Scope&) = delete;
    Scope& operator=(const Scope&) = delete;

   private:
    DmaGate* const g_;
  };

 private:
  std::atomic<uint64_t> readers_{0};
  std::atomic<uint64_t> draining_{0};
};

}  // namespace iommu

#endif  // IOMMU_DMA_GATE_H_
