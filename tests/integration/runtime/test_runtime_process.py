"""The container process: capabilities, ids, environment, limits, names, as seen from inside."""

from __future__ import annotations

import pytest

from tests.support.spec import DEFAULT_CAPS

# capability numbers from <linux/capability.h>
CAP_NUMBERS = {
    "CAP_CHOWN": 0,
    "CAP_DAC_OVERRIDE": 1,
    "CAP_FOWNER": 3,
    "CAP_KILL": 5,
    "CAP_SETGID": 6,
    "CAP_SETUID": 7,
    "CAP_NET_BIND_SERVICE": 10,
    "CAP_NET_RAW": 13,
    "CAP_SYS_CHROOT": 18,
    "CAP_SYS_ADMIN": 21,
    "CAP_MKNOD": 27,
    "CAP_AUDIT_WRITE": 29,
}


def mask(names: list[str]) -> int:
    return sum(1 << CAP_NUMBERS[n] for n in names)


def status_fields(text: str) -> dict[str, str]:
    fields = {}
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        if sep:
            fields[key.strip()] = value.strip()
    return fields


def caps_of(stdout: str) -> dict[str, int]:
    f = status_fields(stdout)
    return {k: int(f[k], 16) for k in ("CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb")}


def test_default_capabilities_for_root(rt):
    b = rt.bundle(["cat", "/proc/self/status"])
    r = b.run()
    assert r.returncode == 0, r.stderr
    caps = caps_of(r.stdout)
    # root without file capabilities: after execve permitted = effective = bounding
    assert caps == {
        "CapInh": 0,
        "CapPrm": mask(DEFAULT_CAPS),
        "CapEff": mask(DEFAULT_CAPS),
        "CapBnd": mask(DEFAULT_CAPS),
        "CapAmb": 0,
    }
    assert status_fields(r.stdout)["NoNewPrivs"] == "1"


def test_ambient_capabilities_for_a_non_root_user(rt):
    b = rt.bundle(["cat", "/proc/self/status"])
    b.process["user"] = {"uid": 1000, "gid": 1000}
    b.process["capabilities"] = {
        "bounding": ["CAP_CHOWN", "CAP_KILL", "CAP_NET_RAW"],
        "effective": ["CAP_NET_RAW"],
        "permitted": ["CAP_NET_RAW", "CAP_KILL"],
        "inheritable": ["CAP_NET_RAW"],
        "ambient": ["CAP_NET_RAW"],
    }
    r = b.run()
    assert r.returncode == 0, r.stderr
    # a non-root execve keeps only the ambient set in permitted and effective
    assert caps_of(r.stdout) == {
        "CapInh": mask(["CAP_NET_RAW"]),
        "CapPrm": mask(["CAP_NET_RAW"]),
        "CapEff": mask(["CAP_NET_RAW"]),
        "CapBnd": mask(["CAP_CHOWN", "CAP_KILL", "CAP_NET_RAW"]),
        "CapAmb": mask(["CAP_NET_RAW"]),
    }


def test_dropped_capability_is_enforced(rt):
    # the default set has no CAP_CHOWN: chown of a file to another user fails
    b = rt.bundle(["sh", "-c", "touch /dev/shm/f && chown 1000 /dev/shm/f; echo rc=$?"])
    r = b.run()
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip().endswith("rc=1")
    assert "Operation not permitted" in r.stderr


@pytest.mark.parametrize("nnp", [True, False])
def test_no_new_privileges(rt, nnp):
    b = rt.bundle(["grep", "NoNewPrivs", "/proc/self/status"])
    b.process["noNewPrivileges"] = nnp
    r = b.run()
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["NoNewPrivs:", "1" if nnp else "0"]


def test_user_group_and_additional_gids(rt):
    b = rt.bundle(["sh", "-c", "grep -E '^(Uid|Gid|Groups):' /proc/self/status; id -un; id -gn"])
    b.process["user"] = {"uid": 1000, "gid": 1000, "additionalGids": [5, 65534]}
    r = b.run()
    assert r.returncode == 0, r.stderr
    f = status_fields(r.stdout)
    assert f["Uid"].split() == ["1000"] * 4
    assert f["Gid"].split() == ["1000"] * 4
    assert sorted(f["Groups"].split()) == ["5", "65534"]
    assert r.stdout.splitlines()[-2:] == ["tester", "tester"]


def test_env_and_cwd(rt):
    b = rt.bundle(["sh", "-c", 'pwd; echo "$FOO|$EMPTY|$WITH_EQ"'])
    b.process["env"] += ["FOO=bar baz", "EMPTY=", "WITH_EQ=a=b"]
    b.process["cwd"] = "/home/tester"
    r = b.run()
    assert r.returncode == 0, r.stderr
    assert r.stdout == "/home/tester\nbar baz||a=b\n"


def test_args_are_resolved_through_path(rt):
    b = rt.bundle(["echo", "one", "two words"])
    r = b.run()
    assert r.returncode == 0, r.stderr
    assert r.stdout == "one two words\n"


def test_umask(rt):
    b = rt.bundle(["sh", "-c", "umask; touch /dev/shm/f; stat -c %a /dev/shm/f"])
    b.process["user"]["umask"] = 0o027
    r = b.run()
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["0027", "640"]


def test_rlimits(rt):
    script = "grep -E 'Max (open files|processes|core file size)' /proc/self/limits; ulimit -n; ulimit -Hn"
    b = rt.bundle(["sh", "-c", script])
    b.process["rlimits"] = [
        {"type": "RLIMIT_NOFILE", "soft": 123, "hard": 456},
        {"type": "RLIMIT_NPROC", "soft": 1000, "hard": 2000},
        {"type": "RLIMIT_CORE", "soft": 0, "hard": 0},
    ]
    r = b.run()
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[-2:] == ["123", "456"]  # what `ulimit` reports inside
    rows = {" ".join(line.split()[:-3]): line.split()[-3:-1] for line in lines[:-2]}
    assert rows == {
        "Max core file size": ["0", "0"],
        "Max processes": ["1000", "2000"],
        "Max open files": ["123", "456"],
    }


def test_oom_score_adj(rt):
    b = rt.bundle(["cat", "/proc/self/oom_score_adj"])
    b.process["oomScoreAdj"] = 123
    r = b.run()
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "123"


def test_hostname(rt):
    b = rt.bundle(["sh", "-c", "hostname; cat /proc/sys/kernel/hostname"])
    b.spec["hostname"] = "box-1.example"
    r = b.run()
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["box-1.example", "box-1.example"]


def test_domainname(rt):
    b = rt.bundle(["cat", "/proc/sys/kernel/domainname"])
    b.spec["domainname"] = "example.test"
    r = b.run()
    assert r.returncode == 0, r.stderr
    if rt.name == "runc" and r.stdout.strip() == "(none)":
        pytest.skip("runc 1.1.5 ignores domainname (runtime-spec 1.1 field)")
    assert r.stdout.strip() == "example.test"


def test_exit_code_and_stderr(rt):
    b = rt.bundle(["sh", "-c", "echo oops >&2; exit 42"])
    r = b.run()
    assert r.returncode == 42
    assert r.stderr.endswith("oops\n")


def test_missing_executable_fails(rt):
    b = rt.bundle(["/bin/does-not-exist"])
    r = b.run()
    assert r.returncode != 0
    assert "does-not-exist" in r.stderr
    assert rt.leftovers(b.id, b) == []
