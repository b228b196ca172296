// vgic-replay: replays a vGIC/ITS access script from stdin (see replay.h).
#include <iostream>

#include "tools/vgic_replay/replay.h"

int main() {
  std::ios::sync_with_stdio(false);
  return vgic::replay::Run(std::cin, std::cout);
}
