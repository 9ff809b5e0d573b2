/*
 * pycontain's seccomp compiler: the public API, in the subset of C that
 * cffi's cdef parses (no preprocessor), #included by seccomp.c and fed to
 * cffi as it is, so the two can never disagree.
 *
 * Python (pycontain/seccomp.py) owns the policy: a list of rules naming
 * syscalls.  The parent process compiles it here, with libseccomp, into a
 * classic-BPF program (plain bytes, cacheable); the container's process
 * loads those bytes with pc_seccomp_load() as its last step before execve.
 * libseccomp itself is never needed in the child.
 */

enum {
    /* Bump when seccomp.c changes the program it generates for the same
       rules (arches, attributes ...): it is part of the cache key. */
    PC_SECCOMP_GENERATOR = 1,
    /* At most this many argument comparisons per rule. */
    PC_SECCOMP_MAX_CMP = 4
};

/* Comparison operators, in libseccomp's numbering (enum scmp_compare). */
enum {
    PC_CMP_NE = 1,        /* arg != a                                      */
    PC_CMP_LT = 2,        /* arg <  a                                      */
    PC_CMP_LE = 3,        /* arg <= a                                      */
    PC_CMP_EQ = 4,        /* arg == a                                      */
    PC_CMP_GE = 5,        /* arg >= a                                      */
    PC_CMP_GT = 6,        /* arg >  a                                      */
    PC_CMP_MASKED_EQ = 7  /* (arg & a) == b                                */
};

/* What pc_seccomp_compile() did with a rule (written into `result`). */
enum {
    PC_RULE_ADDED = 0,
    PC_RULE_UNKNOWN = 1,  /* libseccomp does not know the name: skipped    */
    PC_RULE_DEFAULT = 2   /* same action as the default: nothing to add    */
    /* < 0: -errno from libseccomp; compilation stopped at this rule       */
};

struct pc_seccomp_cmp {
    unsigned int arg;     /* argument index, 0-5, in the arch's register order */
    unsigned int op;      /* PC_CMP_*                                       */
    unsigned long long a;
    unsigned long long b; /* only for PC_CMP_MASKED_EQ                      */
};

struct pc_seccomp_rule {
    const char *name;     /* syscall name, resolved per architecture         */
    unsigned int errno_ret; /* 0: allow; else fail with this errno           */
    int ncmp;             /* comparisons in cmp[], all must hold (AND);
                             one per argument at most (libseccomp's rule)     */
    struct pc_seccomp_cmp cmp[4];
    int result;           /* out: PC_RULE_* or -errno                        */
};

/* Compile `rules` into classic BPF for this machine's architecture (plus the
   compat ABIs it can run: i386 and x32 on x86_64, arm on aarch64, s390 on
   s390x, all with the same rules).  A syscall from any other ABI kills the
   process.  Syscalls no rule matches get `default_errno` (0: allowed).
   Writes the program (8 bytes an instruction) to `out` and returns its
   length, or -errno (-ENOSPC if out_size is too small). */
int pc_seccomp_compile(struct pc_seccomp_rule *rules, int n, unsigned int default_errno,
                       unsigned char *out, int out_size);

/* The syscall number of `name` on this machine, or a negative number when
   libseccomp does not know it (or it has none on this architecture). */
int pc_seccomp_syscall_number(const char *name);

/* libseccomp's run-time version as major * 10000 + minor * 100 + micro. */
int pc_seccomp_version(void);

/* seccomp(SECCOMP_SET_MODE_FILTER) with a program from pc_seccomp_compile().
   The caller must have set no_new_privs (or hold CAP_SYS_ADMIN).  0 or
   -errno.  Async-signal-safe: fine in a child after fork or clone. */
int pc_seccomp_load(const unsigned char *prog, int len);

/* prctl(PR_SET_NO_NEW_PRIVS, 1): 0 or -errno. */
int pc_set_no_new_privs(void);

/* syscall(nr, ...) returning the result or -errno: lets tests call syscalls
   that neither Python nor glibc wrap (keyctl, unshare with odd flags). */
long pc_raw_syscall(long nr, long a0, long a1, long a2, long a3, long a4, long a5);

/* The same through the i386 ABI (`int $0x80`, i386 numbers, 32-bit
   arguments) on x86_64; -ENOSYS on other machines.  For tests: a filter
   that forgot the compat ABI would let these calls through. */
long pc_raw_syscall_i386(long nr, long a0, long a1, long a2);
