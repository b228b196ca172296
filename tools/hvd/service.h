// The gRPC services of hv.v1 (proto/hv.proto) over a VmManager. Each handler
// translates absl::Status to the gRPC status with the same code; messages
// name the bad field.
#ifndef TOOLS_HVD_SERVICE_H_
#define TOOLS_HVD_SERVICE_H_

#include "proto/hv.grpc.pb.h"
#include "tools/hvd/host_devices.h"
#include "tools/hvd/vm_manager.h"

namespace hv::hvd {

class VmServiceImpl final : public v1::VmService::Service {
 public:
  explicit VmServiceImpl(VmManager* m) : m_(m) {}
  grpc::Status CreateVm(grpc::ServerContext*, const v1::CreateVmRequest* req,
                        v1::Vm* out) override;
  grpc::Status StartVm(grpc::ServerContext*, const v1::VmRef* req,
                       v1::Vm* out) override;
  grpc::Status StopVm(grpc::ServerContext*, const v1::StopVmRequest* req,
                      v1::Vm* out) override;
  grpc::Status DeleteVm(grpc::ServerContext*, const v1::VmRef* req,
                        v1::DeleteVmResponse* out) override;
  grpc::Status GetVm(grpc::ServerContext*, const v1::VmRef* req,
                     v1::Vm* out) override;
  grpc::Status ListVms(grpc::ServerContext*, const v1::ListVmsRequest* req,
                       v1::ListVmsResponse* out) override;
  grpc::Status WatchVm(grpc::ServerContext* ctx, const v1::WatchVmRequest* req,
                       grpc::ServerWriter<v1::VmEvent>* writer) override;

 private:
  VmManager* const m_;
};

class ImageServiceImpl final : public v1::ImageService::Service {
 public:
  explicit ImageServiceImpl(VmManager* m) : m_(m) {}
  grpc::Status LoadImage(grpc::ServerContext*, const v1::LoadImageRequest* req,
                         v1::Image* out) override;
  grpc::Status UnloadImage(grpc::ServerContext*,
                           const v1::UnloadImageRequest* req,
                           v1::UnloadImageResponse* out) override;
  grpc::Status ListImages(grpc::ServerContext*,
                          const v1::ListImagesRequest* req,
                          v1::ListImagesResponse* out) override;

 private:
  VmManager* const m_;
};

// ListHostDevices: the inventory of HostDevices (hwsim devices through the
// bus drivers and the vfio core) with owner and per-IRQ state and counters.
class HostDeviceServiceImpl final : public v1::HostDeviceService::Service {
 public:
  HostDeviceServiceImpl(HostDevices* d, VmManager* m) : d_(d), m_(m) {}
  grpc::Status ListHostDevices(grpc::ServerContext*,
                               const v1::ListHostDevicesRequest*,
                               v1::ListHostDevicesResponse* out) override;

 private:
  HostDevices* const d_;
  VmManager* const m_;
};

// Attachments: VmManager::AttachDevice / DetachDevice / ListAttachments.

class AttachmentServiceImpl final : public v1::AttachmentService::Service {
 public:
  explicit AttachmentServiceImpl(VmManager* m) : m_(m) {}
  grpc::Status AttachDevice(grpc::ServerContext*,
                            const v1::AttachDeviceRequest* req,
                            v1::Attachment*) override;
  grpc::Status DetachDevice(grpc::ServerContext*,
                            const v1::DetachDeviceRequest* req,
                            v1::Attachment*) override;
  grpc::Status ListAttachments(grpc::ServerContext*,
                               const v1::ListAttachmentsRequest* req,
                               v1::ListAttachmentsResponse*) override;

 private:
  VmManager* const m_;
};

grpc::Status ToGrpc(const absl::Status& s);

}  // namespace hv::hvd

#endif  // TOOLS_HVD_SERVICE_H_
