// Hot-attach end to end (issue 9, docs/management.md): a real hvd (with its
// in-process hv-hwsim, bus drivers and vfio core) and real hv-vmm processes
// on KVM running the built-in `hotplug-counter` guest, which counts each
// attached device's MSIs per vector on its console. Covers attach to a
// running VM (interrupts verified in the guest), every attach error code,
// cooperative / timed-out / forced detach, and kill -9 of a VMM with a
// device attached while a second VM keeps receiving interrupts.
#include <signal.h>
#include <sqlite3.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <mutex>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/mgmt/hvd_harness.h"

namespace hv::test {
namespace {

using std::chrono::milliseconds;
using ::testing::HasSubstr;
using ::testing::StartsWith;

constexpr char kDevA[] = "0000:02:00.0";
constexpr char kDevB[] = "0000:01:00.0";

#define REQUIRE_KVM()                                                          \
  do {                                                                         \
    if (!HaveKvm())                                                            \
      GTEST_SKIP() << "/dev/kvm is absent on this machine; KVM tests skipped"; \
  } while (0)

void ExpectError(const grpc::Status& s, grpc::StatusCode code,
                 const std::string& field) {
  EXPECT_EQ(s.error_code(), code) << s.error_message();
  EXPECT_THAT(s.error_message(), StartsWith(field + ":"));
}

// Polls `pred` for up to `t`.
template <typename Pred>
bool WaitUntil(Pred pred, milliseconds t = milliseconds(10000)) {
  const auto deadline = std::chrono::steady_clock::now() + t;
  while (!pred()) {
    if (std::chrono::steady_clock::now() > deadline) return false;
    std::this_thread::sleep_for(milliseconds(2));
  }
  return true;
}

// Streams one VM's console (WatchVm) into a string.
class Console {
 public:
  Console(HvdProcess& h, const std::string& vm) : stub_(h.vms()) {
    v1::WatchVmRequest req;
    req.set_name(vm);
    req.set_console(true);
    reader_ = stub_->WatchVm(&ctx_, req);
    thread_ = std::thread([this] {
      v1::VmEvent ev;
      while (reader_->Read(&ev)) {
        std::lock_guard<std::mutex> l(mu_);
        if (ev.has_console()) text_ += ev.console();
        if (ev.has_device()) {
          events_ += ev.device().device() + " " + ev.device().event() + "\n";
        }
      }
    });
  }
  ~Console() {
    ctx_.TryCancel();
    thread_.join();
    (void)reader_->Finish();
  }
  std::string text() {
    std::lock_guard<std::mutex> l(mu_);
    return text_;
  }
  std::string events() {
    std::lock_guard<std::mutex> l(mu_);
    return events_;
  }
  bool WaitFor(const std::string& s, milliseconds t = milliseconds(10000)) {
    return WaitUntil([&] { return text().find(s) != std::string::npos; }, t);
  }

 private:
  std::unique_ptr<v1::VmService::Stub> stub_;
  grpc::ClientContext ctx_;
  std::unique_ptr<grpc::ClientReader<v1::VmEvent>> reader_;
  std::thread thread_;
  std::mutex mu_;
  std::string text_, events_;
};

class AttachTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = MakeTempDir();
    ASSERT_FALSE(dir_.empty());
  }
  void TearDown() override {
    h_.reset();
    std::error_code ec;
    std::filesystem::remove_all(dir_, ec);
  }
  void Launch(const std::string& failpoints = "") {
    h_ = std::make_unique<HvdProcess>(dir_, failpoints);
    ASSERT_TRUE(h_->Start()) << "hvd did not come up; see " << dir_;
  }
  grpc::Status CreateAndStart(const std::string& name, uint64_t guest_arg = 0,
                              v1::Vm* out = nullptr) {
    v1::CreateVmRequest req;
    req.set_name(name);
    req.set_image("builtin:hotplug-counter");
    req.set_vcpus(1);
    req.set_memory_mib(64);
    req.set_guest_arg(guest_arg);
    v1::Vm vm;
    {
      grpc::ClientContext ctx;
      grpc::Status s = h_->vms()->CreateVm(&ctx, req, &vm);
      if (!s.ok()) return s;
    }
    return Start(name, out);
  }
  grpc::Status Start(const std::string& name, v1::Vm* out = nullptr) {
    v1::VmRef ref;
    ref.set_name(name);
    grpc::ClientContext ctx;
    v1::Vm vm;
    grpc::Status s = h_->vms()->StartVm(&ctx, ref, &vm);
    if (out) *out = vm;
    return s;
  }
  v1::Vm Get(const std::string& name) {
    v1::VmRef ref;
    ref.set_name(name);
    grpc::ClientContext ctx;
    v1::Vm vm;
    EXPECT_TRUE(h_->vms()->GetVm(&ctx, ref, &vm).ok());
    return vm;
  }
  grpc::Status Attach(const std::string& vm, const std::string& dev,
                      v1::Attachment* out = nullptr) {
    v1::AttachDeviceRequest req;
    req.set_vm(vm);
    req.set_device(dev);
    grpc::ClientContext ctx;
    v1::Attachment at;
    grpc::Status s = h_->attachments()->AttachDevice(&ctx, req, &at);
    if (out) *out = at;
    return s;
  }
  grpc::Status Detach(const std::string& vm, const std::string& dev, bool force,
                      uint32_t timeout_ms = 0, v1::Attachment* out = nullptr) {
    v1::DetachDeviceRequest req;
    req.set_vm(vm);
    req.set_device(dev);
    req.set_force(force);
    req.set_timeout_ms(timeout_ms);
    grpc::ClientContext ctx;
    v1::Attachment at;
    grpc::Status s = h_->attachments()->DetachDevice(&ctx, req, &at);
    if (out) *out = at;
    return s;
  }
  std::vector<v1::Attachment> Attachments(const std::string& vm = "") {
    v1::ListAttachmentsRequest req;
    req.set_vm(vm);
    grpc::ClientContext ctx;
    v1::ListAttachmentsResponse resp;
    EXPECT_TRUE(h_->attachments()->ListAttachments(&ctx, req, &resp).ok());
    return {resp.attachments().begin(), resp.attachments().end()};
  }
  v1::HostDevice Device(const std::string& id) {
    grpc::ClientContext ctx;
    v1::ListHostDevicesResponse resp;
    EXPECT_TRUE(v1::HostDeviceService::NewStub(h_->channel())
                    ->ListHostDevices(&ctx, v1::ListHostDevicesRequest(), &resp)
                    .ok());
    for (const v1::HostDevice& d : resp.devices()) {
      if (d.id() == id) return d;
    }
    ADD_FAILURE() << "no device " << id;
    return {};
  }
  void ExpectHostOwned(const std::string& id) {
    v1::HostDevice d = Device(id);
    EXPECT_EQ(d.owner(), "host") << id;
    for (const v1::IrqState& q : d.irqs()) {
      EXPECT_EQ(q.mode(), v1::VECTOR_MODE_HOST)
          << id << " vector " << q.index();
    }
  }
  // Guest-delivered interrupts of vector `v` of the VM's attachment of `dev`.
  uint64_t Delivered(const std::string& vm, const std::string& dev,
                     uint32_t v) {
    for (const v1::Attachment& a : Attachments(vm)) {
      if (a.device() == dev && static_cast<int>(v) < a.vectors_size()) {
        return a.vectors(v).guest_delivered();
      }
    }
    return 0;
  }
  // Rows of the attachments table (read with sqlite3, WAL readers are fine).
  std::vector<std::string> SqlAttachments() {
    std::vector<std::string> out;
    sqlite3* db = nullptr;
    const std::string path = h_->state_dir() + "/hvd.sqlite";
    if (sqlite3_open_v2(path.c_str(), &db, SQLITE_OPEN_READONLY, nullptr) !=
        SQLITE_OK) {
      sqlite3_close(db);
      ADD_FAILURE() << "cannot open " << path;
      return out;
    }
    sqlite3_busy_timeout(db, 2000);
    sqlite3_stmt* st = nullptr;
    sqlite3_prepare_v2(db,
                       "SELECT vm, device, state FROM attachments ORDER BY "
                       "vm, device;",
                       -1, &st, nullptr);
    while (st != nullptr && sqlite3_step(st) == SQLITE_ROW) {
      out.push_back(std::string(reinterpret_cast<const char*>(
                        sqlite3_column_text(st, 0))) +
                    "/" +
                    reinterpret_cast<const char*>(sqlite3_column_text(st, 1)) +
                    "/" + std::to_string(sqlite3_column_int(st, 2)));
    }
    sqlite3_finalize(st);
    sqlite3_close(db);
    return out;
  }

  std::string dir_;
  std::unique_ptr<HvdProcess> h_;
};

TEST_F(AttachTest, AttachToRunningVmCountsInGuestAndDetaches) {
  REQUIRE_KVM();
  Launch();
  ASSERT_TRUE(CreateAndStart("g").ok());
  Console con(*h_, "g");
  ASSERT_TRUE(con.WaitFor("ready for hot-plug")) << con.text();

  v1::Attachment at;
  ASSERT_TRUE(Attach("g", kDevA, &at).ok());
  EXPECT_EQ(at.vm(), "g");
  EXPECT_EQ(at.device(), kDevA);
  EXPECT_EQ(at.state(), v1::ATTACHMENT_STATE_ATTACHED);
  EXPECT_GT(at.op_id(), 0u);
  ASSERT_EQ(at.vectors_size(), 8);
  // The guest fires every vector once through the window's fire register
  // (a side-effect write forwarded to hvd) and starts the generator on
  // vector 0; each arrives as an MSI through hvd → eventfd → the VMM's ITS.
  ASSERT_TRUE(con.WaitFor("attached 0000:02:00.0 (device id 0x200, 8 vectors)"))
      << con.text();
  for (int v = 1; v < 8; ++v) {
    EXPECT_TRUE(con.WaitFor("irq: 0000:02:00.0 vector " + std::to_string(v) +
                            " count 1\n"))
        << con.text();
  }
  ASSERT_TRUE(con.WaitFor("irq: 0000:02:00.0 vector 0 count 10\n"))
      << con.text();
  EXPECT_THAT(con.text(), Not(HasSubstr("backwards")));

  // Host view: owned by g, mediated, counters move.
  v1::HostDevice d = Device(kDevA);
  EXPECT_EQ(d.owner(), "g");
  for (const v1::IrqState& q : d.irqs()) {
    EXPECT_EQ(q.mode(), v1::VECTOR_MODE_MEDIATED);
    EXPECT_GE(q.guest_delivered(), 1u);
    EXPECT_EQ(q.host_handled(), 0u);
  }
  ExpectHostOwned(kDevB);
  std::vector<v1::Attachment> list = Attachments("g");
  ASSERT_EQ(list.size(), 1u);
  EXPECT_EQ(list[0].op_id(), at.op_id());
  EXPECT_GE(list[0].vectors(0).guest_delivered(), 10u);
  v1::Vm vm = Get("g");
  ASSERT_EQ(vm.attachments_size(), 1);
  EXPECT_EQ(vm.attachments(0).device(), kDevA);
  EXPECT_EQ(SqlAttachments(), std::vector<std::string>{"g/0000:02:00.0/1"});

  // Errors: already attached here, platform device, unknown VM, not running.
  ExpectError(Attach("g", kDevA), grpc::StatusCode::ALREADY_EXISTS, "device");
  ExpectError(Attach("g", "plat0"), grpc::StatusCode::FAILED_PRECONDITION,
              "device");
  ExpectError(Attach("nope", kDevB), grpc::StatusCode::NOT_FOUND, "vm");
  ASSERT_TRUE(CreateAndStart("other").ok());
  ExpectError(Attach("other", kDevA), grpc::StatusCode::FAILED_PRECONDITION,
              "device");
  EXPECT_TRUE(Attachments("other").empty());

  // Cooperative detach: pending until the guest quiesced and acked.
  v1::Attachment det;
  ASSERT_TRUE(Detach("g", kDevA, false, 0, &det).ok());
  EXPECT_EQ(det.state(), v1::ATTACHMENT_STATE_DETACH_PENDING);
  ASSERT_TRUE(WaitUntil([&] { return Attachments("g").empty(); }));
  EXPECT_TRUE(con.WaitFor("ejecting 0000:02:00.0 after")) << con.text();
  EXPECT_THAT(con.events(), HasSubstr("0000:02:00.0 attached"));
  EXPECT_THAT(con.events(), HasSubstr("0000:02:00.0 detach-pending"));
  EXPECT_TRUE(WaitUntil([&] {
    return con.events().find("0000:02:00.0 detached\n") != std::string::npos;
  })) << con.events();
  ExpectHostOwned(kDevA);
  EXPECT_EQ(Get("g").attachments_size(), 0);
  EXPECT_TRUE(SqlAttachments().empty());
  // Back on the host: its interrupts go to the host driver.
  ExpectError(Detach("g", kDevA, false), grpc::StatusCode::NOT_FOUND, "device");

  // Now the other VM can take it; a forced detach returns at once.
  Console con2(*h_, "other");
  ASSERT_TRUE(Attach("other", kDevA).ok());
  ASSERT_TRUE(con2.WaitFor("irq: 0000:02:00.0 vector 0 count 5\n"))
      << con2.text();
  EXPECT_EQ(Device(kDevA).owner(), "other");
  ASSERT_TRUE(Detach("other", kDevA, true, 0, &det).ok());
  EXPECT_EQ(det.state(), v1::ATTACHMENT_STATE_DETACHED);
  EXPECT_TRUE(det.forced());
  EXPECT_GT(det.op_id(), 0u);
  EXPECT_TRUE(Attachments().empty());
  ExpectHostOwned(kDevA);

  // And back to g (re-attachable after a detach).
  ASSERT_TRUE(Attach("g", kDevA).ok());
  ASSERT_TRUE(WaitUntil([&] { return Delivered("g", kDevA, 7) >= 1; }));
}

// A guest that quiesces but never acks: the eject is forced after the
// request's timeout; the pending state is visible until then.
TEST_F(AttachTest, DetachTimesOutIntoForcedEject) {
  REQUIRE_KVM();
  Launch();
  ASSERT_TRUE(CreateAndStart("stubborn", /*guest_arg=*/1).ok());
  Console con(*h_, "stubborn");
  ASSERT_TRUE(con.WaitFor("ready for hot-plug")) << con.text();
  ASSERT_TRUE(Attach("stubborn", kDevA).ok());
  ASSERT_TRUE(con.WaitFor("vector 7 count 1\n")) << con.text();
  v1::Attachment det;
  const auto t0 = std::chrono::steady_clock::now();
  ASSERT_TRUE(Detach("stubborn", kDevA, false, 300, &det).ok());
  EXPECT_EQ(det.state(), v1::ATTACHMENT_STATE_DETACH_PENDING);
  ASSERT_TRUE(con.WaitFor("not acking the eject")) << con.text();
  std::vector<v1::Attachment> l = Attachments("stubborn");
  ASSERT_EQ(l.size(), 1u);
  EXPECT_EQ(l[0].state(), v1::ATTACHMENT_STATE_DETACH_PENDING);
  EXPECT_EQ(Get("stubborn").attachments(0).state(),
            v1::ATTACHMENT_STATE_DETACH_PENDING);
  ASSERT_TRUE(WaitUntil([&] { return Attachments("stubborn").empty(); }));
  EXPECT_GE(std::chrono::steady_clock::now() - t0, milliseconds(300));
  EXPECT_TRUE(WaitUntil([&] {
    return con.events().find("detached (forced)") != std::string::npos;
  })) << con.events();
  ExpectHostOwned(kDevA);
  EXPECT_TRUE(SqlAttachments().empty());
}

// kill -9 of a VMM with a device attached and firing, while VM B keeps its
// own device: hvd tears A's attachment down (kvm-vfio destroy, device
// host-owned, row removed, fds closed) and B's interrupts keep arriving.
TEST_F(AttachTest, KillNineOfAVmmWithADeviceAttached) {
  REQUIRE_KVM();
  int rounds = 20;
  if (const char* r = std::getenv("HV_KILL_ROUNDS")) rounds = std::atoi(r);
  Launch();
  ASSERT_TRUE(CreateAndStart("B").ok());
  ASSERT_TRUE(WaitUntil([&] {
    return Attach("B", kDevB).ok();  // once the guest's driver is up
  }));
  ASSERT_TRUE(WaitUntil([&] { return Delivered("B", kDevB, 0) >= 3; }));
  {
    v1::CreateVmRequest req;
    req.set_name("A");
    req.set_image("builtin:hotplug-counter");
    req.set_vcpus(1);
    req.set_memory_mib(64);
    grpc::ClientContext ctx;
    v1::Vm vm;
    ASSERT_TRUE(h_->vms()->CreateVm(&ctx, req, &vm).ok());
  }
  const int baseline_fds = h_->OpenFds();
  std::mt19937 rng(4321);
  for (int i = 0; i < rounds; ++i) {
    v1::Vm a;
    ASSERT_TRUE(Start("A", &a).ok()) << "round " << i;
    ASSERT_EQ(a.state(), v1::VM_STATE_RUNNING);
    ASSERT_TRUE(Attach("A", kDevA).ok()) << "round " << i;
    // control socket + pidfd + one eventfd per vector
    EXPECT_EQ(h_->OpenFds(), baseline_fds + 2 + 8) << "round " << i;
    // Kill at a random instant: before or while the interrupts flow.
    std::this_thread::sleep_for(std::chrono::microseconds(rng() % 30000));
    const uint64_t b_before = Delivered("B", kDevB, 0);
    // Odd rounds: mid two-phase detach (the eject request is in flight or
    // pending in the guest when the VMM dies).
    if (i % 2 == 1) {
      ASSERT_TRUE(Detach("A", kDevA, false).ok());
    }
    ASSERT_EQ(kill(a.pid(), SIGKILL), 0);
    ASSERT_TRUE(WaitUntil([&] {
      v1::Vm v = Get("A");
      return v.state() == v1::VM_STATE_CRASHED;
    })) << "round "
        << i;
    a = Get("A");
    EXPECT_EQ(a.last_exit_reason(), "vmm killed by signal 9");
    EXPECT_EQ(a.attachments_size(), 0);
    EXPECT_TRUE(Attachments("A").empty());
    ExpectHostOwned(kDevA);
    EXPECT_EQ(h_->OpenFds(), baseline_fds) << "round " << i;
    EXPECT_EQ(SqlAttachments(), std::vector<std::string>{"B/0000:01:00.0/1"});
    // B is untouched and its device keeps delivering.
    EXPECT_EQ(Get("B").state(), v1::VM_STATE_RUNNING);
    EXPECT_TRUE(WaitUntil([&] {
      return Delivered("B", kDevB, 0) > b_before + 2;
    })) << "round "
        << i;
  }
  EXPECT_EQ(Device(kDevB).owner(), "B");
  // A can be started again and the device re-attached.
  ASSERT_TRUE(Start("A").ok());
  ASSERT_TRUE(WaitUntil([&] { return Attach("A", kDevA).ok(); }));
  ASSERT_TRUE(WaitUntil([&] { return Delivered("A", kDevA, 0) >= 3; }));
}

// Every step of AttachDevice has a rollback: a failure at each failpoint
// leaves the device host-owned, no attachment, no row, hvd's fds at their
// baseline; the next attach succeeds.
TEST_F(AttachTest, FailpointsLeaveNoPartialState) {
  REQUIRE_KVM();
  Launch(
      "attach.after_forward=error*1,vmm.attach=error*1,"
      "attach.after_vmm=error*1");
  ASSERT_TRUE(CreateAndStart("f").ok());
  Console con(*h_, "f");
  ASSERT_TRUE(con.WaitFor("ready for hot-plug")) << con.text();
  const int baseline_fds = h_->OpenFds();
  auto expect_clean = [&](const char* where) {
    SCOPED_TRACE(where);
    ExpectHostOwned(kDevA);
    EXPECT_TRUE(Attachments().empty());
    EXPECT_EQ(Get("f").attachments_size(), 0);
    EXPECT_TRUE(SqlAttachments().empty());
    EXPECT_EQ(h_->OpenFds(), baseline_fds);
  };
  EXPECT_EQ(Attach("f", kDevA).error_code(), grpc::StatusCode::INTERNAL);
  expect_clean("attach.after_forward");
  ExpectError(Attach("f", kDevA), grpc::StatusCode::FAILED_PRECONDITION, "vm");
  expect_clean("vmm.attach");
  EXPECT_EQ(Attach("f", kDevA).error_code(), grpc::StatusCode::INTERNAL);
  expect_clean("attach.after_vmm");
  // (The VMM had applied that one: the rollback force-ejected it again,
  // usually before the guest saw it.)
  v1::Attachment at;
  ASSERT_TRUE(Attach("f", kDevA, &at).ok());
  ASSERT_TRUE(WaitUntil([&] { return Delivered("f", kDevA, 7) >= 1; }))
      << con.text() << "\nslot " << at.slot() << " state " << Get("f").state();
  EXPECT_EQ(SqlAttachments(), std::vector<std::string>{"f/0000:02:00.0/1"});
}

// kill -9 of the VMM exactly while it applies an attach (vmm.attach=abort):
// AttachDevice fails ABORTED, nothing is left, the VM can start again.
TEST_F(AttachTest, KillNineOfAVmmMidAttach) {
  REQUIRE_KVM();
  int rounds = 20;
  if (const char* r = std::getenv("HV_KILL_ROUNDS")) rounds = std::atoi(r);
  Launch("vmm.attach=abort");
  {
    v1::CreateVmRequest req;
    req.set_name("m");
    req.set_image("builtin:hotplug-counter");
    req.set_vcpus(1);
    req.set_memory_mib(64);
    grpc::ClientContext ctx;
    v1::Vm vm;
    ASSERT_TRUE(h_->vms()->CreateVm(&ctx, req, &vm).ok());
  }
  const int baseline_fds = h_->OpenFds();
  for (int i = 0; i < rounds; ++i) {
    ASSERT_TRUE(Start("m").ok()) << "round " << i;
    ExpectError(Attach("m", kDevA), grpc::StatusCode::ABORTED, "vm");
    ASSERT_TRUE(
        WaitUntil([&] { return Get("m").state() == v1::VM_STATE_CRASHED; }));
    ExpectHostOwned(kDevA);
    EXPECT_TRUE(Attachments().empty());
    EXPECT_TRUE(SqlAttachments().empty());
    EXPECT_EQ(h_->OpenFds(), baseline_fds) << "round " << i;
  }
}

// kill -9 of hvd itself at the attach failpoints: after a restart the
// attach is fully absent (VM stopped, no row, device host-owned) and no
// hv-vmm is left behind; attaching again works.
TEST_F(AttachTest, KillNineOfHvdMidAttach) {
  REQUIRE_KVM();
  Launch();
  ASSERT_TRUE(CreateAndStart("k").ok());
  for (const char* fp : {"attach.after_forward", "attach.after_vmm"}) {
    SCOPED_TRACE(fp);
    h_->Term();
    ASSERT_NE(h_->Wait(milliseconds(10000)), -1);
    Launch(std::string(fp) + "=abort");
    ASSERT_TRUE(Start("k").ok());
    EXPECT_FALSE(Attach("k", kDevA).ok());  // hvd died inside
    ASSERT_NE(h_->Wait(milliseconds(10000)), -1);
    Launch();
    EXPECT_TRUE(
        WaitUntil([&] { return VmmProcesses(h_->state_dir()).empty(); }));
    v1::Vm vm = Get("k");
    EXPECT_EQ(vm.state(), v1::VM_STATE_STOPPED);
    EXPECT_EQ(vm.attachments_size(), 0);
    EXPECT_TRUE(SqlAttachments().empty());
    ExpectHostOwned(kDevA);
    ASSERT_TRUE(Start("k").ok());
    ASSERT_TRUE(WaitUntil([&] { return Attach("k", kDevA).ok(); }));
    ASSERT_TRUE(WaitUntil([&] { return Delivered("k", kDevA, 7) >= 1; }));
    EXPECT_EQ(SqlAttachments(), std::vector<std::string>{"k/0000:02:00.0/1"});
  }
  // And with a committed attachment: the restart removes its row.
  h_->Kill9();
  ASSERT_NE(h_->Wait(milliseconds(10000)), -1);
  Launch();
  EXPECT_TRUE(SqlAttachments().empty());
  EXPECT_TRUE(Attachments().empty());
  EXPECT_EQ(Get("k").state(), v1::VM_STATE_STOPPED);
}

}  // namespace
}  // namespace hv::test
