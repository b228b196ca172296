/* The hv guest kit: a freestanding x86-64 runtime for programs booted by hv
 * on the hv-virt platform (hv/platform/hv_virt.h). A program defines
 * `int kit_main(void)`; its return value becomes the SYSTEM_OFF exit code.
 */
#ifndef HV_GUEST_KIT_KIT_H_
#define HV_GUEST_KIT_KIT_H_

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include "hv/platform/hv_virt.h"

#define KIT_NORETURN __attribute__((noreturn))
#define KIT_STACK_SIZE 16384

/* The platform info block, copied from HV_VIRT_INFO_BASE at boot. */
extern struct hv_virt_info kit_info;

int kit_main(void);

/* ---- port and MMIO access, CPU helpers ---- */
static inline void kit_outb(uint16_t port, uint8_t v) {
  __asm__ volatile("outb %0, %1" : : "a"(v), "Nd"(port));
}
static inline uint8_t kit_inb(uint16_t port) {
  uint8_t v;
  __asm__ volatile("inb %1, %0" : "=a"(v) : "Nd"(port));
  return v;
}
static inline uint8_t kit_mmio_read8(uint64_t a) {
  return *(volatile uint8_t *)a;
}
static inline uint16_t kit_mmio_read16(uint64_t a) {
  return *(volatile uint16_t *)a;
}
static inline uint32_t kit_mmio_read32(uint64_t a) {
  return *(volatile uint32_t *)a;
}
static inline uint64_t kit_mmio_read64(uint64_t a) {
  return *(volatile uint64_t *)a;
}
static inline void kit_mmio_write32(uint64_t a, uint32_t v) {
  *(volatile uint32_t *)a = v;
}
static inline void kit_mmio_write64(uint64_t a, uint64_t v) {
  *(volatile uint64_t *)a = v;
}
static inline uint64_t kit_rdtsc(void) {
  uint32_t lo, hi;
  __asm__ volatile("rdtsc" : "=a"(lo), "=d"(hi));
  return ((uint64_t)hi << 32) | lo;
}
static inline void kit_pause(void) { __asm__ volatile("pause"); }
static inline void kit_sti(void) { __asm__ volatile("sti" ::: "memory"); }
static inline void kit_cli(void) { __asm__ volatile("cli" ::: "memory"); }
/* Enables interrupts and halts atomically (STI's one-instruction shadow). */
static inline void kit_sti_hlt(void) {
  __asm__ volatile("sti; hlt" ::: "memory");
}

/* ---- console (16550 at kit_info.uart_port) ---- */
void kit_putc(char c);
void kit_puts(const char *s);
void kit_printf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void kit_vprintf(const char *fmt, va_list ap);

/* ---- PSCI-style hypercalls ---- */
int64_t kit_psci(uint32_t fn, uint64_t a1, uint64_t a2, uint64_t a3);
KIT_NORETURN void kit_power_off(int exit_code);
KIT_NORETURN void kit_reset(void);
/* Starts `cpu` running fn(cpu) on its own stack; the CPU powers itself off
 * (CPU_OFF) when fn returns. Returns the PSCI result. */
int64_t kit_cpu_on(unsigned cpu, void (*fn)(unsigned cpu));
unsigned kit_cpu_id(void);

/* hv calls (hv_virt.h): HV_CALL_PANIC does not return when the VM switches
 * to a crash image (or enters the crashed state); HV_CALL_KEXEC returns only
 * on error (the PSCI-style code). */
KIT_NORETURN void kit_panic(uint64_t code);
int64_t kit_kexec(uint64_t head, uint64_t entry);
/* rdx/rcx at image entry (crash image: ELF core header GPA and size). */
extern uint64_t kit_boot_args[2];
/* TSC read by the first instructions at _start. */
extern uint64_t kit_entry_tsc;

/* ---- timing ---- */
uint64_t kit_tsc_khz(void);
uint64_t kit_ns_since(uint64_t tsc_start);
/* Spins until *flag != 0 or `ms` milliseconds pass; returns *flag. */
int kit_wait_flag(volatile int *flag, uint64_t ms);

/* ---- interrupts ---- */
/* Handler for the GIC line's vector (kit_info.irq_vector), called with
 * interrupts disabled on the interrupted CPU. */
void kit_set_irq_handler(void (*handler)(unsigned cpu));
/* Signals end of interrupt to the in-kernel LAPIC when the platform
 * delivers the GIC line through it (HV_IRQ_DELIVERY_LAPIC); no-op else. */
void kit_lapic_eoi(void);

/* ---- results ---- */
KIT_NORETURN void kit_fail(const char *fmt, ...)
    __attribute__((format(printf, 1, 2)));
#define KIT_CHECK(cond)                                               \
  do {                                                                \
    if (!(cond))                                                      \
      kit_fail("%s:%d: check failed: %s", __FILE__, __LINE__, #cond); \
  } while (0)
#define KIT_CHECK_EQ(a, b)                                                   \
  do {                                                                       \
    uint64_t kit_a_ = (uint64_t)(a), kit_b_ = (uint64_t)(b);                 \
    if (kit_a_ != kit_b_)                                                    \
      kit_fail("%s:%d: %s == %s failed: 0x%lx != 0x%lx", __FILE__, __LINE__, \
               #a, #b, kit_a_, kit_b_);                                      \
  } while (0)

void *kit_memset(void *d, int c, size_t n);
void *kit_memcpy(void *d, const void *s, size_t n);

#endif /* HV_GUEST_KIT_KIT_H_ */
