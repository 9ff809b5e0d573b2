/*
 * Compile pycontain's seccomp rules into classic BPF (in the parent, with
 * libseccomp), and load such a program (in the container's process, with
 * nothing but the seccomp() syscall).  See seccomp_api.h for the API and
 * pycontain/seccomp.py for the policy.
 *
 * Why split compile and load: libseccomp allocates, reads its own tables
 * and may take locks, none of which belongs in a child between clone() and
 * execve().  Its output is a plain array of `struct sock_filter`, which the
 * parent can cache on disk and the child can hand to the kernel as it is.
 */

#define _GNU_SOURCE
#include <errno.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <seccomp.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "seccomp_api.h"

_Static_assert(PC_SECCOMP_MAX_CMP == 4, "seccomp_api.h: cmp[] size and PC_SECCOMP_MAX_CMP differ");
_Static_assert(sizeof(struct sock_filter) == 8, "a BPF instruction is 8 bytes");

/* The compat ABIs a native architecture can also run.  A process may enter
 * the kernel through any of them (on x86_64: `int $0x80` gives the i386
 * table, a syscall number with bit 30 set the x32 table), and each has its
 * own numbers, so a filter that only names x86_64 numbers would let
 * keyctl through as i386 syscall 288.  libseccomp closes that hole two
 * ways: every ABI we add gets the same rules under its own numbers, and any
 * ABI we do not add hits the "bad arch" action, which we make KILL_PROCESS.
 *
 * We add the compat ABIs rather than kill them because pycontain runs
 * i386 rootfs natively on x86_64 (no QEMU), so their syscalls are real
 * traffic.  x32 is added for the same reason docker does: it costs nothing,
 * and where the kernel lacks x32 (CONFIG_X86_X32_ABI is off on most
 * distributions) those syscalls fail with ENOSYS before they get here. */
static void add_compat_arches(scmp_filter_ctx ctx)
{
    static const struct { uint32_t native, compat; } table[] = {
        { SCMP_ARCH_X86_64, SCMP_ARCH_X86 },
        { SCMP_ARCH_X86_64, SCMP_ARCH_X32 },
        { SCMP_ARCH_AARCH64, SCMP_ARCH_ARM },
        { SCMP_ARCH_S390X, SCMP_ARCH_S390 },
    };
    uint32_t native = seccomp_arch_native();
    for (size_t i = 0; i < sizeof(table) / sizeof(table[0]); i++) {
        /* A failure here is safe: the ABI then falls to KILL_PROCESS. */
        if (table[i].native == native)
            (void)seccomp_arch_add(ctx, table[i].compat);
    }
}

static enum scmp_compare scmp_op(unsigned int op)
{
    switch (op) {
    case PC_CMP_NE: return SCMP_CMP_NE;
    case PC_CMP_LT: return SCMP_CMP_LT;
    case PC_CMP_LE: return SCMP_CMP_LE;
    case PC_CMP_EQ: return SCMP_CMP_EQ;
    case PC_CMP_GE: return SCMP_CMP_GE;
    case PC_CMP_GT: return SCMP_CMP_GT;
    case PC_CMP_MASKED_EQ: return SCMP_CMP_MASKED_EQ;
    default: return _SCMP_CMP_MIN; /* invalid: libseccomp says EINVAL */
    }
}

static int add_rule(scmp_filter_ctx ctx, struct pc_seccomp_rule *r, uint32_t default_action)
{
    struct scmp_arg_cmp cmp[PC_SECCOMP_MAX_CMP];
    uint32_t action = r->errno_ret ? SCMP_ACT_ERRNO(r->errno_ret) : SCMP_ACT_ALLOW;
    int nr, rc;

    if (r->name == NULL || r->ncmp < 0 || r->ncmp > PC_SECCOMP_MAX_CMP)
        return -EINVAL;
    /* A negative number other than __NR_SCMP_ERROR is a libseccomp
     * "pseudo syscall": a name it knows that this native arch lacks (vm86
     * on x86_64).  rule_add then places the rule on the compat arches that
     * have it, which is what we want; only a wholly unknown name is
     * skipped (a newer kernel's syscall on an older libseccomp). */
    nr = seccomp_syscall_resolve_name(r->name);
    if (nr == __NR_SCMP_ERROR)
        return PC_RULE_UNKNOWN;
    /* libseccomp refuses a rule that repeats the default action; such a
     * rule changes nothing, so it is not an error in the profile. */
    if (action == default_action)
        return PC_RULE_DEFAULT;
    for (int i = 0; i < r->ncmp; i++) {
        cmp[i].arg = r->cmp[i].arg;
        cmp[i].op = scmp_op(r->cmp[i].op);
        cmp[i].datum_a = r->cmp[i].a;
        cmp[i].datum_b = r->cmp[i].b;
    }
    rc = seccomp_rule_add_array(ctx, action, nr, (unsigned int)r->ncmp, cmp);
    return rc < 0 ? rc : PC_RULE_ADDED;
}

/* Read the exported program back: seccomp_export_bpf_mem() only arrived in
 * libseccomp 2.6, and Debian 12 ships 2.5.4, so export to a memfd. */
static int export_bpf(scmp_filter_ctx ctx, unsigned char *out, int out_size)
{
    int fd = memfd_create("pycontain-seccomp", MFD_CLOEXEC);
    int rc;
    off_t len;

    if (fd < 0)
        return -errno;
    rc = seccomp_export_bpf(ctx, fd);
    if (rc < 0)
        goto done;
    len = lseek(fd, 0, SEEK_CUR);
    if (len < 0) {
        rc = -errno;
    } else if (len == 0 || len % (off_t)sizeof(struct sock_filter) != 0) {
        rc = -EIO;
    } else if (len > out_size) {
        rc = -ENOSPC;
    } else {
        ssize_t got = pread(fd, out, (size_t)len, 0);
        rc = got == len ? (int)len : (got < 0 ? -errno : -EIO);
    }
done:
    close(fd);
    return rc;
}

int pc_seccomp_compile(struct pc_seccomp_rule *rules, int n, unsigned int default_errno,
                       unsigned char *out, int out_size)
{
    uint32_t default_action = default_errno ? SCMP_ACT_ERRNO(default_errno) : SCMP_ACT_ALLOW;
    scmp_filter_ctx ctx;
    int rc = 0;

    if (n < 0 || out == NULL || out_size <= 0)
        return -EINVAL;
    ctx = seccomp_init(default_action);
    if (ctx == NULL)
        return -ENOMEM;
    /* The child sets no_new_privs itself, as its own plan step; the
     * exported program is the same either way, but say what we mean. */
    rc = seccomp_attr_set(ctx, SCMP_FLTATR_CTL_NNP, 0);
    if (rc == 0)
        rc = seccomp_attr_set(ctx, SCMP_FLTATR_ACT_BADARCH, SCMP_ACT_KILL_PROCESS);
    if (rc < 0)
        goto done;
    /* A binary search over syscall numbers instead of a linear chain: a
     * syscall the profile does not name then costs ~log2(rules) jumps, not
     * one per rule.  (Kernels >= 5.11 go further and cache, per syscall
     * number, "this filter always allows it", skipping BPF altogether.)
     * Older libseccomp lacks the attribute: the linear program is correct. */
    (void)seccomp_attr_set(ctx, SCMP_FLTATR_CTL_OPTIMIZE, 2);
    add_compat_arches(ctx);

    for (int i = 0; i < n; i++) {
        rules[i].result = add_rule(ctx, &rules[i], default_action);
        if (rules[i].result < 0) {
            rc = rules[i].result;
            goto done;
        }
    }
    rc = export_bpf(ctx, out, out_size);
done:
    seccomp_release(ctx);
    return rc;
}

int pc_seccomp_syscall_number(const char *name)
{
    return seccomp_syscall_resolve_name(name);
}

int pc_seccomp_version(void)
{
    const struct scmp_version *v = seccomp_version();
    return v ? (int)(v->major * 10000 + v->minor * 100 + v->micro) : 0;
}

int pc_seccomp_load(const unsigned char *prog, int len)
{
    struct sock_fprog fprog;

    if (prog == NULL || len <= 0 || len % (int)sizeof(struct sock_filter) != 0
        || len / (int)sizeof(struct sock_filter) > BPF_MAXINSNS)
        return -EINVAL;
    fprog.len = (unsigned short)(len / (int)sizeof(struct sock_filter));
    /* The kernel copies the program in; `prog` need not outlive the call. */
    fprog.filter = (struct sock_filter *)(void *)prog;
    if (syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, 0, &fprog) == 0)
        return 0;
    if (errno != ENOSYS)
        return -errno;
    /* Kernels before 3.17 have no seccomp(): the prctl does the same. */
    return prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &fprog, 0, 0) == 0 ? 0 : -errno;
}

int pc_set_no_new_privs(void)
{
    return prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) == 0 ? 0 : -errno;
}

long pc_raw_syscall(long nr, long a0, long a1, long a2, long a3, long a4, long a5)
{
    long rc = syscall(nr, a0, a1, a2, a3, a4, a5);
    return rc == -1 ? -errno : rc;
}

long pc_raw_syscall_i386(long nr, long a0, long a1, long a2)
{
#if defined(__x86_64__)
    long rc;
    /* The kernel returns -errno in eax; r8-r11 are not preserved by the
     * compat entry path for a 64-bit caller. */
    __asm__ volatile("int $0x80"
                     : "=a"(rc)
                     : "a"(nr), "b"(a0), "c"(a1), "d"(a2)
                     : "memory", "r8", "r9", "r10", "r11", "cc");
    return (int)rc; /* a 32-bit result: sign-extend it */
#else
    (void)nr; (void)a0; (void)a1; (void)a2;
    return -ENOSYS;
#endif
}
