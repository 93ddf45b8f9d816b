"""CLI command handlers: turn parsed flags into library calls and print runc's output shapes.

Each ``cmd_<name>(root, opts, args, log) -> exit code`` is thin on purpose; the work lives in
one library module per operation (create.py, start.py, kill.py, ...), which the shim calls
in-process without this layer.
"""

from __future__ import annotations

import sys

from engine.errors import InvalidArgument


def _int(opts: dict, name: str, default: int = 0) -> int:
    v = opts.get(name)
    if v is None:
        return default
    try:
        return int(v)
    except ValueError as e:
        raise InvalidArgument(f"invalid value {v!r} for flag --{name}") from e


def cmd_create(root, opts, args, log) -> int:
    from engine.runtime.create import create

    create(
        root,
        args[0],
        opts.get("bundle") or ".",
        pid_file=opts.get("pid-file"),
        console_socket=opts.get("console-socket"),
        no_pivot=bool(opts.get("no-pivot")),
        preserve_fds=_int(opts, "preserve-fds"),
        new_keyring=not opts.get("no-new-keyring"),
    )
    return 0


def cmd_run(root, opts, args, log) -> int:
    from engine.runtime.run import run

    return run(
        root,
        args[0],
        opts.get("bundle") or ".",
        detach=bool(opts.get("detach")),
        pid_file=opts.get("pid-file"),
        console_socket=opts.get("console-socket"),
        no_pivot=bool(opts.get("no-pivot")),
        preserve_fds=_int(opts, "preserve-fds"),
        keep=bool(opts.get("keep")),
        new_keyring=not opts.get("no-new-keyring"),
        log=log.warn,
    )


def cmd_start(root, opts, args, log) -> int:
    from engine.runtime.start import start

    start(root, args[0], log=log.warn)
    return 0


def cmd_state(root, opts, args, log) -> int:
    import json

    from engine.runtime.query import state

    sys.stdout.write(json.dumps(state(root, args[0]), indent=2))
    return 0


def cmd_kill(root, opts, args, log) -> int:
    from engine.runtime import signals
    from engine.runtime.kill import kill

    sig = signals.parse(args[1]) if len(args) > 1 else 15
    kill(root, args[0], sig, all_processes=bool(opts.get("all")))
    return 0


def cmd_delete(root, opts, args, log) -> int:
    from engine.runtime.delete import delete

    delete(root, args[0], force=bool(opts.get("force")), log=log.warn)
    return 0


def cmd_list(root, opts, args, log) -> int:
    from engine.runtime.query import format_list, list_states

    fmt = opts.get("format") or "table"
    if fmt not in ("table", "json"):
        raise InvalidArgument(f"invalid format option: {fmt}")
    sys.stdout.write(format_list(list_states(root), fmt, bool(opts.get("quiet"))))
    return 0


def cmd_ps(root, opts, args, log) -> int:
    from engine.runtime.query import ps

    fmt = opts.get("format") or "table"
    if fmt not in ("table", "json"):
        raise InvalidArgument(f"invalid format option: {fmt}")
    sys.stdout.write(ps(root, args[0], fmt, args[1:]))
    return 0


def cmd_pause(root, opts, args, log) -> int:
    from engine.runtime.pause import pause

    pause(root, args[0])
    return 0


def cmd_resume(root, opts, args, log) -> int:
    from engine.runtime.pause import resume

    resume(root, args[0])
    return 0


def cmd_update(root, opts, args, log) -> int:
    from engine.runtime.update import resources_from_flags, update

    res = resources_from_flags(opts)
    for w in update(root, args[0], res):
        log.warn(w)
    return 0


def cmd_spec(root, opts, args, log) -> int:
    from engine.runtime.specgen import write_spec

    write_spec(opts.get("bundle") or ".", rootless=bool(opts.get("rootless")))
    return 0


def cmd_features(root, opts, args, log) -> int:
    import json

    from engine.runtime.features import features

    sys.stdout.write(json.dumps(features(), indent=4) + "\n")
    return 0


def cmd_events(root, opts, args, log) -> int:
    from engine.runtime.events import events

    return events(root, args[0], stats=bool(opts.get("stats")), interval=opts.get("interval") or "5s")


def cmd_exec(root, opts, args, log) -> int:
    from engine.runtime.execute import execute, process_from_flags

    for flag in ("cgroup", "apparmor", "process-label"):
        if opts.get(flag):
            raise InvalidArgument(f"exec --{flag} is not supported by engine-runtime")
    proc_path = opts.get("process")
    proc = process_from_flags(root, args[0], opts, args[1:], proc_path)
    return execute(
        root,
        args[0],
        proc,
        detach=bool(opts.get("detach")),
        pid_file=opts.get("pid-file"),
        console_socket=opts.get("console-socket"),
        preserve_fds=_int(opts, "preserve-fds"),
        ignore_paused=bool(opts.get("ignore-paused")),
    )
