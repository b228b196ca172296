// vgic-replay: drives a fresh vGIC + ITS from a text script and prints what
// the guest observes (docs/its.md, "vgic-replay"). The script format:
//
//   vcpus N                      first statement
//   ram BASE SIZE                optional second statement (default: 256 MiB
//                                at GPA 0)
//   mem8|mem32|mem64 GPA VALUE   guest memory write
//   rd32|rd64 FRAME OFFSET       MMIO read; prints "rd FRAME OFFSET = 0xVALUE"
//   wr32|wr64 FRAME OFFSET VALUE MMIO write; FRAME is gicd, gits or gicrN
//   msi DEVICEID EVENTID         device write to GITS_TRANSLATER
//   ack CPU                      IAR1 read; prints "ack CPU INTID"
//   eoi CPU INTID                EOIR1 write
//   save | restore               save ITS tables | fresh ITS + restore
//   its_error                    prints "its_error CODE"
//
// Numbers are decimal or 0x-hex; '#' starts a comment. A malformed line
// prints "error LINE: reason" and ends the run with exit status 2.
#ifndef TOOLS_VGIC_REPLAY_REPLAY_H_
#define TOOLS_VGIC_REPLAY_REPLAY_H_

#include <istream>
#include <ostream>

namespace vgic::replay {

// Runs the script; returns the process exit status (0, or 2 on an error).
int Run(std::istream& in, std::ostream& out);

}  // namespace vgic::replay

#endif  // TOOLS_VGIC_REPLAY_REPLAY_H_
