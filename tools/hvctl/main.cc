// hvctl: the command line over hvd's hv.v1 API (docs/management.md).
//
//   hvctl [--socket=PATH] [--json] [--timeout_ms=N] NOUN VERB [ARGS]
//
// Exit status: the gRPC status code of the call (0 OK, 3 INVALID_ARGUMENT,
// 5 NOT_FOUND, 6 ALREADY_EXISTS, 8 RESOURCE_EXHAUSTED, 9 FAILED_PRECONDITION,
// 12 UNIMPLEMENTED, 14 UNAVAILABLE, ...); 64 for a usage error.
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "google/protobuf/util/json_util.h"
#include "grpcpp/grpcpp.h"
#include "proto/hv.grpc.pb.h"

namespace {

namespace v1 = ::hv::v1;
constexpr int kExitUsage = 64;

struct Global {
  std::string socket;
  bool json = false;
  int timeout_ms = 30000;
};

// "--key=value" and "--flag" options after the verb, plus positionals.
struct Args {
  std::vector<std::string> pos;
  std::map<std::string, std::string> opt;
  bool Has(const std::string& k) const { return opt.count(k) != 0; }
  std::string Get(const std::string& k, const std::string& d = "") const {
    auto it = opt.find(k);
    return it == opt.end() ? d : it->second;
  }
};

struct Verb {
  const char* usage;
  const char* help;
  std::vector<const char*> allowed;  // accepted --options
  int positionals;
  std::function<int(const Global&, const Args&)> run;
};

std::string DefaultSocket() {
  if (const char* s = std::getenv("HV_SOCKET"); s && *s) return s;
  if (const char* x = std::getenv("XDG_RUNTIME_DIR"); x && *x) {
    return std::string(x) + "/hv/hvd.sock";
  }
  return "/run/hv/hvd.sock";
}

std::shared_ptr<grpc::Channel> Connect(const Global& g) {
  return grpc::CreateChannel("unix:" + g.socket,
                             grpc::InsecureChannelCredentials());
}

void SetDeadline(const Global& g, grpc::ClientContext* ctx) {
  ctx->set_deadline(std::chrono::system_clock::now() +
                    std::chrono::milliseconds(g.timeout_ms));
}

int Fail(const grpc::Status& s) {
  std::fprintf(stderr, "hvctl: %s: %s\n",
               absl::StrCat("code ", s.error_code()).c_str(),
               s.error_message().c_str());
  return static_cast<int>(s.error_code());
}

void PrintJson(const google::protobuf::Message& m) {
  std::string out;
  google::protobuf::util::JsonPrintOptions o;
  o.add_whitespace = true;
  o.preserve_proto_field_names = true;
  (void)google::protobuf::util::MessageToJsonString(m, &out, o);
  std::fputs(out.c_str(), stdout);
}

std::string StateName(v1::VmState s) {
  std::string n = v1::VmState_Name(s);
  for (char& c : n) c = static_cast<char>(std::tolower(c));
  return n.substr(std::string("vm_state_").size());
}

void PrintVmTable(const std::vector<v1::Vm>& vms) {
  std::printf("%-20s %-9s %5s %8s %7s %-24s %s\n", "NAME", "STATE", "VCPUS",
              "MEM_MIB", "PID", "IMAGE", "LAST_EXIT");
  for (const v1::Vm& vm : vms) {
    std::string last = vm.last_exit_reason();
    if (!last.empty()) last += absl::StrCat(" (", vm.last_exit_code(), ")");
    std::printf("%-20s %-9s %5u %8llu %7d %-24s %s\n", vm.name().c_str(),
                StateName(vm.state()).c_str(), vm.vcpus(),
                static_cast<unsigned long long>(vm.memory_mib()), vm.pid(),
                vm.image().c_str(), last.c_str());
  }
}

int PrintVm(const Global& g, const v1::Vm& vm) {
  if (g.json) {
    PrintJson(vm);
  } else {
    PrintVmTable({vm});
  }
  return 0;
}

bool ParseU64(const Args& a, const std::string& k, uint64_t def,
              uint64_t* out) {
  if (!a.Has(k)) {
    *out = def;
    return true;
  }
  if (!absl::SimpleAtoi(a.Get(k), out)) {
    std::fprintf(stderr, "hvctl: --%s must be a number\n", k.c_str());
    return false;
  }
  return true;
}

// ------------------------------------------------------------------ verbs

int VmCreate(const Global& g, const Args& a) {
  v1::CreateVmRequest req;
  req.set_name(a.pos[0]);
  uint64_t vcpus, mem, arg;
  if (!ParseU64(a, "vcpus", 1, &vcpus) ||
      !ParseU64(a, "memory_mib", 64, &mem) ||
      !ParseU64(a, "guest_arg", 0, &arg)) {
    return kExitUsage;
  }
  req.set_vcpus(static_cast<uint32_t>(vcpus));
  req.set_memory_mib(mem);
  req.set_guest_arg(arg);
  req.set_image(a.Get("image", "builtin:hello"));
  grpc::ClientContext ctx;
  SetDeadline(g, &ctx);
  v1::Vm vm;
  grpc::Status s = v1::VmService::NewStub(Connect(g))->CreateVm(&ctx, req, &vm);
  return s.ok() ? PrintVm(g, vm) : Fail(s);
}

int VmStart(const Global& g, const Args& a) {
  v1::VmRef req;
  req.set_name(a.pos[0]);
  grpc::ClientContext ctx;
  SetDeadline(g, &ctx);
  v1::Vm vm;
  grpc::Status s = v1::VmService::NewStub(Connect(g))->StartVm(&ctx, req, &vm);
  return s.ok() ? PrintVm(g, vm) : Fail(s);
}

int VmStop(const Global& g, const Args& a) {
  v1::StopVmRequest req;
  req.set_name(a.pos[0]);
  req.set_mode(a.Has("force") ? v1::STOP_MODE_FORCE : v1::STOP_MODE_GRACEFUL);
  uint64_t t;
  if (!ParseU64(a, "timeout_ms", 0, &t)) return kExitUsage;
  req.set_timeout_ms(static_cast<uint32_t>(t));
  grpc::ClientContext ctx;
  SetDeadline(g, &ctx);
  v1::Vm vm;
  grpc::Status s = v1::VmService::NewStub(Connect(g))->StopVm(&ctx, req, &vm);
  return s.ok() ? PrintVm(g, vm) : Fail(s);
}

int VmRm(const Global& g, const Args& a) {
  v1::VmRef req;
  req.set_name(a.pos[0]);
  grpc::ClientContext ctx;
  SetDeadline(g, &ctx);
  v1::DeleteVmResponse resp;
  grpc::Status s =
      v1::VmService::NewStub(Connect(g))->DeleteVm(&ctx, req, &resp);
  if (!s.ok()) return Fail(s);
  if (g.json) {
    PrintJson(resp);
  } else {
    std::printf("deleted %s (op %llu)\n", a.pos[0].c_str(),
                static_cast<unsigned long long>(resp.op_id()));
  }
  return 0;
}

int VmLs(const Global& g, const Args&) {
  grpc::ClientContext ctx;
  SetDeadline(g, &ctx);
  v1::ListVmsResponse resp;
  grpc::Status s = v1::VmService::NewStub(Connect(g))
                       ->ListVms(&ctx, v1::ListVmsRequest(), &resp);
  if (!s.ok()) return Fail(s);
  if (g.json) {
    PrintJson(resp);
  } else {
    PrintVmTable({resp.vms().begin(), resp.vms().end()});
  }
  return 0;
}

int VmShow(const Global& g, const Args& a) {
  v1::VmRef req;
  req.set_name(a.pos[0]);
  grpc::ClientContext ctx;
  SetDeadline(g, &ctx);
  v1::Vm vm;
  grpc::Status s = v1::VmService::NewStub(Connect(g))->GetVm(&ctx, req, &vm);
  if (!s.ok()) return Fail(s);
  if (g.json) {
    PrintJson(vm);
  } else {
    std::printf(
        "name:        %s\nstate:       %s\nvcpus:       %u\nmemory_mib:  "
        "%llu\nimage:       %s\ncrash_image: %s\ncrash_mib:   %llu\n"
        "pid:         %d\n"
        "starts:      %llu\nlast exit:   %s (%d)\nlast op:     %llu\n",
        vm.name().c_str(), StateName(vm.state()).c_str(), vm.vcpus(),
        static_cast<unsigned long long>(vm.memory_mib()), vm.image().c_str(),
        vm.crash_image().c_str(),
        static_cast<unsigned long long>(vm.crash_mib()), vm.pid(),
        static_cast<unsigned long long>(vm.start_count()),
        vm.last_exit_reason().c_str(), vm.last_exit_code(),
        static_cast<unsigned long long>(vm.last_op_id()));
  }
  return 0;
}

// Streams the console (and, with --events, state changes) until the VM
// stops or crashes (unless --follow) or --for_ms elapses.
int VmConsole(const Global& g, const Args& a) {
  v1::WatchVmRequest req;
  req.set_name(a.pos[0]);
  req.set_console(true);
  req.set_current_state(true);
  uint64_t for_ms;
  if (!ParseU64(a, "for_ms", 0, &for_ms)) return kExitUsage;
  const bool follow = a.Has("follow");
  const bool events = a.Has("events") || g.json;
  grpc::ClientContext ctx;
  if (for_ms > 0) {
    ctx.set_deadline(std::chrono::system_clock::now() +
                     std::chrono::milliseconds(for_ms));
  }
  auto stub = v1::VmService::NewStub(Connect(g));
  auto reader = stub->WatchVm(&ctx, req);
  v1::VmEvent ev;
  bool first = true;
  while (reader->Read(&ev)) {
    if (g.json) {
      std::string out;
      (void)google::protobuf::util::MessageToJsonString(ev, &out);
      std::printf("%s\n", out.c_str());
      std::fflush(stdout);
    } else if (ev.has_console()) {
      std::fwrite(ev.console().data(), 1, ev.console().size(), stdout);
      std::fflush(stdout);
    } else if (ev.has_state() && events) {
      std::fprintf(stderr, "[hvctl] %s is %s %s\n", a.pos[0].c_str(),
                   StateName(ev.state().state()).c_str(),
                   ev.state().reason().c_str());
    } else if (ev.has_device() && events) {
      std::fprintf(stderr, "[hvctl] %s: device %s %s\n", a.pos[0].c_str(),
                   ev.device().device().c_str(), ev.device().event().c_str());
    }
    if (ev.has_state() && !follow) {
      const v1::VmState st = ev.state().state();
      if ((st == v1::VM_STATE_STOPPED || st == v1::VM_STATE_CRASHED) &&
          !first) {
        ctx.TryCancel();
        break;
      }
    }
    first = false;
  }
  grpc::Status s = reader->Finish();
  if (s.error_code() == grpc::StatusCode::CANCELLED ||
      s.error_code() == grpc::StatusCode::DEADLINE_EXCEEDED) {
    return 0;
  }
  return s.ok() ? 0 : Fail(s);
}

int ImageLoad(const Global& g, const Args& a) {
  v1::LoadImageRequest req;
  req.set_vm(a.pos[0]);
  req.set_kind(a.Has("crash") ? v1::IMAGE_KIND_CRASH : v1::IMAGE_KIND_NORMAL);
  req.set_path(a.Get("path"));
  req.set_builtin(a.Get("builtin"));
  uint64_t crash_mib;
  if (!ParseU64(a, "crash_mib", 0, &crash_mib)) return kExitUsage;
  req.set_crash_mib(crash_mib);
  grpc::ClientContext ctx;
  SetDeadline(g, &ctx);
  v1::Image im;
  grpc::Status s =
      v1::ImageService::NewStub(Connect(g))->LoadImage(&ctx, req, &im);
  if (!s.ok()) return Fail(s);
  if (g.json) {
    PrintJson(im);
  } else {
    std::printf("%s %s image %s: %llu bytes, %u segments, entry 0x%llx\n",
                im.vm().c_str(),
                im.kind() == v1::IMAGE_KIND_CRASH ? "crash" : "normal",
                im.source().c_str(), static_cast<unsigned long long>(im.size()),
                im.segments(), static_cast<unsigned long long>(im.entry()));
    if (im.kind() == v1::IMAGE_KIND_CRASH) {
      std::printf("crash region: %llu MiB\n",
                  static_cast<unsigned long long>(im.crash_mib()));
    }
  }
  return 0;
}

int ImageUnload(const Global& g, const Args& a) {
  v1::UnloadImageRequest req;
  req.set_vm(a.pos[0]);
  req.set_kind(a.Has("crash") ? v1::IMAGE_KIND_CRASH : v1::IMAGE_KIND_NORMAL);
  grpc::ClientContext ctx;
  SetDeadline(g, &ctx);
  v1::UnloadImageResponse resp;
  grpc::Status s =
      v1::ImageService::NewStub(Connect(g))->UnloadImage(&ctx, req, &resp);
  if (!s.ok()) return Fail(s);
  if (g.json) {
    PrintJson(resp);
  } else {
    std::printf("unloaded (op %llu)\n",
                static_cast<unsigned long long>(resp.op_id()));
  }
  return 0;
}

int ImageLs(const Global& g, const Args&) {
  grpc::ClientContext ctx;
  SetDeadline(g, &ctx);
  v1::ListImagesResponse resp;
  grpc::Status s = v1::ImageService::NewStub(Connect(g))
                       ->ListImages(&ctx, v1::ListImagesRequest(), &resp);
  if (!s.ok()) return Fail(s);
  if (g.json) {
    PrintJson(resp);
    return 0;
  }
  std::printf("%-20s %-7s %-40s %10s %4s\n", "VM", "KIND", "SOURCE", "BYTES",
              "SEGS");
  for (const v1::Image& im : resp.images()) {
    std::printf("%-20s %-7s %-40s %10llu %4u\n", im.vm().c_str(),
                im.kind() == v1::IMAGE_KIND_CRASH ? "crash" : "normal",
                im.source().c_str(), static_cast<unsigned long long>(im.size()),
                im.segments());
  }
  return 0;
}

const char* ModeName(v1::VectorMode m) {
  switch (m) {
    case v1::VECTOR_MODE_HOST:
      return "host";
    case v1::VECTOR_MODE_MEDIATED:
      return "mediated";
    case v1::VECTOR_MODE_BYPASSED:
      return "bypassed";
    default:
      return "-";
  }
}

int DevLs(const Global& g, const Args&) {
  grpc::ClientContext ctx;
  SetDeadline(g, &ctx);
  v1::ListHostDevicesResponse resp;
  grpc::Status s =
      v1::HostDeviceService::NewStub(Connect(g))
          ->ListHostDevices(&ctx, v1::ListHostDevicesRequest(), &resp);
  if (!s.ok()) return Fail(s);
  if (g.json) {
    PrintJson(resp);
    return 0;
  }
  std::printf("%-24s %-9s %-16s %s\n", "DEVICE", "KIND", "OWNER", "IRQS");
  for (const v1::HostDevice& d : resp.devices()) {
    std::string irqs;
    for (const v1::IrqState& q : d.irqs()) {
      absl::StrAppend(&irqs, q.index(), ":", ModeName(q.mode()), "/", q.count(),
                      " ");
    }
    std::printf("%-24s %-9s %-16s %s\n", d.id().c_str(), d.kind().c_str(),
                d.owner().c_str(), irqs.c_str());
  }
  return 0;
}

void PrintAttachment(const Global& g, const v1::Attachment& at) {
  if (g.json) {
    PrintJson(at);
    return;
  }
  std::printf("%s %s %s slot %u%s\n", at.vm().c_str(), at.device().c_str(),
              v1::AttachmentState_Name(at.state()).c_str(), at.slot(),
              at.forced() ? " (forced)" : "");
}

int DevAttach(const Global& g, const Args& a) {
  v1::AttachDeviceRequest req;
  req.set_vm(a.pos[0]);
  req.set_device(a.pos[1]);
  grpc::ClientContext ctx;
  SetDeadline(g, &ctx);
  v1::Attachment at;
  grpc::Status s =
      v1::AttachmentService::NewStub(Connect(g))->AttachDevice(&ctx, req, &at);
  if (!s.ok()) return Fail(s);
  PrintAttachment(g, at);
  return 0;
}

int DevDetach(const Global& g, const Args& a) {
  v1::DetachDeviceRequest req;
  req.set_vm(a.pos[0]);
  req.set_device(a.pos[1]);
  req.set_force(a.Has("force"));
  grpc::ClientContext ctx;
  SetDeadline(g, &ctx);
  v1::Attachment at;
  grpc::Status s =
      v1::AttachmentService::NewStub(Connect(g))->DetachDevice(&ctx, req, &at);
  if (!s.ok()) return Fail(s);
  PrintAttachment(g, at);
  return 0;
}

int AttachLs(const Global& g, const Args& a) {
  v1::ListAttachmentsRequest req;
  if (!a.pos.empty()) req.set_vm(a.pos[0]);
  grpc::ClientContext ctx;
  SetDeadline(g, &ctx);
  v1::ListAttachmentsResponse resp;
  grpc::Status s = v1::AttachmentService::NewStub(Connect(g))
                       ->ListAttachments(&ctx, req, &resp);
  if (!s.ok()) return Fail(s);
  if (g.json) {
    PrintJson(resp);
    return 0;
  }
  std::printf("%-20s %-24s %-16s %s\n", "VM", "DEVICE", "STATE", "VECTORS");
  for (const v1::Attachment& at : resp.attachments()) {
    std::string vec;
    for (const v1::IrqState& q : at.vectors()) {
      absl::StrAppend(&vec, q.index(), ":", ModeName(q.mode()), "/", q.count(),
                      " ");
    }
    std::printf("%-20s %-24s %-16s %s\n", at.vm().c_str(), at.device().c_str(),
                v1::AttachmentState_Name(at.state()).c_str(), vec.c_str());
  }
  return 0;
}

const std::map<std::string, std::map<std::string, Verb>>& Verbs() {
  static const auto* v = new std::map<std::string, std::map<std::string, Verb>>{
      {"vm",
       {
           {"create",
            {"vm create NAME [--image=builtin:NAME|/abs/path.elf] [--vcpus=N] "
             "[--memory_mib=M] [--guest_arg=X]",
             "Defines a VM (stopped). Defaults: builtin:hello, 1 vCPU, 64 "
             "MiB.",
             {"image", "vcpus", "memory_mib", "guest_arg"},
             1,
             VmCreate}},
           {"start",
            {"vm start NAME",
             "Spawns the VM's hv-vmm and boots the guest.",
             {},
             1,
             VmStart}},
           {"stop",
            {"vm stop NAME [--force] [--timeout_ms=N]",
             "Graceful stop (escalates to kill after the timeout, default "
             "5000 ms); --force kills the VMM at once.",
             {"force", "timeout_ms"},
             1,
             VmStop}},
           {"rm", {"vm rm NAME", "Deletes a stopped VM.", {}, 1, VmRm}},
           {"ls", {"vm ls", "Lists VMs.", {}, 0, VmLs}},
           {"show", {"vm show NAME", "Shows one VM.", {}, 1, VmShow}},
           {"console",
            {"vm console NAME [--follow] [--events] [--for_ms=N]",
             "Streams the guest console until the VM stops (--follow: until "
             "interrupted; --for_ms: at most N ms; --events: print state "
             "changes to stderr).",
             {"follow", "events", "for_ms"},
             1,
             VmConsole}},
       }},
      {"image",
       {
           {"load",
            {"image load VM (--path=/abs/file.elf | --builtin=NAME) "
             "[--crash --crash_mib=N]",
             "Validates an ELF image with the loader and sets it as the "
             "VM's kernel (or crash kernel); the VM must be stopped. A crash "
             "kernel needs --crash_mib: its region's size in MiB (top of "
             "RAM, at most half of it), which must hold the crash kernel and "
             "miss the kernel.",
             {"path", "builtin", "crash", "crash_mib"},
             1,
             ImageLoad}},
           {"unload",
            {"image unload VM --crash",
             "Removes the VM's crash kernel.",
             {"crash"},
             1,
             ImageUnload}},
           {"ls", {"image ls", "Lists loaded images.", {}, 0, ImageLs}},
       }},
      {"dev",
       {
           {"ls",
            {"dev ls",
             "Lists host devices with owner and IRQ state.",
             {},
             0,
             DevLs}},
           {"attach",
            {"dev attach VM DEVICE",
             "Hot-attaches a host device.",
             {},
             2,
             DevAttach}},
           {"detach",
            {"dev detach VM DEVICE [--force]",
             "Detaches a device (two-phase; --force skips the guest).",
             {"force"},
             2,
             DevDetach}},
       }},
      {"attach",
       {
           {"ls",
            {"attach ls [VM]",
             "Lists attachments with per-vector mode and counters.",
             {},
             -1,
             AttachLs}},
       }},
  };
  return *v;
}

void Usage(FILE* f) {
  std::fprintf(f,
               "usage: hvctl [--socket=PATH] [--json] [--timeout_ms=N] NOUN "
               "VERB [ARGS]\n\n");
  for (const auto& [noun, verbs] : Verbs()) {
    for (const auto& [name, v] : verbs)
      std::fprintf(f, "  hvctl %s\n", v.usage);
  }
  std::fprintf(
      f,
      "\n--socket defaults to $HV_SOCKET, $XDG_RUNTIME_DIR/hv/hvd.sock "
      "or /run/hv/hvd.sock.\n'hvctl NOUN VERB --help' describes a "
      "verb. Exit status: the gRPC status code (0 = OK), 64 = usage.\n");
}

}  // namespace

int main(int argc, char** argv) {
  Global g;
  g.socket = DefaultSocket();
  int i = 1;
  for (; i < argc; ++i) {
    std::string a = argv[i];
    if (a.rfind("--", 0) != 0) break;
    if (a == "--help" || a == "-h") {
      Usage(stdout);
      return 0;
    } else if (a == "--json") {
      g.json = true;
    } else if (a.rfind("--socket=", 0) == 0) {
      g.socket = a.substr(9);
    } else if (a.rfind("--timeout_ms=", 0) == 0) {
      if (!absl::SimpleAtoi(a.substr(13), &g.timeout_ms)) return kExitUsage;
    } else {
      std::fprintf(stderr, "hvctl: unknown option %s\n", a.c_str());
      Usage(stderr);
      return kExitUsage;
    }
  }
  if (argc - i < 2) {
    Usage(stderr);
    return kExitUsage;
  }
  auto noun = Verbs().find(argv[i]);
  if (noun == Verbs().end() || noun->second.count(argv[i + 1]) == 0) {
    std::fprintf(stderr, "hvctl: unknown command '%s %s'\n", argv[i],
                 argv[i + 1]);
    Usage(stderr);
    return kExitUsage;
  }
  const Verb& verb = noun->second.at(argv[i + 1]);
  Args args;
  for (int k = i + 2; k < argc; ++k) {
    std::string a = argv[k];
    if (a == "--help" || a == "-h") {
      std::printf("usage: hvctl %s\n\n%s\n", verb.usage, verb.help);
      return 0;
    }
    if (a == "--json") {
      g.json = true;
      continue;
    }
    if (a.rfind("--", 0) == 0) {
      const size_t eq = a.find('=');
      const std::string key =
          a.substr(2, eq == std::string::npos ? std::string::npos : eq - 2);
      bool ok = false;
      for (const char* al : verb.allowed) ok |= key == al;
      if (!ok) {
        std::fprintf(stderr, "hvctl: unknown option --%s\nusage: hvctl %s\n",
                     key.c_str(), verb.usage);
        return kExitUsage;
      }
      args.opt[key] = eq == std::string::npos ? "" : a.substr(eq + 1);
    } else {
      args.pos.push_back(a);
    }
  }
  const int want = verb.positionals;
  if ((want >= 0 && static_cast<int>(args.pos.size()) != want) ||
      (want < 0 && args.pos.size() > 1)) {
    std::fprintf(stderr, "usage: hvctl %s\n", verb.usage);
    return kExitUsage;
  }
  return verb.run(g, args);
}
