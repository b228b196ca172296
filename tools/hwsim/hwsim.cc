#include "tools/hwsim/hwsim.h"

#include <sys/eventfd.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>

#include "absl/container/flat_hash_set.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"

namespace hwsim {
namespace {

constexpr uint64_t kPage = 4096;

template <typename T>
T Load(const T* p) {
  return __atomic_load_n(p, __ATOMIC_ACQUIRE);
}
template <typename T>
void Store(T* p, T v) {
  __atomic_store_n(p, v, __ATOMIC_RELEASE);
}

absl::Status Errno(absl::string_view what) {
  return absl::InternalError(absl::StrCat(what, ": ", std::strerror(errno)));
}

}  // namespace

// ---------------------------------------------------------------- inventory

InventorySpec InventorySpec::Default() {
  InventorySpec s;
  for (int i = 1; i <= 4; ++i) {
    s.pci.push_back({absl::StrCat("0000:0", i, ":00.0"), 8});
  }
  s.platform.push_back({"plat0"});
  s.platform.push_back({"plat1"});
  return s;
}

absl::StatusOr<uint16_t> ParseBdf(absl::string_view bdf) {
  // dddd:bb:dd.f (PCI Firmware spec segment:bus:device.function).
  std::vector<absl::string_view> p = absl::StrSplit(bdf, absl::ByAnyChar(":."));
  uint32_t dom, bus, dev, fn;
  if (p.size() != 4 || p[0].size() != 4 || p[1].size() != 2 ||
      p[2].size() != 2 || p[3].size() != 1 ||
      !absl::SimpleHexAtoi(p[0], &dom) || !absl::SimpleHexAtoi(p[1], &bus) ||
      !absl::SimpleHexAtoi(p[2], &dev) || !absl::SimpleHexAtoi(p[3], &fn) ||
      dev > 31 || fn > 7 || dom != 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("bdf: '", bdf, "' is not 0000:bb:dd.f"));
  }
  return static_cast<uint16_t>(bus << 8 | dev << 3 | fn);
}

absl::StatusOr<InventorySpec> InventorySpec::Parse(absl::string_view text) {
  InventorySpec s;
  absl::flat_hash_set<std::string> ids;
  int line_no = 0;
  for (absl::string_view line : absl::StrSplit(text, '\n')) {
    ++line_no;
    if (size_t hash = line.find('#'); hash != line.npos)
      line = line.substr(0, hash);
    std::vector<absl::string_view> w =
        absl::StrSplit(line, absl::ByAnyChar(" \t"), absl::SkipEmpty());
    if (w.empty()) continue;
    auto bad = [&](absl::string_view why) {
      return absl::InvalidArgumentError(
          absl::StrCat("inventory line ", line_no, ": ", why));
    };
    if (w.size() < 2) return bad("expected '<kind> <id>'");
    if (!ids.insert(std::string(w[1])).second) return bad("duplicate id");
    if (w[0] == "pci") {
      if (!ParseBdf(w[1]).ok()) return bad("bad BDF");
      PciFunctionSpec f{std::string(w[1]), 8};
      for (size_t i = 2; i < w.size(); ++i) {
        absl::string_view a = w[i];
        if (!absl::ConsumePrefix(&a, "vectors=") ||
            !absl::SimpleAtoi(a, &f.vectors) || f.vectors == 0 ||
            f.vectors > HWSIM_MAX_VECTORS) {
          return bad(absl::StrCat("bad option '", w[i], "' (vectors=1..",
                                  HWSIM_MAX_VECTORS, ")"));
        }
      }
      s.pci.push_back(std::move(f));
    } else if (w[0] == "platform") {
      if (w.size() != 2) return bad("platform takes no options");
      s.platform.push_back({std::string(w[1])});
    } else {
      return bad(absl::StrCat("unknown kind '", w[0], "'"));
    }
  }
  return s;
}

// ---------------------------------------------------------------- posted

absl::StatusOr<std::shared_ptr<PostedRegion>> PostedRegion::Map(
    int fd, uint64_t bytes_per_vcpu, uint32_t num_vcpus) {
  if (fd < 0 || bytes_per_vcpu < 1024 || num_vcpus == 0) {
    return absl::InvalidArgumentError("posted region: bad layout");
  }
  void* p = mmap(nullptr, bytes_per_vcpu * num_vcpus, PROT_READ | PROT_WRITE,
                 MAP_SHARED, fd, 0);
  if (p == MAP_FAILED) return Errno("posted region: mmap");
  return std::shared_ptr<PostedRegion>(
      new PostedRegion(p, bytes_per_vcpu, num_vcpus));
}

PostedRegion::~PostedRegion() { munmap(base_, bytes_per_vcpu_ * num_vcpus_); }

bool PostedRegion::SetPending(uint32_t vcpu, uint32_t intid) {
  auto* words = reinterpret_cast<uint64_t*>(static_cast<char*>(base_) +
                                            vcpu * bytes_per_vcpu_);
  const uint64_t bit = uint64_t{1} << (intid % 64);
  const uint64_t old =
      __atomic_fetch_or(&words[intid / 64], bit, __ATOMIC_SEQ_CST);
  const uint32_t k = intid / 64;  // summary bit (vgic::LpiPendingLayout)
  __atomic_fetch_or(&words[k / 64], uint64_t{1} << (k % 64), __ATOMIC_SEQ_CST);
  return !(old & bit);
}

// ---------------------------------------------------------------- device

Device::~Device() {
  for (auto& v : vectors_) {
    if (v.eventfd >= 0) close(v.eventfd);
  }
  if (regs_ != nullptr) munmap(regs_, window_size_);
  if (window_fd_ >= 0) close(window_fd_);
}

absl::Status Device::Init() {
  window_size_ = (HWSIM_WINDOW_GUEST_SIZE + num_vectors_ * sizeof(hwsim_ring) +
                  kPage - 1) &
                 ~(kPage - 1);
  window_fd_ = memfd_create(("hwsim-" + id_).c_str(), MFD_CLOEXEC);
  if (window_fd_ < 0) return Errno("memfd_create");
  if (ftruncate(window_fd_, static_cast<off_t>(window_size_)) != 0) {
    return Errno("ftruncate");
  }
  void* p = mmap(nullptr, window_size_, PROT_READ | PROT_WRITE, MAP_SHARED,
                 window_fd_, 0);
  if (p == MAP_FAILED) return Errno("mmap window");
  regs_ = static_cast<hwsim_regs*>(p);
  regs_->magic = HWSIM_MAGIC;
  regs_->version = HWSIM_VERSION;
  regs_->kind =
      kind_ == DeviceKind::kPci ? HWSIM_KIND_PCI : HWSIM_KIND_PLATFORM;
  regs_->num_vectors = num_vectors_;
  regs_->requester_id = requester_id_;
  for (uint32_t v = 0; v < num_vectors_; ++v) {
    // Platform lines and vectors start enabled and unmasked (the host driver
    // owns them); a guest driver programs its own.
    regs_->vectors[v].ctrl = HWSIM_VEC_ENABLE;
    vectors_[v].ring = reinterpret_cast<hwsim_ring*>(
        reinterpret_cast<char*>(p) + HWSIM_WINDOW_GUEST_SIZE +
        v * sizeof(hwsim_ring));
    vectors_[v].eventfd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (vectors_[v].eventfd < 0) return Errno("eventfd");
  }
  return absl::OkStatus();
}

bool Device::Deliverable(uint32_t v) const {
  const uint32_t ctrl = Load(&regs_->vectors[v].ctrl);
  return (ctrl & HWSIM_VEC_ENABLE) && !(ctrl & HWSIM_VEC_MASK);
}

void Device::Signal(Vector& vec) {
  const uint64_t one = 1;
  // An eventfd counter cannot overflow here (it would take 2^64 writes).
  [[maybe_unused]] ssize_t n = write(vec.eventfd, &one, sizeof(one));
  vec.signals.fetch_add(1, std::memory_order_relaxed);
}

absl::StatusOr<uint64_t> Device::Fire(uint32_t v) {
  if (v >= num_vectors_) {
    return absl::InvalidArgumentError(
        absl::StrCat(id_, ": vector ", v, " >= ", num_vectors_));
  }
  Vector& vec = vectors_[v];
  hv::SpinLockHolder l(&vec.lock);
  const uint64_t seq = Load(&regs_->vectors[v].fired) + 1;
  Store(&regs_->vectors[v].fired, seq);
  if (level()) {
    const uint32_t st = Load(&regs_->status);
    if (st & HWSIM_STATUS_ASSERTED) {
      vec.level_coalesced.fetch_add(1, std::memory_order_relaxed);
      return seq;
    }
    Store(&regs_->status, st | HWSIM_STATUS_ASSERTED);
  } else if (vec.has_posted) {
    if (vec.posted.region->SetPending(vec.posted.vcpu, vec.posted.intid)) {
      vec.posted_delivered.fetch_add(1, std::memory_order_relaxed);
    } else {
      vec.posted_coalesced.fetch_add(1, std::memory_order_relaxed);
    }
    const uint64_t one = 1;
    [[maybe_unused]] ssize_t n = write(vec.posted.doorbell_fd, &one, 8);
    vec.signals.fetch_add(1, std::memory_order_relaxed);
    return seq;
  }
  hwsim_ring* r = vec.ring;
  const uint64_t head = Load(&r->head);
  if (head - Load(&r->tail) >= HWSIM_RING_SLOTS) {
    vec.ring_overflow.fetch_add(1, std::memory_order_relaxed);
  } else {
    Store(&r->slots[head % HWSIM_RING_SLOTS], seq);
    Store(&r->head, head + 1);
  }
  if (Deliverable(v)) Signal(vec);
  return seq;
}

size_t Device::Drain(uint32_t v, std::vector<uint64_t>* out) {
  if (v >= num_vectors_) return 0;
  hwsim_ring* r = vectors_[v].ring;
  uint64_t tail = Load(&r->tail);
  const uint64_t head = Load(&r->head);
  size_t n = 0;
  for (; tail != head; ++tail, ++n) {
    out->push_back(Load(&r->slots[tail % HWSIM_RING_SLOTS]));
  }
  Store(&r->tail, tail);
  vectors_[v].consumed.fetch_add(n, std::memory_order_relaxed);
  return n;
}

void Device::SetMasked(uint32_t v, bool masked) {
  if (v >= num_vectors_) return;
  Vector& vec = vectors_[v];
  hv::SpinLockHolder l(&vec.lock);
  uint32_t ctrl = Load(&regs_->vectors[v].ctrl);
  ctrl = masked ? (ctrl | HWSIM_VEC_MASK) : (ctrl & ~HWSIM_VEC_MASK);
  Store(&regs_->vectors[v].ctrl, ctrl);
  if (masked || !Deliverable(v)) return;
  // Unmask: queued messages (or a still-asserted line) signal now.
  const bool pending = level() ? (Load(&regs_->status) & HWSIM_STATUS_ASSERTED)
                               : Load(&vec.ring->head) != Load(&vec.ring->tail);
  if (pending) Signal(vec);
}

void Device::SetEnabled(uint32_t v, bool enabled) {
  if (v >= num_vectors_) return;
  {
    hv::SpinLockHolder l(&vectors_[v].lock);
    uint32_t ctrl = Load(&regs_->vectors[v].ctrl);
    ctrl = enabled ? (ctrl | HWSIM_VEC_ENABLE) : (ctrl & ~HWSIM_VEC_ENABLE);
    Store(&regs_->vectors[v].ctrl, ctrl);
  }
  if (enabled) SetMasked(v, masked(v));  // re-signal anything pending
}

bool Device::masked(uint32_t v) const {
  return v < num_vectors_ && (Load(&regs_->vectors[v].ctrl) & HWSIM_VEC_MASK);
}

bool Device::asserted() const {
  return Load(&regs_->status) & HWSIM_STATUS_ASSERTED;
}

void Device::ClearStatus() {
  if (!level()) return;
  hv::SpinLockHolder l(&vectors_[0].lock);
  Store(&regs_->status, Load(&regs_->status) & ~HWSIM_STATUS_ASSERTED);
}

absl::Status Device::SetPosted(uint32_t v, PostedEntry entry) {
  if (v >= num_vectors_ || level()) {
    return absl::InvalidArgumentError(
        absl::StrCat(id_, ": vector ", v, " cannot be posted"));
  }
  if (entry.region == nullptr || entry.doorbell_fd < 0 ||
      entry.vcpu >= entry.region->num_vcpus() || entry.intid < 8192 ||
      entry.intid / 8 >= entry.region->bytes_per_vcpu()) {
    return absl::InvalidArgumentError(
        absl::StrCat(id_, ": posted entry (vcpu ", entry.vcpu, ", intid ",
                     entry.intid, ") outside the pending bitmap"));
  }
  PostedEntry old;
  {
    hv::SpinLockHolder l(&vectors_[v].lock);
    old = std::move(vectors_[v].posted);
    vectors_[v].posted = std::move(entry);
    vectors_[v].has_posted = true;
  }
  return absl::OkStatus();  // `old` (its region ref) is released unlocked
}

void Device::ClearPosted(uint32_t v) {
  if (v >= num_vectors_) return;
  PostedEntry old;
  hv::SpinLockHolder l(&vectors_[v].lock);
  old = std::move(vectors_[v].posted);
  vectors_[v].posted = PostedEntry{};
  vectors_[v].has_posted = false;
}

bool Device::posted(uint32_t v) const {
  if (v >= num_vectors_) return false;
  hv::SpinLockHolder l(&vectors_[v].lock);
  return vectors_[v].has_posted;
}

VectorCounters Device::counters(uint32_t v) const {
  VectorCounters c;
  if (v >= num_vectors_) return c;
  const Vector& vec = vectors_[v];
  c.fired = Load(&regs_->vectors[v].fired);
  c.consumed = vec.consumed.load();
  c.queued = Load(&vec.ring->head) - Load(&vec.ring->tail);
  c.ring_overflow = vec.ring_overflow.load();
  c.posted_delivered = vec.posted_delivered.load();
  c.posted_coalesced = vec.posted_coalesced.load();
  c.level_coalesced = vec.level_coalesced.load();
  c.signals = vec.signals.load();
  return c;
}

// ---------------------------------------------------------------- window MMIO

absl::Status WindowMmio::Read(const hv::MmioContext&, uint64_t offset,
                              uint8_t size, uint64_t* value) {
  if ((size != 4 && size != 8) || offset % size != 0 ||
      offset + size > HWSIM_WINDOW_GUEST_SIZE) {
    return absl::InvalidArgumentError(
        absl::StrCat("hwsim window: bad read at 0x", absl::Hex(offset)));
  }
  const char* base = reinterpret_cast<const char*>(device_->regs());
  if (size == 4) {
    *value = Load(reinterpret_cast<const uint32_t*>(base + offset));
  } else {
    *value = Load(reinterpret_cast<const uint64_t*>(base + offset));
  }
  return absl::OkStatus();
}

absl::Status WindowMmio::Write(const hv::MmioContext&, uint64_t offset,
                               uint8_t size, uint64_t value) {
  if ((size != 4 && size != 8) || offset % size != 0 ||
      offset + size > HWSIM_WINDOW_GUEST_SIZE) {
    return absl::InvalidArgumentError(
        absl::StrCat("hwsim window: bad write at 0x", absl::Hex(offset)));
  }
  hwsim_regs* r = device_->regs();
  const uint32_t v32 = static_cast<uint32_t>(value);
  switch (offset) {
    case offsetof(hwsim_regs, status):
      if (v32 & HWSIM_STATUS_ASSERTED) device_->ClearStatus();
      return absl::OkStatus();
    case offsetof(hwsim_regs, fire):
      return device_->Fire(v32).status();
    case offsetof(hwsim_regs, gen_vector):
      Store(&r->gen_vector, v32);
      return absl::OkStatus();
    case offsetof(hwsim_regs, gen_burst):
      Store(&r->gen_burst, v32);
      return absl::OkStatus();
    case offsetof(hwsim_regs, gen_rate_hz):
      Store(&r->gen_rate_hz, v32);
      return absl::OkStatus();
    case offsetof(hwsim_regs, gen_count):
      return machine_->StartGenerator(device_->id(), Load(&r->gen_vector),
                                      value, Load(&r->gen_burst),
                                      Load(&r->gen_rate_hz));
    default:
      break;
  }
  if (offset >= HWSIM_OFF_VECTORS &&
      offset <
          HWSIM_OFF_VECTORS + device_->num_vectors() * HWSIM_VECTOR_STRIDE) {
    const uint32_t v = (offset - HWSIM_OFF_VECTORS) / HWSIM_VECTOR_STRIDE;
    const uint64_t field = (offset - HWSIM_OFF_VECTORS) % HWSIM_VECTOR_STRIDE;
    hwsim_vector_regs& vr = r->vectors[v];
    switch (field) {
      case offsetof(hwsim_vector_regs, ctrl):
        device_->SetEnabled(v, v32 & HWSIM_VEC_ENABLE);
        device_->SetMasked(v, v32 & HWSIM_VEC_MASK);
        return absl::OkStatus();
      case offsetof(hwsim_vector_regs, msg_data):
        Store(&vr.msg_data, v32);
        return absl::OkStatus();
      case offsetof(hwsim_vector_regs, msg_addr):
        if (size == 8) {
          Store(&vr.msg_addr, value);
        } else {
          Store(reinterpret_cast<uint32_t*>(&vr.msg_addr), v32);
        }
        return absl::OkStatus();
      default:
        break;
    }
  }
  return absl::OkStatus();  // read-only / reserved: writes ignored
}

// ---------------------------------------------------------------- machine

absl::StatusOr<std::unique_ptr<Machine>> Machine::Create(
    const InventorySpec& spec) {
  std::unique_ptr<Machine> m(new Machine());
  for (const auto& f : spec.pci) {
    auto rid = ParseBdf(f.bdf);
    if (!rid.ok()) return rid.status();
    if (f.vectors == 0 || f.vectors > HWSIM_MAX_VECTORS) {
      return absl::InvalidArgumentError(
          absl::StrCat(f.bdf, ": vectors must be 1..", HWSIM_MAX_VECTORS));
    }
    m->devices_.push_back(std::unique_ptr<Device>(
        new Device(f.bdf, DeviceKind::kPci, *rid, f.vectors)));
  }
  // Platform devices get requester IDs above any bus 0..255 PCI function is
  // unlikely to use; they never send MSIs, so it only names them.
  uint16_t plat_rid = 0xff00;
  for (const auto& p : spec.platform) {
    if (p.name.empty()) return absl::InvalidArgumentError("platform: no name");
    m->devices_.push_back(std::unique_ptr<Device>(
        new Device(p.name, DeviceKind::kPlatform, plat_rid++, 1)));
  }
  absl::flat_hash_set<std::string> ids;
  for (auto& d : m->devices_) {
    if (!ids.insert(d->id()).second) {
      return absl::InvalidArgumentError(absl::StrCat("duplicate id ", d->id()));
    }
    if (absl::Status s = d->Init(); !s.ok()) return s;
  }
  return m;
}

Machine::~Machine() {
  std::vector<Device*> ids;
  {
    hv::MutexLock l(&gen_mu_);
    for (auto& [d, g] : gens_) ids.push_back(d);
  }
  for (Device* d : ids) StopGenerator(d->id());
}

Device* Machine::Find(absl::string_view id) const {
  for (const auto& d : devices_) {
    if (d->id() == id) return d.get();
  }
  return nullptr;
}

absl::Status Machine::StartGenerator(absl::string_view id, uint32_t vector,
                                     uint64_t count, uint32_t burst,
                                     uint32_t rate_hz) {
  Device* d = Find(id);
  if (d == nullptr) return absl::NotFoundError(absl::StrCat("no device ", id));
  if (vector >= d->num_vectors()) {
    return absl::InvalidArgumentError(absl::StrCat("gen_vector ", vector));
  }
  StopGenerator(id);
  if (burst == 0) burst = 1;
  auto stop = std::make_shared<std::atomic<bool>>(false);
  Store(&d->regs()->gen_running, 1u);
  std::thread t([d, vector, count, burst, rate_hz, stop] {
    using Clock = std::chrono::steady_clock;
    auto next = Clock::now();
    const auto period = rate_hz
                            ? std::chrono::nanoseconds(1'000'000'000 / rate_hz)
                            : std::chrono::nanoseconds(0);
    uint64_t left = count;
    while (left > 0 && !stop->load(std::memory_order_relaxed)) {
      for (uint32_t b = 0; b < burst && left > 0; ++b, --left) {
        d->Fire(vector).IgnoreError();
      }
      Store(&d->regs()->gen_count, left);
      if (rate_hz) {
        next += period;
        std::this_thread::sleep_until(next);
      }
    }
    Store(&d->regs()->gen_running, 0u);
  });
  hv::MutexLock l(&gen_mu_);
  gens_.push_back({d, Generator{std::move(t), stop}});
  return absl::OkStatus();
}

void Machine::StopGenerator(absl::string_view id) {
  std::vector<Generator> victims;
  {
    hv::MutexLock l(&gen_mu_);
    for (auto it = gens_.begin(); it != gens_.end();) {
      if (it->first->id() == id) {
        victims.push_back(std::move(it->second));
        it = gens_.erase(it);
      } else {
        ++it;
      }
    }
  }
  for (auto& g : victims) {
    g.stop->store(true);
    g.thread.join();
  }
}

void Machine::WaitGenerator(absl::string_view id) {
  std::vector<Generator> done;
  {
    hv::MutexLock l(&gen_mu_);
    for (auto it = gens_.begin(); it != gens_.end();) {
      if (it->first->id() == id) {
        done.push_back(std::move(it->second));
        it = gens_.erase(it);
      } else {
        ++it;
      }
    }
  }
  for (auto& g : done) g.thread.join();
}

}  // namespace hwsim
