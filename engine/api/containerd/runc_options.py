"""containerd's runc runtime options (``containerd.runc.v1.Options``) decoded for the tasks service.

ctr and containerd clients send the options of the runc shim as an Any in two places: the container's
``runtime.options`` (``ctr run --runc-binary/--runc-root/--runc-systemd-cgroup``) and the Tasks/Create
request's ``options``. containerd (runtime/v2) uses the request's options when they carry bytes, else the
container's; we do the same and hand the tasks service a plain dict keyed by the proto field names
(``binary_name``, ``root``, ``systemd_cgroup``, ``no_pivot_root``, ``no_new_keyring``, ``shim_cgroup``,
``io_uid``, ``io_gid``, ``criu_image_path``, ``criu_work_path``, ``task_api_address``,
``task_api_version``), every field present with its proto default when unset, so the service needs no
protobuf. An Any with no type URL and no bytes means "no options" (None). Any other type is refused:
a client that sent options we cannot read would otherwise get a container that ignores them.
"""

from __future__ import annotations

from typing import Any

from google.protobuf import any_pb2, message

from engine.api.containerd.gen.containerd.types.runc.options import oci_pb2
from engine.errors import InvalidArgument

OPTIONS_TYPE_URL = "containerd.runc.v1.Options"
_ACCEPTED = (OPTIONS_TYPE_URL, "types.googleapis.com/" + OPTIONS_TYPE_URL, "io.containerd.runc.v1.Options")


def decode(type_url: str, value: bytes, what: str = "runtime options") -> dict[str, Any] | None:
    """The runc Options in (type_url, value) as a dict of every field, or None when there are none."""
    if not type_url and not value:
        return None
    if type_url not in _ACCEPTED:
        raise InvalidArgument(f"{what}: unsupported type {type_url!r} (only {OPTIONS_TYPE_URL} is understood)")
    opts = oci_pb2.Options()
    try:
        opts.ParseFromString(value)
    except message.DecodeError as err:
        raise InvalidArgument(f"{what}: {OPTIONS_TYPE_URL} does not decode: {err}") from None
    return {f.name: getattr(opts, f.name) for f in opts.DESCRIPTOR.fields}


def effective(request: any_pb2.Any | None, container_type_url: str, container_value: bytes) -> dict[str, Any] | None:
    """The options a task is created with: the request's when they carry bytes, else the container's."""
    if request is not None and request.value:
        return decode(request.type_url, request.value, "task options")
    return decode(container_type_url, container_value, "container runtime options")
