"""cffi build script for engine/native, compiled at install time (setup.py ``cffi_modules``).

The module ``engine.native._native`` holds two kinds of things:

* thin wrappers for syscalls Python 3.11 lacks (unshare, setns, mount, umount2, pivot_root,
  capget/capset, prctl, seccomp, personality, tty ioctls), declared straight from libc;
* the C part of container setup: ``eng_spawn`` (csrc/spawn.c) clones the container process
  and, in the child, interprets the setup program that Python built (filesystem work in
  rootfs.c, process work in process.c), so no Python runs after fork (the role runc gives
  nsexec).  csrc/syscalls.c holds the thin wrappers.

The C sources sit next to this file; paths are resolved from it so the build works from any cwd.
"""

from __future__ import annotations

import os

from cffi import FFI

_HERE = os.path.dirname(os.path.abspath(__file__))
_CSRC = os.path.join(_HERE, "csrc")
_REL_CSRC = os.path.relpath(_CSRC)

ffibuilder = FFI()
ffibuilder.cdef(
    """
    int unshare(int flags);
    int setns(int fd, int nstype);
    int mount(const char *source, const char *target, const char *fstype,
              unsigned long flags, const void *data);
    int umount2(const char *target, int flags);
    int prctl(int option, unsigned long a2, unsigned long a3, unsigned long a4, unsigned long a5);
    int personality(unsigned long persona);
    int sethostname(const char *name, size_t len);
    int setdomainname(const char *name, size_t len);

    struct eng_spawn_args {
        unsigned long clone_flags;
        int stage1;
        int fork_init;
        int sync_fd;
        int parent_fd;
        int njoin;
        const int *join_fds;
        const int *join_types;
        const char *const *join_names;
        const char *timens_offsets;
        int cgroup_fd;
        int ncgroup_tasks;
        const char *const *cgroup_tasks;
    };
    int eng_spawn(const struct eng_spawn_args *a);
    int eng_pivot_root(const char *new_root, const char *put_old);
    int eng_capget(int pid, uint64_t out[3]);
    int eng_capset(uint64_t eff, uint64_t perm, uint64_t inh);
    int eng_seccomp_load(unsigned int flags, const void *filter, size_t len);
    int eng_set_winsize(int fd, unsigned short rows, unsigned short cols);
    int eng_get_winsize(int fd, unsigned short out[2]);
    int eng_set_ctty(int fd);
    int eng_pty_peer(int master, int flags);
    int eng_clone_fork(unsigned long flags);
    int eng_idmapped_tree(const char *src, int userns_fd, int recursive, unsigned long long attrs);
    """
)
ffibuilder.set_source(
    "engine.native._native",
    """
    #define _GNU_SOURCE
    #include <sched.h>
    #include <sys/mount.h>
    #include <sys/prctl.h>
    #include <sys/personality.h>
    #include <unistd.h>
    #include "spawn.h"
    """,
    sources=[os.path.join(_REL_CSRC, f) for f in ("spawn.c", "rootfs.c", "process.c", "syscalls.c")],
    include_dirs=[_REL_CSRC],
    extra_compile_args=["-O2", "-Wall", "-Wno-unused-parameter"],
    depends=[os.path.join(_REL_CSRC, f) for f in ("spawn.h", "internal.h")],
)

if __name__ == "__main__":
    ffibuilder.compile(verbose=True)
