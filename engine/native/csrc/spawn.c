/*
 * spawn.c: the C part of container setup (engine/native), in the spirit of runc's nsexec.
 *
 * Python resolves config.json into a flat "program": a list of operations (mount this, make that
 * device node, pivot_root, set caps, ...).  eng_spawn() clones the container process with the
 * requested new namespaces; the child then waits for the parent's GO message, which carries the
 * program, and interprets it op by op.  No Python runs after fork.
 *
 * Wire formats (mirrored in engine/runtime/protocol.py):
 *   message  = u32 type, i32 value, payload...   (one SOCK_SEQPACKET datagram each)
 *   program  = record*;  record = u32 op, u32 nint, u32 nstr, i64 ints[nint],
 *              then nstr strings, each u32 len + len bytes + one NUL byte.
 *
 * Two ways to make the process:
 *   fast path (no namespace joined that needs a fork, no time namespace): one clone3() with all
 *     the new namespace flags; the child is the container's init.
 *   stage-1 path: a plain child joins namespaces (setns, user namespace first), unshares the new
 *     ones, has its uid/gid maps written by the parent, and forks the init when the pid or time
 *     namespace changed (those apply to children only).  It reports the init pid and exits.
 * The cgroup namespace is always unshared by the init after GO, i.e. after the parent has put
 * the process in its cgroup, so that the namespace root is the container's own cgroup.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <linux/capability.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/personality.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <sys/types.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>

#include "spawn.h"

#ifndef CLONE_NEWTIME
#define CLONE_NEWTIME 0x00000080
#endif
#ifndef CLOSE_RANGE_CLOEXEC
#define CLOSE_RANGE_CLOEXEC (1U << 2)
#endif
#ifndef TIOCGPTPEER
#define TIOCGPTPEER _IO('T', 0x41)
#endif
#ifndef RESOLVE_IN_ROOT
#define RESOLVE_IN_ROOT 0x10
#endif

struct eng_open_how {
    uint64_t flags;
    uint64_t mode;
    uint64_t resolve;
};

struct eng_clone_args {
    uint64_t flags, pidfd, child_tid, parent_tid, exit_signal, stack, stack_size, tls, set_tid,
        set_tid_size, cgroup;
};

/* ---- child-side globals (each process has its own copy after clone) ---- */
static int g_sync = -1;        /* the child's end of the parent<->child socket */
static int g_rootfd = -1;      /* rootfs, opened before pivot_root */
static char g_state[65536];    /* state JSON for hooks, from the GO message */
static size_t g_state_len;
static char g_exe[4096];       /* the resolved executable (OP_LOOKUP) */
static int g_cwd_ok;           /* OP_CHDIR succeeded */

static int send_msg(int fd, uint32_t type, int32_t value, const void *data, size_t len)
{
    uint32_t hdr[2] = {type, (uint32_t)value};
    struct iovec iov[2] = {{hdr, sizeof(hdr)}, {(void *)data, len}};
    struct msghdr m = {0};
    m.msg_iov = iov;
    m.msg_iovlen = len ? 2 : 1;
    ssize_t n;
    do {
        n = sendmsg(fd, &m, MSG_NOSIGNAL);
    } while (n < 0 && errno == EINTR);
    return n < 0 ? -1 : 0;
}

/* Send a message with one fd attached (SCM_RIGHTS). */
static int send_msg_fd(int sock, uint32_t type, int fd)
{
    uint32_t hdr[2] = {type, 0};
    struct iovec iov = {hdr, sizeof(hdr)};
    char cbuf[CMSG_SPACE(sizeof(int))];
    memset(cbuf, 0, sizeof(cbuf));
    struct msghdr m = {0};
    m.msg_iov = &iov;
    m.msg_iovlen = 1;
    m.msg_control = cbuf;
    m.msg_controllen = sizeof(cbuf);
    struct cmsghdr *c = CMSG_FIRSTHDR(&m);
    c->cmsg_level = SOL_SOCKET;
    c->cmsg_type = SCM_RIGHTS;
    c->cmsg_len = CMSG_LEN(sizeof(int));
    memcpy(CMSG_DATA(c), &fd, sizeof(int));
    return sendmsg(sock, &m, MSG_NOSIGNAL) < 0 ? -1 : 0;
}

/* Receive one message; returns payload length or -1.  buf gets the payload. */
static ssize_t recv_msg(int fd, uint32_t *type, int32_t *value, char *buf, size_t cap)
{
    uint32_t hdr[2];
    struct iovec iov[2] = {{hdr, sizeof(hdr)}, {buf, cap}};
    struct msghdr m = {0};
    m.msg_iov = iov;
    m.msg_iovlen = 2;
    ssize_t n;
    do {
        n = recvmsg(fd, &m, 0);
    } while (n < 0 && errno == EINTR);
    if (n < (ssize_t)sizeof(hdr)) {
        if (n >= 0)
            errno = EPIPE;
        return -1;
    }
    if (m.msg_flags & MSG_TRUNC) {
        errno = EMSGSIZE;
        return -1;
    }
    *type = hdr[0];
    *value = (int32_t)hdr[1];
    return n - (ssize_t)sizeof(hdr);
}

/* Report an error to the parent and exit.  Never returns. */
static void __attribute__((noreturn, format(printf, 1, 2))) die(const char *fmt, ...)
{
    int err = errno;
    char msg[4096];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    if (n < 0)
        n = 0;
    if ((size_t)n >= sizeof(msg))
        n = sizeof(msg) - 1;
    if (g_sync >= 0) {
        send_msg(g_sync, ENG_MSG_ERROR, err, msg, (size_t)n);
    } else {
        dprintf(2, "%s\n", msg);
    }
    _exit(ENG_CHILD_FAILED);
}

#define DIE_ERRNO(fmt, ...) die(fmt ": %s", __VA_ARGS__, strerror(errno))

#ifndef CLONE_INTO_CGROUP
#define CLONE_INTO_CGROUP 0x200000000ULL
#endif

/* fork-like clone3; with cgroup_fd >= 0 the child starts in that cgroup2 directory, which
 * spares the migration (and its RCU grace period) that writing cgroup.procs would cost */
static long raw_clone3_cg(unsigned long flags, int cgroup_fd)
{
    struct eng_clone_args a;
    memset(&a, 0, sizeof(a));
    a.flags = flags;
    a.exit_signal = SIGCHLD;
    if (cgroup_fd >= 0) {
        a.flags |= CLONE_INTO_CGROUP;
        a.cgroup = (uint64_t)cgroup_fd;
    }
    return syscall(SYS_clone3, &a, sizeof(a));
}

static long raw_clone3(unsigned long flags)
{
    return raw_clone3_cg(flags, -1);
}

/* ---- path helpers: resolve inside the rootfs, creating what is missing ---- */

static int open_in_root(const char *path, int flags)
{
    struct eng_open_how how = {.flags = (uint64_t)(flags | O_CLOEXEC), .mode = 0, .resolve = RESOLVE_IN_ROOT};
    return (int)syscall(SYS_openat2, g_rootfd, path, &how, sizeof(how));
}

/* Make every component of path (relative to the rootfs; absolute is fine) exist.  The last one is
 * a directory, or an empty file when as_file.  Returns an O_PATH fd on the result. */
static int ensure_in_root(const char *path, int as_file, mode_t mode)
{
    char buf[4096];
    size_t len = strlen(path);
    if (len >= sizeof(buf))
        die("path too long: %s", path);
    memcpy(buf, path, len + 1);
    int fd = open_in_root(buf, O_PATH);
    if (fd >= 0)
        return fd;
    if (errno != ENOENT)
        DIE_ERRNO("open %s in rootfs", path);
    /* walk down, creating as we go */
    char *p = buf;
    while (*p == '/')
        p++;
    int parent = open_in_root("/", O_PATH | O_DIRECTORY);
    if (parent < 0)
        DIE_ERRNO("open rootfs %s", "/");
    for (;;) {
        char *slash = strchr(p, '/');
        int last;
        if (slash) {
            *slash = 0;
            last = 0;
            /* a trailing slash makes this the last component */
            char *q = slash + 1;
            while (*q == '/')
                q++;
            if (*q == 0)
                last = 1;
        } else {
            last = 1;
        }
        if (*p) {
            int rc;
            if (last && as_file) {
                rc = mknodat(parent, p, S_IFREG | 0644, 0);
            } else {
                rc = mkdirat(parent, p, mode);
            }
            if (rc < 0 && errno != EEXIST)
                DIE_ERRNO("mkdir %s in rootfs", path);
            /* re-resolve the prefix from the root so symlinks stay inside it */
            int nfd = open_in_root(buf, O_PATH);
            if (nfd < 0)
                DIE_ERRNO("open %s in rootfs", buf);
            close(parent);
            parent = nfd;
        }
        if (last)
            break;
        *slash = '/';
        p = slash + 1;
        while (*p == '/')
            p++;
    }
    return parent;
}

static void fdpath(char *out, size_t cap, int fd)
{
    snprintf(out, cap, "/proc/self/fd/%d", fd);
}

/* Flags that a bind remount must keep (the kernel refuses to clear locked ones). */
static unsigned long locked_flags(const char *path)
{
    struct statvfs sv;
    unsigned long f = 0;
    if (statvfs(path, &sv) < 0)
        return 0;
    if (sv.f_flag & ST_NOSUID)
        f |= MS_NOSUID;
    if (sv.f_flag & ST_NODEV)
        f |= MS_NODEV;
    if (sv.f_flag & ST_NOEXEC)
        f |= MS_NOEXEC;
    if (sv.f_flag & ST_NOATIME)
        f |= MS_NOATIME;
    if (sv.f_flag & ST_NODIRATIME)
        f |= MS_NODIRATIME;
    if (sv.f_flag & ST_RELATIME)
        f |= MS_RELATIME;
    return f;
}

/* ---- program decoding ---- */

struct rec {
    uint32_t op, nint, nstr;
    int64_t ints[ENG_MAX_INTS];
    const char *strs[ENG_MAX_STRS];
    uint32_t lens[ENG_MAX_STRS];
};

static const char *decode(const char *p, const char *end, struct rec *r)
{
    uint32_t h[3];
    if (end - p < (ptrdiff_t)sizeof(h))
        die("program: truncated record header");
    memcpy(h, p, sizeof(h));
    p += sizeof(h);
    r->op = h[0];
    r->nint = h[1];
    r->nstr = h[2];
    if (r->nint > ENG_MAX_INTS || r->nstr > ENG_MAX_STRS)
        die("program: record %u too large", r->op);
    if (end - p < (ptrdiff_t)(8 * r->nint))
        die("program: truncated ints");
    memcpy(r->ints, p, 8 * r->nint);
    p += 8 * r->nint;
    for (uint32_t i = 0; i < r->nstr; i++) {
        uint32_t l;
        if (end - p < 4)
            die("program: truncated string length");
        memcpy(&l, p, 4);
        p += 4;
        if ((size_t)(end - p) < (size_t)l + 1)
            die("program: truncated string");
        r->strs[i] = p;
        r->lens[i] = l;
        p += l + 1;
    }
    return p;
}

/* ---- hooks run by the container process (createContainer, startContainer) ---- */

static void run_hook(struct rec *r)
{
    /* ints: timeout_s, argc, envc; strs: path, argv[argc], envv[envc] */
    int timeout = (int)r->ints[0], argc = (int)r->ints[1], envc = (int)r->ints[2];
    const char *path = r->strs[0];
    char *argv[ENG_MAX_STRS + 1], *envv[ENG_MAX_STRS + 1];
    int i, k = 1;
    for (i = 0; i < argc; i++)
        argv[i] = (char *)r->strs[k++];
    argv[argc] = NULL;
    if (argc == 0) {
        argv[0] = (char *)path;
        argv[1] = NULL;
    }
    for (i = 0; i < envc; i++)
        envv[i] = (char *)r->strs[k++];
    envv[envc] = NULL;
    int pfd[2];
    if (pipe2(pfd, O_CLOEXEC) < 0)
        DIE_ERRNO("hook %s: pipe", path);
    pid_t pid = fork();
    if (pid < 0)
        DIE_ERRNO("hook %s: fork", path);
    if (pid == 0) {
        dup2(pfd[0], 0);
        execve(path, argv, envv);
        dprintf(2, "exec %s: %s\n", path, strerror(errno));
        _exit(127);
    }
    close(pfd[0]);
    (void)!write(pfd[1], g_state, g_state_len);
    close(pfd[1]);
    struct timespec start, now;
    clock_gettime(CLOCK_MONOTONIC, &start);
    int status;
    for (;;) {
        pid_t w = waitpid(pid, &status, timeout > 0 ? WNOHANG : 0);
        if (w == pid)
            break;
        if (w < 0 && errno != EINTR)
            DIE_ERRNO("hook %s: wait", path);
        clock_gettime(CLOCK_MONOTONIC, &now);
        if (timeout > 0 && now.tv_sec - start.tv_sec >= timeout) {
            kill(pid, SIGKILL);
            waitpid(pid, &status, 0);
            errno = ETIMEDOUT;
            die("error running hook %s: timeout after %d seconds", path, timeout);
        }
        struct timespec ts = {0, 2000000};
        nanosleep(&ts, NULL);
    }
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
        errno = 0;
        if (WIFEXITED(status))
            die("error running hook %s: exit status %d", path, WEXITSTATUS(status));
        die("error running hook %s: signal %d", path, WTERMSIG(status));
    }
}

/* ---- the terminal: a pty made inside the container, master sent over the console socket ---- */

static void setup_console(int sock, int rows, int cols)
{
    int master = open("/dev/ptmx", O_RDWR | O_NOCTTY | O_CLOEXEC);
    if (master < 0)
        DIE_ERRNO("open %s", "/dev/ptmx");
    int unlock = 0;
    if (ioctl(master, TIOCSPTLCK, &unlock) < 0)
        DIE_ERRNO("unlockpt %s", "/dev/ptmx");
    int slave = ioctl(master, TIOCGPTPEER, O_RDWR | O_NOCTTY);
    int ptn = 0;
    ioctl(master, TIOCGPTN, &ptn);
    char name[64];
    snprintf(name, sizeof(name), "/dev/pts/%d", ptn);
    if (slave < 0) {
        slave = open(name, O_RDWR | O_NOCTTY);
        if (slave < 0)
            DIE_ERRNO("open %s", name);
    }
    if (rows > 0 && cols > 0) {
        struct winsize ws = {.ws_row = (unsigned short)rows, .ws_col = (unsigned short)cols};
        ioctl(master, TIOCSWINSZ, &ws);
    }
    /* send the master with SCM_RIGHTS; the data is the pty's name, as runc does */
    char cbuf[CMSG_SPACE(sizeof(int))];
    memset(cbuf, 0, sizeof(cbuf));
    struct iovec iov = {name, strlen(name)};
    struct msghdr m = {0};
    m.msg_iov = &iov;
    m.msg_iovlen = 1;
    m.msg_control = cbuf;
    m.msg_controllen = sizeof(cbuf);
    struct cmsghdr *c = CMSG_FIRSTHDR(&m);
    c->cmsg_level = SOL_SOCKET;
    c->cmsg_type = SCM_RIGHTS;
    c->cmsg_len = CMSG_LEN(sizeof(int));
    memcpy(CMSG_DATA(c), &master, sizeof(int));
    if (sendmsg(sock, &m, MSG_NOSIGNAL) < 0)
        DIE_ERRNO("send pty master to console socket%s", "");
    close(master);
    close(sock);
    if (ioctl(slave, TIOCSCTTY, 0) < 0)
        DIE_ERRNO("ioctl TIOCSCTTY%s", "");
    for (int fd = 0; fd < 3; fd++)
        if (dup2(slave, fd) < 0)
            DIE_ERRNO("dup2 pty slave%s", "");
    if (slave > 2)
        close(slave);
}

/* ---- capabilities ---- */

static void set_caps(uint64_t eff, uint64_t perm, uint64_t inh, uint64_t amb, int last_cap)
{
    struct __user_cap_header_struct h = {_LINUX_CAPABILITY_VERSION_3, 0};
    struct __user_cap_data_struct d[2];
    d[0].effective = (uint32_t)eff;
    d[1].effective = (uint32_t)(eff >> 32);
    d[0].permitted = (uint32_t)perm;
    d[1].permitted = (uint32_t)(perm >> 32);
    d[0].inheritable = (uint32_t)inh;
    d[1].inheritable = (uint32_t)(inh >> 32);
    if (syscall(SYS_capset, &h, d) < 0)
        DIE_ERRNO("capset%s", "");
    prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0);
    for (int c = 0; c <= last_cap && c < 64; c++)
        if (amb & (1ULL << c))
            prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_RAISE, c, 0, 0); /* best effort, as runc */
}

/* ---- executable lookup, with the container's PATH ---- */

static int is_exec(const char *p)
{
    struct stat st;
    return stat(p, &st) == 0 && S_ISREG(st.st_mode) && access(p, X_OK) == 0;
}

static void lookup(const char *name, const char *pathenv)
{
    if (strchr(name, '/')) {
        if (!is_exec(name))
            DIE_ERRNO("exec: \"%s\"", name);
        snprintf(g_exe, sizeof(g_exe), "%s", name);
        return;
    }
    const char *p = pathenv;
    while (p && *p) {
        const char *e = strchr(p, ':');
        size_t l = e ? (size_t)(e - p) : strlen(p);
        if (l == 0)
            snprintf(g_exe, sizeof(g_exe), "./%s", name);
        else
            snprintf(g_exe, sizeof(g_exe), "%.*s/%s", (int)l, p, name);
        if (is_exec(g_exe))
            return;
        p = e ? e + 1 : NULL;
    }
    errno = ENOENT;
    die("exec: \"%s\": executable file not found in $PATH", name);
}

/* ---- the interpreter ---- */

static void do_mount(struct rec *r)
{
    /* ints: flags, kind, remount_flags, propagation; strs: source, dest, fstype, data */
    unsigned long flags = (unsigned long)r->ints[0];
    int kind = (int)r->ints[1];
    unsigned long remount = (unsigned long)r->ints[2];
    unsigned long prop = (unsigned long)r->ints[3];
    const char *src = r->strs[0], *dst = r->strs[1], *fstype = r->strs[2], *data = r->strs[3];
    char target[64];
    int fd = -1;
    if (kind & ENG_MNT_IN_ROOT) {
        fd = ensure_in_root(dst, kind & ENG_MNT_FILE, 0755);
        fdpath(target, sizeof(target), fd);
    }
    const char *t = fd >= 0 ? target : dst;
    if (mount(*src ? src : NULL, t, *fstype ? fstype : NULL, flags, *data ? data : NULL) < 0)
        DIE_ERRNO("mount %s to %s (type %s)", src, dst, fstype);
    if ((remount || prop) && fd >= 0) {
        /* re-open: the old fd names the directory under the new mount, not the mount */
        close(fd);
        fd = open_in_root(dst, O_PATH);
        if (fd < 0)
            DIE_ERRNO("open %s in rootfs", dst);
        fdpath(target, sizeof(target), fd);
    }
    if (remount) {
        unsigned long keep = locked_flags(t);
        if (remount & (MS_NOATIME | MS_RELATIME | MS_STRICTATIME))
            keep &= ~(MS_NOATIME | MS_RELATIME | MS_STRICTATIME | MS_NODIRATIME);
        if (mount(NULL, t, NULL, MS_REMOUNT | MS_BIND | remount | keep, NULL) < 0)
            DIE_ERRNO("remount %s", dst);
    }
    if (prop) {
        if (mount(NULL, t, NULL, prop, NULL) < 0)
            DIE_ERRNO("set propagation of %s", dst);
    }
    if (fd >= 0)
        close(fd);
}

static void do_pivot(const char *rootfs)
{
    int oldroot = open("/", O_DIRECTORY | O_RDONLY | O_CLOEXEC);
    if (oldroot < 0)
        DIE_ERRNO("open %s", "/");
    int newroot = open(rootfs, O_DIRECTORY | O_RDONLY | O_CLOEXEC);
    if (newroot < 0)
        DIE_ERRNO("open %s", rootfs);
    if (fchdir(newroot) < 0)
        DIE_ERRNO("chdir %s", rootfs);
    if (syscall(SYS_pivot_root, ".", ".") < 0)
        DIE_ERRNO("pivot_root %s", rootfs);
    if (fchdir(oldroot) < 0)
        DIE_ERRNO("fchdir %s", "old root");
    /* the old root must not propagate its unmount to the host */
    if (mount(NULL, ".", NULL, MS_SLAVE | MS_REC, NULL) < 0)
        DIE_ERRNO("make old root %s", "rslave");
    if (umount2(".", MNT_DETACH) < 0)
        DIE_ERRNO("unmount old root%s", "");
    if (chdir("/") < 0)
        DIE_ERRNO("chdir %s", "/");
    close(oldroot);
    close(newroot);
}

static void do_chroot(const char *rootfs)
{
    if (chdir(rootfs) < 0)
        DIE_ERRNO("chdir %s", rootfs);
    if (mount(rootfs, "/", NULL, MS_MOVE, NULL) < 0)
        DIE_ERRNO("move %s to /", rootfs);
    if (chroot(".") < 0)
        DIE_ERRNO("chroot %s", rootfs);
    if (chdir("/") < 0)
        DIE_ERRNO("chdir %s", "/");
}

static void write_file(const char *path, const char *val, size_t len)
{
    int fd = open(path, O_WRONLY | O_CLOEXEC);
    if (fd < 0)
        DIE_ERRNO("open %s", path);
    if (write(fd, val, len) != (ssize_t)len)
        DIE_ERRNO("write %s", path);
    close(fd);
}

static void mask_path(const char *p)
{
    struct stat st;
    if (stat(p, &st) < 0) {
        if (errno == ENOENT)
            return;
        DIE_ERRNO("stat %s", p);
    }
    int rc;
    if (S_ISDIR(st.st_mode))
        rc = mount("tmpfs", p, "tmpfs", MS_RDONLY, NULL);
    else
        rc = mount("/dev/null", p, NULL, MS_BIND, NULL);
    if (rc < 0 && errno != ENOENT)
        DIE_ERRNO("mask %s", p);
}

static void readonly_path(const char *p)
{
    if (mount(p, p, NULL, MS_BIND | MS_REC, NULL) < 0) {
        if (errno == ENOENT)
            return;
        DIE_ERRNO("bind %s", p);
    }
    if (mount(NULL, p, NULL, MS_BIND | MS_REMOUNT | MS_RDONLY | MS_REC | locked_flags(p), NULL) < 0)
        DIE_ERRNO("remount %s read-only", p);
}

static void make_dev(struct rec *r)
{
    /* ints: mode(with type bits), major, minor, uid, gid, bind; strs: path */
    mode_t mode = (mode_t)r->ints[0];
    dev_t dev = makedev((unsigned)r->ints[1], (unsigned)r->ints[2]);
    const char *path = r->strs[0];
    if ((int)r->ints[5]) { /* bind the host node (user namespaces cannot mknod) */
        char host[4096];
        snprintf(host, sizeof(host), "%s", path);
        int fd = ensure_in_root(path, 1, 0755);
        char t[64];
        fdpath(t, sizeof(t), fd);
        if (mount(host, t, NULL, MS_BIND, NULL) < 0)
            DIE_ERRNO("bind device %s", path);
        close(fd);
        return;
    }
    /* make the parent, then the node relative to it */
    char parent[4096];
    snprintf(parent, sizeof(parent), "%s", path);
    char *slash = strrchr(parent, '/');
    const char *base = path;
    int pfd;
    if (slash && slash != parent) {
        *slash = 0;
        base = slash + 1;
        pfd = ensure_in_root(parent, 0, 0755);
    } else {
        base = slash ? slash + 1 : path;
        pfd = open_in_root("/", O_PATH | O_DIRECTORY);
    }
    int dfd = openat(pfd, ".", O_DIRECTORY | O_RDONLY | O_CLOEXEC);
    if (dfd < 0)
        DIE_ERRNO("open parent of %s", path);
    unlinkat(dfd, base, 0);
    if (mknodat(dfd, base, mode, dev) < 0)
        DIE_ERRNO("mknod %s", path);
    if (fchownat(dfd, base, (uid_t)r->ints[3], (gid_t)r->ints[4], AT_SYMLINK_NOFOLLOW) < 0)
        DIE_ERRNO("chown %s", path);
    if (fchmodat(dfd, base, mode & 07777, 0) < 0)
        DIE_ERRNO("chmod %s", path);
    close(dfd);
    close(pfd);
}

static void make_symlink(const char *target, const char *link)
{
    char parent[4096];
    snprintf(parent, sizeof(parent), "%s", link);
    char *slash = strrchr(parent, '/');
    const char *base = link;
    int pfd;
    if (slash && slash != parent) {
        *slash = 0;
        base = link + (slash - parent) + 1;
        pfd = ensure_in_root(parent, 0, 0755);
    } else {
        base = slash ? link + 1 : link;
        pfd = open_in_root("/", O_PATH | O_DIRECTORY);
    }
    int dfd = openat(pfd, ".", O_DIRECTORY | O_RDONLY | O_CLOEXEC);
    if (dfd < 0)
        DIE_ERRNO("open parent of %s", link);
    if (symlinkat(target, dfd, base) < 0 && errno != EEXIST)
        DIE_ERRNO("symlink %s", link);
    close(dfd);
    close(pfd);
}

static void run_program(const char *prog, size_t len)
{
    const char *p = prog, *end = prog + len;
    struct rec r;
    const char *pathenv = NULL;
    while (p < end) {
        p = decode(p, end, &r);
        switch (r.op) {
        case ENG_OP_SETNS:
            if (setns((int)r.ints[0], (int)r.ints[1]) < 0)
                DIE_ERRNO("setns %s", r.nstr ? r.strs[0] : "");
            close((int)r.ints[0]);
            break;
        case ENG_OP_UNSHARE:
            if (unshare((int)r.ints[0]) < 0)
                DIE_ERRNO("unshare %#llx", (unsigned long long)r.ints[0]);
            break;
        case ENG_OP_SETHOSTNAME:
            if (sethostname(r.strs[0], r.lens[0]) < 0)
                DIE_ERRNO("sethostname %s", r.strs[0]);
            break;
        case ENG_OP_SETDOMAINNAME:
            if (setdomainname(r.strs[0], r.lens[0]) < 0)
                DIE_ERRNO("setdomainname %s", r.strs[0]);
            break;
        case ENG_OP_ROOT_PROPAGATION:
            if (mount(NULL, "/", NULL, (unsigned long)r.ints[0], NULL) < 0)
                DIE_ERRNO("set propagation of %s", "/");
            break;
        case ENG_OP_OPEN_ROOT:
            g_rootfd = open(r.strs[0], O_PATH | O_DIRECTORY | O_CLOEXEC);
            if (g_rootfd < 0)
                DIE_ERRNO("open rootfs %s", r.strs[0]);
            break;
        case ENG_OP_MOUNT:
            do_mount(&r);
            break;
        case ENG_OP_MKDEV:
            make_dev(&r);
            break;
        case ENG_OP_SYMLINK:
            make_symlink(r.strs[0], r.strs[1]);
            break;
        case ENG_OP_UNLINK: {
            int fd = open_in_root(r.strs[0], O_PATH | O_NOFOLLOW);
            if (fd >= 0) {
                char t[64];
                close(fd);
                /* resolve the parent inside the root, then unlink the name */
                char parent[4096];
                snprintf(parent, sizeof(parent), "%s", r.strs[0]);
                char *s = strrchr(parent, '/');
                if (s) {
                    *s = 0;
                    int pfd = open_in_root(*parent ? parent : "/", O_PATH | O_DIRECTORY);
                    if (pfd >= 0) {
                        fdpath(t, sizeof(t), pfd);
                        int dfd = open(t, O_DIRECTORY | O_RDONLY | O_CLOEXEC);
                        if (dfd >= 0) {
                            unlinkat(dfd, s + 1, 0);
                            close(dfd);
                        }
                        close(pfd);
                    }
                }
            }
            break;
        }
        case ENG_OP_SYNC_HOOKS: {
            if (send_msg(g_sync, ENG_MSG_HOOKS, 0, NULL, 0) < 0)
                DIE_ERRNO("sync%s", "");
            uint32_t type;
            int32_t value;
            char b[16];
            if (recv_msg(g_sync, &type, &value, b, sizeof(b)) < 0 || type != ENG_MSG_HOOKS_DONE)
                _exit(ENG_CHILD_FAILED); /* the parent failed; it reports */
            break;
        }
        case ENG_OP_HOOK:
            run_hook(&r);
            break;
        case ENG_OP_PIVOT:
            do_pivot(r.strs[0]);
            break;
        case ENG_OP_CHROOT:
            do_chroot(r.strs[0]);
            break;
        case ENG_OP_WRITE:
            write_file(r.strs[0], r.strs[1], r.lens[1]);
            break;
        case ENG_OP_MASK:
            mask_path(r.strs[0]);
            break;
        case ENG_OP_READONLY:
            readonly_path(r.strs[0]);
            break;
        case ENG_OP_REMOUNT_ROOT_RO:
            if (mount(NULL, "/", NULL, MS_BIND | MS_REMOUNT | MS_RDONLY | locked_flags("/"), NULL) < 0)
                DIE_ERRNO("remount %s read-only", "/");
            break;
        case ENG_OP_RLIMIT: {
            struct rlimit rl = {(rlim_t)r.ints[1], (rlim_t)r.ints[2]};
            if (setrlimit((int)r.ints[0], &rl) < 0)
                DIE_ERRNO("setrlimit %d", (int)r.ints[0]);
            break;
        }
        case ENG_OP_PERSONALITY:
            if (personality((unsigned long)r.ints[0]) < 0)
                DIE_ERRNO("personality %#lx", (unsigned long)r.ints[0]);
            break;
        case ENG_OP_SETSID:
            setsid();
            break;
        case ENG_OP_CONSOLE:
            setup_console((int)r.ints[0], (int)r.ints[1], (int)r.ints[2]);
            break;
        case ENG_OP_BOUNDING:
            for (int c = 0; c <= (int)r.ints[1] && c < 64; c++)
                if (!((uint64_t)r.ints[0] & (1ULL << c)))
                    if (prctl(PR_CAPBSET_DROP, c, 0, 0, 0) < 0 && errno != EINVAL)
                        DIE_ERRNO("drop capability %d from bounding set", c);
            break;
        case ENG_OP_USER: {
            /* ints: uid, gid, ngroups, groups...; setgroups is skipped when ngroups < 0 */
            uid_t uid = (uid_t)r.ints[0];
            gid_t gid = (gid_t)r.ints[1];
            int ng = (int)r.ints[2];
            gid_t groups[ENG_MAX_INTS];
            for (int i = 0; i < ng; i++)
                groups[i] = (gid_t)r.ints[3 + i];
            if (prctl(PR_SET_KEEPCAPS, 1, 0, 0, 0) < 0)
                DIE_ERRNO("keepcaps%s", "");
            if (ng >= 0 && setgroups((size_t)ng, groups) < 0)
                DIE_ERRNO("setgroups%s", "");
            if (setresgid(gid, gid, gid) < 0)
                DIE_ERRNO("setgid %u", gid);
            if (setresuid(uid, uid, uid) < 0)
                DIE_ERRNO("setuid %u", uid);
            prctl(PR_SET_KEEPCAPS, 0, 0, 0, 0);
            break;
        }
        case ENG_OP_CAPS:
            set_caps((uint64_t)r.ints[0], (uint64_t)r.ints[1], (uint64_t)r.ints[2], (uint64_t)r.ints[3],
                     (int)r.ints[4]);
            break;
        case ENG_OP_NNP:
            if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0)
                DIE_ERRNO("set no_new_privs%s", "");
            break;
        case ENG_OP_SECCOMP: {
            struct sock_fprog fp = {.len = (unsigned short)(r.lens[0] / 8),
                                    .filter = (struct sock_filter *)r.strs[0]};
            /* the record's bytes may be unaligned: copy */
            static struct sock_filter filt[BPF_MAXINSNS];
            if (r.lens[0] / 8 > BPF_MAXINSNS)
                die("seccomp filter too long: %u instructions", r.lens[0] / 8);
            memcpy(filt, r.strs[0], r.lens[0]);
            fp.filter = filt;
            long sfd = syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, (unsigned)r.ints[0], &fp);
            if (sfd < 0)
                DIE_ERRNO("load seccomp filter%s", "");
            if (r.nint > 1 && r.ints[1]) {
                /* user notification: the parent hands the listener fd to the listenerPath socket */
                uint32_t type;
                int32_t value;
                char b[16];
                if (send_msg_fd(g_sync, ENG_MSG_SECCOMP_FD, (int)sfd) < 0)
                    DIE_ERRNO("send seccomp listener fd%s", "");
                if (recv_msg(g_sync, &type, &value, b, sizeof(b)) < 0 || type != ENG_MSG_SECCOMP_DONE)
                    _exit(ENG_CHILD_FAILED);
                close((int)sfd);
            }
            break;
        }
        case ENG_OP_UMASK:
            umask((mode_t)r.ints[0]);
            break;
        case ENG_OP_CHDIR:
            /* ints[0]: 0 must succeed, 1 try (as root, before the user switch), 2 retry if 1 failed */
            if (r.ints[0] == 2 && g_cwd_ok)
                break;
            if (chdir(r.strs[0]) < 0) {
                if (r.ints[0] == 1)
                    break;
                DIE_ERRNO("chdir to cwd (\"%s\") set in config.json failed", r.strs[0]);
            }
            g_cwd_ok = 1;
            break;
        case ENG_OP_LOOKUP:
            pathenv = r.nstr > 1 ? r.strs[1] : NULL;
            lookup(r.strs[0], pathenv);
            break;
        case ENG_OP_READY:
            if (send_msg(g_sync, ENG_MSG_READY, getpid(), NULL, 0) < 0)
                _exit(ENG_CHILD_FAILED);
            close(g_sync);
            g_sync = -1;
            break;
        case ENG_OP_WAIT_FIFO: {
            /* opening the FIFO for writing blocks until `start` opens it for reading */
            int fd;
            do {
                fd = openat((int)r.ints[0], r.strs[0], O_WRONLY | O_CLOEXEC);
            } while (fd < 0 && errno == EINTR);
            if (fd < 0)
                DIE_ERRNO("open exec fifo%s", "");
            if (write(fd, "0", 1) != 1)
                DIE_ERRNO("write exec fifo%s", "");
            close(fd);
            close((int)r.ints[0]);
            break;
        }
        case ENG_OP_CLOSE_FROM:
            syscall(SYS_close_range, (unsigned)r.ints[0], ~0U, CLOSE_RANGE_CLOEXEC);
            break;
        case ENG_OP_EXEC: {
            /* ints: argc, envc; strs: argv..., envv... */
            int argc = (int)r.ints[0], envc = (int)r.ints[1], k = 0;
            char *argv[ENG_MAX_STRS + 1], *envv[ENG_MAX_STRS + 1];
            for (int i = 0; i < argc; i++)
                argv[i] = (char *)r.strs[k++];
            argv[argc] = NULL;
            for (int i = 0; i < envc; i++)
                envv[i] = (char *)r.strs[k++];
            envv[envc] = NULL;
            execve(g_exe[0] ? g_exe : argv[0], argv, envv);
            DIE_ERRNO("exec %s", argv[0]);
        }
        case ENG_OP_DUP2:
            if ((int)r.ints[0] != (int)r.ints[1] && dup2((int)r.ints[0], (int)r.ints[1]) < 0)
                DIE_ERRNO("dup2 %d to %d", (int)r.ints[0], (int)r.ints[1]);
            break;
        case ENG_OP_IOPRIO:
            if (syscall(SYS_ioprio_set, 1 /* IOPRIO_WHO_PROCESS */, 0, (int)r.ints[0]) < 0)
                DIE_ERRNO("set io priority %d", (int)r.ints[0]);
            break;
        case ENG_OP_SCHED: {
            struct {
                uint32_t size, policy;
                uint64_t flags;
                int32_t nice;
                uint32_t priority;
                uint64_t runtime, deadline, period;
            } attr;
            memset(&attr, 0, sizeof(attr));
            attr.size = sizeof(attr);
            attr.policy = (uint32_t)r.ints[0];
            attr.nice = (int32_t)r.ints[1];
            attr.priority = (uint32_t)r.ints[2];
            attr.flags = (uint64_t)r.ints[3];
            attr.runtime = (uint64_t)r.ints[4];
            attr.deadline = (uint64_t)r.ints[5];
            attr.period = (uint64_t)r.ints[6];
            if (syscall(SYS_sched_setattr, 0, &attr, 0) < 0)
                DIE_ERRNO("sched_setattr policy %u", attr.policy);
            break;
        }
        case ENG_OP_AFFINITY:
            if (sched_setaffinity(0, r.lens[0], (const cpu_set_t *)r.strs[0]) < 0)
                DIE_ERRNO("sched_setaffinity%s", "");
            break;
        default:
            die("program: unknown op %u", r.op);
        }
    }
    die("program ended without exec%s", "");
}

/* The container's init (or exec'd process): wait for GO, then run the program. */
static void __attribute__((noreturn)) child_main(void)
{
    static char buf[ENG_MAX_PROGRAM];
    uint32_t type;
    int32_t value;
    ssize_t n = recv_msg(g_sync, &type, &value, buf, sizeof(buf));
    if (n < 0 || type != ENG_MSG_GO)
        _exit(ENG_CHILD_FAILED); /* the parent gave up; it reports why */
    /* GO payload: u32 state_len, state JSON, program */
    uint32_t sl;
    if (n < 4)
        die("go message too short");
    memcpy(&sl, buf, 4);
    if ((size_t)sl > sizeof(g_state) || (ssize_t)(4 + sl) > n)
        die("go message: bad state length");
    memcpy(g_state, buf + 4, sl);
    g_state_len = sl;
    run_program(buf + 4 + sl, (size_t)(n - 4 - (ssize_t)sl));
    _exit(ENG_CHILD_FAILED);
}

int eng_spawn(const struct eng_spawn_args *a)
{
    if (!a->stage1) {
        /* Only the user and pid namespaces must come from clone itself; the child unshares the
         * others, so their cost (a network namespace is the dear one) overlaps with the parent's
         * work (cgroups) instead of adding to it. */
        unsigned long at_clone = a->clone_flags & (CLONE_NEWUSER | CLONE_NEWPID);
        unsigned long later = a->clone_flags & ~at_clone;
        long pid = raw_clone3_cg(at_clone, a->cgroup_fd);
        if (pid < 0)
            return -errno;
        if (pid > 0)
            return (int)pid;
        close(a->parent_fd);
        g_sync = a->sync_fd;
        signal(SIGPIPE, SIG_DFL);
        if (later && unshare((int)later) < 0)
            DIE_ERRNO("unshare namespaces %#lx", later);
        child_main();
    }
    pid_t pid = (pid_t)raw_clone3_cg(0, a->cgroup_fd);
    if (pid < 0)
        return -errno;
    if (pid > 0)
        return pid;
    /* stage 1 */
    close(a->parent_fd);
    g_sync = a->sync_fd;
    signal(SIGPIPE, SIG_DFL);
    for (int i = 0; i < a->njoin; i++) {
        if (setns(a->join_fds[i], a->join_types[i]) < 0)
            DIE_ERRNO("setns %s", a->join_names && a->join_names[i] ? a->join_names[i] : "");
        close(a->join_fds[i]);
    }
    if (a->clone_flags && unshare((int)a->clone_flags) < 0)
        DIE_ERRNO("unshare namespaces %#lx", a->clone_flags);
    if (a->clone_flags & CLONE_NEWUSER) {
        uint32_t type;
        int32_t value;
        char b[16];
        if (send_msg(g_sync, ENG_MSG_USERNS, getpid(), NULL, 0) < 0)
            _exit(ENG_CHILD_FAILED);
        if (recv_msg(g_sync, &type, &value, b, sizeof(b)) < 0 || type != ENG_MSG_USERNS_DONE)
            _exit(ENG_CHILD_FAILED);
    }
    if (a->timens_offsets && *a->timens_offsets)
        write_file("/proc/self/timens_offsets", a->timens_offsets, strlen(a->timens_offsets));
    if (a->fork_init) {
        pid_t init = fork();
        if (init < 0)
            DIE_ERRNO("fork init%s", "");
        if (init == 0)
            child_main();
        send_msg(g_sync, ENG_MSG_PID, init, NULL, 0);
        _exit(0);
    }
    send_msg(g_sync, ENG_MSG_PID, getpid(), NULL, 0);
    child_main();
}

/* ---- small wrappers for the syscalls Python lacks ---- */

int eng_pivot_root(const char *new_root, const char *put_old)
{
    return syscall(SYS_pivot_root, new_root, put_old) < 0 ? -errno : 0;
}

int eng_capget(int pid, uint64_t out[3])
{
    struct __user_cap_header_struct h = {_LINUX_CAPABILITY_VERSION_3, pid};
    struct __user_cap_data_struct d[2];
    if (syscall(SYS_capget, &h, d) < 0)
        return -errno;
    out[0] = d[0].effective | ((uint64_t)d[1].effective << 32);
    out[1] = d[0].permitted | ((uint64_t)d[1].permitted << 32);
    out[2] = d[0].inheritable | ((uint64_t)d[1].inheritable << 32);
    return 0;
}

int eng_capset(uint64_t eff, uint64_t perm, uint64_t inh)
{
    struct __user_cap_header_struct h = {_LINUX_CAPABILITY_VERSION_3, 0};
    struct __user_cap_data_struct d[2] = {
        {(uint32_t)eff, (uint32_t)perm, (uint32_t)inh},
        {(uint32_t)(eff >> 32), (uint32_t)(perm >> 32), (uint32_t)(inh >> 32)},
    };
    return syscall(SYS_capset, &h, d) < 0 ? -errno : 0;
}

int eng_seccomp_load(unsigned int flags, const void *filter, size_t len)
{
    struct sock_fprog fp = {.len = (unsigned short)(len / 8), .filter = (struct sock_filter *)filter};
    long rc = syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, flags, &fp);
    return rc < 0 ? -errno : (int)rc;
}

int eng_set_winsize(int fd, unsigned short rows, unsigned short cols)
{
    struct winsize ws = {.ws_row = rows, .ws_col = cols};
    return ioctl(fd, TIOCSWINSZ, &ws) < 0 ? -errno : 0;
}

int eng_get_winsize(int fd, unsigned short out[2])
{
    struct winsize ws;
    if (ioctl(fd, TIOCGWINSZ, &ws) < 0)
        return -errno;
    out[0] = ws.ws_row;
    out[1] = ws.ws_col;
    return 0;
}

int eng_set_ctty(int fd)
{
    return ioctl(fd, TIOCSCTTY, 0) < 0 ? -errno : 0;
}

int eng_pty_peer(int master, int flags)
{
    int fd = ioctl(master, TIOCGPTPEER, flags);
    return fd < 0 ? -errno : fd;
}

int eng_clone_fork(unsigned long flags)
{
    long pid = raw_clone3(flags);
    return pid < 0 ? -errno : (int)pid;
}
