"""Stats JSON in runc's `events --stats` shape, and the stat-file parsers."""

import json

from engine.runtime.cgroups import stats as st


def test_empty_stats_shape():
    out = st.to_runc_json(st.Stats())
    assert out == {
        "cpu": {},
        "cpuset": {
            "cpu_exclusive": 0,
            "mem_hardwall": 0,
            "mem_exclusive": 0,
            "memory_migrate": 0,
            "memory_spread_page": 0,
            "memory_spread_slab": 0,
            "memory_pressure": 0,
            "sched_load_balance": 0,
            "sched_relax_domain_level": 0,
        },
        "memory": {},
        "pids": {},
        "blkio": {},
        "hugetlb": {},
        "intel_rdt": {},
        "network_interfaces": None,
    }
    json.dumps(out)


def test_omit_rules_follow_runc_tags():
    s = st.Stats(
        cpu_total=10,
        cpu_percpu=[10, 0],
        cpu_kernel=0,
        cpu_user=5,
        throttle_periods=3,
        memory_usage=st.MemoryData(usage=0, max_usage=7, failcnt=0, limit=100),
        pids_current=2,
        pids_limit=0,
    )
    s.blkio["ioServicedRecursive"] = [st.BlkioEntry(8, 0, "Read", 0)]
    s.hugetlb["2MB"] = {"usage": 0, "max": 0, "failcnt": 0}
    out = st.to_runc_json(s)
    assert out["cpu"] == {
        "usage": {"total": 10, "percpu": [10, 0], "kernel": 0, "user": 5},
        "throttling": {"periods": 3},
    }
    # limit and failcnt are always present in a memory entry; usage/max are omitempty
    assert out["memory"] == {"usage": {"limit": 100, "max": 7, "failcnt": 0}}
    assert out["pids"] == {"current": 2}
    assert out["blkio"] == {"ioServicedRecursive": [{"major": 8, "op": "Read"}]}
    assert out["hugetlb"] == {"2MB": {"failcnt": 0}}


def test_parse_blkio_lines():
    text = "8:0 Read 1282048\n8:0 Write 2195456\n8:16 Total 3\nTotal 3477504\n"
    got = st.parse_blkio_lines(text)
    assert [(e.major, e.minor, e.op, e.value) for e in got] == [
        (8, 0, "Read", 1282048),
        (8, 0, "Write", 2195456),
        (8, 16, "Total", 3),
    ]
    assert [(e.op, e.value) for e in st.parse_blkio_lines("8:0 6792\n")] == [("", 6792)]


def test_parse_io_stat():
    text = "254:0 rbytes=4096 wbytes=8192 rios=1 wios=2 dbytes=0 dios=0\n7:0 rbytes=1\n"
    got = st.parse_io_stat(text)
    assert [(e.major, e.minor, e.op, e.value) for e in got["ioServiceBytesRecursive"]] == [
        (254, 0, "Read", 4096),
        (254, 0, "Write", 8192),
        (7, 0, "Read", 1),
    ]
    assert [(e.op, e.value) for e in got["ioServicedRecursive"]] == [("Read", 1), ("Write", 2)]


def test_parse_usage_all():
    kernel, user = st.parse_cpuacct_usage_all("cpu user system\n0 100 50\n1 7 3\n")
    assert kernel == [50, 3] and user == [100, 7]
    assert st.parse_cpuacct_usage_all("garbage\n") == ([], [])
