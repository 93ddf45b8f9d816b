/*
 * process.c: the container process's own setup: hooks run in its namespaces, the terminal
 * (a pty made inside the container, master sent over the console socket), capabilities,
 * and finding the executable with the container's PATH.
 */
#include "internal.h"

/* ---- hooks run by the container process (createContainer, startContainer) ---- */

void run_hook(struct rec *r)
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
    /* Feed the state without blocking, while watching the hook and its timeout: a hook need not
     * read its stdin (if it exits first the write fails with EPIPE, not a SIGPIPE for us), and
     * one that neither reads nor exits must still time out. */
    void (*old)(int) = signal(SIGPIPE, SIG_IGN);
    fcntl(pfd[1], F_SETFL, O_NONBLOCK);
    size_t sent = 0;
    int wfd = pfd[1];
    struct timespec start, now;
    clock_gettime(CLOCK_MONOTONIC, &start);
    int status;
    for (;;) {
        while (wfd >= 0 && sent < g_state_len) {
            ssize_t n = write(wfd, g_state + sent, g_state_len - sent);
            if (n > 0) {
                sent += (size_t)n;
                continue;
            }
            if (n < 0 && (errno == EAGAIN || errno == EINTR))
                break;
            sent = g_state_len; /* EPIPE: the hook does not want it */
        }
        if (wfd >= 0 && sent >= g_state_len) {
            close(wfd);
            wfd = -1;
        }
        pid_t w = waitpid(pid, &status, WNOHANG);
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
        struct timespec ts = {0, 1000000};
        nanosleep(&ts, NULL);
    }
    if (wfd >= 0)
        close(wfd);
    signal(SIGPIPE, old);
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
        errno = 0;
        if (WIFEXITED(status))
            die("error running hook %s: exit status %d", path, WEXITSTATUS(status));
        die("error running hook %s: signal %d", path, WTERMSIG(status));
    }
}

/* ---- the terminal: a pty made inside the container, master sent over the console socket ---- */

void setup_console(int sock, int rows, int cols)
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

void set_caps(uint64_t eff, uint64_t perm, uint64_t inh, uint64_t amb, int last_cap)
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

int is_exec(const char *p)
{
    struct stat st;
    return stat(p, &st) == 0 && S_ISREG(st.st_mode) && access(p, X_OK) == 0;
}

void lookup(const char *name, const char *pathenv)
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
