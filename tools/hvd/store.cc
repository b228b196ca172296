#include "tools/hvd/store.h"

#include <sqlite3.h>

#include <chrono>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "hv/control/failpoint.h"

namespace hv::hvd {
namespace {

constexpr char kSchema[] = R"sql(
CREATE TABLE IF NOT EXISTS ops(
  op_id INTEGER PRIMARY KEY AUTOINCREMENT,
  kind TEXT NOT NULL, target TEXT NOT NULL, time_ns INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS vms(
  name TEXT PRIMARY KEY, vcpus INTEGER NOT NULL, memory_mib INTEGER NOT NULL,
  image TEXT NOT NULL, crash_image TEXT NOT NULL, guest_arg INTEGER NOT NULL,
  state INTEGER NOT NULL, pid INTEGER NOT NULL, exit_code INTEGER NOT NULL,
  exit_reason TEXT NOT NULL, start_count INTEGER NOT NULL,
  op_id INTEGER NOT NULL, crash_mib INTEGER NOT NULL DEFAULT 0);
CREATE TABLE IF NOT EXISTS images(
  vm TEXT NOT NULL, kind INTEGER NOT NULL, source TEXT NOT NULL,
  size INTEGER NOT NULL, segments INTEGER NOT NULL, entry INTEGER NOT NULL,
  op_id INTEGER NOT NULL, crash_mib INTEGER NOT NULL DEFAULT 0,
  PRIMARY KEY(vm, kind));
CREATE TABLE IF NOT EXISTS attachments(
  vm TEXT NOT NULL, device TEXT NOT NULL, state INTEGER NOT NULL,
  op_id INTEGER NOT NULL, PRIMARY KEY(device));
)sql";

// Databases written before the crash_mib columns existed gain them (0 = no
// crash region); "duplicate column" on a current database is expected.
constexpr const char* kMigrations[] = {
    "ALTER TABLE vms ADD COLUMN crash_mib INTEGER NOT NULL DEFAULT 0;",
    "ALTER TABLE images ADD COLUMN crash_mib INTEGER NOT NULL DEFAULT 0;",
};

absl::Status SqlError(sqlite3* db, const char* what) {
  return absl::InternalError(
      absl::StrCat("sqlite ", what, ": ", sqlite3_errmsg(db)));
}

// RAII prepared statement.
class Stmt {
 public:
  Stmt(sqlite3* db, const char* sql) : db_(db) {
    if (sqlite3_prepare_v2(db, sql, -1, &s_, nullptr) != SQLITE_OK) {
      s_ = nullptr;
    }
  }
  ~Stmt() { sqlite3_finalize(s_); }
  bool ok() const { return s_ != nullptr; }
  sqlite3_stmt* get() { return s_; }
  void Text(int i, std::string_view v) {
    sqlite3_bind_text(s_, i, v.data(), static_cast<int>(v.size()),
                      SQLITE_TRANSIENT);
  }
  void Int(int i, int64_t v) { sqlite3_bind_int64(s_, i, v); }
  absl::Status Done(const char* what) {
    if (!ok()) return SqlError(db_, what);
    const int r = sqlite3_step(s_);
    if (r != SQLITE_DONE) return SqlError(db_, what);
    return absl::OkStatus();
  }
  std::string Col(int i) {
    const unsigned char* t = sqlite3_column_text(s_, i);
    return t == nullptr ? std::string() : reinterpret_cast<const char*>(t);
  }
  int64_t ColInt(int i) { return sqlite3_column_int64(s_, i); }

 private:
  sqlite3* db_;
  sqlite3_stmt* s_ = nullptr;
};

}  // namespace

absl::StatusOr<std::unique_ptr<Store>> Store::Open(
    const std::string& state_dir) {
  const std::string path = state_dir + "/hvd.sqlite";
  sqlite3* db = nullptr;
  if (sqlite3_open_v2(
          path.c_str(), &db,
          SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_FULLMUTEX,
          nullptr) != SQLITE_OK) {
    absl::Status s = absl::UnavailableError(
        absl::StrCat("state_dir: cannot open ", path, ": ",
                     db ? sqlite3_errmsg(db) : "out of memory"));
    sqlite3_close(db);
    return s;
  }
  sqlite3_busy_timeout(db, 5000);
  std::unique_ptr<Store> store(new Store(db));
  MutexLock l(&store->mu_);
  for (const char* sql :
       {"PRAGMA journal_mode=WAL;", "PRAGMA synchronous=FULL;", kSchema}) {
    if (absl::Status s = store->Exec(sql); !s.ok()) return s;
  }
  for (const char* sql : kMigrations) {
    if (absl::Status s = store->Exec(sql);
        !s.ok() && !absl::StrContains(s.message(), "duplicate column")) {
      return s;
    }
  }
  return store;
}

Store::~Store() { sqlite3_close(db_); }

absl::Status Store::Exec(const char* sql) {
  char* err = nullptr;
  if (sqlite3_exec(db_, sql, nullptr, nullptr, &err) != SQLITE_OK) {
    absl::Status s = absl::InternalError(
        absl::StrCat("sqlite: ", err ? err : "error", " in ", sql));
    sqlite3_free(err);
    return s;
  }
  return absl::OkStatus();
}

absl::StatusOr<uint64_t> Store::BeginOp(std::string_view kind,
                                        std::string_view target) {
  if (absl::Status s = Exec("BEGIN IMMEDIATE;"); !s.ok()) return s;
  Stmt st(db_, "INSERT INTO ops(kind, target, time_ns) VALUES(?, ?, ?);");
  st.Text(1, kind);
  st.Text(2, target);
  st.Int(3, std::chrono::duration_cast<std::chrono::nanoseconds>(
                std::chrono::system_clock::now().time_since_epoch())
                .count());
  if (absl::Status s = st.Done("insert op"); !s.ok()) {
    Rollback();
    return s;
  }
  return static_cast<uint64_t>(sqlite3_last_insert_rowid(db_));
}

absl::Status Store::Commit() {
  if (absl::Status s = control::Failpoint("sqlite.commit"); !s.ok()) {
    Rollback();
    return s;
  }
  if (absl::Status s = Exec("COMMIT;"); !s.ok()) {
    Rollback();
    return s;
  }
  return absl::OkStatus();
}

void Store::Rollback() { (void)Exec("ROLLBACK;"); }

absl::Status Store::WriteVm(const v1::Vm& vm, uint64_t op) {
  Stmt st(db_,
          "INSERT OR REPLACE INTO vms(name, vcpus, memory_mib, image, "
          "crash_image, guest_arg, state, pid, exit_code, exit_reason, "
          "start_count, op_id, crash_mib) VALUES(?,?,?,?,?,?,?,?,?,?,?,?,?);");
  st.Text(1, vm.name());
  st.Int(2, vm.vcpus());
  st.Int(3, static_cast<int64_t>(vm.memory_mib()));
  st.Text(4, vm.image());
  st.Text(5, vm.crash_image());
  st.Int(6, static_cast<int64_t>(vm.guest_arg()));
  st.Int(7, vm.state());
  st.Int(8, vm.pid());
  st.Int(9, vm.last_exit_code());
  st.Text(10, vm.last_exit_reason());
  st.Int(11, static_cast<int64_t>(vm.start_count()));
  st.Int(12, static_cast<int64_t>(op));
  st.Int(13, static_cast<int64_t>(vm.crash_mib()));
  return st.Done("write vm");
}

absl::StatusOr<uint64_t> Store::PutVm(std::string_view kind, const v1::Vm& vm) {
  MutexLock l(&mu_);
  absl::StatusOr<uint64_t> op = BeginOp(kind, vm.name());
  if (!op.ok()) return op.status();
  if (absl::Status s = WriteVm(vm, *op); !s.ok()) {
    Rollback();
    return s;
  }
  if (absl::Status s = Commit(); !s.ok()) return s;
  return *op;
}

absl::StatusOr<uint64_t> Store::DeleteVm(std::string_view name) {
  MutexLock l(&mu_);
  absl::StatusOr<uint64_t> op = BeginOp("delete", name);
  if (!op.ok()) return op.status();
  for (const char* sql :
       {"DELETE FROM vms WHERE name = ?;", "DELETE FROM images WHERE vm = ?;",
        "DELETE FROM attachments WHERE vm = ?;"}) {
    Stmt st(db_, sql);
    st.Text(1, name);
    if (absl::Status s = st.Done("delete vm"); !s.ok()) {
      Rollback();
      return s;
    }
  }
  if (absl::Status s = Commit(); !s.ok()) return s;
  return *op;
}

absl::StatusOr<uint64_t> Store::PutAttachment(std::string_view kind,
                                              std::string_view vm,
                                              std::string_view device,
                                              int state) {
  MutexLock l(&mu_);
  absl::StatusOr<uint64_t> op = BeginOp(kind, device);
  if (!op.ok()) return op.status();
  Stmt st(db_,
          "INSERT OR REPLACE INTO attachments(vm, device, state, op_id) "
          "VALUES(?, ?, ?, ?);");
  st.Text(1, vm);
  st.Text(2, device);
  st.Int(3, state);
  st.Int(4, static_cast<int64_t>(*op));
  if (absl::Status s = st.Done("put attachment"); !s.ok()) {
    Rollback();
    return s;
  }
  if (absl::Status s = Commit(); !s.ok()) return s;
  return *op;
}

absl::StatusOr<uint64_t> Store::DeleteAttachment(std::string_view kind,
                                                 std::string_view vm,
                                                 std::string_view device) {
  MutexLock l(&mu_);
  absl::StatusOr<uint64_t> op = BeginOp(kind, device);
  if (!op.ok()) return op.status();
  Stmt st(db_, "DELETE FROM attachments WHERE vm = ? AND device = ?;");
  st.Text(1, vm);
  st.Text(2, device);
  if (absl::Status s = st.Done("delete attachment"); !s.ok()) {
    Rollback();
    return s;
  }
  if (absl::Status s = Commit(); !s.ok()) return s;
  return *op;
}

absl::StatusOr<std::vector<Store::AttachmentRow>> Store::LoadAttachments() {
  MutexLock l(&mu_);
  Stmt st(db_,
          "SELECT vm, device, state, op_id FROM attachments ORDER BY device;");
  if (!st.ok()) return SqlError(db_, "load attachments");
  std::vector<AttachmentRow> out;
  while (sqlite3_step(st.get()) == SQLITE_ROW) {
    out.push_back({st.Col(0), st.Col(1), static_cast<int>(st.ColInt(2)),
                   static_cast<uint64_t>(st.ColInt(3))});
  }
  return out;
}

absl::StatusOr<std::vector<v1::Vm>> Store::LoadVms() {
  MutexLock l(&mu_);
  Stmt st(db_,
          "SELECT name, vcpus, memory_mib, image, crash_image, guest_arg, "
          "state, pid, exit_code, exit_reason, start_count, op_id, crash_mib "
          "FROM vms "
          "ORDER BY name;");
  if (!st.ok()) return SqlError(db_, "load vms");
  std::vector<v1::Vm> out;
  while (sqlite3_step(st.get()) == SQLITE_ROW) {
    v1::Vm vm;
    vm.set_name(st.Col(0));
    vm.set_vcpus(static_cast<uint32_t>(st.ColInt(1)));
    vm.set_memory_mib(static_cast<uint64_t>(st.ColInt(2)));
    vm.set_image(st.Col(3));
    vm.set_crash_image(st.Col(4));
    vm.set_guest_arg(static_cast<uint64_t>(st.ColInt(5)));
    vm.set_state(static_cast<v1::VmState>(st.ColInt(6)));
    vm.set_pid(static_cast<int32_t>(st.ColInt(7)));
    vm.set_last_exit_code(static_cast<int32_t>(st.ColInt(8)));
    vm.set_last_exit_reason(st.Col(9));
    vm.set_start_count(static_cast<uint64_t>(st.ColInt(10)));
    vm.set_last_op_id(static_cast<uint64_t>(st.ColInt(11)));
    vm.set_crash_mib(static_cast<uint64_t>(st.ColInt(12)));
    out.push_back(std::move(vm));
  }
  return out;
}

absl::StatusOr<uint64_t> Store::PutImage(const v1::Image& image,
                                         const v1::Vm& vm) {
  MutexLock l(&mu_);
  absl::StatusOr<uint64_t> op = BeginOp("load-image", vm.name());
  if (!op.ok()) return op.status();
  Stmt st(db_,
          "INSERT OR REPLACE INTO images(vm, kind, source, size, segments, "
          "entry, op_id, crash_mib) VALUES(?,?,?,?,?,?,?,?);");
  st.Text(1, image.vm());
  st.Int(2, image.kind());
  st.Text(3, image.source());
  st.Int(4, static_cast<int64_t>(image.size()));
  st.Int(5, image.segments());
  st.Int(6, static_cast<int64_t>(image.entry()));
  st.Int(7, static_cast<int64_t>(*op));
  st.Int(8, static_cast<int64_t>(image.crash_mib()));
  if (absl::Status s = st.Done("put image"); !s.ok()) {
    Rollback();
    return s;
  }
  if (absl::Status s = WriteVm(vm, *op); !s.ok()) {
    Rollback();
    return s;
  }
  if (absl::Status s = Commit(); !s.ok()) return s;
  return *op;
}

absl::StatusOr<uint64_t> Store::DeleteImage(std::string_view vm_name,
                                            v1::ImageKind kind,
                                            const v1::Vm& vm) {
  MutexLock l(&mu_);
  absl::StatusOr<uint64_t> op = BeginOp("unload-image", vm_name);
  if (!op.ok()) return op.status();
  Stmt st(db_, "DELETE FROM images WHERE vm = ? AND kind = ?;");
  st.Text(1, vm_name);
  st.Int(2, kind);
  if (absl::Status s = st.Done("delete image"); !s.ok()) {
    Rollback();
    return s;
  }
  if (absl::Status s = WriteVm(vm, *op); !s.ok()) {
    Rollback();
    return s;
  }
  if (absl::Status s = Commit(); !s.ok()) return s;
  return *op;
}

absl::StatusOr<std::vector<v1::Image>> Store::LoadImages() {
  MutexLock l(&mu_);
  Stmt st(db_,
          "SELECT vm, kind, source, size, segments, entry, op_id, crash_mib "
          "FROM images "
          "ORDER BY vm, kind;");
  if (!st.ok()) return SqlError(db_, "load images");
  std::vector<v1::Image> out;
  while (sqlite3_step(st.get()) == SQLITE_ROW) {
    v1::Image im;
    im.set_vm(st.Col(0));
    im.set_kind(static_cast<v1::ImageKind>(st.ColInt(1)));
    im.set_source(st.Col(2));
    im.set_size(static_cast<uint64_t>(st.ColInt(3)));
    im.set_segments(static_cast<uint32_t>(st.ColInt(4)));
    im.set_entry(static_cast<uint64_t>(st.ColInt(5)));
    im.set_op_id(static_cast<uint64_t>(st.ColInt(6)));
    im.set_crash_mib(static_cast<uint64_t>(st.ColInt(7)));
    out.push_back(std::move(im));
  }
  return out;
}

absl::StatusOr<uint64_t> Store::OpCount() {
  MutexLock l(&mu_);
  Stmt st(db_, "SELECT COUNT(*) FROM ops;");
  if (!st.ok() || sqlite3_step(st.get()) != SQLITE_ROW) {
    return SqlError(db_, "count ops");
  }
  return static_cast<uint64_t>(st.ColInt(0));
}

}  // namespace hv::hvd
