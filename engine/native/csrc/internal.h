/* internal.h: what the C files of engine/native share (never seen by cffi or Python).
 * Everything here is hidden from the shared object's symbol table. */
#ifndef ENG_INTERNAL_H
#define ENG_INTERNAL_H
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
#include <dirent.h>

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


#ifndef CLONE_INTO_CGROUP
#define CLONE_INTO_CGROUP 0x200000000ULL
#endif

#pragma GCC visibility push(hidden)

/* child-side globals (each process has its own copy after clone); defined in spawn.c */
extern int g_sync;          /* the child's end of the parent<->child socket */
extern int g_rootfd;        /* rootfs, opened before pivot_root */
extern const char *g_state; /* state JSON for hooks, inside the GO message */
extern size_t g_state_len;
extern char g_exe[4096];    /* the resolved executable (OP_LOOKUP) */
extern int g_cwd_ok;        /* OP_CHDIR succeeded */

struct rec {
    uint32_t op, nint, nstr;
    int64_t ints[ENG_MAX_INTS];
    const char *strs[ENG_MAX_STRS];
    uint32_t lens[ENG_MAX_STRS];
};


/* spawn.c: messages, errors, clone */
int send_msg(int fd, uint32_t type, int32_t value, const void *data, size_t len);
int send_msg_fd(int sock, uint32_t type, int fd);
ssize_t recv_msg(int fd, uint32_t *type, int32_t *value, char *buf, size_t cap);
void __attribute__((noreturn, format(printf, 1, 2))) die(const char *fmt, ...);
#define DIE_ERRNO(fmt, ...) die(fmt ": %s", __VA_ARGS__, strerror(errno))
long raw_clone3_cg(unsigned long flags, int cgroup_fd);
long raw_clone3(unsigned long flags);
const char *decode(const char *p, const char *end, struct rec *r);

/* rootfs.c: paths inside the rootfs, mounts, pivot_root, devices, masked/read-only paths */
int open_in_root(const char *path, int flags);
int ensure_in_root(const char *path, int as_file, mode_t mode);
void fdpath(char *out, size_t cap, int fd);
unsigned long locked_flags(const char *path);
void do_mount(struct rec *r);
void do_idmap_mount(struct rec *r);
void do_pivot(const char *rootfs);
void do_chroot(const char *rootfs);
void write_file(const char *path, const char *val, size_t len);
void mask_path(const char *p);
void readonly_path(const char *p);
void make_dev(struct rec *r);
void make_symlink(const char *target, const char *link);

/* process.c: hooks, the console, capabilities, executable lookup */
void run_hook(struct rec *r);
void setup_console(int sock, int rows, int cols);
void set_caps(uint64_t eff, uint64_t perm, uint64_t inh, uint64_t amb, int last_cap);
int is_exec(const char *p);
void lookup(const char *name, const char *pathenv);

#pragma GCC visibility pop
#endif
