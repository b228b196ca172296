// hvd's persistent state (DESIGN §7): SQLite in WAL mode with
// synchronous=FULL (fsync on commit) in the state dir. Tables:
//   ops(op_id, kind, target, time_ns)   one row per mutation (the journal)
//   vms(name, ..., state, op_id)        VM definitions and last state
//   images(vm, kind, source, ..., op_id) loaded kernel / crash kernel
//   attachments(vm, device, state, op_id) passthrough attachments
// Every mutation is one transaction that first inserts its ops row and
// stamps the changed rows with that op id, so after a crash a mutation is
// either fully present (with its op id) or fully absent.
//
// Failpoint: sqlite.commit (just before COMMIT).
//
// Locking: `mu_` serializes use of the connection (leaf lock below
// VmManager::mu_).
#ifndef TOOLS_HVD_STORE_H_
#define TOOLS_HVD_STORE_H_

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "hv/base/locks.h"
#include "proto/hv.pb.h"

struct sqlite3;

namespace hv::hvd {

class Store {
 public:
  [[nodiscard]] static absl::StatusOr<std::unique_ptr<Store>> Open(
      const std::string& state_dir);
  ~Store();

  // Inserts or replaces the VM row (one transaction, op `kind`); returns the
  // op id (also stored in vm.last_op_id by the caller).
  [[nodiscard]] absl::StatusOr<uint64_t> PutVm(std::string_view kind,
                                               const v1::Vm& vm);
  // Deletes the VM and its images and attachments in one transaction.
  [[nodiscard]] absl::StatusOr<uint64_t> DeleteVm(std::string_view name);
  [[nodiscard]] absl::StatusOr<std::vector<v1::Vm>> LoadVms();

  // The image row and the VM's image/crash_image column change together.
  [[nodiscard]] absl::StatusOr<uint64_t> PutImage(const v1::Image& image,
                                                  const v1::Vm& vm);
  [[nodiscard]] absl::StatusOr<uint64_t> DeleteImage(std::string_view vm_name,
                                                     v1::ImageKind kind,
                                                     const v1::Vm& vm);
  [[nodiscard]] absl::StatusOr<std::vector<v1::Image>> LoadImages();

  // Attachment rows (vm, device, state) keyed by device: insert/replace or
  // delete, one op each. The VM row is not touched.
  [[nodiscard]] absl::StatusOr<uint64_t> PutAttachment(std::string_view kind,
                                                       std::string_view vm,
                                                       std::string_view device,
                                                       int state);
  [[nodiscard]] absl::StatusOr<uint64_t> DeleteAttachment(
      std::string_view kind, std::string_view vm, std::string_view device);
  // (vm, device, state) of every row.
  struct AttachmentRow {
    std::string vm, device;
    int state = 0;
    uint64_t op_id = 0;
  };
  [[nodiscard]] absl::StatusOr<std::vector<AttachmentRow>> LoadAttachments();

  // Number of rows in ops (tests).
  [[nodiscard]] absl::StatusOr<uint64_t> OpCount();

 private:
  explicit Store(sqlite3* db) : db_(db) {}
  absl::Status Exec(const char* sql) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  absl::StatusOr<uint64_t> BeginOp(std::string_view kind,
                                   std::string_view target)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  absl::Status Commit() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void Rollback() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  absl::Status WriteVm(const v1::Vm& vm, uint64_t op)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  Mutex mu_;
  sqlite3* const db_;
};

}  // namespace hv::hvd

#endif  // TOOLS_HVD_STORE_H_
