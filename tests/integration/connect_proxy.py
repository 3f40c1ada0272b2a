#!/usr/bin/env python3
"""A small HTTP CONNECT proxy for the tests, as a corporate proxy would be.

    connect_proxy.py --port-file FILE --record FILE [--auth USER:PASS]
                     [--allow HOST:PORT] [--lifetime SECONDS]

Listens on 127.0.0.1 (a free port, written to --port-file). Each request
must be "CONNECT host:port HTTP/1.1"; with --auth it must carry
"Proxy-Authorization: Basic base64(USER:PASS)", else 407. Only --allow'd
targets (any loopback one by default) are tunnelled, else 403. Each
CONNECT is recorded as one JSON line in --record: {"target", "auth_ok",
"status"}; the tunnel then copies bytes both ways until either side
closes. Anything else is answered 405. Exits after --lifetime seconds
(default 120) so that it never outlives a test. Standard library only.
"""

import argparse
import base64
import json
import select
import socket
import sys
import threading
import time


def pipe(a, b):
    socks = [a, b]
    try:
        while True:
            r, _, _ = select.select(socks, [], [], 60)
            if not r:
                return
            for s in r:
                data = s.recv(65536)
                if not data:
                    return
                (b if s is a else a).sendall(data)
    except OSError:
        pass
    finally:
        for s in socks:
            try:
                s.close()
            except OSError:
                pass


def serve(conn, args, lock):
    status, target, auth_ok = 400, None, None
    try:
        conn.settimeout(10)
        head = b""
        while b"\r\n\r\n" not in head and len(head) < 16384:
            chunk = conn.recv(4096)
            if not chunk:
                return
            head += chunk
        lines = head.split(b"\r\n\r\n")[0].decode("latin-1").split("\r\n")
        parts = lines[0].split()
        headers = {}
        for line in lines[1:]:
            k, _, v = line.partition(":")
            headers[k.strip().lower()] = v.strip()
        if len(parts) != 3 or parts[0] != "CONNECT":
            status = 405
        else:
            target = parts[1]
            want = "Basic " + base64.b64encode(args.auth.encode()).decode() if args.auth else None
            auth_ok = want is None or headers.get("proxy-authorization") == want
            host, _, port = target.rpartition(":")
            allowed = (target == args.allow) if args.allow else host in ("127.0.0.1", "localhost")
            status = 407 if not auth_ok else 403 if not allowed else 200
        with lock:
            with open(args.record, "a") as f:
                f.write(json.dumps({"target": target, "auth_ok": auth_ok,
                                    "status": status}) + "\n")
        if status != 200:
            extra = b"Proxy-Authenticate: Basic realm=\"test\"\r\n" if status == 407 else b""
            conn.sendall(b"HTTP/1.1 %d No\r\n%sContent-Length: 0\r\n\r\n" % (status, extra))
            conn.close()
            return
        upstream = socket.create_connection(("127.0.0.1", int(port)), 5)
        conn.sendall(b"HTTP/1.1 200 Connection established\r\n\r\n")
        conn.settimeout(None)
        pipe(conn, upstream)
    except OSError:
        try:
            conn.close()
        except OSError:
            pass


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--port-file", required=True)
    ap.add_argument("--record", required=True)
    ap.add_argument("--auth")
    ap.add_argument("--allow")
    ap.add_argument("--lifetime", type=float, default=120)
    args = ap.parse_args()
    srv = socket.socket()
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind(("127.0.0.1", 0))
    srv.listen(64)
    srv.settimeout(0.5)
    with open(args.port_file, "w") as f:
        f.write(str(srv.getsockname()[1]))
    lock = threading.Lock()
    end = time.monotonic() + args.lifetime
    while time.monotonic() < end:
        try:
            conn, _ = srv.accept()
        except socket.timeout:
            continue
        threading.Thread(target=serve, args=(conn, args, lock), daemon=True).start()
    return 0


if __name__ == "__main__":
    sys.exit(main())
