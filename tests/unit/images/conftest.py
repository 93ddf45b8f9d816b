"""Fixtures: the content tests' real journal with content, leases and gc services."""

from tests.unit.content.conftest import env  # noqa: F401
