// Test harness: runs a real hvd (and through it real hv-vmm processes on
// KVM) in a private state dir, and inspects processes and fds.
#ifndef TESTS_MGMT_HVD_HARNESS_H_
#define TESTS_MGMT_HVD_HARNESS_H_

#include <sys/types.h>

#include <chrono>
#include <memory>
#include <string>
#include <vector>

#include "grpcpp/grpcpp.h"
#include "proto/hv.grpc.pb.h"

namespace hv::test {

std::string Runfile(const std::string& path);  // e.g. "tools/hvd/hvd"

class HvdProcess {
 public:
  // `dir` holds the socket and the state dir. `env_failpoints` is put in
  // HV_FAILPOINTS (inherited by its VMMs too).
  HvdProcess(std::string dir, std::string env_failpoints = "",
             std::vector<std::string> extra_args = {});
  ~HvdProcess();  // SIGKILLs hvd if still running

  bool Start();  // waits until the socket accepts a health check
  pid_t pid() const { return pid_; }
  std::string socket() const { return dir_ + "/hvd.sock"; }
  std::string state_dir() const { return dir_ + "/state"; }
  std::shared_ptr<grpc::Channel> channel() const { return channel_; }
  std::unique_ptr<v1::VmService::Stub> vms() const {
    return v1::VmService::NewStub(channel_);
  }
  std::unique_ptr<v1::ImageService::Stub> images() const {
    return v1::ImageService::NewStub(channel_);
  }
  std::unique_ptr<v1::AttachmentService::Stub> attachments() const {
    return v1::AttachmentService::NewStub(channel_);
  }
  void Kill9();
  void Term();
  // Waits for exit; returns the wait status (or -1 on timeout).
  int Wait(std::chrono::milliseconds timeout);
  int OpenFds() const;  // entries in /proc/PID/fd

 private:
  int socket_fd() const;  // a connected raw socket, or -1
  std::string dir_;
  std::string failpoints_;
  std::vector<std::string> extra_;
  pid_t pid_ = 0;
  int pidfd_ = -1;
  std::shared_ptr<grpc::Channel> channel_;
};

// hv-vmm processes whose command line names `state_dir`.
std::vector<pid_t> VmmProcesses(const std::string& state_dir);
bool HaveKvm();
std::string MakeTempDir();

}  // namespace hv::test

#endif  // TESTS_MGMT_HVD_HARNESS_H_
