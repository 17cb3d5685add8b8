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
    attack.py client   PORT TOKEN --seconds S [--after A]
        One connection, one request at a time: GET /healthz and _generate count=1 in turn.
        Connects (one request) at once, measures from A seconds later for S seconds (a new
        connection only if the server closes it). Prints one JSON line: requests, failures,
        p50/p99/max in milliseconds.
"""

import argparse
import asyncio
import json
import os
import random
import socket
import string
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
    p.add_argument("mode", choices=["methods", "pipeline", "headers", "client"])
    p.add_argument("port", type=int)
    p.add_argument("token", nargs="?", default="")
    p.add_argument("--seconds", type=float, required=True)
    p.add_argument("--conns", type=int, default=8)
    p.add_argument("--clients", type=int, default=1000)
    p.add_argument("--kib", type=int, default=120)
    p.add_argument("--after", type=float, default=0)
    args = p.parse_args()
    if not 0 < args.seconds <= 600 or not 0 <= args.after <= 60:
        p.error("--seconds must be in (0, 600], --after in [0, 60]")
    return args


async def read_response(reader):
    """Reads one HTTP/1.1 response; returns its status."""
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value.strip())
    if length:
        await reader.readexactly(length)
    return status


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


def main():
    args = parse_args()
    if args.mode == "client":
        client(args.port, args.token, args.seconds, args.after)
        return
    random.seed(os.getpid())
    if args.mode == "methods":
        asyncio.run(methods(args.port, args.seconds, args.conns))
    elif args.mode == "pipeline":
        asyncio.run(pipeline(args.port, args.token, args.seconds, args.clients))
    else:
        asyncio.run(headers(args.port, args.seconds, args.conns, args.kib))


if __name__ == "__main__":
    main()
