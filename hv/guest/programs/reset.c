/* reset: on cold boot writes a marker into RAM above the image and calls
 * SYSTEM_RESET; on the second boot checks boot_count == 1 and that RAM was
 * cleared, then passes. */
#include "hv/guest/kit/kit.h"

#define MARKER_GPA 0x700000ull /* above the image, inside 8 MiB */
#define MARKER 0x5e5e7e5e7e5e5e5eull

int kit_main(void) {
  KIT_CHECK(kit_info.ram_size > MARKER_GPA + 8);
  volatile uint64_t *marker = (volatile uint64_t *)MARKER_GPA;
  if (kit_info.boot_count == 0) {
    kit_printf("reset: boot 0, writing marker and resetting\n");
    *marker = MARKER;
    kit_reset();
  }
  KIT_CHECK_EQ(kit_info.boot_count, 1);
  KIT_CHECK_EQ(*marker, 0);
  kit_printf("PASS reset (boot %lu, RAM cleared)\n", kit_info.boot_count);
  return 0;
}
