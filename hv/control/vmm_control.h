// hv-vmm's control-socket mode (DESIGN §2): `hv-vmm --control_fd=N [...]`.
// hvd spawns the VMM with one end of a SOCK_SEQPACKET socketpair as fd N and
// sends a Boot command carrying the image as a memfd (SCM_RIGHTS). The VMM
// boots the guest, reports Started, streams console output, obeys Stop, and
// reports Exited before it exits. EOF on the channel (hvd died) stops the
// guest and exits, so a VMM never outlives its hvd. Other arguments
// (--vm=NAME, --state_dir=DIR) only label the process for `ps`.
//
// Commands after Boot: Stop, AttachDevice (fds: window memfd + one eventfd
// per vector; answered by AttachResult), DetachDevice (answered by Detached
// once the slot is empty) — see vmm_devices.h.
//
// Failpoints: vmm.boot (after the Boot command is read), vmm.command (when a
// command arrives), vmm.attach (before an AttachDevice is applied).
#ifndef HV_CONTROL_VMM_CONTROL_H_
#define HV_CONTROL_VMM_CONTROL_H_

namespace hv::control {

inline constexpr char kControlFdFlag[] = "--control_fd=";

// Returns the process exit code (0..255): the guest's SYSTEM_OFF argument,
// or 2 (usage), 125 (setup error), 126 (guest crashed), 0 when stopped.
int RunVmmControl(int argc, char** argv);

}  // namespace hv::control

#endif  // HV_CONTROL_VMM_CONTROL_H_
