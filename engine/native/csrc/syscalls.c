/*
 * syscalls.c: thin wrappers for syscalls and ioctls Python 3.11 lacks; errors as -errno.
 */
#include "internal.h"

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


/* A detached copy of the tree at src, idmapped through userns_fd (MOUNT_ATTR_IDMAP) with the
 * MOUNT_ATTR_* bits in attrs; returns its fd, to be attached later with move_mount(2). */
int eng_idmapped_tree(const char *src, int userns_fd, int recursive, unsigned long long attrs)
{
    struct {
        uint64_t attr_set, attr_clr, propagation, userns_fd;
    } attr;
    unsigned rec = recursive ? 0x8000 /* AT_RECURSIVE */ : 0;
    int tree = (int)syscall(SYS_open_tree, AT_FDCWD, src, 1 /* OPEN_TREE_CLONE */ | O_CLOEXEC | rec);
    if (tree < 0)
        return -errno;
    memset(&attr, 0, sizeof(attr));
    attr.attr_set = 0x00100000 /* MOUNT_ATTR_IDMAP */ | attrs;
    attr.userns_fd = (uint64_t)userns_fd;
    if (syscall(SYS_mount_setattr, tree, "", AT_EMPTY_PATH | rec, &attr, sizeof(attr)) < 0) {
        int err = errno;
        close(tree);
        return -err;
    }
    return tree;
}
