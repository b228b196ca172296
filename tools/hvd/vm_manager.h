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
// start.after_spawn, stop.before_signal, delete.before_commit,
// attach.after_forward, attach.after_vmm, detach.before_send (plus
// sqlite.commit in Store and vmm.boot / vmm.command / vmm.attach in hv-vmm).
//
// Attachments (vm_attach.cc, docs/management.md): AttachDevice validates,
// then applies eventfds → kvm-vfio forwards → VMM AttachDevice (fds over
// SCM_RIGHTS, answered by AttachResult) → SQLite row, undoing the earlier
// steps when one fails. Detach is two-phase through the VMM's hot-plug
// controller; a VMM death tears every attachment down.
// Lock order: VmManager::mu_ → KvmVfio::mu_ → VfioCore::mu_ → Store::mu_ is
// taken with mu_ held but never with a vfio lock held.
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
#include "absl/types/span.h"
#include "hv/arch/cond_var.h"
#include "hv/base/locks.h"
#include "proto/hv.pb.h"
#include "proto/vmm_control.pb.h"
#include "tools/hvd/host_devices.h"
#include "tools/hvd/remote_forward.h"
#include "tools/hvd/store.h"
#include "vfio/kvm_vfio.h"

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
  // Host devices for AttachDevice (outlives the manager); nullptr: attach
  // answers FAILED_PRECONDITION.
  HostDevices* devices = nullptr;
  std::chrono::milliseconds attach_timeout{5000};  // VMM answer to an attach
  std::chrono::milliseconds detach_default_timeout{5000};
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

  // Passthrough attachments (vm_attach.cc).
  absl::StatusOr<v1::Attachment> AttachDevice(
      const v1::AttachDeviceRequest& req);
  absl::StatusOr<v1::Attachment> DetachDevice(
      const v1::DetachDeviceRequest& req);
  absl::StatusOr<std::vector<v1::Attachment>> ListAttachments(
      const std::string& vm);
  // The name of the VM with vfio owner id `id` (ListHostDevices).
  std::string OwnerName(uint64_t id);

  absl::StatusOr<v1::Image> LoadImage(const v1::LoadImageRequest& req);
  absl::StatusOr<uint64_t> UnloadImage(const v1::UnloadImageRequest& req);
  std::vector<v1::Image> ListImages();

 private:
  // One device attached (or being attached) to a VM. Teardown order (the
  // destructor): kvm-vfio destroy (unforward all → host-owned, refs
  // dropped), then the arch forward, then the eventfds are closed.
  struct AttachEntry {
    ~AttachEntry();
    std::string device;
    uint32_t slot = 0;
    uint32_t num_vectors = 0;
    uint32_t requester_id = 0;
    bool ready = false;  // committed (false while AttachDevice runs)
    v1::AttachmentState state = v1::ATTACHMENT_STATE_ATTACHED;
    uint64_t op_id = 0;
    std::vector<int> efds;
    std::unique_ptr<RemoteMsiForward> arch;
    std::unique_ptr<vfio::KvmVfio> kv;
    std::chrono::steady_clock::time_point deadline;  // detach pending
    bool force_sent = false;
  };
  struct VmEntry {
    v1::Vm vm;
    uint64_t vfio_id = 0;  // vfio owner id (assigned at the first attach)
    std::map<std::string, std::unique_ptr<AttachEntry>> attachments;
    std::map<std::string, v1::Attachment> detached;  // last completion
    std::map<uint64_t, vmm::v1::AttachResult> attach_results;
    std::vector<bool> slot_draining;  // Detached still expected
    uint64_t cmd_seq = 1;             // Boot is 1
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
  // Attachments (vm_attach.cc).
  v1::Attachment Describe(const VmEntry& e, const AttachEntry& a)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  v1::Vm WithAttachments(const VmEntry& e) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  absl::Status SendCommand(VmEntry& e, vmm::v1::VmmCommand& cmd,
                           absl::Span<const int> fds = {})
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void SendForceDetach(VmEntry& e, uint32_t slot)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Completes a detach (device back to the host, row deleted, event).
  void FinishDetach(VmEntry& e, const std::string& device, bool forced,
                    absl::string_view op_kind)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void HandleDeviceEvent(VmEntry& e, const vmm::v1::VmmEvent& ev)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // VMM gone: every attachment is torn down.
  void ReleaseAttachments(VmEntry& e) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void CheckDetachDeadlines() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

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
  uint64_t next_vfio_id_ ABSL_GUARDED_BY(mu_) = 1;
};

// Validation helpers (also used by tests).
absl::Status ValidateVmName(absl::string_view field, absl::string_view name);

}  // namespace hv::hvd

#endif  // TOOLS_HVD_VM_MANAGER_H_
