"""engine.runtime: an OCI runtime (runtime-spec v1.2, Linux), as a library and as ``engine-runtime``.

The library is what the shim calls in-process; ``cli.py`` is a thin runc-compatible front end.
One module per operation::

    create.create(root, id, bundle, *, pid_file=None, console_socket=None, console_fd=-1,
                  no_pivot=False, preserve_fds=0, subreaper=False, stdio=None) -> state.Container
    start.start(root, id) -> state.Container
    kill.kill(root, id, signal, *, all_processes=False)
    delete.delete(root, id, *, force=False)
    run.run(root, id, bundle, *, detach=False, ...) -> exit status
    execute.exec_process(root, id, process_dict, *, console_fd=-1, console_socket=None, stdio=None) -> pid
    execute.execute(root, id, process_dict, *, detach=False, ...) -> exit status (the CLI's exec)
    query.state(root, id) -> dict (the spec's State);  query.list_states(root);  query.ps(...)
    pause.pause / pause.resume;  update.update(root, id, resources) -> warnings
    specgen.default_spec();  features.features()

Errors are engine.errors classes (NotFound "container does not exist", AlreadyExists,
FailedPrecondition for lifecycle refusals, InvalidArgument for bad input);
process.ContainerError carries a failure reported by the container process during setup.

How a container is made (see plan.py, process.py, protocol.py and engine/native/csrc/spawn.c):
Python resolves config.json into a flat program; C clones the process and interprets it, so
no Python runs after fork.  State lives in ``<root>/<id>/state.json`` (temp + rename); the
status is derived from the world each time (state.py).  Imports are kept lean on purpose:
``engine-runtime run`` is timed against runc.
"""
