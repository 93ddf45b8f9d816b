"""http.py's hijack over a real unix socket: 101 UPGRADED, an upgrading request's body kept apart from the
stream, the client's half-close tolerated while output keeps flowing, and `lost` once a write finds the
client gone."""

from __future__ import annotations

import asyncio
import json
import socket

from engine.api.docker.http import Conn, Hijack, HttpServer, Request, Response


def test_hijack_body_stream_and_half_close(tmp_path) -> None:
    path = str(tmp_path / "s.sock")
    seen: dict = {}

    async def handler(req: Request) -> Response | Hijack:
        seen["body"] = await req.json()

        async def run(conn: Conn) -> None:
            data = await conn.reader.read()  # to EOF: the client's half-close
            seen["stdin"] = data
            for i in range(3):  # output goes on after the half-close
                conn.write(b"out%d;" % i)
                await conn.drain()
                await asyncio.sleep(0.01)

        return Hijack(run, "application/vnd.docker.multiplexed-stream")

    async def main() -> bytes:
        server = HttpServer(handler, {"Api-Version": "1.50"})
        await server.listen_unix(path)
        loop = asyncio.get_running_loop()

        def client() -> bytes:
            s = socket.socket(socket.AF_UNIX)
            s.connect(path)
            body = json.dumps({"Detach": False, "Tty": False}).encode()
            head = (b"POST /exec/x/start HTTP/1.1\r\nHost: api.moby.localhost\r\nConnection: Upgrade\r\n"
                    b"Upgrade: tcp\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n" % len(body))
            s.sendall(head + body[:5])  # the body split across writes, the stream right behind it
            s.sendall(body[5:] + b"typed")
            s.shutdown(socket.SHUT_WR)
            out = b""
            while chunk := s.recv(4096):
                out += chunk
            s.close()
            return out

        out = await loop.run_in_executor(None, client)
        await server.stop(1)
        return out

    out = asyncio.run(main())
    head, _, rest = out.partition(b"\r\n\r\n")
    assert head.split(b"\r\n")[0] == b"HTTP/1.1 101 UPGRADED"
    assert b"Content-Type: application/vnd.docker.multiplexed-stream" in head and b"Upgrade: tcp" in head
    assert seen["body"] == {"Detach": False, "Tty": False}
    assert seen["stdin"] == b"typed"
    assert rest == b"out0;out1;out2;"


def test_lost_is_set_when_the_client_goes(tmp_path) -> None:
    path = str(tmp_path / "s.sock")

    async def main() -> bool:
        lost = asyncio.Event()

        async def handler(req: Request) -> Hijack:
            async def run(conn: Conn) -> None:
                # a full close reads like a half-close (EOF) until a write fails: keep writing
                for _ in range(500):
                    if conn.lost.is_set():
                        lost.set()
                        return
                    conn.write(b"x")
                    await asyncio.sleep(0.01)

            return Hijack(run)

        server = HttpServer(handler, {})
        await server.listen_unix(path)
        r, w = await asyncio.open_unix_connection(path)
        w.write(b"POST /containers/x/attach HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\nUpgrade: tcp\r\n\r\n")
        await r.readuntil(b"\r\n\r\n")
        w.close()
        await asyncio.wait_for(lost.wait(), 5)
        await server.stop(1)
        return lost.is_set()

    assert asyncio.run(main())
