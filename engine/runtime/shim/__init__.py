"""engine.runtime.shim: the per-container shim process (``engine-shim``) and its client.

The shim is one process per container (DESIGN §5): detached, a child subreaper, it creates the
container through the runtime library in-process (or drives runc/crun by path), holds its stdio
(client FIFOs, a json-file log it writes itself, a pty master), reaps every child, records the
exit durably and keeps it, with a resumable event stream, until the daemon deletes the task.

Modules: main (CLI, daemonizing), forkserver (warm parent forking shims), server (API handlers),
task (processes, exits, events, OOM), procio (stdio fan-out), jsonlog (Docker json-file),
backend (in-process or external runtime), loop (selectors loop), wire (framing), client
(the daemon's asyncio client and spawn helpers).
"""
