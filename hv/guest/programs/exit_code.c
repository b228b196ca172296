/* exit-code: powers off with the low byte of the platform info user_arg
 * (hv-vmm --guest_arg), proving the VMM's exit code is the guest's. */
#include "hv/guest/kit/kit.h"

int kit_main(void) {
  kit_printf("exit-code: SYSTEM_OFF(%lu)\n", kit_info.user_arg & 0xff);
  return (int)(kit_info.user_arg & 0xff);
}
