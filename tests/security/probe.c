/*
 * escape-probe: a tiny static program the escape battery runs inside a
 * container.  Each "attempt" is one raw syscall (or a short sequence) that a
 * container must not be able to perform; the probe prints one line per
 * attempt:
 *
 *     <name> ok            the attempt succeeded (an escape, in a default container)
 *     <name> <ERRNO>       it failed, with the errno's symbolic name
 *
 * Nothing here writes to the host: mounts happen in the container's own mount
 * namespace, writability is probed with access(2) (which never writes), a
 * block device is read 16 bytes at most, and the only module/reboot calls
 * used are ones that cannot succeed even with the capability (a module that
 * does not exist, a Ctrl-Alt-Del setting a PID namespace refuses).  So an
 * attempt that gets *past the permission check* reports "ok".
 *
 * Then it prints "status <Field> <value>" for the Cap*, NoNewPrivs and Seccomp
 * lines of its own /proc/self/status.
 *
 * Usage: probe [--dev MAJ:MIN] [ATTEMPT...]   (no attempt: run them all)
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <dirent.h>
#include <net/if.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/io.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/ptrace.h>
#include <sys/reboot.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <sys/wait.h>
#include <unistd.h>

static unsigned dev_major = 0, dev_minor = 0;

static const char *ename(int e)
{
    switch (e) {
    case 0: return "ok";
    case EPERM: return "EPERM";
    case EACCES: return "EACCES";
    case EROFS: return "EROFS";
    case ENOENT: return "ENOENT";
    case EINVAL: return "EINVAL";
    case EBUSY: return "EBUSY";
    case ENOSYS: return "ENOSYS";
    case ENODEV: return "ENODEV";
    case ENXIO: return "ENXIO";
    case ESRCH: return "ESRCH";
    case EEXIST: return "EEXIST";
    case ENOTDIR: return "ENOTDIR";
    case EOPNOTSUPP: return "EOPNOTSUPP";
    case EBADF: return "EBADF";
    case ENOSPC: return "ENOSPC";
    case ENOKEY: return "ENOKEY";
    case ENODATA: return "ENODATA";
    }
    static char buf[32];
    snprintf(buf, sizeof buf, "E%d", e);
    return buf;
}

static int scratch_dir(char *out, size_t n, const char *name)
{
    snprintf(out, n, "/dev/shm/probe-%s", name);
    if (mkdir(out, 0700) < 0 && errno != EEXIST)
        return -errno;
    return 0;
}

/* ---------------------------------------------------------- mounting -- */

static int a_mount_tmpfs(void)
{
    char d[64];
    scratch_dir(d, sizeof d, "tmpfs");
    if (mount("tmpfs", d, "tmpfs", 0, "size=16k") < 0) return errno;
    umount2(d, MNT_DETACH);
    return 0;
}

/* A v1 hierarchy is how the release_agent escape starts. */
static int a_mount_cgroup_v1(void)
{
    char d[64];
    scratch_dir(d, sizeof d, "cgroup");
    if (mount("cgroup", d, "cgroup", MS_NOSUID | MS_NODEV | MS_NOEXEC, "memory") < 0)
        return errno;
    umount2(d, MNT_DETACH);
    return 0;
}

static int a_bind_mount(void)
{
    char d[64];
    scratch_dir(d, sizeof d, "bind");
    if (mount("/etc", d, NULL, MS_BIND, NULL) < 0) return errno;
    umount2(d, MNT_DETACH);
    return 0;
}

/* Make a read-only mount writable (per-mount flag only: MS_BIND), then
 * report whether `probe` is writable according to access(2). */
static int make_writable(const char *mnt, const char *probe, int whole_sb)
{
    struct statvfs sv;
    if (statvfs(mnt, &sv) == 0 && (sv.f_flag & ST_RDONLY)) {
        /* sysfs created read-only in the container's own network namespace
         * has a read-only superblock of its own: it takes a non-bind remount
         * (that superblock is not the host's). */
        if (whole_sb)
            mount(NULL, mnt, NULL, MS_REMOUNT | MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL);
        mount(NULL, mnt, NULL, MS_REMOUNT | MS_BIND | MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL);
    }
    return access(probe, W_OK) < 0 ? errno : 0;
}

static int a_proc_sys_writable(void)
{
    return make_writable("/proc/sys", "/proc/sys/kernel/core_pattern", 0);
}

static int a_core_pattern_w(void)
{
    return access("/proc/sys/kernel/core_pattern", W_OK) < 0 ? errno : 0;
}

static int a_sysrq_trigger_w(void)
{
    return access("/proc/sysrq-trigger", W_OK) < 0 ? errno : 0;
}

static int a_sys_writable(void)
{
    return make_writable("/sys", "/sys/kernel/profiling", 1);
}

/* ------------------------------------------------------------ devices -- */

/* mknod the host's disk and open it.  A tmpfs of our own would have no
 * nodev flag; without CAP_SYS_ADMIN we are left with the (nodev) rootfs. */
static int a_host_disk_read(void)
{
    char d[64], node[96], buf[16];
    scratch_dir(d, sizeof d, "dev");
    mount("tmpfs", d, "tmpfs", 0, "size=16k");  /* fails in a default container */
    snprintf(node, sizeof node, "%s/disk", d);
    unlink(node);
    if (mknod(node, S_IFBLK | 0600, makedev(dev_major, dev_minor)) < 0) return errno;
    int fd = open(node, O_RDONLY | O_CLOEXEC);
    int err = fd < 0 ? errno : 0;
    if (fd >= 0) {
        if (read(fd, buf, sizeof buf) < 0) err = errno;
        close(fd);
    }
    unlink(node);
    umount2(d, MNT_DETACH);
    return err;
}

/* ------------------------------------------------------------ masking -- */

/* A masked file is /dev/null bound over it: it reads as empty.  So "ok"
 * means: it is the real proc file and it has content. */
static int unmasked_file(const char *path)
{
    char buf[256];
    struct stat st;
    if (stat(path, &st) < 0) return errno;
    if (S_ISCHR(st.st_mode)) return EACCES;      /* /dev/null over it */
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return errno;
    ssize_t n = read(fd, buf, sizeof buf);
    int err = n < 0 ? errno : 0;
    close(fd);
    if (!err && n == 0) return ENODATA;
    return err;
}

/* /proc/keys may legitimately list nothing: "not masked" is enough. */
static int a_proc_keys(void)
{
    struct stat st;
    if (stat("/proc/keys", &st) < 0) return errno;
    if (S_ISCHR(st.st_mode)) return EACCES;
    int fd = open("/proc/keys", O_RDONLY | O_CLOEXEC);
    if (fd < 0) return errno;
    close(fd);
    return 0;
}

static int a_timer_list(void) { return unmasked_file("/proc/timer_list"); }
static int a_interrupts(void) { return unmasked_file("/proc/interrupts"); }
static int a_kcore(void) { return unmasked_file("/proc/kcore"); }

static int a_sys_firmware(void)
{
    DIR *d = opendir("/sys/firmware");
    if (!d) return errno;
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)))
        if (e->d_name[0] != '.') n++;
    closedir(d);
    return n ? 0 : ENOENT;
}

/* ---------------------------------------------------- capabilities used -- */

static int a_ptrace_init(void)
{
    if (ptrace(PTRACE_SEIZE, 1, 0, 0) < 0) return errno;
    ptrace(PTRACE_DETACH, 1, 0, 0);
    return 0;
}

/* CAP_SYS_MODULE is checked before the name: ENOENT means it passed. */
static int a_delete_module(void)
{
    if (syscall(SYS_delete_module, "pycontain_no_such_module", O_NONBLOCK) < 0)
        return errno == ENOENT ? 0 : errno;
    return 0;
}

/* CAP_SYS_BOOT is checked first; a PID namespace then refuses CAD_OFF
 * with EINVAL (kernel/reboot.c, reboot_pid_ns): nothing is changed. */
static int a_reboot(void)
{
    if (syscall(SYS_reboot, 0xfee1dead, 672274793, 0 /* LINUX_REBOOT_CMD_CAD_OFF */, 0) < 0)
        return errno == EINVAL ? 0 : errno;
    return EEXIST;  /* we are not in a PID namespace: refuse to claim anything */
}

/* The "shocker" escape: open any inode of the filesystem by its handle. */
static int a_open_by_handle(void)
{
    struct { struct file_handle fh; unsigned char f[128]; } h;
    int mount_id;
    h.fh.handle_bytes = 128;
    if (name_to_handle_at(AT_FDCWD, "/", &h.fh, &mount_id, 0) < 0) return errno;
    int fd = open_by_handle_at(AT_FDCWD, &h.fh, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        int mfd = open("/", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        fd = open_by_handle_at(mfd, &h.fh, O_RDONLY | O_CLOEXEC);
        int err = errno;
        close(mfd);
        if (fd < 0) return err;
    }
    close(fd);
    return 0;
}

/* Port I/O permission for this process only; no port is touched. */
static int a_ioperm(void)
{
#if defined(__x86_64__) || defined(__i386__)
    if (ioperm(0x80, 1, 1) < 0) return errno;
    ioperm(0x80, 1, 0);
    return 0;
#else
    return ENOSYS;
#endif
}

/* CAP_NET_ADMIN in the container's own network namespace: set lo's MTU to
 * the value it already has. */
static int a_net_admin(void)
{
    struct ifreq ifr;
    int s = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (s < 0) return errno;
    memset(&ifr, 0, sizeof ifr);
    strcpy(ifr.ifr_name, "lo");
    int err = 0;
    if (ioctl(s, SIOCGIFMTU, &ifr) < 0 || ioctl(s, SIOCSIFMTU, &ifr) < 0) err = errno;
    close(s);
    return err;
}

/* ------------------------------------------- what only seccomp can stop -- */

static int a_keyctl(void)
{
    /* KEYCTL_GET_KEYRING_ID(KEY_SPEC_SESSION_KEYRING, create=0) */
    if (syscall(SYS_keyctl, 0, -3, 0, 0, 0) < 0)
        return errno == ENOKEY ? 0 : errno;
    return 0;
}

/* Run fn in a child, so that unshare() does not change the probe itself. */
static int in_child(int (*fn)(void))
{
    pid_t pid = fork();
    if (pid < 0) return errno;
    if (pid == 0) _exit(fn());
    int st;
    if (waitpid(pid, &st, 0) < 0) return errno;
    return WIFEXITED(st) ? WEXITSTATUS(st) : EINTR;
}

static int do_unshare_user(void) { return unshare(CLONE_NEWUSER) < 0 ? errno : 0; }

/* A fresh user namespace makes us "root" again: mount a tmpfs there. */
static int do_userns_mount(void)
{
    if (unshare(CLONE_NEWUSER | CLONE_NEWNS) < 0) return errno;
    if (mount("none", "/dev/shm", "tmpfs", 0, "size=16k") < 0) return errno;
    return 0;
}

static int a_unshare_user(void) { return in_child(do_unshare_user); }
static int a_userns_mount(void) { return in_child(do_userns_mount); }

static int a_plain_read(void)
{
    char c;
    int fd = open("/proc/self/stat", O_RDONLY | O_CLOEXEC);
    if (fd < 0) return errno;
    int err = read(fd, &c, 1) == 1 ? 0 : errno;
    close(fd);
    return err;
}

/* -------------------------------------------------------------- table -- */

static const struct { const char *name; int (*fn)(void); } attempts[] = {
    {"mount_tmpfs", a_mount_tmpfs},
    {"mount_cgroup_v1", a_mount_cgroup_v1},
    {"bind_mount", a_bind_mount},
    {"proc_sys_writable", a_proc_sys_writable},
    {"core_pattern_w", a_core_pattern_w},
    {"sysrq_trigger_w", a_sysrq_trigger_w},
    {"sys_writable", a_sys_writable},
    {"host_disk_read", a_host_disk_read},
    {"proc_keys", a_proc_keys},
    {"timer_list", a_timer_list},
    {"interrupts", a_interrupts},
    {"kcore", a_kcore},
    {"sys_firmware", a_sys_firmware},
    {"ptrace_init", a_ptrace_init},
    {"delete_module", a_delete_module},
    {"reboot", a_reboot},
    {"open_by_handle", a_open_by_handle},
    {"ioperm", a_ioperm},
    {"net_admin", a_net_admin},
    {"keyctl", a_keyctl},
    {"unshare_user", a_unshare_user},
    {"userns_mount", a_userns_mount},
    {"plain_read", a_plain_read},
};

int main(int argc, char **argv)
{
    int i = 1;
    if (argc > 2 && strcmp(argv[1], "--dev") == 0) {
        sscanf(argv[2], "%u:%u", &dev_major, &dev_minor);
        i = 3;
    }
    size_t n = sizeof attempts / sizeof attempts[0];
    for (size_t k = 0; k < n; k++) {
        int wanted = i >= argc;
        for (int j = i; j < argc; j++)
            if (strcmp(argv[j], attempts[k].name) == 0) wanted = 1;
        if (!wanted) continue;
        int err = attempts[k].fn();
        printf("%s %s\n", attempts[k].name, ename(err));
        fflush(stdout);
    }
    /* The probe's own credentials and confinement, as the kernel reports them. */
    char line[256];
    FILE *f = fopen("/proc/self/status", "re");
    while (f && fgets(line, sizeof line, f)) {
        if (!strncmp(line, "Cap", 3) || !strncmp(line, "NoNewPrivs:", 11) ||
            !strncmp(line, "Seccomp:", 8)) {
            char *colon = strchr(line, ':');
            *colon = ' ';
            printf("status %s", line);
        }
    }
    if (f) fclose(f);
    return 0;
}
