"""The CLI client's error, in a module of its own so that command modules can name it without importing
http.client (the `engine --help` path imports no networking code)."""

from __future__ import annotations


class ClientError(Exception):
    """A failed request: `status` is the HTTP status (0 when the daemon could not be reached)."""

    def __init__(self, msg: str, status: int = 0, message: str = "") -> None:
        super().__init__(msg)
        self.status = status
        self.message = message or msg
