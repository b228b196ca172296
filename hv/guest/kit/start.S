/* Guest kit entry points. The VMM enters in 64-bit mode with paging on
 * (hv/arch/x86_boot.h): rdi = first argument, rsi = vCPU index. */
#define KIT_STACK_SIZE 16384

    .section .text.start, "ax"
    .global _start
_start:                         /* vCPU 0: rdi = platform info base */
    /* rdx/rcx: third/fourth boot arguments (a crash image gets the ELF
     * core header GPA and size, docs/kexec.md); then the entry TSC. */
    mov %rdx, kit_boot_args(%rip)
    mov %rcx, kit_boot_args+8(%rip)
    rdtsc
    shl $32, %rdx
    or %rax, %rdx
    mov %rdx, kit_entry_tsc(%rip)
    lea kit_stacks + KIT_STACK_SIZE(%rip), %rsp
    xor %rbp, %rbp
    call kit_bsp_entry
1:  cli
    hlt
    jmp 1b

    .data
    .align 8
    .global kit_boot_args
kit_boot_args:
    .quad 0, 0
    .global kit_entry_tsc
kit_entry_tsc:
    .quad 0

    .text
    .global kit_secondary_start
kit_secondary_start:            /* CPU_ON: rdi = stack top, rsi = vCPU */
    mov %rdi, %rsp
    xor %rbp, %rbp
    mov %rsi, %rdi
    call kit_secondary_entry
1:  cli
    hlt
    jmp 1b

/* Interrupt/exception stubs: every vector pushes an error code (a dummy 0
 * where the CPU does not, SDM Vol. 3A §6.13) and its number, then joins
 * kit_trap_common, which saves the general registers and calls
 * kit_trap(struct kit_frame *). */
    .altmacro
    .macro stub vec
    .if (\vec == 8) || (\vec >= 10 && \vec <= 14) || (\vec == 17) || (\vec == 21) || (\vec == 29) || (\vec == 30)
    .else
    pushq $0
    .endif
    pushq $\vec
    jmp kit_trap_common
    .endm

    /* kit_trap_stub_table[v] = address of vector v's stub. */
    .section .rodata
    .align 8
    .global kit_trap_stub_table
kit_trap_stub_table:
    .text
    .set vec, 0
    .rept 256
    .text
2:  stub %vec
    .section .rodata
    .quad 2b
    .set vec, vec + 1
    .endr
    .text

kit_trap_common:
    push %rax
    push %rbx
    push %rcx
    push %rdx
    push %rsi
    push %rdi
    push %rbp
    push %r8
    push %r9
    push %r10
    push %r11
    push %r12
    push %r13
    push %r14
    push %r15
    mov %rsp, %rdi
    /* Align the stack for the C call (the frame is 22 quadwords). */
    mov %rsp, %rbx
    and $-16, %rsp
    call kit_trap
    mov %rbx, %rsp
    pop %r15
    pop %r14
    pop %r13
    pop %r12
    pop %r11
    pop %r10
    pop %r9
    pop %r8
    pop %rbp
    pop %rdi
    pop %rsi
    pop %rdx
    pop %rcx
    pop %rbx
    pop %rax
    add $16, %rsp
    iretq

    .section .note.GNU-stack, "", @progbits
