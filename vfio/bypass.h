// IRQ bypass pairing (DESIGN §3; modelled on Linux's irqbypass): a producer
// (a host vector that can deliver by itself, here the vfio core's IRQ) and a
// consumer (a VM's forward of that vector, here the gicv3 arch layer) meet
// by token, 1:1. Either side may register first; when both are present the
// manager calls consumer->AddProducer(producer) (which may Post() a posted
// entry into the producer); unregistering either side calls DelProducer
// first (which must Unpost()). Unpairing cannot fail.
//
// Lock: mu_ (hv::Mutex) guards the token table and is held across
// AddProducer/DelProducer (so a pair is connected/disconnected atomically
// with respect to registration). Order: BypassManager::mu_ → consumer locks →
// VfioCore::mu_. Callbacks must not call back into the manager.
#ifndef VFIO_BYPASS_H_
#define VFIO_BYPASS_H_

#include <cstdint>
#include <map>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "hv/base/locks.h"
#include "tools/hwsim/hwsim.h"

namespace vfio {

class BypassProducer {
 public:
  virtual ~BypassProducer() = default;
  // Installs / rewrites the posted entry (the vector then bypasses every
  // host handler) / removes it (back to remapped delivery).
  [[nodiscard]] virtual absl::Status Post(hwsim::PostedEntry entry) = 0;
  virtual void Unpost() = 0;
};

class BypassConsumer {
 public:
  virtual ~BypassConsumer() = default;
  // A failure leaves the pair connected but not posted (mediated delivery).
  [[nodiscard]] virtual absl::Status AddProducer(BypassProducer* p) = 0;
  virtual void DelProducer(BypassProducer* p) = 0;
};

class BypassManager {
 public:
  // AlreadyExists if the token already has a producer (resp. consumer).
  [[nodiscard]] absl::Status RegisterProducer(uint64_t token,
                                              BypassProducer* p);
  void UnregisterProducer(uint64_t token);
  [[nodiscard]] absl::Status RegisterConsumer(uint64_t token,
                                              BypassConsumer* c);
  void UnregisterConsumer(uint64_t token);
  bool Paired(uint64_t token) const;

 private:
  struct Slot {
    BypassProducer* producer = nullptr;
    BypassConsumer* consumer = nullptr;
  };
  mutable hv::Mutex mu_;
  std::map<uint64_t, Slot> slots_ ABSL_GUARDED_BY(mu_);
};

}  // namespace vfio

#endif  // VFIO_BYPASS_H_
