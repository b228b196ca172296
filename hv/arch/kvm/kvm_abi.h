// C++-safe definitions of KVM ioctls whose argument structs end in a
// flexible array. Debian 12's uapi headers declare those arrays with
// __DECLARE_FLEX_ARRAY, which in C++ adds a 1-byte empty struct, changing
// sizeof() and therefore the ioctl numbers (_IOW encodes the size) and the
// array offset. Here the headers are spelled out with their C layout and the
// entries are placed right after them by hand.
#ifndef HV_ARCH_KVM_KVM_ABI_H_
#define HV_ARCH_KVM_KVM_ABI_H_

#include <linux/kvm.h>

#include <cstdint>

namespace hv::arch::kvm_abi {

struct Cpuid2Header {  // struct kvm_cpuid2 without entries[]
  uint32_t nent;
  uint32_t padding;
};
static_assert(sizeof(Cpuid2Header) == 8);

struct IrqRoutingHeader {  // struct kvm_irq_routing without entries[]
  uint32_t nr;
  uint32_t flags;
};
static_assert(sizeof(IrqRoutingHeader) == 8);
static_assert(sizeof(kvm_cpuid_entry2) == 40);
static_assert(sizeof(kvm_irq_routing_entry) == 48);

inline constexpr unsigned long kGetSupportedCpuid =
    _IOWR(KVMIO, 0x05, Cpuid2Header);
inline constexpr unsigned long kSetCpuid2 = _IOW(KVMIO, 0x90, Cpuid2Header);
inline constexpr unsigned long kSetGsiRouting =
    _IOW(KVMIO, 0x6a, IrqRoutingHeader);

}  // namespace hv::arch::kvm_abi

#endif  // HV_ARCH_KVM_KVM_ABI_H_
