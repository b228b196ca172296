#include "vfio/bypass.h"

#include "absl/strings/str_cat.h"

namespace vfio {

absl::Status BypassManager::RegisterProducer(uint64_t token,
                                             BypassProducer* p) {
  hv::MutexLock l(&mu_);
  Slot& s = slots_[token];
  if (s.producer != nullptr) {
    return absl::AlreadyExistsError(
        absl::StrCat("bypass token ", token, " has a producer"));
  }
  s.producer = p;
  // A consumer's failure to post leaves the pair connected (mediated).
  if (s.consumer != nullptr) s.consumer->AddProducer(p).IgnoreError();
  return absl::OkStatus();
}

void BypassManager::UnregisterProducer(uint64_t token) {
  hv::MutexLock l(&mu_);
  auto it = slots_.find(token);
  if (it == slots_.end() || it->second.producer == nullptr) return;
  if (it->second.consumer != nullptr) {
    it->second.consumer->DelProducer(it->second.producer);
  }
  it->second.producer = nullptr;
  if (it->second.consumer == nullptr) slots_.erase(it);
}

absl::Status BypassManager::RegisterConsumer(uint64_t token,
                                             BypassConsumer* c) {
  hv::MutexLock l(&mu_);
  Slot& s = slots_[token];
  if (s.consumer != nullptr) {
    return absl::AlreadyExistsError(
        absl::StrCat("bypass token ", token, " has a consumer"));
  }
  s.consumer = c;
  if (s.producer != nullptr) c->AddProducer(s.producer).IgnoreError();
  return absl::OkStatus();
}

void BypassManager::UnregisterConsumer(uint64_t token) {
  hv::MutexLock l(&mu_);
  auto it = slots_.find(token);
  if (it == slots_.end() || it->second.consumer == nullptr) return;
  if (it->second.producer != nullptr) {
    it->second.consumer->DelProducer(it->second.producer);
  }
  it->second.consumer = nullptr;
  if (it->second.producer == nullptr) slots_.erase(it);
}

bool BypassManager::Paired(uint64_t token) const {
  hv::MutexLock l(&mu_);
  auto it = slots_.find(token);
  return it != slots_.end() && it->second.producer != nullptr &&
         it->second.consumer != nullptr;
}

}  // namespace vfio
