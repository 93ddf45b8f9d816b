/* spawn.h: constants and the argument struct shared by spawn.c, build.py and the Python side
 * (engine/runtime/protocol.py repeats the numbers; a unit test checks they agree). */
#ifndef ENG_SPAWN_H
#define ENG_SPAWN_H
#include <stddef.h>
#include <stdint.h>

#define ENG_MAX_INTS 256
#define ENG_MAX_STRS 8192
#define ENG_MAX_PROGRAM (1 << 20)
#define ENG_CHILD_FAILED 121

/* messages on the parent<->child SOCK_SEQPACKET socket */
#define ENG_MSG_USERNS 1      /* child: map my uid/gid now (value = pid) */
#define ENG_MSG_USERNS_DONE 2 /* parent: maps written */
#define ENG_MSG_PID 3         /* stage 1: the init's pid (value) */
#define ENG_MSG_GO 4          /* parent: u32 state_len, state JSON, program */
#define ENG_MSG_HOOKS 5       /* child: run createRuntime/prestart hooks now */
#define ENG_MSG_HOOKS_DONE 6  /* parent: hooks ran */
#define ENG_MSG_READY 7       /* child: set up, waiting on the exec FIFO (value = pid) */
#define ENG_MSG_ERROR 8       /* child: value = errno, payload = message */
#define ENG_MSG_SECCOMP_FD 9  /* child: the seccomp notify listener fd, with SCM_RIGHTS */
#define ENG_MSG_SECCOMP_DONE 10 /* parent: the fd went to the listener */

/* program operations */
#define ENG_OP_SETNS 1
#define ENG_OP_UNSHARE 2
#define ENG_OP_SETHOSTNAME 3
#define ENG_OP_SETDOMAINNAME 4
#define ENG_OP_ROOT_PROPAGATION 5
#define ENG_OP_OPEN_ROOT 6
#define ENG_OP_MOUNT 7
#define ENG_OP_MKDEV 8
#define ENG_OP_SYMLINK 9
#define ENG_OP_UNLINK 10
#define ENG_OP_SYNC_HOOKS 11
#define ENG_OP_HOOK 12
#define ENG_OP_PIVOT 13
#define ENG_OP_CHROOT 14
#define ENG_OP_WRITE 15
#define ENG_OP_MASK 16
#define ENG_OP_READONLY 17
#define ENG_OP_REMOUNT_ROOT_RO 18
#define ENG_OP_RLIMIT 19
#define ENG_OP_PERSONALITY 20
#define ENG_OP_SETSID 21
#define ENG_OP_CONSOLE 22
#define ENG_OP_BOUNDING 23
#define ENG_OP_USER 24
#define ENG_OP_CAPS 25
#define ENG_OP_NNP 26
#define ENG_OP_SECCOMP 27
#define ENG_OP_UMASK 28
#define ENG_OP_CHDIR 29
#define ENG_OP_LOOKUP 30
#define ENG_OP_READY 31
#define ENG_OP_WAIT_FIFO 32
#define ENG_OP_CLOSE_FROM 33
#define ENG_OP_EXEC 34
#define ENG_OP_IOPRIO 35   /* ints: ioprio value */
#define ENG_OP_SCHED 36    /* ints: policy, nice, priority, flags, runtime, deadline, period */
#define ENG_OP_AFFINITY 37 /* strs: cpu_set_t bytes */
#define ENG_OP_DUP2 38     /* ints: from, to (the container's stdio, for a shim) */
#define ENG_OP_KEYRING 39  /* strs: name of a new session keyring to join */
#define ENG_OP_IDMAP_MOUNT 40 /* ints: tree fd (eng_idmapped_tree), kind; strs: dest */

/* ENG_OP_MOUNT kind bits */
#define ENG_MNT_IN_ROOT 1 /* dest is inside the rootfs: resolve (and create) it there */
#define ENG_MNT_FILE 2    /* create dest as an empty file, not a directory */
#define ENG_MNT_COPYUP 4  /* tmpcopyup: copy what the mount covers into the new tmpfs */

struct eng_spawn_args {
    unsigned long clone_flags; /* new namespaces (CLONE_NEW*), without CLONE_NEWCGROUP */
    int stage1;                /* 0: one clone3; 1: stage-1 child (setns, unshare, maybe fork) */
    int fork_init;             /* stage 1 forks the init (pid or time namespace changed) */
    int sync_fd;               /* child's end */
    int parent_fd;             /* parent's end, closed in the child */
    int njoin;
    const int *join_fds;
    const int *join_types;
    const char *const *join_names;
    const char *timens_offsets; /* written by stage 1 to /proc/self/timens_offsets */
    int cgroup_fd;              /* >= 0: clone3(CLONE_INTO_CGROUP) into this cgroup2 directory */
    int ncgroup_tasks;          /* cgroup v1 "tasks" files the child writes "0" to, first thing */
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
#endif
