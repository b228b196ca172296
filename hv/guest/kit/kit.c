/* Guest kit runtime: boot, per-CPU state, console, PSCI, IDT, timing. */
#include "hv/guest/kit/kit.h"

struct hv_virt_info kit_info;

/* Per-CPU data, reached through GS (IA32_GS_BASE). cpu must stay first. */
struct kit_percpu {
  uint64_t cpu;
  void (*fn)(unsigned cpu);
  uint64_t last_irq_tsc; /* TSC at the latest IRQ-vector entry */
};

__attribute__((aligned(16)))
uint8_t kit_stacks[HV_VIRT_MAX_VCPUS][KIT_STACK_SIZE];
static struct kit_percpu percpu[HV_VIRT_MAX_VCPUS];

struct kit_frame {
  uint64_t r15, r14, r13, r12, r11, r10, r9, r8, rbp, rdi, rsi, rdx, rcx, rbx,
      rax;
  uint64_t vector, error, rip, cs, rflags, rsp, ss;
};

struct idt_entry {
  uint16_t off0;
  uint16_t sel;
  uint8_t ist;
  uint8_t type;
  uint16_t off1;
  uint32_t off2;
  uint32_t zero;
} __attribute__((packed));
_Static_assert(sizeof(struct idt_entry) == 16, "IDT gate is 16 bytes");

static struct idt_entry idt[256] __attribute__((aligned(16)));
extern const uint64_t kit_trap_stub_table[256];
extern void kit_secondary_start(void);
static void (*irq_handler)(unsigned cpu);
static volatile int console_lock;

void *kit_memset(void *d, int c, size_t n) {
  uint8_t *p = d;
  while (n--) *p++ = (uint8_t)c;
  return d;
}
void *kit_memcpy(void *d, const void *s, size_t n) {
  uint8_t *p = d;
  const uint8_t *q = s;
  while (n--) *p++ = *q++;
  return d;
}
/* The compiler may emit calls to these for struct copies. */
void *memset(void *d, int c, size_t n) { return kit_memset(d, c, n); }
void *memcpy(void *d, const void *s, size_t n) { return kit_memcpy(d, s, n); }

/* ---- console ---- */
void kit_putc(char c) { kit_outb((uint16_t)kit_info.uart_port, (uint8_t)c); }

void kit_puts(const char *s) {
  while (*s) kit_putc(*s++);
}

static void put_num(uint64_t v, unsigned base, int width, char pad, int neg) {
  char buf[24];
  int n = 0;
  do {
    unsigned d = (unsigned)(v % base);
    buf[n++] = (char)(d < 10 ? '0' + d : 'a' + d - 10);
    v /= base;
  } while (v);
  if (neg) {
    if (pad == '0') {
      kit_putc('-');
    } else {
      buf[n++] = '-';
    }
    --width;
  }
  for (int i = n; i < width; ++i) kit_putc(pad);
  while (n) kit_putc(buf[--n]);
}

static void console_acquire(void) {
  while (__atomic_exchange_n(&console_lock, 1, __ATOMIC_ACQUIRE)) kit_pause();
}
static void console_release(void) {
  __atomic_store_n(&console_lock, 0, __ATOMIC_RELEASE);
}

void kit_vprintf(const char *fmt, va_list ap) {
  console_acquire();
  for (; *fmt; ++fmt) {
    if (*fmt != '%') {
      kit_putc(*fmt);
      continue;
    }
    ++fmt;
    char pad = ' ';
    int width = 0, longs = 0;
    if (*fmt == '0') {
      pad = '0';
      ++fmt;
    }
    while (*fmt >= '0' && *fmt <= '9') width = width * 10 + (*fmt++ - '0');
    while (*fmt == 'l') {
      ++longs;
      ++fmt;
    }
    switch (*fmt) {
      case 'd':
      case 'i': {
        int64_t v = longs ? va_arg(ap, int64_t) : va_arg(ap, int);
        put_num(v < 0 ? (uint64_t)-v : (uint64_t)v, 10, width, pad, v < 0);
        break;
      }
      case 'u':
        put_num(longs ? va_arg(ap, uint64_t) : va_arg(ap, unsigned), 10, width,
                pad, 0);
        break;
      case 'x':
        put_num(longs ? va_arg(ap, uint64_t) : va_arg(ap, unsigned), 16, width,
                pad, 0);
        break;
      case 'p':
        kit_puts("0x");
        put_num((uint64_t)va_arg(ap, void *), 16, width, pad, 0);
        break;
      case 's': {
        const char *s = va_arg(ap, const char *);
        kit_puts(s ? s : "(null)");
        break;
      }
      case 'c':
        kit_putc((char)va_arg(ap, int));
        break;
      case '%':
        kit_putc('%');
        break;
      default:
        kit_putc('?');
        break;
    }
  }
  console_release();
}

void kit_printf(const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  kit_vprintf(fmt, ap);
  va_end(ap);
}

/* ---- PSCI ---- */
int64_t kit_psci(uint32_t fn, uint64_t a1, uint64_t a2, uint64_t a3) {
  uint64_t ret = fn;
  register uint64_t r8 __asm__("r8") = a3;
  __asm__ volatile("outl %%eax, %%dx"
                   : "+a"(ret)
                   : "d"((uint16_t)kit_info.hypercall_port), "D"(a1), "S"(a2),
                     "r"(r8)
                   : "memory");
  return (int64_t)ret;
}

void kit_power_off(int exit_code) {
  kit_psci(PSCI_SYSTEM_OFF, (uint64_t)exit_code, 0, 0);
  for (;;) {
    kit_cli();
    __asm__ volatile("hlt");
  }
}

void kit_reset(void) {
  kit_psci(PSCI_SYSTEM_RESET, 0, 0, 0);
  for (;;) {
    kit_cli();
    __asm__ volatile("hlt");
  }
}

unsigned kit_cpu_id(void) {
  uint64_t id;
  __asm__ volatile("mov %%gs:0, %0" : "=r"(id));
  return (unsigned)id;
}

int64_t kit_cpu_on(unsigned cpu, void (*fn)(unsigned cpu)) {
  if (cpu < HV_VIRT_MAX_VCPUS) {
    percpu[cpu].fn = fn;
    __atomic_thread_fence(__ATOMIC_SEQ_CST);
  }
  const uint64_t stack_top =
      cpu < HV_VIRT_MAX_VCPUS ? (uint64_t)&kit_stacks[cpu][KIT_STACK_SIZE] : 0;
  return kit_psci(PSCI_CPU_ON, cpu, (uint64_t)kit_secondary_start, stack_top);
}

void kit_panic(uint64_t code) {
  kit_psci(HV_CALL_PANIC, code, 0, 0);
  for (;;) {
    kit_cli();
    __asm__ volatile("hlt");
  }
}

int64_t kit_kexec(uint64_t head, uint64_t entry) {
  return kit_psci(HV_CALL_KEXEC, head, entry, 0);
}

/* ---- timing ---- */
uint64_t kit_tsc_khz(void) {
  return kit_info.tsc_khz ? kit_info.tsc_khz : 1000000; /* assume 1 GHz */
}

uint64_t kit_ns_since(uint64_t start) {
  return (kit_rdtsc() - start) * 1000000ull / kit_tsc_khz();
}

int kit_wait_flag(volatile int *flag, uint64_t ms) {
  const uint64_t start = kit_rdtsc();
  const uint64_t ticks = ms * kit_tsc_khz();
  while (!*flag && kit_rdtsc() - start < ticks) kit_pause();
  return *flag;
}

/* ---- interrupts ---- */
void kit_set_irq_handler(void (*handler)(unsigned cpu)) {
  irq_handler = handler;
}

void kit_lapic_eoi(void) {
  if (kit_info.irq_delivery == HV_IRQ_DELIVERY_LAPIC) {
    kit_mmio_write32(HV_VIRT_LAPIC_BASE + 0xb0, 0); /* LAPIC EOI */
  }
}

static uint64_t read_cr2(void) {
  uint64_t v;
  __asm__ volatile("mov %%cr2, %0" : "=r"(v));
  return v;
}

uint64_t kit_last_irq_tsc(void) {
  uint64_t v;
  __asm__ volatile("mov %%gs:16, %0" : "=r"(v));
  return v;
}

void kit_trap(struct kit_frame *f) {
  if (f->vector == kit_info.irq_vector) {
    /* First thing on the IRQ path: the latency probe's timestamp. */
    const uint64_t tsc = kit_rdtsc();
    __asm__ volatile("mov %0, %%gs:16" : : "r"(tsc));
  }
  if (f->vector == kit_info.irq_vector && irq_handler) {
    irq_handler(kit_cpu_id());
    return;
  }
  if (f->vector < 32) {
    /* No lock: the faulting CPU may hold it; output may interleave. */
    console_lock = 0;
    kit_printf("FAIL: exception %lu error 0x%lx at rip 0x%lx cr2 0x%lx\n",
               f->vector, f->error, f->rip, read_cr2());
    kit_power_off(0xee);
  }
  kit_printf("spurious vector %lu on vCPU %u\n", f->vector, kit_cpu_id());
  kit_lapic_eoi();
}

static void idt_init(void) {
  for (int v = 0; v < 256; ++v) {
    const uint64_t a = kit_trap_stub_table[v];
    idt[v].off0 = (uint16_t)a;
    idt[v].sel = 0x08; /* VMM GDT code selector */
    idt[v].ist = 0;
    idt[v].type = 0x8e; /* present, DPL 0, 64-bit interrupt gate */
    idt[v].off1 = (uint16_t)(a >> 16);
    idt[v].off2 = (uint32_t)(a >> 32);
    idt[v].zero = 0;
  }
}

static void cpu_init(unsigned cpu) {
  percpu[cpu].cpu = cpu;
  const uint64_t gs = (uint64_t)&percpu[cpu];
  __asm__ volatile("wrmsr"
                   :
                   : "c"(0xc0000101u), "a"((uint32_t)gs),
                     "d"((uint32_t)(gs >> 32)));
  struct {
    uint16_t limit;
    uint64_t base;
  } __attribute__((packed)) idtr = {sizeof(idt) - 1, (uint64_t)idt};
  __asm__ volatile("lidt %0" : : "m"(idtr));
  if (kit_info.irq_delivery == HV_IRQ_DELIVERY_LAPIC) {
    /* Software-enable the LAPIC (SVR bit 8), spurious vector 0xff. */
    kit_mmio_write32(HV_VIRT_LAPIC_BASE + 0xf0, 0x1ff);
  }
}

void kit_bsp_entry(uint64_t info_base) {
  /* The block is MMIO: read it 8 bytes at a time. */
  uint64_t *dst = (uint64_t *)&kit_info;
  for (size_t i = 0; i < sizeof(kit_info) / 8; ++i) {
    dst[i] = kit_mmio_read64(info_base + i * 8);
  }
  if (kit_info.magic != HV_VIRT_INFO_MAGIC) {
    kit_info.uart_port = HV_VIRT_UART_PORT;
    kit_info.hypercall_port = HV_VIRT_HYPERCALL_PORT;
    kit_puts("FAIL: platform info block missing\n");
    kit_power_off(0xef);
  }
  idt_init();
  cpu_init(0);
  kit_power_off(kit_main());
}

void kit_secondary_entry(unsigned cpu) {
  cpu_init(cpu);
  if (percpu[cpu].fn) percpu[cpu].fn(cpu);
  kit_psci(PSCI_CPU_OFF, 0, 0, 0);
  for (;;) {
    kit_cli();
    __asm__ volatile("hlt");
  }
}

void kit_fail(const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  kit_puts("FAIL: ");
  console_lock = 0;
  kit_vprintf(fmt, ap);
  va_end(ap);
  kit_putc('\n');
  kit_power_off(1);
}
