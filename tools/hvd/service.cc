#include "tools/hvd/service.h"

#include <chrono>
#include <string>
#include <utility>

#include "absl/strings/str_cat.h"

namespace hv::hvd {
namespace {}  // namespace

grpc::Status ToGrpc(const absl::Status& s) {
  if (s.ok()) return grpc::Status::OK;
  // absl::StatusCode and grpc::StatusCode share their numbering.
  return grpc::Status(static_cast<grpc::StatusCode>(s.code()),
                      std::string(s.message()));
}

grpc::Status VmServiceImpl::CreateVm(grpc::ServerContext*,
                                     const v1::CreateVmRequest* req,
                                     v1::Vm* out) {
  absl::StatusOr<v1::Vm> r = m_->CreateVm(*req);
  if (!r.ok()) return ToGrpc(r.status());
  *out = *r;
  return grpc::Status::OK;
}

grpc::Status VmServiceImpl::StartVm(grpc::ServerContext*, const v1::VmRef* req,
                                    v1::Vm* out) {
  absl::StatusOr<v1::Vm> r = m_->StartVm(req->name());
  if (!r.ok()) return ToGrpc(r.status());
  *out = *r;
  return grpc::Status::OK;
}

grpc::Status VmServiceImpl::StopVm(grpc::ServerContext*,
                                   const v1::StopVmRequest* req, v1::Vm* out) {
  absl::StatusOr<v1::Vm> r = m_->StopVm(*req);
  if (!r.ok()) return ToGrpc(r.status());
  *out = *r;
  return grpc::Status::OK;
}

grpc::Status VmServiceImpl::DeleteVm(grpc::ServerContext*, const v1::VmRef* req,
                                     v1::DeleteVmResponse* out) {
  absl::StatusOr<uint64_t> r = m_->DeleteVm(req->name());
  if (!r.ok()) return ToGrpc(r.status());
  out->set_op_id(*r);
  return grpc::Status::OK;
}

grpc::Status VmServiceImpl::GetVm(grpc::ServerContext*, const v1::VmRef* req,
                                  v1::Vm* out) {
  absl::StatusOr<v1::Vm> r = m_->GetVm(req->name());
  if (!r.ok()) return ToGrpc(r.status());
  *out = *r;
  return grpc::Status::OK;
}

grpc::Status VmServiceImpl::ListVms(grpc::ServerContext*,
                                    const v1::ListVmsRequest*,
                                    v1::ListVmsResponse* out) {
  for (v1::Vm& vm : m_->ListVms()) *out->add_vms() = std::move(vm);
  return grpc::Status::OK;
}

grpc::Status VmServiceImpl::WatchVm(grpc::ServerContext* ctx,
                                    const v1::WatchVmRequest* req,
                                    grpc::ServerWriter<v1::VmEvent>* writer) {
  absl::StatusOr<std::shared_ptr<Watcher>> w = m_->Watch(*req);
  if (!w.ok()) return ToGrpc(w.status());
  std::vector<v1::VmEvent> batch;
  bool open = true;
  while (open && !ctx->IsCancelled()) {
    batch.clear();
    open = (*w)->Pop(&batch, std::chrono::milliseconds(200));
    for (const v1::VmEvent& ev : batch) {
      if (!writer->Write(ev)) {
        open = false;
        break;
      }
    }
  }
  m_->Unwatch(req->name(), *w);
  return grpc::Status::OK;
}

grpc::Status ImageServiceImpl::LoadImage(grpc::ServerContext*,
                                         const v1::LoadImageRequest* req,
                                         v1::Image* out) {
  absl::StatusOr<v1::Image> r = m_->LoadImage(*req);
  if (!r.ok()) return ToGrpc(r.status());
  *out = *r;
  return grpc::Status::OK;
}

grpc::Status ImageServiceImpl::UnloadImage(grpc::ServerContext*,
                                           const v1::UnloadImageRequest* req,
                                           v1::UnloadImageResponse* out) {
  absl::StatusOr<uint64_t> r = m_->UnloadImage(*req);
  if (!r.ok()) return ToGrpc(r.status());
  out->set_op_id(*r);
  return grpc::Status::OK;
}

grpc::Status ImageServiceImpl::ListImages(grpc::ServerContext*,
                                          const v1::ListImagesRequest*,
                                          v1::ListImagesResponse* out) {
  for (v1::Image& im : m_->ListImages()) *out->add_images() = std::move(im);
  return grpc::Status::OK;
}

grpc::Status HostDeviceServiceImpl::ListHostDevices(
    grpc::ServerContext*, const v1::ListHostDevicesRequest*,
    v1::ListHostDevicesResponse* out) {
  for (v1::HostDevice& d :
       d_->List([this](vfio::VmId id) { return m_->OwnerName(id); })) {
    *out->add_devices() = std::move(d);
  }
  return grpc::Status::OK;
}

grpc::Status AttachmentServiceImpl::AttachDevice(
    grpc::ServerContext*, const v1::AttachDeviceRequest* req,
    v1::Attachment* out) {
  absl::StatusOr<v1::Attachment> r = m_->AttachDevice(*req);
  if (!r.ok()) return ToGrpc(r.status());
  *out = *r;
  return grpc::Status::OK;
}

grpc::Status AttachmentServiceImpl::DetachDevice(
    grpc::ServerContext*, const v1::DetachDeviceRequest* req,
    v1::Attachment* out) {
  absl::StatusOr<v1::Attachment> r = m_->DetachDevice(*req);
  if (!r.ok()) return ToGrpc(r.status());
  *out = *r;
  return grpc::Status::OK;
}

grpc::Status AttachmentServiceImpl::ListAttachments(
    grpc::ServerContext*, const v1::ListAttachmentsRequest* req,
    v1::ListAttachmentsResponse* out) {
  absl::StatusOr<std::vector<v1::Attachment>> r =
      m_->ListAttachments(req->vm());
  if (!r.ok()) return ToGrpc(r.status());
  for (v1::Attachment& a : *r) *out->add_attachments() = std::move(a);
  return grpc::Status::OK;
}

}  // namespace hv::hvd
