/*
 * pycontain's C shim: the few things Python cannot do safely itself.
 *
 * The container's first process is created by clone3() straight into its new
 * namespaces and cgroup.  From that moment until execve() no Python code may
 * run: the child is a copy of a (possibly multi-threaded-looking) interpreter
 * in a half-built world, with a different PID, root and mount table.  So
 * Python compiles the container's setup into a flat array of `struct pc_op`
 * (see pycontain/plan.py) and this file executes it, one syscall per op, and
 * reports failures by op index so that Python can name the step that failed.
 *
 * The process tree it builds:
 *
 *   pycontain (Python, host)          waits, forwards signals, cleans up
 *     └─ init  (C, PID 1 inside)       runs the setup ops, then forwards
 *          │                           signals and reaps every zombie
 *          └─ command (PID 2 inside)   runs the process ops, then execve()
 *
 * Only raw syscalls and async-signal-safe libc calls are used in the children.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <net/if.h>
#include <sched.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/personality.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <sys/wait.h>
#include <termios.h>
#include <linux/capability.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <time.h>
#include <unistd.h>

#include "shim_api.h"

#ifndef CLONE_INTO_CGROUP
#define CLONE_INTO_CGROUP 0x200000000ULL
#endif
#ifndef SYS_clone3
#define SYS_clone3 435
#endif
#ifndef SYS_close_range
#define SYS_close_range 436
#endif
#ifndef CLOSE_RANGE_CLOEXEC
#define CLOSE_RANGE_CLOEXEC (1U << 2)
#endif

/* Our own copy of the kernel's struct clone_args (linux/sched.h), so that we
 * build against older kernel headers too.  CLONE_ARGS_SIZE_VER2 = 88 bytes. */
struct pc_clone_args {
    uint64_t flags, pidfd, child_tid, parent_tid, exit_signal;
    uint64_t stack, stack_size, tls, set_tid, set_tid_size, cgroup;
};

static long long now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static void report(int fd, int kind, int stage, int index, int err)
{
    struct pc_report r = {kind, stage, index, err, now_ns()};
    if (fd >= 0) {
        /* The report channel is a unix socket: one small send() is atomic,
         * and MSG_NOSIGNAL keeps a reader that went away (OCI create has
         * exited by the time an exec fails) from killing us with SIGPIPE. */
        ssize_t n = send(fd, &r, sizeof r, MSG_NOSIGNAL);
        if (n < 0 && errno == ENOTSOCK)
            n = write(fd, &r, sizeof r);
        (void)n;
    }
}

static __attribute__((noreturn)) void fail(int fd, int stage, int index, int err, int code)
{
    report(fd, PC_REPORT_ERROR, stage, index, err);
    _exit(code);
}

/* ------------------------------------------------------------------ ops -- */

static int mkdir_p(const char *path, mode_t mode)
{
    char buf[4096];
    size_t len = strlen(path);
    if (len >= sizeof buf)
        return -ENAMETOOLONG;
    memcpy(buf, path, len + 1);
    for (char *p = buf + 1; ; p++) {
        if (*p == '/' || *p == '\0') {
            char saved = *p;
            *p = '\0';
            if (mkdir(buf, mode) < 0 && errno != EEXIST)
                return -errno;
            *p = saved;
            if (saved == '\0')
                break;
        }
    }
    return 0;
}

/* A bind mount can only be remounted read-only if the remount repeats the
 * flags the kernel "locked" on it (nosuid, nodev, noexec, atime flags) when
 * it was propagated from a more privileged mount namespace; otherwise it
 * fails with EPERM.  So read them back with statvfs() and keep them. */
static int remount(const char *target, unsigned long extra)
{
    struct statvfs sv;
    unsigned long flags = MS_REMOUNT | MS_BIND | extra;
    if (statvfs(target, &sv) < 0)
        return -errno;
    if (sv.f_flag & ST_RDONLY) flags |= MS_RDONLY;
    if (sv.f_flag & ST_NOSUID) flags |= MS_NOSUID;
    if (sv.f_flag & ST_NODEV) flags |= MS_NODEV;
    if (sv.f_flag & ST_NOEXEC) flags |= MS_NOEXEC;
    if (sv.f_flag & ST_NOATIME) flags |= MS_NOATIME;
    if (sv.f_flag & ST_NODIRATIME) flags |= MS_NODIRATIME;
    if (sv.f_flag & ST_RELATIME) flags |= MS_RELATIME;
    if (mount(NULL, target, NULL, flags, NULL) < 0)
        return -errno;
    return 0;
}

/* maskedPaths: what a container must not read (/proc/kcore, /proc/keys,
 * /sys/firmware ...).  Paths that this kernel does not have are skipped. */
static int mask_path(const char *path)
{
    struct stat st;
    if (stat(path, &st) < 0)
        return errno == ENOENT ? 0 : -errno;
    if (S_ISDIR(st.st_mode))
        return mount("tmpfs", path, "tmpfs", MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC,
                     "size=0") < 0 ? -errno : 0;
    return mount("/dev/null", path, NULL, MS_BIND, NULL) < 0 ? -errno : 0;
}

/* readonlyPaths: /proc/sys, /proc/sysrq-trigger ... stay readable. */
static int readonly_path(const char *path)
{
    if (access(path, F_OK) < 0)
        return errno == ENOENT ? 0 : -errno;
    if (mount(path, path, NULL, MS_BIND | MS_REC, NULL) < 0)
        return -errno;
    return remount(path, MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC);
}

/* Capabilities, in the order the kernel needs: the bounding set can only be
 * reduced while we still hold CAP_SETPCAP, and KEEPCAPS stops setuid() to a
 * non-root uid from clearing the permitted set before capset() below. */
static int drop_bounding(uint64_t keep)
{
    if (prctl(PR_SET_KEEPCAPS, 1, 0, 0, 0) < 0)
        return -errno;
    for (int cap = 0; cap < 64; cap++) {
        if (keep & (1ULL << cap))
            continue;
        if (prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) < 0) {
            if (errno == EINVAL)  /* past this kernel's last capability */
                break;
            return -errno;
        }
    }
    return 0;
}

static int set_caps(uint64_t keep, uint64_t ambient)
{
    struct __user_cap_header_struct hdr = {_LINUX_CAPABILITY_VERSION_3, 0};
    struct __user_cap_data_struct data[2];
    memset(data, 0, sizeof data);
    for (int i = 0; i < 2; i++) {
        uint32_t word = (uint32_t)(keep >> (32 * i));
        data[i].effective = data[i].permitted = data[i].inheritable = word;
    }
    if (syscall(SYS_capset, &hdr, data) < 0)
        return -errno;
    if (prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0) < 0 && errno != EINVAL)
        return -errno;
    for (int cap = 0; cap < 64; cap++)
        if ((ambient & (1ULL << cap)) &&
            prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_RAISE, cap, 0, 0) < 0)
            return -errno;
    prctl(PR_SET_KEEPCAPS, 0, 0, 0, 0);
    return 0;
}

static int load_seccomp(const char *prog, unsigned long long len)
{
    struct sock_fprog fprog;
    if (len == 0 || len % sizeof(struct sock_filter) != 0)
        return -EINVAL;
    fprog.len = (unsigned short)(len / sizeof(struct sock_filter));
    fprog.filter = (struct sock_filter *)prog;
    return syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, 0, &fprog) < 0 ? -errno : 0;
}

/* pivot_root(".", ".") stacks the old root on top of the new one; we then
 * detach it.  Marking it MS_SLAVE first makes sure the lazy unmount cannot
 * propagate back to the host's mount namespace (runc and crun do the same). */
static int pivot_into(const char *new_root)
{
    int oldroot = open("/", O_DIRECTORY | O_RDONLY | O_CLOEXEC);
    int newroot = open(new_root, O_DIRECTORY | O_RDONLY | O_CLOEXEC);
    int rc = 0;
    if (oldroot < 0 || newroot < 0) { rc = -errno; goto out; }
    if (fchdir(newroot) < 0) { rc = -errno; goto out; }
    if (syscall(SYS_pivot_root, ".", ".") < 0) { rc = -errno; goto out; }
    if (fchdir(oldroot) < 0) { rc = -errno; goto out; }
    if (mount(NULL, ".", NULL, MS_SLAVE | MS_REC, NULL) < 0) { rc = -errno; goto out; }
    if (umount2(".", MNT_DETACH) < 0) { rc = -errno; goto out; }
    if (chdir("/") < 0) { rc = -errno; goto out; }
out:
    if (oldroot >= 0) close(oldroot);
    if (newroot >= 0) close(newroot);
    return rc;
}

/* When / is a ramfs/initramfs it cannot be pivoted away from (EINVAL), so
 * move the new root over / and chroot into it instead. */
static int move_root(const char *new_root)
{
    if (chdir(new_root) < 0) return -errno;
    if (mount(new_root, "/", NULL, MS_MOVE, NULL) < 0) return -errno;
    if (chroot(".") < 0) return -errno;
    if (chdir("/") < 0) return -errno;
    return 0;
}

static int loopback_up(void)
{
    struct ifreq ifr;
    int rc = 0, s = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (s < 0) return -errno;
    memset(&ifr, 0, sizeof ifr);
    strncpy(ifr.ifr_name, "lo", IFNAMSIZ - 1);
    if (ioctl(s, SIOCGIFFLAGS, &ifr) < 0) { rc = -errno; goto out; }
    ifr.ifr_flags |= IFF_UP | IFF_RUNNING;
    if (ioctl(s, SIOCSIFFLAGS, &ifr) < 0) rc = -errno;
out:
    close(s);
    return rc;
}

/* binfmt_misc's register file wants the whole rule in a single write(). */
static int write_file(const char *path, const char *data)
{
    size_t len = strlen(data);
    int rc = 0, fd = open(path, O_WRONLY | O_CLOEXEC | O_NOFOLLOW);
    if (fd < 0) return -errno;
    ssize_t n = write(fd, data, len);
    if (n < 0) rc = -errno;
    else if ((size_t)n != len) rc = -EIO;
    close(fd);
    return rc;
}

static int set_groups(const char *list, unsigned int count)
{
    gid_t groups[64];
    unsigned int n = 0;
    const char *p = list;
    while (p && *p && n < count && n < 64) {
        groups[n++] = (gid_t)strtoul(p, (char **)&p, 10);
        if (*p == ',') p++;
    }
    return setgroups(n, groups) < 0 ? -errno : 0;
}

/* The terminal is created *inside* the container, from its own devpts
 * instance, so that `tty` and /proc/self/fd/0 name a path that exists
 * there.  The master end goes to whoever listens on the socket (pycontain
 * itself, or an OCI --console-socket), like runc's console socket. */
static int make_console(int sock, int wait_ack)
{
    int zero = 0, rc = 0, slave = -1;
    int master = open("/dev/ptmx", O_RDWR | O_NOCTTY | O_CLOEXEC);
    if (master < 0) return -errno;
    if (ioctl(master, TIOCSPTLCK, &zero) < 0) { rc = -errno; goto out; }
    slave = ioctl(master, TIOCGPTPEER, O_RDWR | O_NOCTTY);
    if (slave < 0) { rc = -errno; goto out; }

    char cbuf[CMSG_SPACE(sizeof(int))];
    char byte = 'T';
    struct iovec iov = {&byte, 1};
    struct msghdr msg;
    memset(&msg, 0, sizeof msg);
    memset(cbuf, 0, sizeof cbuf);
    msg.msg_iov = &iov;
    msg.msg_iovlen = 1;
    msg.msg_control = cbuf;
    msg.msg_controllen = sizeof cbuf;
    struct cmsghdr *c = CMSG_FIRSTHDR(&msg);
    c->cmsg_level = SOL_SOCKET;
    c->cmsg_type = SCM_RIGHTS;
    c->cmsg_len = CMSG_LEN(sizeof(int));
    memcpy(CMSG_DATA(c), &master, sizeof(int));
    if (sendmsg(sock, &msg, 0) < 0) { rc = -errno; goto out; }
    /* pycontain itself answers once it has copied its window size onto
     * the pty, so that the command starts with the right size.  (An OCI
     * --console-socket listener sends no such answer.) */
    if (wait_ack) {
        ssize_t n = read(sock, &byte, 1);
        (void)n;
    }

    if (setsid() < 0) { rc = -errno; goto out; }
    if (ioctl(slave, TIOCSCTTY, 0) < 0) { rc = -errno; goto out; }
    for (int fd = 0; fd < 3; fd++)
        if (dup2(slave, fd) < 0) { rc = -errno; goto out; }
out:
    close(master);
    if (slave > 2) close(slave);
    close(sock);
    return rc;
}

/* runc's exec FIFO: `create` leaves the command blocked here, after all
 * of its setup, until `start` opens the FIFO for reading. */
static int wait_start(int report_fd, int fifo)
{
    char path[64], byte = '0';
    report(report_fd, PC_REPORT_READY, PC_STAGE_PROCESS, 0, 0);
    snprintf(path, sizeof path, "/proc/self/fd/%d", fifo);
    int fd = open(path, O_WRONLY | O_CLOEXEC);
    if (fd < 0) return -errno;
    ssize_t n = write(fd, &byte, 1);
    int rc = n == 1 ? 0 : -EIO;
    close(fd);
    close(fifo);
    return rc;
}

static int g_report_fd = -1;

/* ------------------------------------------------ mounts made on the host -- */

/* Our own copies of the new mount API's numbers (linux/mount.h), so that we
 * build against older headers too.  The syscalls exist since Linux 5.2
 * (open_tree, move_mount) and 5.12 (mount_setattr, idmapped mounts). */
#ifndef SYS_open_tree
#define SYS_open_tree 428
#endif
#ifndef SYS_move_mount
#define SYS_move_mount 429
#endif
#ifndef SYS_mount_setattr
#define SYS_mount_setattr 442
#endif
#define PC_OPEN_TREE_CLONE 1
#define PC_OPEN_TREE_CLOEXEC O_CLOEXEC
#define PC_AT_RECURSIVE 0x8000
#define PC_MOVE_MOUNT_F_EMPTY_PATH 0x4
#define PC_MOUNT_ATTR_IDMAP 0x00100000

struct pc_mount_attr {
    uint64_t attr_set, attr_clr, propagation, userns_fd;
};

/* Take one message, and the fd it carries, from the socket. */
static int recv_fd(int sock)
{
    char byte, cbuf[CMSG_SPACE(sizeof(int))];
    struct iovec iov = {&byte, 1};
    struct msghdr msg;
    int fd = -1;
    memset(&msg, 0, sizeof msg);
    msg.msg_iov = &iov;
    msg.msg_iovlen = 1;
    msg.msg_control = cbuf;
    msg.msg_controllen = sizeof cbuf;
    ssize_t n = recvmsg(sock, &msg, MSG_CMSG_CLOEXEC);
    if (n < 0) return -errno;
    if (n == 0) return -EPIPE;  /* pycontain gave up: it sent nothing */
    struct cmsghdr *c = CMSG_FIRSTHDR(&msg);
    if (c && c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_RIGHTS &&
        c->cmsg_len == CMSG_LEN(sizeof(int)))
        memcpy(&fd, CMSG_DATA(c), sizeof(int));
    return fd >= 0 ? fd : -EBADMSG;
}

/* Inside a user namespace we may not be able to walk the host's directories
 * (a rootfs under a 0700 directory, pycontain's own state directory), nor
 * make an idmapped mount (only the host's root can).  So pycontain, on the
 * host, clones each such tree and sends it here; we only attach it.  A
 * descriptor opened on the host would name the *host's* mount of the rootfs
 * directory, which move_mount refuses as a target in our namespace; our
 * working directory, though, was translated into our own copy of the mount
 * table by clone(CLONE_NEWNS). */
static int attach_tree(int sock, const char *target, int is_root)
{
    int rc = 0, fd = recv_fd(sock);
    if (fd < 0)
        return fd;
    if (syscall(SYS_move_mount, fd, "", AT_FDCWD, target, PC_MOVE_MOUNT_F_EMPTY_PATH) < 0 ||
        (is_root && fchdir(fd) < 0))
        rc = -errno;
    close(fd);
    return rc;
}

/* ---------------------------------------------- paths inside the rootfs -- */

/* The rootfs is untrusted, and may even change while we set it up (another
 * container can share a directory rootfs).  Python resolved every path in
 * the plan inside the rootfs already (paths.resolve_in_root), so none of
 * them should contain a symlink.  Here we make sure of it, without a race:
 * each path under the rootfs is walked one component at a time from the
 * rootfs, with O_NOFOLLOW, and the operation then targets the resulting
 * file descriptor (through its /proc/self/fd magic link) instead of the
 * path.  A symlink met on the way means the rootfs changed under us: ELOOP.
 * So a mount can never land outside the rootfs, whatever the rootfs does. */
static const char *g_root;
static size_t g_root_len;

static int under_root(const char *path)
{
    return g_root && path && strncmp(path, g_root, g_root_len) == 0 &&
           (path[g_root_len] == '/' || path[g_root_len] == '\0');
}

/* Walk `path` (under g_root).  With `parent_only`, stop at its parent and
 * return the last component in *name.  With `create_dirs`, make missing
 * directories on the way (mode `mode`).  Returns an O_PATH fd or -errno. */
static int pin_in_root(const char *path, int parent_only, int create_dirs,
                       mode_t mode, const char **name)
{
    char buf[4096];
    const char *rel = path + g_root_len;
    size_t len = strlen(rel);
    if (len >= sizeof buf) return -ENAMETOOLONG;
    memcpy(buf, rel, len + 1);
    int fd = open(g_root, O_PATH | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0) return -errno;
    char *p = buf;
    while (*p == '/') p++;
    while (*p) {
        char *end = strchr(p, '/');
        if (end) *end = '\0';
        int last = !end || end[1] == '\0';
        if (last && parent_only) {
            if (name) *name = path + g_root_len + (p - buf);
            return fd;
        }
        if (strcmp(p, ".") == 0 || strcmp(p, "..") == 0) { close(fd); return -EINVAL; }
        if (create_dirs && mkdirat(fd, p, mode) < 0 && errno != EEXIST) {
            int e = errno; close(fd); return -e;
        }
        int next = openat(fd, p, O_PATH | O_NOFOLLOW | O_CLOEXEC);
        int e = errno;
        close(fd);
        if (next < 0) return -e;
        struct stat st;
        if (fstat(next, &st) < 0) { e = errno; close(next); return -e; }
        if (S_ISLNK(st.st_mode)) { close(next); return -ELOOP; }
        fd = next;
        if (!end) break;
        p = end + 1;
        while (*p == '/') p++;
    }
    if (parent_only) {  /* the path was the rootfs itself */
        close(fd);
        return -EINVAL;
    }
    return fd;
}

/* The /proc/self/fd path of a pinned fd: what mount(2) and friends take. */
static const char *fd_path(int fd, char *buf, size_t len)
{
    snprintf(buf, len, "/proc/self/fd/%d", fd);
    return buf;
}

/* Run `fn` on `path`, pinned if it lies in the rootfs. */
static int with_pinned(const char *path, int (*fn)(const char *, const struct pc_op *),
                       const struct pc_op *op)
{
    if (!under_root(path))
        return fn(path, op);
    char buf[64];
    int fd = pin_in_root(path, 0, 0, 0, NULL);
    if (fd < 0) return fd;
    int rc = fn(fd_path(fd, buf, sizeof buf), op);
    close(fd);
    return rc;
}

static int do_mount(const char *target, const struct pc_op *op)
{
    return mount(op->a, target, op->c, op->flags, op->d) < 0 ? -errno : 0;
}
static int do_remount(const char *target, const struct pc_op *op)
{
    return remount(target, op->flags);
}
static int do_mask(const char *target, const struct pc_op *op) { return mask_path(target); }
static int do_bind_self(const char *target, const struct pc_op *op)
{
    return mount(target, target, NULL, MS_BIND | MS_REC, NULL) < 0 ? -errno : 0;
}

/* readonlyPaths: bind the path onto itself, then remount that new mount
 * read-only.  The second step pins the path again: an fd opened before the
 * bind still names the mount underneath. */
static int make_readonly(const struct pc_op *op)
{
    if (!under_root(op->b))
        return readonly_path(op->b);
    int rc = with_pinned(op->b, do_bind_self, op);
    if (rc < 0) return rc;
    struct pc_op ro = *op;
    ro.flags = MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC;
    return with_pinned(op->b, do_remount, &ro);
}

/* MASK and READONLY skip what this kernel does not have. */
static int missing_in_root(const char *path)
{
    if (!under_root(path)) return 0;
    int fd = pin_in_root(path, 0, 0, 0, NULL);
    if (fd >= 0) close(fd);
    return fd == -ENOENT;
}

static int make_dirs(const struct pc_op *op)
{
    if (!under_root(op->b))
        return mkdir_p(op->b, op->mode);
    int fd = pin_in_root(op->b, 0, 1, op->mode, NULL);
    if (fd < 0) return fd;
    close(fd);
    return 0;
}

/* MKFILE, MKNOD, SYMLINK: create the last component in a pinned parent. */
static int make_entry(const struct pc_op *op)
{
    const char *name = op->b;
    int dir = AT_FDCWD, rc = 0;
    if (under_root(op->b)) {
        dir = pin_in_root(op->b, 1, 0, 0, &name);
        if (dir < 0) return dir;
        /* O_PATH fds cannot create entries: reopen the directory for real. */
        char buf[64];
        int real = open(fd_path(dir, buf, sizeof buf), O_DIRECTORY | O_RDONLY | O_CLOEXEC);
        close(dir);
        if (real < 0) return -errno;
        dir = real;
    }
    switch (op->kind) {
    case PC_OP_MKFILE: {
        int fd = openat(dir, name, O_CREAT | O_WRONLY | O_NOFOLLOW | O_CLOEXEC, op->mode);
        if (fd < 0) rc = -errno;
        else close(fd);
        break;
    }
    case PC_OP_MKNOD:
        rc = mknodat(dir, name, op->mode, (dev_t)op->dev) < 0 ? -errno : 0;
        break;
    case PC_OP_SYMLINK:
        if (symlinkat(op->a, dir, name) < 0) {
            rc = -errno;
            if (errno == EEXIST && unlinkat(dir, name, 0) == 0)
                rc = symlinkat(op->a, dir, name) < 0 ? -errno : 0;
        }
        break;
    }
    if (dir != AT_FDCWD) close(dir);
    return rc;
}

static int run_op(const struct pc_op *op)
{
    switch (op->kind) {
    case PC_OP_MOUNT:
        return with_pinned(op->b, do_mount, op);
    case PC_OP_REMOUNT:
        return with_pinned(op->b, do_remount, op);
    case PC_OP_MKDIR:
        return make_dirs(op);
    case PC_OP_MKFILE:
    case PC_OP_MKNOD:
    case PC_OP_SYMLINK:
        return make_entry(op);
    case PC_OP_SETHOSTNAME:
        return sethostname(op->a, strlen(op->a)) < 0 ? -errno : 0;
    case PC_OP_PIVOT_ROOT:
        return pivot_into(op->b);
    case PC_OP_MOVE_ROOT:
        return move_root(op->b);
    case PC_OP_UNSHARE:
        return unshare((int)op->flags) < 0 ? -errno : 0;
    case PC_OP_LOOPBACK_UP:
        return loopback_up();
    case PC_OP_WRITE_FILE:
        return write_file(op->b, op->a);
    case PC_OP_CHDIR:
        return chdir(op->b) < 0 ? -errno : 0;
    case PC_OP_SETGROUPS:
        return set_groups(op->a, op->mode);
    case PC_OP_SETGID:
        return setresgid(op->mode, op->mode, op->mode) < 0 ? -errno : 0;
    case PC_OP_SETUID:
        return setresuid(op->mode, op->mode, op->mode) < 0 ? -errno : 0;
    case PC_OP_UMOUNT:
        return umount2(op->b, (int)op->flags) < 0 ? -errno : 0;
    case PC_OP_SETSID_CTTY:
        if (setsid() < 0) return -errno;
        return ioctl((int)op->mode, TIOCSCTTY, 0) < 0 ? -errno : 0;
    case PC_OP_NO_NEW_PRIVS:
        return prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0 ? -errno : 0;
    case PC_OP_CONSOLE:
        return make_console((int)op->mode, (int)op->flags);
    case PC_OP_MASK:
        return missing_in_root(op->b) ? 0 : with_pinned(op->b, do_mask, op);
    case PC_OP_READONLY:
        return missing_in_root(op->b) ? 0 : make_readonly(op);
    case PC_OP_CAPBSET:
        return drop_bounding(op->flags);
    case PC_OP_CAPSET:
        return set_caps(op->flags, op->dev);
    case PC_OP_SECCOMP:
        return load_seccomp(op->a, op->dev);
    case PC_OP_WAIT_START:
        return wait_start(g_report_fd, (int)op->mode);
    case PC_OP_SETNS:
        return setns((int)op->mode, (int)op->flags) < 0 ? -errno : 0;
    case PC_OP_ATTACH_TREE:
        return attach_tree((int)op->mode, op->b, op->dev == 1);
    case PC_OP_UMASK:
        umask((mode_t)op->mode);  /* cannot fail */
        return 0;
    }
    return -EINVAL;
}

static void run_ops(const struct pc_spawn_args *a, int stage,
                    const struct pc_op *ops, int n)
{
    g_report_fd = a->report_fd;
    /* Only PID 1's setup runs before pivot_root, in host paths. */
    g_root = stage == PC_STAGE_SETUP ? a->root : NULL;
    g_root_len = g_root ? strlen(g_root) : 0;
    for (int i = 0; i < n; i++) {
        int rc = run_op(&ops[i]);
        if (rc < 0)
            fail(a->report_fd, stage, i, -rc, 125);
        if (a->trace)
            report(a->report_fd, PC_REPORT_DONE, stage, i, 0);
    }
}

/* ------------------------------------------------------------ exec path -- */

/* execvp() would search the *host's* PATH (it reads getenv("PATH") of this
 * process), so search the container's PATH ourselves.  Like execvp, a
 * permission error on one entry is remembered but the search goes on. */
static __attribute__((noreturn)) void exec_command(const struct pc_spawn_args *a)
{
    char buf[4096];
    int saw_eacces = 0;

    if (a->trace)
        report(a->report_fd, PC_REPORT_EXEC, PC_STAGE_EXEC, 0, 0);
    if (strchr(a->file, '/')) {
        execve(a->file, a->argv, a->envp);
        fail(a->report_fd, PC_STAGE_EXEC, 0, errno, errno == ENOENT ? 127 : 126);
    }
    const char *p = a->search_path ? a->search_path : "";
    int index = 0;
    for (;; index++) {
        const char *end = strchrnul(p, ':');
        size_t dlen = (size_t)(end - p), flen = strlen(a->file);
        if (dlen + flen + 2 <= sizeof buf) {
            if (dlen == 0) {
                memcpy(buf, a->file, flen + 1);         /* empty entry: cwd */
            } else {
                memcpy(buf, p, dlen);
                buf[dlen] = '/';
                memcpy(buf + dlen + 1, a->file, flen + 1);
            }
            execve(buf, a->argv, a->envp);
            switch (errno) {
            case EACCES:
                saw_eacces = 1;
                break;
            case ENOENT: case ENOTDIR: case ESTALE: case ELOOP:
            case ENAMETOOLONG: case ENODEV: case ETIMEDOUT:
                break;
            default:  /* e.g. ENOEXEC: the file is there but cannot run */
                fail(a->report_fd, PC_STAGE_EXEC, index, errno, 126);
            }
        }
        if (*end == '\0')
            break;
        p = end + 1;
    }
    if (saw_eacces)
        fail(a->report_fd, PC_STAGE_EXEC, -1, EACCES, 126);
    fail(a->report_fd, PC_STAGE_EXEC, -1, ENOENT, 127);
}

/* ---------------------------------------------------------- the command -- */

static __attribute__((noreturn)) void command_main(const struct pc_spawn_args *a)
{
    sigset_t none;
    struct sigaction dfl;

    /* Python ignores SIGPIPE and SIGXFSZ, and "ignored" survives execve();
     * init installed handlers, which execve resets anyway.  Give the command
     * a clean slate: every disposition default, nothing blocked. */
    memset(&dfl, 0, sizeof dfl);
    dfl.sa_handler = SIG_DFL;
    for (int sig = 1; sig < NSIG; sig++)
        if (sig != SIGKILL && sig != SIGSTOP)
            sigaction(sig, &dfl, NULL);
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, NULL);
    umask(022);  /* init ran with 0; the command gets the usual default */

    for (int i = 0; i < 3; i++)
        if (a->stdio[i] >= 0 && a->stdio[i] != i && dup2(a->stdio[i], i) < 0)
            fail(a->report_fd, PC_STAGE_SPAWN, i, errno, 125);

    run_ops(a, PC_STAGE_PROCESS, a->process, a->n_process);

    /* No host file descriptor may leak into the container: mark everything
     * above stderr close-on-exec (the report pipe already is). */
    syscall(SYS_close_range, 3U, ~0U, CLOSE_RANGE_CLOEXEC);

    exec_command(a);
}

/* ----------------------------------------------------------------- init -- */

static void ignore_signal(int sig) { (void)sig; }

/* Our init is a copy of the pycontain (Python) process, so `ps` inside
 * would show the host's python command line as PID 1, host paths and all.
 * Overwrite the argv area (its bounds are fields 48-49 of /proc/self/stat)
 * with a plain name, and set comm to match. */
static void set_title(const char *title)
{
    char buf[2048];
    unsigned long start = 0, end = 0;
    int fd = open("/proc/self/stat", O_RDONLY | O_CLOEXEC);
    if (fd < 0) return;
    ssize_t n = read(fd, buf, sizeof buf - 1);
    close(fd);
    if (n <= 0) return;
    buf[n] = '\0';
    char *p = strrchr(buf, ')');          /* comm may contain spaces */
    if (!p) return;
    /* After ") " comes field 3; arg_start and arg_end are fields 48, 49. */
    int field = 2;
    for (p++; *p && field < 49; p++) {
        if (*p == ' ') {
            field++;
            if (field == 48) start = strtoul(p + 1, NULL, 10);
            if (field == 49) end = strtoul(p + 1, NULL, 10);
        }
    }
    size_t len = strlen(title);
    if (start && end > start && end - start > len) {
        memset((void *)start, 0, end - start);
        memcpy((void *)start, title, len);
    }
    prctl(PR_SET_NAME, title, 0, 0, 0);
}

static __attribute__((noreturn)) void init_main(struct pc_spawn_args *a)
{
    char byte;
    sigset_t all;
    struct sigaction sa;

    for (int i = 0; i < 4; i++)
        if (a->close_fds[i] >= 0)
            close(a->close_fds[i]);

    set_title("pycontain-init");
    /* Device nodes and mount points get exactly the modes the plan says. */
    umask(0);

    /* If pycontain dies, we die, and with PID 1 the whole namespace.  A
     * detached (OCI) container outlives the `create` that made it. */
    if (!a->detach)
        prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0);
    /* Without a new PID namespace we are not PID 1; become the reaper of
     * our subtree anyway, so orphans still come to us. */
    prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0);

    /* Wait until the parent has written our uid/gid maps and put us in our
     * cgroup.  EOF means it died or gave up: leave quietly. */
    if (read(a->sync_fd, &byte, 1) != 1)
        _exit(125);
    close(a->sync_fd);

    run_ops(a, PC_STAGE_SETUP, a->setup, a->n_setup);

    /* The kernel drops signals sent to a PID-namespace init for which it
     * has no handler.  Install a handler for every catchable signal, and
     * keep them all blocked (they were blocked across clone, so none was
     * lost); sigwaitinfo() below collects them. */
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = ignore_signal;
    sigfillset(&sa.sa_mask);
    for (int sig = 1; sig < NSIG; sig++)
        if (sig != SIGKILL && sig != SIGSTOP)
            sigaction(sig, &sa, NULL);
    sigfillset(&all);

    long cmd = syscall(SYS_clone, SIGCHLD, 0, 0, 0, 0);
    if (cmd < 0)
        fail(a->report_fd, PC_STAGE_SPAWN, 3, errno, 125);
    if (cmd == 0)
        command_main(a);

    /* Only the command reports from here on; its exec closes the channel.
     * The init itself needs no file but status_fd: drop every other one
     * (stdio, and whatever pycontain had open, CLOEXEC or not: we never
     * exec, so CLOEXEC would never close them), so that a caller reading
     * our stdout sees EOF when the command is done. */
    if (a->status_fd < 0) {
        syscall(SYS_close_range, 0U, ~0U, 0);
    } else {
        if (a->status_fd > 0)
            syscall(SYS_close_range, 0U, (unsigned)a->status_fd - 1, 0);
        syscall(SYS_close_range, (unsigned)a->status_fd + 1, ~0U, 0);
    }

    for (;;) {
        siginfo_t si;
        int sig = sigwaitinfo(&all, &si);
        if (sig < 0)
            continue;
        if (sig != SIGCHLD) {
            /* Forward everything else, the way docker's --init does. */
            kill((pid_t)cmd, sig);
            continue;
        }
        for (;;) {
            int status;
            pid_t pid = waitpid(-1, &status, WNOHANG);
            if (pid <= 0)
                break;
            if (pid == (pid_t)cmd) {
                /* The command is done: so is the container.  Our exit
                 * makes the kernel SIGKILL whatever is left in the PID
                 * namespace.  A detached container has no pycontain to
                 * wait for it, so leave the status where `ps` finds it. */
                int code = WIFEXITED(status) ? WEXITSTATUS(status)
                                             : 128 + WTERMSIG(status);
                if (a->status_fd >= 0) {
                    char buf[16];
                    int n = snprintf(buf, sizeof buf, "%d\n", code);
                    ssize_t w = write(a->status_fd, buf, (size_t)n);
                    (void)w;
                }
                _exit(code);
            }
        }
    }
}

/* --------------------------------------------------------------- spawn -- */

int pc_spawn(struct pc_spawn_args *a)
{
    sigset_t all, old;
    struct pc_clone_args ca;
    long pid;
    int err;

    /* Block every signal across clone so that the child starts with them
     * blocked and none sent to it early is lost (see init_main). */
    sigfillset(&all);
    sigprocmask(SIG_BLOCK, &all, &old);

    memset(&ca, 0, sizeof ca);
    ca.flags = a->clone_flags;
    ca.exit_signal = SIGCHLD;
    if (a->cgroup_fd >= 0) {
        /* Born inside its cgroup: no window in which it could fork or
         * allocate outside the limits. */
        ca.flags |= CLONE_INTO_CGROUP;
        ca.cgroup = (uint64_t)a->cgroup_fd;
    }
    a->used_clone3 = 1;
    pid = syscall(SYS_clone3, &ca, sizeof ca);
    if (pid < 0 && errno == ENOSYS) {
        /* Pre-5.3 kernel: plain clone; the caller moves the child into its
         * cgroup before releasing it through sync_fd. */
        a->used_clone3 = 0;
        pid = syscall(SYS_clone, (unsigned long)a->clone_flags | SIGCHLD, 0, 0, 0, 0);
    }
    if (pid == 0)
        init_main(a);
    err = errno;
    sigprocmask(SIG_SETMASK, &old, NULL);
    return pid < 0 ? -err : (int)pid;
}

/* ------------------------------------------------- parent-side wrappers -- */

int pc_unshare(unsigned long flags) { return unshare((int)flags) < 0 ? -errno : 0; }
int pc_setns(int fd, int nstype) { return setns(fd, nstype) < 0 ? -errno : 0; }
int pc_mount(const char *source, const char *target, const char *fstype,
             unsigned long flags, const char *data)
{
    return mount(source, target, fstype, flags, data) < 0 ? -errno : 0;
}
int pc_umount2(const char *target, int flags) { return umount2(target, flags) < 0 ? -errno : 0; }
int pc_pivot_root(const char *new_root, const char *put_old)
{
    return syscall(SYS_pivot_root, new_root, put_old) < 0 ? -errno : 0;
}
int pc_sethostname(const char *name)
{
    return sethostname(name, strlen(name)) < 0 ? -errno : 0;
}

int pc_open_tree(const char *path, int recursive, int userns_fd)
{
    unsigned int flags = PC_OPEN_TREE_CLONE | PC_OPEN_TREE_CLOEXEC;
    if (recursive) flags |= PC_AT_RECURSIVE;
    int fd = (int)syscall(SYS_open_tree, AT_FDCWD, path, flags);
    if (fd < 0) return -errno;
    if (userns_fd >= 0) {
        struct pc_mount_attr attr;
        memset(&attr, 0, sizeof attr);
        attr.attr_set = PC_MOUNT_ATTR_IDMAP;
        attr.userns_fd = (uint64_t)userns_fd;
        if (syscall(SYS_mount_setattr, fd, "", AT_EMPTY_PATH | (recursive ? PC_AT_RECURSIVE : 0),
                    &attr, sizeof attr) < 0) {
            int err = errno;
            close(fd);
            return -err;
        }
    }
    return fd;
}

int pc_personality(unsigned long persona)
{
    int rc = personality(persona);
    return rc < 0 ? -errno : rc;
}
