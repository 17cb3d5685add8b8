#!/usr/bin/env python3
"""Attackers and a well-behaved client for benches/attacks/run.sh (Python 3 standard library).

Every mode talks to 127.0.0.1 only and stops by itself after --seconds.

    attack.py methods  PORT --seconds S [--conns N]
        Requests with random method names (each a new name) on N connections, read back.
    attack.py pipeline PORT TOKEN --seconds S [--clients N]
        N clients pipeline POST /v1/codes/OTP_SMS/_generate {"count":1000} and never read.
    attack.py headers  PORT --seconds S [--conns N] [--kib K]
        N connections each send K KiB of header lines and never finish the head; a connection
        the server closes is opened again.
    attack.py slowread PORT --seconds S [--conns N]
        N connections pipeline GET /openapi.json and never read; a connection the server
        closes is opened again (the pressure stays).
    attack.py silent   PORT --seconds S [--conns N]
        N TCP connections that never send a byte (for the gRPC port); reopened when closed.
    attack.py streams  PORT TOKEN --seconds S [--conns N] [--streams M]
        N HTTP/2 connections (frames written by hand: no library reads the socket behind
        the attacker's back) that announce 1 GiB windows, open M streams of
        CodeService.GenerateStream with count 10,000,000 each and never read; reopened when
        closed.
    attack.py audit    PORT TOKEN --seconds S [--conns N]
        N readers of the audit search, each on a connection of its own, that page through the
        whole log (1000 events a page, by fromSequence) over and over, as fast as the server
        answers; a connection the server closes is opened again.
    attack.py client   PORT TOKEN --seconds S [--after A]
        One connection, one request at a time: GET /healthz and _generate count=1 in turn.
        Connects (one request) at once, measures from A seconds later for S seconds (a new
        connection only if the server closes it). Prints one JSON line: requests, failures,
        p50/p99/max in milliseconds.
    attack.py fresh    PORT TOKEN --seconds S [--after A] [--grpc] [--timeout T]
        A NEW connection for every request (what a client locked out sees), one at a time:
        GET /healthz and _generate count=1 in turn, or with --grpc (PORT is the gRPC port)
        CodeService.Generate as grpc-web over HTTP/1.1 (grpc-status 0 is success). A request
        unanswered after T seconds (default 30) is a failure. Prints the same JSON line.
"""

import argparse
import asyncio
import json
import os
import random
import socket
import string
import struct
import sys
import time

HOST = "127.0.0.1"
# The attackers' own socket buffers: in a real attack they live on the attackers' machines; on
# loopback they share the kernel's TCP memory with the server and, at the kernel's default
# sizes (up to 4 MiB of unsent data per socket), 1000 attackers push it into memory pressure,
# which stalls every socket on the machine, the well-behaved client's included.
ATTACKER_SOCKET_BUFFER = 64 * 1024


async def open_attacker(port):
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, ATTACKER_SOCKET_BUFFER)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, ATTACKER_SOCKET_BUFFER)
    sock.setblocking(False)
    try:
        await asyncio.get_running_loop().sock_connect(sock, (HOST, port))
    except OSError:
        sock.close()
        raise
    return await asyncio.open_connection(sock=sock)


def parse_args():
    p = argparse.ArgumentParser()
    p.add_argument(
        "mode",
        choices=["methods", "pipeline", "headers", "slowread", "silent", "streams", "audit",
                 "client", "fresh"],
    )
    p.add_argument("port", type=int)
    p.add_argument("token", nargs="?", default="")
    p.add_argument("--seconds", type=float, required=True)
    p.add_argument("--conns", type=int, default=8)
    p.add_argument("--clients", type=int, default=1000)
    p.add_argument("--kib", type=int, default=120)
    p.add_argument("--after", type=float, default=0)
    p.add_argument("--streams", type=int, default=32)
    p.add_argument("--grpc", action="store_true")
    p.add_argument("--timeout", type=float, default=30)
    args = p.parse_args()
    if not 0 < args.seconds <= 600 or not 0 <= args.after <= 60:
        p.error("--seconds must be in (0, 600], --after in [0, 60]")
    return args


async def read_response(reader):
    """Reads one HTTP/1.1 response (with a Content-Length); returns its status and body."""
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value.strip())
    body = await reader.readexactly(length) if length else b""
    return status, body


async def methods(port, seconds, conns):
    deadline = time.monotonic() + seconds
    letters = string.ascii_uppercase
    sent = 0

    async def one():
        nonlocal sent
        reader, writer = await asyncio.open_connection(HOST, port)
        try:
            while time.monotonic() < deadline:
                batch = []
                for _ in range(64):
                    name = "".join(random.choices(letters, k=12))
                    batch.append(f"{name} /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
                writer.write("".join(batch).encode())
                await writer.drain()
                for _ in range(64):
                    await read_response(reader)
                sent += 64
        finally:
            writer.close()

    await asyncio.gather(*(one() for _ in range(conns)), return_exceptions=True)
    print(f"methods: {sent} requests with random method names", file=sys.stderr)


async def pipeline(port, token, seconds, clients):
    deadline = time.monotonic() + seconds
    body = b'{"count":1000}'
    request = (
        b"POST /v1/codes/OTP_SMS/_generate HTTP/1.1\r\nHost: x\r\n"
        + f"Authorization: Bearer {token}\r\n".encode()
        + b"Content-Type: application/json\r\n"
        + f"Content-Length: {len(body)}\r\n\r\n".encode()
        + body
    )
    batch = request * 100
    sent = 0
    writers = []

    async def one():
        nonlocal sent
        try:
            _, writer = await open_attacker(port)
        except OSError:
            return
        writers.append(writer)
        while time.monotonic() < deadline:
            writer.write(batch)
            try:
                await asyncio.wait_for(writer.drain(), max(0.01, deadline - time.monotonic()))
            except (asyncio.TimeoutError, OSError):
                break
            sent += 100

    tasks = [asyncio.ensure_future(one()) for _ in range(clients)]
    await asyncio.wait(tasks, timeout=seconds + 5)
    for writer in writers:
        writer.transport.abort()
    print(f"pipeline: {len(writers)} clients wrote {sent} requests", file=sys.stderr)


async def headers(port, seconds, conns, kib):
    deadline = time.monotonic() + seconds
    line = b"X-Filler-%04d: " + b"a" * 1000 + b"\r\n"
    count = max(1, kib * 1024 // len(line % 0))
    head = b"GET /healthz HTTP/1.1\r\nHost: x\r\n" + b"".join(line % i for i in range(count))
    opened = 0
    writers = set()

    async def one():
        nonlocal opened
        while time.monotonic() < deadline:
            try:
                reader, writer = await open_attacker(port)
            except OSError:
                await asyncio.sleep(0.05)
                continue
            opened += 1
            writers.add(writer)
            try:
                writer.write(head)
                await asyncio.wait_for(writer.drain(), max(0.01, deadline - time.monotonic()))
                # Hold the connection open until the server closes it or time is up.
                await asyncio.wait_for(reader.read(), max(0.01, deadline - time.monotonic()))
            except (asyncio.TimeoutError, OSError):
                pass
            finally:
                writers.discard(writer)
                writer.transport.abort()

    await asyncio.wait([asyncio.ensure_future(one()) for _ in range(conns)], timeout=seconds + 5)
    for writer in list(writers):
        writer.transport.abort()
    print(f"headers: {opened} connections with {len(head) // 1024} KiB heads", file=sys.stderr)


# The TCP state of a socket as TCP_INFO gives it: 1 is ESTABLISHED. A connection the server
# shut down (FIN) or reset is in another state, without the attacker reading a byte.
TCP_ESTABLISHED = 1


def tcp_state(sock):
    try:
        return sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 1)[0]
    except OSError:
        return 0


def abort(sock):
    """Closes with a reset, as a vanished client would leave it."""
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    except OSError:
        pass
    sock.close()


async def hold(name, port, seconds, conns, setup=None, keep=None):
    """conns connections held until time is up: each is opened, given `await setup(sock)`,
    then `keep(sock)` every 0.25 s while it is established; one the server closes is opened
    again. Never reads after setup."""
    loop = asyncio.get_running_loop()
    deadline = time.monotonic() + seconds
    stats = {"opened": 0, "closed": 0}
    socks = set()

    async def one():
        while time.monotonic() < deadline:
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, ATTACKER_SOCKET_BUFFER)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, ATTACKER_SOCKET_BUFFER)
            sock.setblocking(False)
            socks.add(sock)
            try:
                left = max(0.01, deadline - time.monotonic())
                await asyncio.wait_for(loop.sock_connect(sock, (HOST, port)), left)
                stats["opened"] += 1
                if setup is not None:
                    await asyncio.wait_for(setup(sock), max(0.01, deadline - time.monotonic()))
                while time.monotonic() < deadline and tcp_state(sock) == TCP_ESTABLISHED:
                    if keep is not None:
                        keep(sock)
                    await asyncio.sleep(0.25)
            except (OSError, asyncio.TimeoutError):
                await asyncio.sleep(0.05)
            finally:
                if time.monotonic() < deadline:
                    stats["closed"] += 1
                socks.discard(sock)
                abort(sock)

    await asyncio.wait([asyncio.ensure_future(one()) for _ in range(conns)], timeout=seconds + 5)
    for sock in list(socks):
        abort(sock)
    print(f"{name}: {stats['opened']} connections opened, {stats['closed']} closed before the "
          f"end", file=sys.stderr)


async def slowread(port, seconds, conns):
    request = b"GET /openapi.json HTTP/1.1\r\nHost: x\r\n\r\n"
    batch = request * 64
    offsets = {}

    def keep(sock):
        # Pipeline more whenever the server reads some: requests stay whole (a partial send
        # goes on where it stopped).
        off = offsets.get(sock, 0)
        while True:
            try:
                sent = sock.send(batch[off:])
            except BlockingIOError:
                break
            off = (off + sent) % len(request)
        offsets[sock] = off

    await hold("slowread", port, seconds, conns, keep=keep)


async def silent(port, seconds, conns):
    await hold("silent", port, seconds, conns)


def h2_frame(kind, flags, stream, payload):
    return len(payload).to_bytes(3, "big") + bytes([kind, flags]) + stream.to_bytes(4, "big") + payload


def hpack_length(n):
    """An HPACK integer with a 7-bit prefix (no Huffman coding)."""
    if n < 127:
        return bytes([n])
    out = [127]
    n -= 127
    while n >= 128:
        out.append(n % 128 + 128)
        n //= 128
    return bytes(out + [n])


def varint(n):
    out = bytearray()
    while n >= 0x80:
        out.append(n & 0x7F | 0x80)
        n >>= 7
    return bytes(out + bytearray([n]))


async def streams(port, token, seconds, conns, per_conn):
    """Most streams a connection may open, 1 GiB windows, nothing ever read (SPEC 13)."""
    loop = asyncio.get_running_loop()
    window = 1 << 30
    settings = struct.pack(">HI", 2, 0) + struct.pack(">HI", 4, window)  # no push; windows
    hello = (b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + h2_frame(4, 0, 0, settings)
             + h2_frame(8, 0, 0, (window - 65535).to_bytes(4, "big")))
    fields = [
        (b":method", b"POST"), (b":scheme", b"http"), (b":authority", b"x"),
        (b":path", b"/secretgen.v1.CodeService/GenerateStream"),
        (b"content-type", b"application/grpc"), (b"te", b"trailers"),
        (b"authorization", f"Bearer {token}".encode()),
    ]
    block = b"".join(b"\x00" + hpack_length(len(k)) + k + hpack_length(len(v)) + v
                     for k, v in fields)
    # GenerateStreamRequest{generator_type: OTP_SMS (7), count: 10,000,000}
    message = b"\x08\x07\x10" + varint(10_000_000)
    body = b"\x00" + len(message).to_bytes(4, "big") + message
    calls = b"".join(h2_frame(1, 0x4, 1 + 2 * i, block) + h2_frame(0, 0x1, 1 + 2 * i, body)
                     for i in range(per_conn))

    async def setup(sock):
        await loop.sock_sendall(sock, hello)
        # The server's SETTINGS, to acknowledge: the only bytes this attacker ever reads.
        buf = b""
        while True:
            data = await loop.sock_recv(sock, 4096)
            if not data:
                raise OSError("closed before SETTINGS")
            buf += data
            if len(buf) >= 9 and buf[3] == 4 and len(buf) >= 9 + int.from_bytes(buf[:3], "big"):
                break
        await loop.sock_sendall(sock, h2_frame(4, 0x1, 0, b"") + calls)

    await hold("streams", port, seconds, conns, setup=setup)


async def audit(port, token, seconds, conns):
    """Full readers of the audit search (SPEC 13: they must not starve _generate)."""
    deadline = time.monotonic() + seconds
    head = (b"POST /admin/v1/events/_search HTTP/1.1\r\nHost: x\r\n"
            + f"Authorization: Bearer {token}\r\n".encode()
            + b"Content-Type: application/json\r\n")
    marker = b'"sequence":"'
    stats = {"pages": 0, "events": 0, "passes": 0, "refused": 0}

    async def one():
        start = 1
        while time.monotonic() < deadline:
            try:
                reader, writer = await open_attacker(port)
            except OSError:
                await asyncio.sleep(0.05)
                continue
            try:
                while time.monotonic() < deadline:
                    body = f'{{"fromSequence":"{start}","query":{{"limit":1000}}}}'.encode()
                    writer.write(head + f"Content-Length: {len(body)}\r\n\r\n".encode() + body)
                    status, answer = await asyncio.wait_for(
                        read_response(reader), max(0.01, deadline - time.monotonic()))
                    if status != 200:
                        stats["refused"] += 1
                        await asyncio.sleep(0.05)
                        continue
                    stats["pages"] += 1
                    # The last event's sequence, found without parsing the page.
                    at = answer.rfind(marker)
                    last = int(answer[at + len(marker):answer.index(b'"', at + len(marker))]) \
                        if at >= 0 else 0
                    if last >= start:
                        stats["events"] += last + 1 - start
                        start = last + 1
                    else:
                        stats["passes"] += 1
                        start = 1
            except (asyncio.TimeoutError, OSError, ValueError, asyncio.IncompleteReadError):
                pass
            finally:
                writer.transport.abort()

    await asyncio.wait([asyncio.ensure_future(one()) for _ in range(conns)], timeout=seconds + 5)
    print(f"audit: {stats['pages']} pages, {stats['events']} events read, {stats['passes']} "
          f"whole passes, {stats['refused']} refused", file=sys.stderr)



def client(port, token, seconds, after):
    """Blocking, one request at a time, over one connection (a new one if the server closes it)."""
    deadline = time.monotonic() + after + seconds
    measure_from = time.monotonic() + after
    body = b'{"count":1}'
    requests = [
        b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n",
        b"POST /v1/codes/OTP_SMS/_generate HTTP/1.1\r\nHost: x\r\n"
        + f"Authorization: Bearer {token}\r\n".encode()
        + f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n".encode()
        + body,
    ]
    latencies, failures, sock, n = [], 0, None, 0
    while time.monotonic() < deadline:
        start = time.monotonic()
        try:
            if sock is None:
                sock = socket.create_connection((HOST, port), timeout=5)
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                rfile = sock.makefile("rb")
            sock.sendall(requests[n % 2])
            status_line = rfile.readline()
            length = 0
            while True:
                line = rfile.readline()
                if line in (b"\r\n", b""):
                    break
                if line.lower().startswith(b"content-length:"):
                    length = int(line.split(b":")[1])
            rfile.read(length)
            ok = status_line.split(b" ")[1] == b"200"
        except (OSError, IndexError):
            ok = False
            if sock is not None:
                sock.close()
            sock = None
        measured = start >= measure_from
        if measured:
            latencies.append((time.monotonic() - start) * 1000)
        if not ok:
            failures += measured
            time.sleep(0.01)
        n += 1
        # One request every 2 ms or so; while waiting for the attack, one every 200 ms keeps
        # the connection alive (keep-alive is 5 s).
        time.sleep(0.002 if measured else 0.2)
    summary(latencies, failures)


def summary(latencies, failures):
    latencies.sort()

    def pct(q):
        return latencies[min(len(latencies) - 1, int(q * len(latencies)))] if latencies else -1

    print(json.dumps({
        "requests": len(latencies),
        "failures": failures,
        "p50_ms": round(pct(0.50), 2),
        "p99_ms": round(pct(0.99), 2),
        "max_ms": round(latencies[-1], 2) if latencies else -1,
    }))


def read_http_response(rfile):
    """One HTTP/1.1 response (Content-Length or chunked): status, headers, body."""
    status_line = rfile.readline()
    if not status_line:
        raise OSError("closed without an answer")
    status = int(status_line.split(b" ")[1])
    headers = {}
    while True:
        line = rfile.readline()
        if line == b"":
            raise OSError("closed in the head")
        if line == b"\r\n":
            break
        name, _, value = line.partition(b":")
        headers[name.strip().lower()] = value.strip()
    if headers.get(b"transfer-encoding", b"").lower() == b"chunked":
        body = b""
        while True:
            size = int(rfile.readline().split(b";")[0], 16)
            if size == 0:
                while rfile.readline() not in (b"\r\n", b""):
                    pass
                break
            body += rfile.read(size)
            rfile.readline()
    else:
        body = rfile.read(int(headers.get(b"content-length", b"0")))
    return status, headers, body


def grpc_web_ok(status, headers, body):
    """A grpc-web answer with a message and grpc-status 0."""
    if status != 200:
        return False
    if b"grpc-status" in headers:  # trailers only: an error
        return False
    i, message = 0, False
    while i + 5 <= len(body):
        flags, n = body[i], int.from_bytes(body[i + 1:i + 5], "big")
        payload = body[i + 5:i + 5 + n]
        i += 5 + n
        if not flags & 0x80:
            message = True
            continue
        for line in payload.split(b"\r\n"):
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"grpc-status":
                return message and value.strip() == b"0"
    return False


def fresh(port, token, seconds, after, grpc, timeout):
    """One request at a time, each on a NEW connection, closed once answered."""
    deadline = time.monotonic() + after + seconds
    auth = f"Authorization: Bearer {token}\r\n".encode()
    if grpc:
        message = b"\x08\x07"  # GenerateRequest{generator_type: OTP_SMS}
        body = b"\x00" + len(message).to_bytes(4, "big") + message
        requests = [
            b"POST /secretgen.v1.CodeService/Generate HTTP/1.1\r\nHost: x\r\n" + auth
            + b"Content-Type: application/grpc-web+proto\r\nX-Grpc-Web: 1\r\n"
            + f"Content-Length: {len(body)}\r\n\r\n".encode() + body
        ]
    else:
        body = b'{"count":1}'
        requests = [
            b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n",
            b"POST /v1/codes/OTP_SMS/_generate HTTP/1.1\r\nHost: x\r\n" + auth
            + f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n".encode()
            + body,
        ]
    latencies, failures, n = [], 0, 0
    # Nothing to keep before measuring: a request begun earlier could block into the window.
    time.sleep(after)
    while time.monotonic() < deadline:
        start = time.monotonic()
        sock = None
        try:
            sock = socket.create_connection((HOST, port), timeout=timeout)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            sock.sendall(requests[n % len(requests)])
            answer = read_http_response(sock.makefile("rb"))
            ok = grpc_web_ok(*answer) if grpc else answer[0] == 200
        except (OSError, ValueError, IndexError):
            ok = False
        finally:
            if sock is not None:
                sock.close()
        latencies.append((time.monotonic() - start) * 1000)
        failures += not ok
        n += 1
        time.sleep(0.01)
    summary(latencies, failures)


def main():
    args = parse_args()
    if args.mode == "client":
        client(args.port, args.token, args.seconds, args.after)
        return
    if args.mode == "fresh":
        fresh(args.port, args.token, args.seconds, args.after, args.grpc, args.timeout)
        return
    random.seed(os.getpid())
    if args.mode == "methods":
        asyncio.run(methods(args.port, args.seconds, args.conns))
    elif args.mode == "pipeline":
        asyncio.run(pipeline(args.port, args.token, args.seconds, args.clients))
    elif args.mode == "headers":
        asyncio.run(headers(args.port, args.seconds, args.conns, args.kib))
    elif args.mode == "slowread":
        asyncio.run(slowread(args.port, args.seconds, args.conns))
    elif args.mode == "silent":
        asyncio.run(silent(args.port, args.seconds, args.conns))
    elif args.mode == "audit":
        asyncio.run(audit(args.port, args.token, args.seconds, args.conns))
    else:
        asyncio.run(streams(args.port, args.token, args.seconds, args.conns, args.streams))


if __name__ == "__main__":
    main()
