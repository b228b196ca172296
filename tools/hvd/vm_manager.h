// hvd's VM registry and process model (DESIGN §2, §7).
//
// Each started VM is one `hv-vmm --control_fd=3` child, spawned with one end
// of an AF_UNIX SOCK_SEQPACKET socketpair (hv/control/wire.h) and watched
// through a pidfd. A single monitor thread epolls every pidfd and control
// socket: control records update the state (Started → running), console
// bytes and state changes go to watchers, and a readable pidfd (the VMM is
// gone, for whatever reason, including kill -9) reaps the child at once and
// tears down everything hvd holds for it (control socket, pidfd, epoll
// registrations) before recording the final state in SQLite.
//
// Every mutation is validated completely first, then applied: the SQLite
// transaction (Store) and the in-memory map change only when every step
// succeeded, so a failed request leaves no partial state.
//
// Failpoints: create.before_commit, create.after_commit, start.before_spawn,
// start.after_spawn, stop.before_signal, delete.before_commit (plus
// sqlite.commit in Store and vmm.boot / vmm.command in hv-vmm).
//
// Locking: `mu_` guards the VM map and every VmEntry (and is held while
// writing SQLite, so the store sees mutations in map order). Lock order:
// VmManager::mu_ → Watcher::mu_ → Store::mu_ is never nested with Watcher.
// The monitor thread takes mu_ per event; gRPC handlers take it per call and
// wait on `cv_` (with mu_ released) for state transitions.
#ifndef TOOLS_HVD_VM_MANAGER_H_
#define TOOLS_HVD_VM_MANAGER_H_

#include <sys/types.h>

#include <atomic>
#include <chrono>
#include <deque>
#include <map>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "hv/arch/cond_var.h"
#include "hv/base/locks.h"
#include "proto/hv.pb.h"
#include "proto/vmm_control.pb.h"
#include "tools/hvd/store.h"

namespace hv::hvd {

// One WatchVm stream's queue.
class Watcher {
 public:
  explicit Watcher(bool console) : console_(console) {}
  bool wants_console() const { return console_; }
  void Push(v1::VmEvent ev);
  void Close();
  // Moves queued events into `out`; waits up to `timeout` for one. Returns
  // false once closed and drained.
  bool Pop(std::vector<v1::VmEvent>* out, std::chrono::milliseconds timeout);

 private:
  static constexpr size_t kMaxQueued = 4096;
  const bool console_;
  Mutex mu_;
  CondVar cv_;
  std::deque<v1::VmEvent> q_ ABSL_GUARDED_BY(mu_);
  bool closed_ ABSL_GUARDED_BY(mu_) = false;
  uint64_t dropped_ ABSL_GUARDED_BY(mu_) = 0;
};

struct VmManagerOptions {
  std::string vmm_path;   // hv-vmm binary
  std::string state_dir;  // also holds per-VM VMM logs
  uint32_t max_vms = 64;
  std::chrono::milliseconds start_timeout{10000};
};

class VmManager {
 public:
  // Loads the state and recovers: VMs recorded as starting/running/stopping
  // become stopped ("hvd restarted"), and leftover hv-vmm processes of this
  // state dir are killed.
  [[nodiscard]] static absl::StatusOr<std::unique_ptr<VmManager>> Create(
      VmManagerOptions options, std::unique_ptr<Store> store);
  // Force-stops every VMM and joins the monitor.
  ~VmManager();

  absl::StatusOr<v1::Vm> CreateVm(const v1::CreateVmRequest& req);
  absl::StatusOr<v1::Vm> StartVm(const std::string& name);
  absl::StatusOr<v1::Vm> StopVm(const v1::StopVmRequest& req);
  absl::StatusOr<uint64_t> DeleteVm(const std::string& name);
  absl::StatusOr<v1::Vm> GetVm(const std::string& name);
  std::vector<v1::Vm> ListVms();
  absl::StatusOr<std::shared_ptr<Watcher>> Watch(const v1::WatchVmRequest& req);
  void Unwatch(const std::string& name, const std::shared_ptr<Watcher>& w);

  absl::StatusOr<v1::Image> LoadImage(const v1::LoadImageRequest& req);
  absl::StatusOr<uint64_t> UnloadImage(const v1::UnloadImageRequest& req);
  std::vector<v1::Image> ListImages();

 private:
  struct VmEntry {
    v1::Vm vm;
    std::map<v1::ImageKind, v1::Image> images;
    pid_t pid = 0;
    int pidfd = -1;
    int ctl = -1;
    uint64_t pid_token = 0;  // epoll tokens of pidfd / ctl
    uint64_t ctl_token = 0;
    bool stop_requested = false;
    bool force = false;
    bool exited_reported = false;
    vmm::v1::Exited exited;
    std::vector<std::shared_ptr<Watcher>> watchers;
    uint64_t seq = 0;
  };
  struct Token {
    std::string name;
    bool is_pidfd;
  };

  VmManager(VmManagerOptions options, std::unique_ptr<Store> store)
      : options_(std::move(options)), store_(std::move(store)) {}
  absl::Status Init();
  void MonitorLoop();
  void OnControlReadable(const std::string& name)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void OnVmmExit(const std::string& name) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void DrainControl(VmEntry& e) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void HandleEvent(VmEntry& e, const vmm::v1::VmmEvent& ev)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void SetState(VmEntry& e, v1::VmState state, std::string reason, bool persist,
                absl::string_view op_kind) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void Broadcast(VmEntry& e, v1::VmEvent ev) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void ReleaseProcess(VmEntry& e) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  absl::StatusOr<std::vector<uint8_t>> ReadImage(const std::string& image,
                                                 uint64_t memory_mib,
                                                 v1::Image* info);
  void KillLeftoverVmms();

  const VmManagerOptions options_;
  const std::unique_ptr<Store> store_;
  int epfd_ = -1;
  int wake_fd_ = -1;  // eventfd: stops the monitor
  std::atomic<bool> stopping_{false};
  std::thread monitor_;

  Mutex mu_;
  CondVar cv_;  // any VM state change
  std::map<std::string, VmEntry> vms_ ABSL_GUARDED_BY(mu_);
  std::map<uint64_t, Token> tokens_ ABSL_GUARDED_BY(mu_);
  uint64_t next_token_ ABSL_GUARDED_BY(mu_) = 1;
};

// Validation helpers (also used by tests).
absl::Status ValidateVmName(absl::string_view field, absl::string_view name);

}  // namespace hv::hvd

#endif  // TOOLS_HVD_VM_MANAGER_H_
