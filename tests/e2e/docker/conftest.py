"""The Docker e2e modules' common daemon: one per module, with the offline busybox image imported into
namespace moby as docker.io/library/busybox:latest (a module that needs another set-up defines its own `d`)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.harness import EngineDaemon
from tests.support.images import import_busybox


@pytest.fixture(scope="module")
def d() -> Iterator[EngineDaemon]:
    daemon = EngineDaemon()
    try:
        daemon.start()
        import_busybox(daemon)
        yield daemon
    finally:
        daemon.cleanup()
