"""``engine-runtime``: a runc-compatible command line over the engine/runtime library.

Flags, output and exit codes follow runc 1.1 so that anything that drives runc (containerd's
runc shim, tests written for runc) can drive this: global ``--root --log --log-format
--debug``; errors as one logrus-style line on stderr (``time=".." level=error msg=".."``), or,
with ``--log``, a line in the log file (text or JSON) plus the bare message on stderr; exit 1
on error, the container's exit status from a foreground ``run``/``exec``.

The parser is hand-written on purpose: this module is on the timed path of every container
start, and argparse alone costs more than the rest of our imports.  It follows urfave/cli v1,
which runc uses: flags come before positional arguments (``--`` ends them), ``--flag value``,
``--flag=value``, ``-f`` short aliases and Go's single-dash long form are all accepted.
"""

from __future__ import annotations

import os
import sys

from engine.errors import EngineError

PROG = "engine-runtime"

GLOBAL_FLAGS = {
    "root": True,
    "log": True,
    "log-format": True,
    "debug": False,
    "systemd-cgroup": False,
    "rootless": True,
    "criu": True,
    "help": False,
    "h": False,
    "version": False,
    "v": False,
}

# command -> {flag: takes_value}, aliases, (min args, max args or -1)
_COMMON_CREATE = {
    "bundle": True,
    "console-socket": True,
    "pid-file": True,
    "no-pivot": False,
    "no-new-keyring": False,
    "preserve-fds": True,
}
COMMANDS: dict[str, tuple[dict[str, bool], dict[str, str], tuple[int, int]]] = {
    "create": (_COMMON_CREATE, {"b": "bundle"}, (1, 1)),
    "run": ({**_COMMON_CREATE, "detach": False, "keep": False}, {"b": "bundle", "d": "detach"}, (1, 1)),
    "start": ({}, {}, (1, 1)),
    "state": ({}, {}, (1, 1)),
    "kill": ({"all": False}, {"a": "all"}, (1, 2)),
    "delete": ({"force": False}, {"f": "force"}, (1, 1)),
    "list": ({"format": True, "quiet": False}, {"f": "format", "q": "quiet"}, (0, 0)),
    "ps": ({"format": True}, {"f": "format"}, (1, -1)),
    "pause": ({}, {}, (1, 1)),
    "resume": ({}, {}, (1, 1)),
    "exec": (
        {
            "console-socket": True,
            "cwd": True,
            "env": True,
            "tty": False,
            "user": True,
            "additional-gids": True,
            "process": True,
            "detach": False,
            "pid-file": True,
            "process-label": True,
            "apparmor": True,
            "no-new-privs": False,
            "cap": True,
            "preserve-fds": True,
            "cgroup": True,
            "ignore-paused": False,
        },
        {
            "e": "env",
            "t": "tty",
            "u": "user",
            "g": "additional-gids",
            "p": "process",
            "d": "detach",
            "c": "cap",
        },
        (1, -1),
    ),
    "update": (
        {
            "resources": True,
            "blkio-weight": True,
            "cpu-period": True,
            "cpu-quota": True,
            "cpu-rt-period": True,
            "cpu-rt-runtime": True,
            "cpu-share": True,
            "cpuset-cpus": True,
            "cpuset-mems": True,
            "kernel-memory": True,
            "kernel-memory-tcp": True,
            "memory": True,
            "memory-reservation": True,
            "memory-swap": True,
            "pids-limit": True,
            "l3-cache-schema": True,
            "mem-bw-schema": True,
        },
        {"r": "resources"},
        (1, 1),
    ),
    "spec": ({"bundle": True, "rootless": False}, {"b": "bundle"}, (0, 0)),
    "features": ({}, {}, (0, 0)),
    "events": ({"stats": False, "interval": True}, {}, (1, 1)),
}
_MULTI = {"env", "additional-gids", "cap"}


class Usage(Exception):
    pass


def parse_flags(
    argv: list[str], spec: dict[str, bool], aliases: dict[str, str], stop_at_positional: bool = True
) -> tuple[dict, list[str]]:
    opts: dict = {}
    rest: list[str] = []
    i = 0
    while i < len(argv):
        a = argv[i]
        if a == "--":
            rest.extend(argv[i + 1 :])
            break
        if a.startswith("-") and len(a) > 1:
            name = a.lstrip("-")
            value = None
            if "=" in name:
                name, value = name.split("=", 1)
            name = aliases.get(name, name)
            if name not in spec:
                raise Usage(f"flag provided but not defined: -{name}")
            if spec[name]:
                if value is None:
                    i += 1
                    if i >= len(argv):
                        raise Usage(f"flag needs an argument: -{name}")
                    value = argv[i]
                if name in _MULTI:
                    opts.setdefault(name, []).append(value)
                else:
                    opts[name] = value
            else:
                opts[name] = value is None or value.lower() in ("1", "true", "t")
            i += 1
            continue
        if stop_at_positional:
            rest.extend(argv[i:])
            break
        rest.append(a)
        i += 1
    return opts, rest


class Logger:
    """runc's logging: logrus text/JSON to --log (else stderr), bare message to stderr."""

    def __init__(self, path: str | None, fmt: str, debug: bool) -> None:
        self.path = path
        self.fmt = fmt or "text"
        self.debug_on = debug

    def _line(self, level: str, msg: str) -> str:
        import time

        t = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        if self.fmt == "json":
            import json

            return json.dumps({"level": level, "msg": msg, "time": t}) + "\n"
        q = msg.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
        return f'time="{t}" level={level} msg="{q}"\n'

    def write(self, level: str, msg: str) -> None:
        line = self._line(level, msg)
        if self.path:
            try:
                fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o644)
                try:
                    os.write(fd, line.encode())
                finally:
                    os.close(fd)
            except OSError:
                sys.stderr.write(line)
        else:
            sys.stderr.write(line)

    def error(self, msg: str) -> None:
        self.write("error", msg)
        if self.path:
            sys.stderr.write(msg + "\n")

    def warn(self, msg: str) -> None:
        self.write("warning", msg)

    def debug(self, msg: str) -> None:
        if self.debug_on:
            self.write("debug", msg)


def main(argv: list[str] | None = None) -> int:
    """Run one command; as the console script (``argv`` None) exit without interpreter teardown."""
    code = _main(argv)
    if argv is None:
        # Tearing the interpreter down costs ~3 ms of every container start and there is nothing
        # to tear down (no threads left, no atexit work): flush and leave.
        try:
            sys.stdout.flush()
            sys.stderr.flush()
        finally:
            os._exit(code)
    return code


def _main(argv: list[str] | None) -> int:
    args = sys.argv[1:] if argv is None else argv
    log = Logger(None, "text", False)
    rest: list[str] = []
    try:
        gopts, rest = parse_flags(args, GLOBAL_FLAGS, {})
        log = Logger(gopts.get("log"), gopts.get("log-format", "text"), bool(gopts.get("debug")))
        if gopts.get("version") or gopts.get("v"):
            from engine.runtime.features import version_text

            sys.stdout.write(version_text())
            return 0
        if not rest or gopts.get("help") or gopts.get("h"):
            sys.stdout.write(_usage())
            return 0
        cmd, cargs = rest[0], rest[1:]
        if cmd not in COMMANDS:
            raise Usage(f"No help topic for '{cmd}'")
        fspec, aliases, (lo, hi) = COMMANDS[cmd]
        opts, pos = parse_flags(cargs, fspec, aliases)
        if len(pos) < lo or (hi >= 0 and len(pos) > hi):
            if lo == hi:
                raise Usage(f'{PROG}: "{cmd}" requires exactly {lo} argument(s)')
            if len(pos) < lo:
                raise Usage(f'{PROG}: "{cmd}" requires a minimum of {lo} argument(s)')
            raise Usage(f'{PROG}: "{cmd}" requires a maximum of {hi} argument(s)')
        root = gopts.get("root") or "/run/engine-runtime"
        if log.debug_on:
            from engine.runtime import process

            process.debug = log.debug
        from engine.runtime import commands

        out = getattr(commands, "cmd_" + cmd.replace("-", "_"))(root, opts, pos, log)
        sys.stdout.flush()
        return out or 0
    except Usage as e:
        log.error(str(e))
        return 1
    except EngineError as e:
        msg = str(e)
        if rest and rest[0] in ("create", "run"):
            msg = f"{PROG} {rest[0]} failed: {msg}"
        log.error(msg)
        return 1
    except OSError as e:
        log.error(f"{(e.strerror or str(e)).lower()}{': ' + str(e.filename) if e.filename else ''}")
        return 1
    except KeyboardInterrupt:
        return 130
    except Exception as e:  # a malformed config can still reach code that expects a shape
        if log.debug_on:
            import traceback

            log.debug(traceback.format_exc())
        msg = f"internal error: {type(e).__name__}: {e}"
        if rest and rest[0] in ("create", "run"):
            msg = f"{PROG} {rest[0]} failed: {msg}"
        log.error(msg.replace("\n", " "))
        return 1


def _usage() -> str:
    return (
        f"NAME:\n   {PROG} - a runc-compatible OCI runtime (engine)\n\nUSAGE:\n   {PROG} [global options] "
        "command [command options] [arguments...]\n\nCOMMANDS:\n   " + "\n   ".join(sorted(COMMANDS)) + "\n"
    )


if __name__ == "__main__":
    sys.exit(main())
