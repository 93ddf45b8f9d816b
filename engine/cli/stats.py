"""`engine stats`: docker's stats formatter over ``/containers/{id}/stats`` answers (CPU % from the two
samples the daemon took, memory without the page cache's inactive files, network and block I/O summed,
binary sizes for memory and decimal ones for I/O).

Samples are one-shot requests (``stream=0``: the daemon measures over ~1 s), made for all containers at
once in threads. ``--no-stream`` prints one table; otherwise the table is redrawn after each round (the
screen cleared first on a terminal, as docker does) until Ctrl-C. Without names, running containers (or
all with -a) are listed again each round, so new ones appear."""

from __future__ import annotations

import os
import sys
import time
from typing import Any

from engine.cli.common import ClientError, die

STATS_HEADERS = {"ID": "CONTAINER ID", "Container": "CONTAINER", "Name": "NAME", "CPUPerc": "CPU %",
                 "MemUsage": "MEM USAGE / LIMIT", "MemPerc": "MEM %", "NetIO": "NET I/O", "BlockIO": "BLOCK I/O",
                 "PIDs": "PIDS"}


class StatsRow:
    FIELDS = ("BlockIO", "CPUPerc", "Container", "ID", "MemPerc", "MemUsage", "Name", "NetIO", "PIDs")

    def __init__(self, s: dict[str, Any], given: str, trunc: bool = True) -> None:
        self.s = s
        self.given = given
        self.trunc = trunc

    @property
    def Container(self) -> str:  # noqa: N802
        return self.given

    @property
    def ID(self) -> str:  # noqa: N802
        sid = str(self.s.get("id") or "")
        return sid[:12] if self.trunc else sid

    @property
    def Name(self) -> str:  # noqa: N802
        return str(self.s.get("name") or "").lstrip("/") or "--"

    def _cpu(self) -> float:
        cpu, pre = self.s.get("cpu_stats") or {}, self.s.get("precpu_stats") or {}
        total = (cpu.get("cpu_usage") or {}).get("total_usage") or 0
        pre_total = (pre.get("cpu_usage") or {}).get("total_usage") or 0
        delta = total - pre_total
        sys_delta = (cpu.get("system_cpu_usage") or 0) - (pre.get("system_cpu_usage") or 0)
        online = cpu.get("online_cpus") or len((cpu.get("cpu_usage") or {}).get("percpu_usage") or []) or 1
        return delta / sys_delta * online * 100.0 if sys_delta > 0 and delta > 0 else 0.0

    def _mem(self) -> tuple[float, float]:
        m = self.s.get("memory_stats") or {}
        usage = m.get("usage") or 0
        st = m.get("stats") or {}
        for key in ("total_inactive_file", "inactive_file"):
            if key in st and st[key] < usage:
                usage -= st[key]
                break
        return float(usage), float(m.get("limit") or 0)

    @property
    def CPUPerc(self) -> str:  # noqa: N802
        return f"{self._cpu():.2f}%"

    @property
    def MemUsage(self) -> str:  # noqa: N802
        from engine.cli.format import bytes_size

        usage, limit = self._mem()
        return f"{bytes_size(usage)} / {bytes_size(limit)}"

    @property
    def MemPerc(self) -> str:  # noqa: N802
        usage, limit = self._mem()
        return f"{usage / limit * 100:.2f}%" if limit else "0.00%"

    @property
    def NetIO(self) -> str:  # noqa: N802
        from engine.cli.format import human_size

        nets = (self.s.get("networks") or {}).values()
        rx = sum(n.get("rx_bytes", 0) for n in nets)
        tx = sum(n.get("tx_bytes", 0) for n in nets)
        return f"{human_size(rx, 3)} / {human_size(tx, 3)}"

    @property
    def BlockIO(self) -> str:  # noqa: N802
        from engine.cli.format import human_size

        entries = (self.s.get("blkio_stats") or {}).get("io_service_bytes_recursive") or []
        r = sum(e.get("value", 0) for e in entries if str(e.get("op", "")).lower() == "read")
        w = sum(e.get("value", 0) for e in entries if str(e.get("op", "")).lower() == "write")
        return f"{human_size(r, 3)} / {human_size(w, 3)}"

    @property
    def PIDs(self) -> str:  # noqa: N802
        return str((self.s.get("pids_stats") or {}).get("current") or 0)

    def to_dict(self) -> dict[str, str]:
        return {f: getattr(self, f) for f in self.FIELDS}


DEFAULT_FORMAT = ("table {{.ID}}\t{{.Name}}\t{{.CPUPerc}}\t{{.MemUsage}}\t{{.MemPerc}}\t{{.NetIO}}\t{{.BlockIO}}"
                  "\t{{.PIDs}}")


def _sample(c: Any, names: list[str], trunc: bool) -> list[StatsRow]:
    from concurrent.futures import ThreadPoolExecutor

    from engine.cli.client import q

    def one(ctr: str) -> StatsRow:
        return StatsRow(c.json("GET", f"/containers/{q(ctr)}/stats", {"stream": 0}), ctr, trunc)

    if not names:
        return []
    with ThreadPoolExecutor(max_workers=min(len(names), 16)) as pool:
        return list(pool.map(one, names))


def stats_command(c: Any, containers: list[str], *, all_: bool, no_stream: bool, no_trunc: bool,
                  fmt: str | None) -> None:
    from engine.cli.format import render_rows

    terminal = os.isatty(sys.stdout.fileno())
    try:
        while True:
            started = time.monotonic()
            names = containers or [x["Id"] for x in c.json("GET", "/containers/json", {"all": 1 if all_ else None})]
            out = render_rows(_sample(c, names, not no_trunc), fmt, DEFAULT_FORMAT, STATS_HEADERS)
            if not no_stream and terminal:
                out = "\x1b[2J\x1b[H" + out
            sys.stdout.write(out)
            sys.stdout.flush()
            if no_stream:
                return
            time.sleep(max(0.0, 1.0 - (time.monotonic() - started)))  # at most one round a second
    except ClientError as err:
        die(err)
    except KeyboardInterrupt:
        return
