/*
 * rootfs.c: the container's filesystem, done by the child before it execs: paths resolved
 * inside the rootfs (openat2 RESOLVE_IN_ROOT, so a symlink in the image cannot point a mount
 * at the host), mounts by /proc/self/fd/N, pivot_root (or MS_MOVE + chroot), device nodes,
 * /dev symlinks, masked and read-only paths.
 */
#include "internal.h"

/* ---- path helpers: resolve inside the rootfs, creating what is missing ---- */

int open_in_root(const char *path, int flags)
{
    struct eng_open_how how = {.flags = (uint64_t)(flags | O_CLOEXEC), .mode = 0, .resolve = RESOLVE_IN_ROOT};
    return (int)syscall(SYS_openat2, g_rootfd, path, &how, sizeof(how));
}

/* Make every component of path (relative to the rootfs; absolute is fine) exist.  The last one is
 * a directory, or an empty file when as_file.  Returns an O_PATH fd on the result. */
int ensure_in_root(const char *path, int as_file, mode_t mode)
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

void fdpath(char *out, size_t cap, int fd)
{
    snprintf(out, cap, "/proc/self/fd/%d", fd);
}

/* Flags that a bind remount must keep (the kernel refuses to clear locked ones). */
unsigned long locked_flags(const char *path)
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


/* Copy the tree under srcdir into dstdir, keeping modes, owners and times (tmpcopyup). */
static void copy_tree(int srcdir, int dstdir, const char *where)
{
    int dfd = dup(srcdir);
    DIR *d = dfd >= 0 ? fdopendir(dfd) : NULL;
    if (!d)
        DIE_ERRNO("tmpcopyup: read %s", where);
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        const char *n = e->d_name;
        if (!strcmp(n, ".") || !strcmp(n, ".."))
            continue;
        struct stat st;
        if (fstatat(srcdir, n, &st, AT_SYMLINK_NOFOLLOW) < 0)
            DIE_ERRNO("tmpcopyup: stat %s/%s", where, n);
        if (S_ISDIR(st.st_mode)) {
            if (mkdirat(dstdir, n, st.st_mode & 07777) < 0)
                DIE_ERRNO("tmpcopyup: mkdir %s/%s", where, n);
            int s2 = openat(srcdir, n, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
            int d2 = openat(dstdir, n, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
            if (s2 < 0 || d2 < 0)
                DIE_ERRNO("tmpcopyup: open %s/%s", where, n);
            copy_tree(s2, d2, where);
            close(s2);
            close(d2);
        } else if (S_ISREG(st.st_mode)) {
            int in = openat(srcdir, n, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
            int out = openat(dstdir, n, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, st.st_mode & 07777);
            if (in < 0 || out < 0)
                DIE_ERRNO("tmpcopyup: open %s/%s", where, n);
            char buf[65536];
            ssize_t k;
            while ((k = read(in, buf, sizeof(buf))) > 0)
                if (write(out, buf, (size_t)k) != k)
                    DIE_ERRNO("tmpcopyup: write %s/%s", where, n);
            if (k < 0)
                DIE_ERRNO("tmpcopyup: read %s/%s", where, n);
            close(in);
            close(out);
        } else if (S_ISLNK(st.st_mode)) {
            char target[4096];
            ssize_t k = readlinkat(srcdir, n, target, sizeof(target) - 1);
            if (k < 0)
                DIE_ERRNO("tmpcopyup: readlink %s/%s", where, n);
            target[k] = 0;
            if (symlinkat(target, dstdir, n) < 0)
                DIE_ERRNO("tmpcopyup: symlink %s/%s", where, n);
        } else if (mknodat(dstdir, n, st.st_mode, st.st_rdev) < 0) {
            DIE_ERRNO("tmpcopyup: mknod %s/%s", where, n);
        }
        if (fchownat(dstdir, n, st.st_uid, st.st_gid, AT_SYMLINK_NOFOLLOW) < 0)
            DIE_ERRNO("tmpcopyup: chown %s/%s", where, n);
        if (!S_ISLNK(st.st_mode) && fchmodat(dstdir, n, st.st_mode & 07777, 0) < 0)
            DIE_ERRNO("tmpcopyup: chmod %s/%s", where, n);
        struct timespec ts[2] = {st.st_atim, st.st_mtim};
        utimensat(dstdir, n, ts, AT_SYMLINK_NOFOLLOW);
    }
    closedir(d);
}

void do_mount(struct rec *r)
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
    int below = -1; /* tmpcopyup: the directory the new mount will cover, opened first */
    if ((kind & ENG_MNT_COPYUP) && fd >= 0) {
        below = open(target, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (below < 0)
            DIE_ERRNO("tmpcopyup: open %s", dst);
    }
    unsigned long first = below >= 0 ? flags & ~MS_RDONLY : flags; /* fill it before it is ro */
    if (mount(*src ? src : NULL, t, *fstype ? fstype : NULL, first, *data ? data : NULL) < 0) {
        /* sysfs cannot be mounted from a user namespace that does not own the network
         * namespace: bind the host's /sys instead, as runc does */
        if (errno != EPERM || strcmp(fstype, "sysfs") != 0 || mount("/sys", t, NULL, MS_BIND | MS_REC, NULL) < 0)
            DIE_ERRNO("mount %s to %s (type %s)", src, dst, fstype);
        remount |= flags & (MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC);
    }
    if (below >= 0) {
        int top = open_in_root(dst, O_RDONLY | O_DIRECTORY);
        if (top < 0)
            DIE_ERRNO("tmpcopyup: open %s", dst);
        copy_tree(below, top, dst);
        close(top);
        close(below);
        if (flags & MS_RDONLY) {
            close(fd);
            fd = open_in_root(dst, O_PATH);
            fdpath(target, sizeof(target), fd);
            if (fd < 0 || mount(NULL, t, NULL, MS_REMOUNT | flags, *data ? data : NULL) < 0)
                DIE_ERRNO("tmpcopyup: remount %s read-only", dst);
        }
    }
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

/* Attach a mount tree the parent prepared (an idmapped bind: open_tree + mount_setattr need
 * privilege over the source filesystem, which a container in a user namespace lacks). */
void do_idmap_mount(struct rec *r)
{
    int tree = (int)r->ints[0], kind = (int)r->ints[1];
    const char *dst = r->strs[0];
    int fd = ensure_in_root(dst, kind & ENG_MNT_FILE, 0755);
    /* the target by fd (MOVE_MOUNT_T_EMPTY_PATH): move_mount does not follow /proc/self/fd links */
    if (syscall(SYS_move_mount, tree, "", fd, "", 0x4 /* MOVE_MOUNT_F_EMPTY_PATH */ | 0x40 /* _T_ */) < 0)
        DIE_ERRNO("idmapped mount to %s: move_mount", dst);
    close(fd);
    close(tree);
}

void do_pivot(const char *rootfs)
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

void do_chroot(const char *rootfs)
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

void write_file(const char *path, const char *val, size_t len)
{
    int fd = open(path, O_WRONLY | O_CLOEXEC);
    if (fd < 0)
        DIE_ERRNO("open %s", path);
    if (write(fd, val, len) != (ssize_t)len)
        DIE_ERRNO("write %s", path);
    close(fd);
}

void mask_path(const char *p)
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

void readonly_path(const char *p)
{
    if (mount(p, p, NULL, MS_BIND | MS_REC, NULL) < 0) {
        if (errno == ENOENT)
            return;
        DIE_ERRNO("bind %s", p);
    }
    if (mount(NULL, p, NULL, MS_BIND | MS_REMOUNT | MS_RDONLY | MS_REC | locked_flags(p), NULL) < 0)
        DIE_ERRNO("remount %s read-only", p);
}

void make_dev(struct rec *r)
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

void make_symlink(const char *target, const char *link)
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
