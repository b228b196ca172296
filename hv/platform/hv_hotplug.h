/* hv-virt hot-plug controller ABI (plain C, shared with the guest kit).
 * One 4 KiB MMIO frame at HV_HOTPLUG_BASE and a level-sensitive SPI
 * (HV_HOTPLUG_SPI) asserted while any slot has an unacknowledged event.
 * 32-bit registers unless noted; little endian.
 *
 * Attach: the host fills a slot and sets its ATTACH event; the guest reads
 * the identity (KIND, REQUESTER_ID, NUM_VECTORS, DEV_SPI, WINDOW_GPA/SIZE,
 * NAME) of the SELected slot and clears the event (W1C EVENTS).
 * Detach, two phase: the host sets STATUS.EJECT_REQ and the EJECT event; the
 * guest quiesces the device (disables its vectors, DISCARD/MAPD V=0 in its
 * ITS) and writes CMD = HV_HOTPLUG_CMD_EJECT_ACK; the host completes (slot
 * empty). A guest that does not ack within the host's timeout is ejected by
 * force; the device still returns to the host.
 */
#ifndef HV_PLATFORM_HV_HOTPLUG_H_
#define HV_PLATFORM_HV_HOTPLUG_H_

#include <stdint.h>

#define HV_HOTPLUG_BASE 0xD0060000ull
#define HV_HOTPLUG_SIZE 0x1000ull
#define HV_HOTPLUG_SPI 90
#define HV_HOTPLUG_MAGIC 0x50484856u /* "VHHP" */
#define HV_HOTPLUG_MAX_SLOTS 32

#define HV_HOTPLUG_REG_MAGIC 0x00        /* RO */
#define HV_HOTPLUG_REG_NUM_SLOTS 0x04    /* RO */
#define HV_HOTPLUG_REG_SEL 0x08          /* RW: slot the registers below show */
#define HV_HOTPLUG_REG_EVENTS 0x0c       /* RO bit per slot; W1C */
#define HV_HOTPLUG_REG_STATUS 0x10       /* RO, selected slot */
#define HV_HOTPLUG_REG_CMD 0x14          /* WO, selected slot */
#define HV_HOTPLUG_REG_KIND 0x18         /* RO: 1 PCI, 2 platform */
#define HV_HOTPLUG_REG_REQUESTER_ID 0x1c /* RO: ITS DeviceID */
#define HV_HOTPLUG_REG_NUM_VECTORS 0x20  /* RO */
#define HV_HOTPLUG_REG_DEV_SPI 0x24      /* RO: platform line's SPI, else 0 */
#define HV_HOTPLUG_REG_WINDOW_GPA 0x28   /* RO 64-bit */
#define HV_HOTPLUG_REG_WINDOW_SIZE 0x30  /* RO 64-bit */
#define HV_HOTPLUG_REG_NAME 0x40         /* RO 32 bytes, NUL padded */

#define HV_HOTPLUG_STATUS_PRESENT 0x1u
#define HV_HOTPLUG_STATUS_EJECT_REQ 0x2u

#define HV_HOTPLUG_CMD_EJECT_ACK 0x1u

#endif /* HV_PLATFORM_HV_HOTPLUG_H_ */
