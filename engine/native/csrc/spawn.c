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
 *   fast path (no namespace joined that needs a fork, no time namespace): one clone3() with the
 *     new user and pid namespaces (and CLONE_INTO_CGROUP when given a cgroup2 directory); the
 *     child unshares the other new namespaces itself, in parallel with the parent's work, and
 *     is the container's init.
 *   stage-1 path: a plain child joins namespaces (setns, user namespace first), unshares the new
 *     ones, has its uid/gid maps written by the parent, and forks the init when the pid or time
 *     namespace changed (those apply to children only).  It reports the init pid and exits.
 * The cgroup namespace is always unshared by the init after GO, i.e. after it is in its cgroup,
 * so that the namespace root is the container's own cgroup.
 *
 * Files: spawn.c (this: messages, clone, the interpreter), rootfs.c (filesystem ops),
 * process.c (hooks, console, caps, lookup), syscalls.c (wrappers for Python), internal.h.
 */
#include "internal.h"

/* ---- child-side globals (each process has its own copy after clone) ---- */
int g_sync = -1;        /* the child's end of the parent<->child socket */
int g_rootfd = -1;      /* rootfs, opened before pivot_root */
const char *g_state = "";  /* state JSON for hooks, inside the GO message buffer */
size_t g_state_len;
char g_exe[4096];       /* the resolved executable (OP_LOOKUP) */
int g_cwd_ok;           /* OP_CHDIR succeeded */

int send_msg(int fd, uint32_t type, int32_t value, const void *data, size_t len)
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
int send_msg_fd(int sock, uint32_t type, int fd)
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
ssize_t recv_msg(int fd, uint32_t *type, int32_t *value, char *buf, size_t cap)
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
void __attribute__((noreturn, format(printf, 1, 2))) die(const char *fmt, ...)
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



/* fork-like clone3; with cgroup_fd >= 0 the child starts in that cgroup2 directory, which
 * spares the migration (and its RCU grace period) that writing cgroup.procs would cost */
long raw_clone3_cg(unsigned long flags, int cgroup_fd)
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

long raw_clone3(unsigned long flags)
{
    return raw_clone3_cg(flags, -1);
}

/* ---- program decoding ---- */

const char *decode(const char *p, const char *end, struct rec *r)
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

/* ---- the interpreter ---- */

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
        case ENG_OP_IDMAP_MOUNT:
            do_idmap_mount(&r);
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
        case ENG_OP_KEYRING:
            /* a session keyring of its own, so the container cannot read the host's keys; as runc,
             * a kernel that refuses (EACCES, ENOSYS) is not an error */
            if (syscall(SYS_keyctl, 1 /* KEYCTL_JOIN_SESSION_KEYRING */, r.strs[0]) < 0 && errno != EACCES &&
                errno != ENOSYS)
                DIE_ERRNO("join session keyring %s", r.strs[0]);
            break;
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
    if ((ssize_t)(4 + (size_t)sl) > n)
        die("go message: bad state length");
    g_state = buf + 4; /* the buffer is static: it outlives the program */
    g_state_len = sl;
    run_program(buf + 4 + sl, (size_t)(n - 4 - (ssize_t)sl));
    _exit(ENG_CHILD_FAILED);
}

/* Join cgroup v1 hierarchies by writing "0" (this thread) to their "tasks" files.  Moving only
 * the calling thread needs no threadgroup lock, so unlike a cgroup.procs write by the parent it
 * does not wait for an RCU grace period (~10 ms); the process has a single thread here, so the
 * whole process moves.  Done before any namespace change, while the host's cgroupfs is visible
 * and we are still privileged there. */
static void join_cgroups(const struct eng_spawn_args *a)
{
    for (int i = 0; i < a->ncgroup_tasks; i++) {
        int fd = open(a->cgroup_tasks[i], O_WRONLY | O_CLOEXEC);
        if (fd < 0 || write(fd, "0", 1) != 1)
            DIE_ERRNO("join cgroup %s", a->cgroup_tasks[i]);
        close(fd);
    }
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
        join_cgroups(a); /* the caller never combines this with CLONE_NEWUSER at clone */
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
    join_cgroups(a); /* the init forked below inherits the cgroups */
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
