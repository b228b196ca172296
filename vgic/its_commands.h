// Encoders for ITS commands (IHI 0069 §5.3): the 4 doublewords a driver
// writes into the command queue. Used by tests, fuzzers, benchmarks and the
// replay tool; a guest-side driver builds the same layouts.
#ifndef VGIC_ITS_COMMANDS_H_
#define VGIC_ITS_COMMANDS_H_

#include <array>
#include <cstdint>

#include "vgic/its_defs.h"

namespace vgic::its::cmd {

using Raw = std::array<uint64_t, 4>;

inline uint64_t Op(Cmd c) { return static_cast<uint64_t>(c); }
inline uint64_t Dev(uint32_t device_id) { return uint64_t{device_id} << 32; }

// MAPD: DW0 DeviceID [63:32]; DW1 Size [4:0] (EventID bits - 1);
// DW2 ITT_addr [51:8], V [63].
inline Raw Mapd(uint32_t device, uint32_t event_bits, uint64_t itt, bool v) {
  return {Op(Cmd::kMapd) | Dev(device), (event_bits - 1) & 0x1f,
          (itt & 0x000fffffffffff00ull) | uint64_t{v} << 63, 0};
}
// MAPC: DW2 ICID [15:0], RDbase [51:16], V [63].
inline Raw Mapc(uint16_t icid, uint64_t rdbase, bool v) {
  return {Op(Cmd::kMapc), 0, icid | rdbase << 16 | uint64_t{v} << 63, 0};
}
// MAPTI: DW1 EventID [31:0], pINTID [63:32]; DW2 ICID [15:0].
inline Raw Mapti(uint32_t device, uint32_t event, uint32_t intid,
                 uint16_t icid) {
  return {Op(Cmd::kMapti) | Dev(device), event | uint64_t{intid} << 32, icid,
          0};
}
inline Raw Mapi(uint32_t device, uint32_t event, uint16_t icid) {
  return {Op(Cmd::kMapi) | Dev(device), event, icid, 0};
}
inline Raw Movi(uint32_t device, uint32_t event, uint16_t icid) {
  return {Op(Cmd::kMovi) | Dev(device), event, icid, 0};
}
inline Raw DevEvent(Cmd c, uint32_t device, uint32_t event) {
  return {Op(c) | Dev(device), event, 0, 0};
}
inline Raw Int(uint32_t d, uint32_t e) { return DevEvent(Cmd::kInt, d, e); }
inline Raw Clear(uint32_t d, uint32_t e) { return DevEvent(Cmd::kClear, d, e); }
inline Raw Discard(uint32_t d, uint32_t e) {
  return DevEvent(Cmd::kDiscard, d, e);
}
inline Raw Inv(uint32_t d, uint32_t e) { return DevEvent(Cmd::kInv, d, e); }
inline Raw Invall(uint16_t icid) { return {Op(Cmd::kInvall), 0, icid, 0}; }
// MOVALL: DW2 RDbase1 [51:16]; DW3 RDbase2 [51:16].
inline Raw Movall(uint64_t rd1, uint64_t rd2) {
  return {Op(Cmd::kMovall), 0, rd1 << 16, rd2 << 16};
}
inline Raw Sync(uint64_t rd) { return {Op(Cmd::kSync), 0, rd << 16, 0}; }

}  // namespace vgic::its::cmd

#endif  // VGIC_ITS_COMMANDS_H_
