/*
 * pycontain's C shim: the public API, in the subset of C that cffi's cdef
 * parses (no preprocessor).  This file is both #included by shim.c and fed
 * to cffi, so the two can never disagree.
 *
 * Python decides *what* a container is (pycontain/plan.py builds a list of
 * steps); this shim only *performs* them, in a child process where the
 * Python interpreter must not run: right after clone() into new namespaces,
 * up to execve().  Every step is one `struct pc_op`.
 */

/* --- the operations a container's setup is made of ---------------------- */
enum {
    PC_OP_MOUNT = 1,      /* mount(a=source, b=target, c=fstype, flags, d=data)     */
    PC_OP_REMOUNT,        /* bind-remount b adding `flags` (MS_RDONLY, MS_NODEV ...)
                             to the flags it already has (locked ones included)    */
    PC_OP_MKDIR,          /* mkdir -p b with mode; existing directories are fine     */
    PC_OP_MKFILE,         /* create b as an empty regular file if it does not exist */
    PC_OP_MKNOD,          /* mknod(b, mode, dev)                                     */
    PC_OP_SYMLINK,        /* symlink(a -> b); an existing link is replaced           */
    PC_OP_SETHOSTNAME,    /* sethostname(a)                                          */
    PC_OP_PIVOT_ROOT,     /* pivot_root into b, then detach the old root             */
    PC_OP_MOVE_ROOT,      /* MS_MOVE b onto / and chroot (for ramfs hosts)           */
    PC_OP_UNSHARE,        /* unshare(flags)                                          */
    PC_OP_LOOPBACK_UP,    /* bring "lo" up in the current network namespace          */
    PC_OP_WRITE_FILE,     /* write a to the existing file b in one write()           */
    PC_OP_CHDIR,          /* chdir(b)                                                */
    PC_OP_SETGROUPS,      /* setgroups(mode=count, groups from a as decimal list)     */
    PC_OP_SETGID,         /* setresgid(mode, mode, mode)                             */
    PC_OP_SETUID,         /* setresuid(mode, mode, mode)                             */
    PC_OP_UMOUNT,         /* umount2(b, flags)                                       */
    PC_OP_SETSID_CTTY,    /* setsid(), then make fd `mode` the controlling terminal  */
    PC_OP_NO_NEW_PRIVS,   /* prctl(PR_SET_NO_NEW_PRIVS, 1)                           */
    PC_OP_CONSOLE,        /* open a pty in the container's devpts, send its master
                             over the unix socket fd `mode` (SCM_RIGHTS), wait for a
                             one-byte answer if `flags` is 1, and make the pty our
                             stdin/stdout/stderr and controlling tty               */
    PC_OP_MASK,           /* hide b: a read-only empty tmpfs over a directory, or
                             /dev/null bound over a file; a missing b is fine       */
    PC_OP_READONLY,       /* bind b onto itself read-only; a missing b is fine      */
    PC_OP_CAPBSET,        /* keep caps across setuid (PR_SET_KEEPCAPS), and drop
                             from the bounding set every cap not in mask `flags`   */
    PC_OP_CAPSET,         /* capset(): effective = permitted = inheritable = `flags`;
                             ambient = `dev`                                        */
    PC_OP_SECCOMP,        /* load the classic-BPF program at a (`dev` bytes) with
                             seccomp(SECCOMP_SET_MODE_FILTER): the last step       */
    PC_OP_WAIT_START,     /* report READY, then block until `pycontain start`: open
                             the exec FIFO (O_PATH fd `mode`) for writing through
                             /proc/self/fd, which waits for a reader               */
    PC_OP_SETNS,          /* setns(fd `mode`, nstype `flags`): join a namespace    */
    PC_OP_ATTACH_TREE,    /* receive a detached mount (an open_tree() fd made by
                             pycontain on the host) over the unix socket fd `mode`
                             (SCM_RIGHTS) and move_mount() it onto b, relative to
                             the working directory.  `dev` = 1: it is the rootfs,
                             b is "." (pycontain cloned us with the rootfs as our
                             working directory), and we fchdir() into the new
                             mount, so the steps after it use paths relative to
                             the rootfs and never walk the host's directories
                             above it                                           */
    PC_OP_UMASK           /* umask(mode): the command's file-creation mask (the
                             default, without this op, is 022)                  */
};

struct pc_op {
    int kind;
    const char *a;
    const char *b;
    const char *c;
    const char *d;
    unsigned long flags;
    unsigned int mode;
    unsigned long long dev;
};

/* --- what the child reports back over the report pipe ------------------- */
enum {
    PC_REPORT_DONE = 1,   /* op `index` of `stage` finished at `ns` (trace only) */
    PC_REPORT_ERROR = 2,  /* op `index` of `stage` failed with `err`             */
    PC_REPORT_EXEC = 3,   /* about to execve (trace only)                        */
    PC_REPORT_READY = 4   /* created: waiting for `start` before execve          */
};

enum {
    PC_STAGE_SETUP = 1,   /* run by the container's PID 1 (mounts, pivot ...)    */
    PC_STAGE_PROCESS = 2, /* run by the command before exec (user, cwd ...)      */
    PC_STAGE_EXEC = 3,    /* execve itself; index = PATH entry that failed       */
    PC_STAGE_SPAWN = 4    /* the plumbing: fork, sync, dup2                      */
};

struct pc_report {
    int kind;
    int stage;
    int index;
    int err;
    long long ns;         /* CLOCK_MONOTONIC, comparable to time.monotonic_ns() */
};

struct pc_spawn_args {
    unsigned long clone_flags;   /* CLONE_NEW* for clone3                          */
    int cgroup_fd;               /* >= 0: CLONE_INTO_CGROUP this directory          */
    int sync_fd;                 /* child blocks reading 1 byte before anything     */
    int report_fd;               /* child writes struct pc_report records           */
    int close_fds[4];            /* parent-side pipe ends the child must close      */
    int trace;                   /* nonzero: report every finished op               */
    int detach;                  /* nonzero: outlive pycontain (OCI create); no
                                    PR_SET_PDEATHSIG                                */
    int status_fd;               /* >= 0: init writes the command's exit status
                                    here ("%d\n") before it exits                  */

    const struct pc_op *setup;   /* PC_STAGE_SETUP, run by PID 1                    */
    int n_setup;
    const struct pc_op *process; /* PC_STAGE_PROCESS, run by the command            */
    int n_process;

    int stdio[3];                /* -1: inherit; else dup2 onto 0, 1, 2             */
    int used_clone3;             /* out: 1 if clone3(CLONE_INTO_CGROUP) was used;
                                    0 means the caller must move the child into its
                                    cgroup itself, before releasing sync_fd        */
    const char *root;            /* the rootfs (a canonical host path), or NULL:
                                    setup paths under it are walked without
                                    following symlinks (see pin_in_root)           */
    const char *file;            /* argv[0] to look up (contains '/': used as is)   */
    const char *search_path;     /* the container's PATH, for the lookup            */
    char **argv;
    char **envp;
};

/*
 * Clone the container's first process (its PID 1 when CLONE_NEWPID is set).
 * Returns its pid in the parent, or -errno.  The child never returns: it
 * runs the setup ops, forks the command, and becomes a tiny init that
 * forwards signals to the command, reaps every zombie, and exits with the
 * command's status (or 128+signal).
 */
int pc_spawn(struct pc_spawn_args *args);

/* Thin syscall wrappers for the parent side.  All return 0 or -errno. */
int pc_unshare(unsigned long flags);
int pc_setns(int fd, int nstype);
int pc_mount(const char *source, const char *target, const char *fstype,
             unsigned long flags, const char *data);
int pc_umount2(const char *target, int flags);
int pc_pivot_root(const char *new_root, const char *put_old);
int pc_sethostname(const char *name);
/* personality(2): returns the previous persona, or -errno. */
int pc_personality(unsigned long persona);
/*
 * A detached copy of the mount tree at `path` (open_tree(OPEN_TREE_CLONE),
 * with its submounts if `recursive`), made in the caller's mount namespace.
 * `userns_fd` >= 0: make it an idmapped mount through that user namespace
 * (mount_setattr(MOUNT_ATTR_IDMAP)).  Returns the O_CLOEXEC fd, or -errno.
 */
int pc_open_tree(const char *path, int recursive, int userns_fd);
