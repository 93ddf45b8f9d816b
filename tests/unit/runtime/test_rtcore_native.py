"""engine.native wrappers: errors come back as OSError with errno, values as Python ints."""

from __future__ import annotations

import errno
import os

import pytest

from engine import native


def test_capget_of_self():
    eff, perm, inh = native.capget(0)
    assert eff & ~perm == 0  # effective is a subset of permitted
    assert isinstance(inh, int)


def test_prctl_no_new_privs_reads():
    assert native.prctl(native.PR_GET_NO_NEW_PRIVS) in (0, 1)


def test_mount_errors_carry_errno():
    with pytest.raises(OSError) as ei:
        native.mount("none", "/no/such/target/xyz", "tmpfs")
    assert ei.value.errno in (errno.ENOENT, errno.EPERM)
    with pytest.raises(OSError):
        native.umount2("/no/such/target/xyz")


def test_tty_ioctls():
    master, slave = os.openpty()
    try:
        native.set_winsize(master, 40, 120)
        assert native.get_winsize(slave) == (40, 120)
        peer = native.pty_peer(master)
        try:
            assert os.isatty(peer)
        finally:
            os.close(peer)
        with pytest.raises(OSError):
            native.get_winsize(os.open("/dev/null", os.O_RDONLY))
    finally:
        os.close(master)
        os.close(slave)


def _in_child(fn) -> int:
    pid = os.fork()
    if pid == 0:
        try:
            os._exit(fn() or 0)
        except BaseException:
            os._exit(99)
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status)


def test_seccomp_load_in_a_child():
    # a filter that allows everything but getppid (110 on x86_64), which gets EPERM
    import struct

    if os.uname().machine != "x86_64":
        pytest.skip("the hand-written filter is for x86_64")

    def ins(code, jt, jf, k):
        return struct.pack("<HBBI", code, jt, jf, k)

    prog = b"".join(
        [
            ins(0x20, 0, 0, 0),  # ld [nr]
            ins(0x15, 0, 1, 110),  # jeq #110 (getppid)
            ins(0x06, 0, 0, 0x00050000 | errno.EPERM),  # ret ERRNO(EPERM)
            ins(0x06, 0, 0, 0x7FFF0000),  # ret ALLOW
        ]
    )

    def child():
        native.prctl(native.PR_SET_NO_NEW_PRIVS, 1)
        native.seccomp_load(prog)
        # getppid cannot fail in libc's eyes: the filtered call comes back as -1
        return 3 if os.getppid() == -1 and native.prctl(native.PR_GET_NO_NEW_PRIVS) == 1 else 4

    assert os.getppid() > 0
    assert _in_child(child) == 3
    assert os.getppid() > 0  # only the child was filtered


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root: a new uts namespace")
def test_unshare_uts_in_a_child():
    host = os.uname().nodename

    def child():
        import socket

        native.unshare(native.CLONE_NEWUTS)
        socket.sethostname("native-test")
        return 0 if os.uname().nodename == "native-test" else 1

    assert _in_child(child) == 0
    assert os.uname().nodename == host
