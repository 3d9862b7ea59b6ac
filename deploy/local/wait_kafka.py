#!/usr/bin/env python3
"""Wait until a Kafka broker really serves requests.

Speaks the Kafka wire protocol with the standard library only (no aiokafka needed, so any
python3 >= 3.8 will do): an ApiVersions v0 request, then a Metadata v4 request for all
topics. The broker counts as ready once the metadata response lists at least one broker.
An open port alone is not enough: a KRaft broker accepts connections before it can answer.

    python3 deploy/local/wait_kafka.py --bootstrap 127.0.0.1:9092 --timeout 60
    python3 deploy/local/wait_kafka.py --once --list-topics     # one probe, print topics

Exit codes: 0 ready, 1 not ready before the timeout, 2 the watched process (--pid) exited.
"""

from __future__ import annotations

import argparse
import os
import socket
import struct
import sys
import time

API_METADATA = 3
API_VERSIONS = 18
METADATA_VERSION = 4  # served by Kafka 1.0 up to at least 4.x (4.0 dropped v0-v3)


class ProtocolError(Exception):
    pass


class Reader:
    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0

    def _take(self, fmt: str) -> int:
        (value,) = struct.unpack_from(fmt, self.data, self.pos)
        self.pos += struct.calcsize(fmt)
        return int(value)

    def i8(self) -> int:
        return self._take(">b")

    def i16(self) -> int:
        return self._take(">h")

    def i32(self) -> int:
        return self._take(">i")

    def string(self) -> str | None:
        size = self.i16()
        if size < 0:
            return None
        raw = self.data[self.pos : self.pos + size]
        self.pos += size
        return raw.decode("utf-8", "replace")


def _recv_exact(sock: socket.socket, size: int) -> bytes:
    chunks = bytearray()
    while len(chunks) < size:
        chunk = sock.recv(size - len(chunks))
        if not chunk:
            raise ProtocolError("connection closed by broker")
        chunks += chunk
    return bytes(chunks)


def _call(sock: socket.socket, api_key: int, version: int, corr: int, body: bytes) -> Reader:
    client_id = b"stack-wait"
    # request header v1: api_key, api_version, correlation_id, client_id (nullable string)
    header = struct.pack(">hhih", api_key, version, corr, len(client_id)) + client_id
    message = header + body
    sock.sendall(struct.pack(">i", len(message)) + message)
    (size,) = struct.unpack(">i", _recv_exact(sock, 4))
    reader = Reader(_recv_exact(sock, size))
    got = reader.i32()  # response header v0: correlation_id
    if got != corr:
        raise ProtocolError(f"correlation id mismatch: sent {corr}, got {got}")
    return reader


def api_versions(sock: socket.socket) -> dict[int, tuple[int, int]]:
    r = _call(sock, API_VERSIONS, 0, 1, b"")
    error = r.i16()
    if error:
        raise ProtocolError(f"ApiVersions error code {error}")
    versions: dict[int, tuple[int, int]] = {}
    for _ in range(r.i32()):
        key = r.i16()
        low = r.i16()
        high = r.i16()
        versions[key] = (low, high)
    return versions


def metadata(sock: socket.socket) -> tuple[list[str], str | None, int, list[str]]:
    # Metadata v4 request: topics = null (all topics), allow_auto_topic_creation = false
    r = _call(sock, API_METADATA, METADATA_VERSION, 2, struct.pack(">ib", -1, 0))
    r.i32()  # throttle_time_ms
    brokers = []
    for _ in range(r.i32()):
        node_id = r.i32()
        host = r.string()
        port = r.i32()
        r.string()  # rack
        brokers.append(f"{node_id}@{host}:{port}")
    cluster_id = r.string()
    controller_id = r.i32()
    topics = []
    for _ in range(r.i32()):
        r.i16()  # error_code
        name = r.string()
        r.i8()  # is_internal
        for _ in range(r.i32()):  # partitions
            r.i16()
            r.i32()
            r.i32()
            for _ in range(r.i32()):  # replica_nodes
                r.i32()
            for _ in range(r.i32()):  # isr_nodes
                r.i32()
        topics.append(name or "")
    return brokers, cluster_id, controller_id, topics


def probe(host: str, port: int, timeout: float) -> tuple[list[str], str | None, int, list[str]]:
    with socket.create_connection((host, port), timeout=timeout) as sock:
        sock.settimeout(timeout)
        versions = api_versions(sock)
        low, high = versions.get(API_METADATA, (-1, -1))
        if not low <= METADATA_VERSION <= high:
            raise ProtocolError(f"broker serves Metadata v{low}..v{high}, not v{METADATA_VERSION}")
        brokers, cluster_id, controller_id, topics = metadata(sock)
    if not brokers:
        raise ProtocolError("metadata lists no broker yet")
    return brokers, cluster_id, controller_id, topics


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # Linux: a zombie has exited even though kill(pid, 0) still succeeds
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as stat:
            return stat.read().rpartition(")")[2].split()[0] != "Z"
    except (OSError, IndexError):
        return True


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--bootstrap",
        default=os.environ.get("KAFKA_BOOTSTRAP", "127.0.0.1:9092").split(",")[0],
        help="host:port (default: $KAFKA_BOOTSTRAP or 127.0.0.1:9092)",
    )
    parser.add_argument("--timeout", type=float, default=60.0, help="seconds (default 60)")
    parser.add_argument("--pid", type=int, help="give up at once if this process exits")
    parser.add_argument("--log", help="log file to point at when the broker is not ready")
    parser.add_argument("--once", action="store_true", help="a single probe, no waiting")
    parser.add_argument("--list-topics", action="store_true", help="print topic names")
    parser.add_argument("-q", "--quiet", action="store_true")
    args = parser.parse_args(argv)

    host, _, port_text = args.bootstrap.rpartition(":")
    host = host.strip("[]") or "127.0.0.1"
    port = int(port_text)
    see_log = f"; see {args.log}" if args.log else ""
    deadline = time.monotonic() + args.timeout
    last_error = "no attempt made"
    while True:
        if args.pid is not None and not _alive(args.pid):
            print(f"wait_kafka: kafka process {args.pid} exited{see_log}", file=sys.stderr)
            return 2
        try:
            brokers, cluster_id, controller_id, topics = probe(host, port, 2.0)
        except (OSError, ProtocolError, struct.error) as exc:
            last_error = f"{type(exc).__name__}: {exc}"
        else:
            if args.list_topics:
                for name in sorted(topics):
                    print(name)
            elif not args.quiet:
                print(
                    f"kafka ready at {host}:{port}: cluster {cluster_id}, "
                    f"brokers {','.join(brokers)}, controller {controller_id}, "
                    f"{len(topics)} topic(s)"
                )
            return 0
        if args.once or time.monotonic() >= deadline:
            waited = "" if args.once else f" after {args.timeout:g} s"
            print(
                f"wait_kafka: kafka at {host}:{port} not ready{waited} ({last_error}){see_log}",
                file=sys.stderr,
            )
            return 1
        time.sleep(0.2)


if __name__ == "__main__":
    sys.exit(main())
