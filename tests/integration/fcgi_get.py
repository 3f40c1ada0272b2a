#!/usr/bin/env python3
"""One FastCGI GET straight to hereproxy, as a web server would send it.

    fcgi_get.py [--timeout S] ADDR URI

ADDR is host:port, [IPv6]:port or a Unix socket path (with a '/'). Sends
one FCGI_RESPONDER request (REQUEST_METHOD=GET, REQUEST_URI=URI,
REMOTE_ADDR=127.0.0.1) and prints one line:

    STATUS SECONDS BODY_BYTES

the HTTP status from the Status: header, the seconds from connect() to
FCGI_END_REQUEST (a fresh connection: the time it waited for a worker
included), and the body's length. On a timeout or a closed connection it
prints "error SECONDS REASON" and exits 1. Standard library only.
"""

import argparse
import socket
import struct
import sys
import time

BEGIN, END, PARAMS, STDIN, STDOUT = 1, 3, 4, 5, 6


def record(rtype, content, rid=1):
    return struct.pack(">BBHHBB", 1, rtype, rid, len(content), 0, 0) + content


def pair(name, value):
    out = b""
    for part in (name, value):
        n = len(part)
        out += bytes([n]) if n < 128 else struct.pack(">I", n | 0x80000000)
    return out + name + value


def connect(addr, timeout):
    if "/" in addr:
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(timeout)
        s.connect(addr)
        return s
    host, _, port = addr.rpartition(":")
    host = host.strip("[]")
    return socket.create_connection((host, int(port)), timeout)


def get(addr, uri, timeout):
    path, _, query = uri.partition("?")
    params = {
        "REQUEST_METHOD": "GET", "REQUEST_URI": uri, "SCRIPT_NAME": path,
        "DOCUMENT_URI": path, "QUERY_STRING": query,
        "SERVER_PROTOCOL": "HTTP/1.1", "REMOTE_ADDR": "127.0.0.1",
    }
    body = b"".join(pair(k.encode(), v.encode()) for k, v in params.items())
    t0 = time.monotonic()
    s = connect(addr, timeout)
    s.sendall(record(BEGIN, struct.pack(">HB5x", 1, 0)) + record(PARAMS, body)
              + record(PARAMS, b"") + record(STDIN, b""))
    buf, out = b"", b""
    while True:
        while len(buf) < 8 or len(buf) < 8 + struct.unpack(">H", buf[4:6])[0] + buf[6]:
            chunk = s.recv(65536)
            if not chunk:
                raise ConnectionError("closed before FCGI_END_REQUEST")
            buf += chunk
        _, rtype, _, clen, pad, _ = struct.unpack(">BBHHBB", buf[:8])
        content, buf = buf[8:8 + clen], buf[8 + clen + pad:]
        if rtype == STDOUT:
            out += content
        elif rtype == END:
            break
    s.close()
    head, _, payload = out.partition(b"\r\n\r\n")
    status = "none"
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"status:"):
            status = line.split()[1].decode()
    return status, time.monotonic() - t0, len(payload)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--timeout", type=float, default=10)
    ap.add_argument("addr")
    ap.add_argument("uri")
    a = ap.parse_args()
    t0 = time.monotonic()
    try:
        status, secs, n = get(a.addr, a.uri, a.timeout)
    except (OSError, ConnectionError) as e:
        print("error %.3f %s" % (time.monotonic() - t0, e))
        return 1
    print("%s %.3f %d" % (status, secs, n))
    return 0


if __name__ == "__main__":
    sys.exit(main())
