"""A token server for docker-registry's ``token`` auth, so the bearer flow is tested against the real registry.

The registry (distribution 2.8) answers 401 with ``Bearer realm=…,service=…,scope=…`` and accepts JWTs
(RS256 here) whose ``x5c`` header carries a certificate found in its ``rootcertbundle``. The key and the
self-signed certificate are made with the openssl CLI, tokens are signed with ``openssl dgst -sign``
(PKCS#1 v1.5 over SHA-256 is exactly RS256), and the server runs on a thread on 127.0.0.1. It grants the
asked scope to one user (basic credentials on the token request) and anonymous ``pull`` when
`anonymous_pull` is set; every request is recorded in ``requests``.
"""

from __future__ import annotations

import base64
import json
import secrets
import subprocess
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

ISSUER = "engine-test-issuer"
SERVICE = "engine-test-registry"


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


class TokenServer:
    __test__ = False

    def __init__(self, directory: Path, user: str, password: str, *, anonymous_pull: bool = False) -> None:
        self.dir = directory
        self.user, self.password = user, password
        self.anonymous_pull = anonymous_pull
        self.key = directory / "token.key"
        self.cert = directory / "token.crt"
        self.requests: list[dict[str, object]] = []
        subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(self.key),
                        "-out", str(self.cert), "-days", "2", "-subj", "/CN=engine-test-token"],
                       check=True, capture_output=True)
        der = subprocess.run(["openssl", "x509", "-in", str(self.cert), "-outform", "DER"], check=True,
                             capture_output=True).stdout
        self.x5c = base64.b64encode(der).decode()
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.port = self.httpd.server_address[1]
        self.realm = f"http://127.0.0.1:{self.port}/token"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def start(self) -> TokenServer:
        self.thread.start()
        return self

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    def registry_auth(self) -> dict[str, object]:
        return {"token": {"realm": self.realm, "service": SERVICE, "issuer": ISSUER,
                          "rootcertbundle": str(self.cert)}}

    def sign(self, claims: dict[str, object]) -> str:
        header = {"typ": "JWT", "alg": "RS256", "x5c": [self.x5c]}
        signing_input = f"{_b64url(json.dumps(header).encode())}.{_b64url(json.dumps(claims).encode())}"
        sig = subprocess.run(["openssl", "dgst", "-sha256", "-sign", str(self.key)], input=signing_input.encode(),
                             check=True, capture_output=True).stdout
        return f"{signing_input}.{_b64url(sig)}"

    def _grant(self, authorization: str, scopes: list[str]) -> tuple[int, dict[str, object]]:
        account = ""
        if authorization.startswith("Basic "):
            user, _, password = base64.b64decode(authorization[6:]).decode().partition(":")
            if (user, password) != (self.user, self.password):
                return 401, {"details": "incorrect username or password"}
            account = user
        elif not self.anonymous_pull:
            return 401, {"details": "authentication required"}
        access = []
        for scope in scopes:
            kind, _, rest = scope.partition(":")
            name, _, actions = rest.rpartition(":")
            wanted = [a for a in actions.split(",") if a]
            allowed = wanted if account else [a for a in wanted if a == "pull"]
            access.append({"type": kind, "name": name, "actions": allowed})
        now = int(time.time())
        claims = {"iss": ISSUER, "sub": account, "aud": SERVICE, "exp": now + 300, "nbf": now - 10, "iat": now,
                  "jti": secrets.token_hex(8), "access": access}
        return 200, {"token": self.sign(claims), "expires_in": 300}

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
                q = parse_qs(urlsplit(self.path).query)
                auth = self.headers.get("Authorization", "")
                server.requests.append({"query": q, "auth": auth.split(" ")[0]})
                status, body = server._grant(auth, q.get("scope", []))
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: object) -> None:
                pass

        return Handler
