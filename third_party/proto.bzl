"""Protocol buffer + gRPC C++ code generation with Debian's protoc.

Bazel 4.2.3's proto rules would fetch protobuf sources; instead a genrule runs
the system `protoc` and `grpc_cpp_plugin` and a cc_library compiles the output.
"""

def hv_cc_grpc_library(name, srcs, deps = [], grpc = True, visibility = None):
    """Generates <name> (a cc_library) from .proto files in this package."""
    outs = []
    for src in srcs:
        base = src[:-len(".proto")]
        outs.append(base + ".pb.h")
        outs.append(base + ".pb.cc")
        if grpc:
            outs.append(base + ".grpc.pb.h")
            outs.append(base + ".grpc.pb.cc")
    pkg = native.package_name()
    grpc_flags = ""
    if grpc:
        grpc_flags = ("--grpc_out=$(GENDIR) " +
                      "--plugin=protoc-gen-grpc=/usr/bin/grpc_cpp_plugin ")
    native.genrule(
        name = name + "_gen",
        srcs = srcs,
        outs = outs,
        cmd = ("/usr/bin/protoc -I. --cpp_out=$(GENDIR) " + grpc_flags +
               " ".join(["%s/%s" % (pkg, s) if pkg else s for s in srcs])),
    )
    native.cc_library(
        name = name,
        srcs = [o for o in outs if o.endswith(".cc")],
        hdrs = [o for o in outs if o.endswith(".h")],
        deps = deps + ["//third_party:protobuf"] + (["//third_party:grpc"] if grpc else []),
        visibility = visibility,
    )
