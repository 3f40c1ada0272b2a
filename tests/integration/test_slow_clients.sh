#!/bin/bash
# Slow clients cannot hold worker threads forever.  200 stalled clients in
# front of NGINX (half a request, or a whole one never read), then a normal
# request still gets its tile promptly.  Directly on the FastCGI socket,
# clients that never read a large tile would pin every worker; with
# HEREPROXY_WRITE_TIMEOUT_MS the workers come back and serve again.
. "$(dirname "$0")/lib.sh"

require_cmds nginx spawn-fcgi curl python3
require_bin

start_upstream
# A large tile (12 MB, chunked): more than the socket buffers hold.
upstream_control chunked 'bytes=12000000&times=-1&path=/v3/base/mc/8/'
start_proxy main HEREPROXY_THREADS=4 HEREPROXY_WRITE_TIMEOUT_MS=1000 UPSTREAM_MAX_BYTES=16M
PLOG=$PROXY_LOG
start_nginx main "$PROXY_ADDR"
P=$NGINX_URL/here-proxy

# stall HOST PORT MODE N SECONDS: N connections that stall for SECONDS,
# in the background; MODE half (half a request line), fcgi (a whole
# FastCGI request for the large tile, never read) or http (a whole HTTP
# request for the large tile, never read).
stall() {
    python3 - "$@" <<'EOF' &
import socket, struct, sys, time
host, port, mode, n, secs = sys.argv[1], int(sys.argv[2]), sys.argv[3], int(sys.argv[4]), float(sys.argv[5])

def rec(kind, content, rid=1):
    return struct.pack(">BBHHBB", 1, kind, rid, len(content), 0, 0) + content

def nv(k, v):
    return bytes([len(k), len(v)]) + k + v

socks = []
for i in range(n):
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    try:
        s.connect((host, port))
        if mode == "half":
            s.sendall(b"GET /here-proxy/base/mc/8/1/1/png HT")
        elif mode == "http":
            s.sendall(b"GET /here-proxy/base/mc/6/1/%d/png HTTP/1.1\r\nHost: x\r\n\r\n" % (i % 4))
        else:
            params = (nv(b"REQUEST_METHOD", b"GET") +
                      nv(b"REQUEST_URI", b"/here-proxy/base/mc/8/1/%d/png" % (i % 4)) +
                      nv(b"REMOTE_ADDR", b"127.0.0.1"))
            s.sendall(rec(1, struct.pack(">HB5x", 1, 0)) + rec(4, params) + rec(4, b"") + rec(5, b""))
    except OSError:
        pass
    socks.append(s)
time.sleep(secs)
for s in socks:
    s.close()
EOF
    STALL_PIDS+=($!)
}
STALL_PIDS=()

# fcgi_get PORT URI: one FastCGI request; prints "status seconds".
fcgi_get() {
    python3 - "$1" "$2" <<'EOF'
import socket, struct, sys, time
port, uri = int(sys.argv[1]), sys.argv[2].encode()
def rec(kind, content):
    return struct.pack(">BBHHBB", 1, kind, 1, len(content), 0, 0) + content
def nv(k, v):
    return bytes([len(k), len(v)]) + k + v
t0 = time.time()
s = socket.create_connection(("127.0.0.1", port), timeout=30)
params = nv(b"REQUEST_METHOD", b"GET") + nv(b"REQUEST_URI", uri) + nv(b"REMOTE_ADDR", b"127.0.0.1")
s.sendall(rec(1, struct.pack(">HB5x", 1, 0)) + rec(4, params) + rec(4, b"") + rec(5, b""))
out, buf = b"", b""
try:
    while time.time() - t0 < 30:
        c = s.recv(65536)
        if not c:
            break
        buf += c
        while len(buf) >= 8:
            ver, kind, rid, clen, plen, _ = struct.unpack(">BBHHBB", buf[:8])
            if len(buf) < 8 + clen + plen:
                break
            if kind == 6:
                out += buf[8:8 + clen]
            buf = buf[8 + clen + plen:]
            if kind == 3:
                raise StopIteration
except (StopIteration, socket.timeout):
    pass
head = out.split(b"\r\n\r\n", 1)[0].decode("latin-1")
status = "200"
for line in head.split("\r\n"):
    if line.lower().startswith("status:"):
        status = line.split()[1]
print(status if out else "none", "%.1f" % (time.time() - t0))
EOF
}

# ------------------------------------------------- 200 stalled NGINX clients
stall 127.0.0.1 "$NGINX_PORT" half 100 25
stall 127.0.0.1 "$NGINX_PORT" http 100 25
sleep 3
T0=$SECONDS
req GET "$P/base/mc/3/2/1/png?indice=normal" --max-time 15
check_status 200 "with 200 stalled clients on NGINX a normal tile is served"
assert_match "$((SECONDS - T0))" '^([0-9]|1[0-4])$' "... within 15 s (took $((SECONDS - T0)) s)"
req GET "$P/base/mc/3/2/2/png?indice=normal" --max-time 15
check_status 200 "... and another one"

# ----------------------------------------- stalled FastCGI clients, directly
# A second proxy with no web server in front (NGINX's kept-alive FastCGI
# connections would pin workers of their own): 4 workers, 8 clients that
# ask for the 12 MB tile and never read.
start_proxy direct HEREPROXY_THREADS=4 HEREPROXY_WRITE_TIMEOUT_MS=1000 UPSTREAM_MAX_BYTES=16M
stall 127.0.0.1 "$PROXY_PORT" fcgi 8 40
sleep 2
read -r ST SECS < <(fcgi_get "$PROXY_PORT" "/here-proxy/base/mc/3/2/3/png")
assert_eq "$ST" 200 "with every worker stalled on a client that never reads, a normal FastCGI request is served"
assert_match "${SECS%.*}" '^([0-9]|1[0-9])$' "... within 20 s (took $SECS s; HEREPROXY_WRITE_TIMEOUT_MS=1000)"
kill -0 "$PROXY_PID" 2>/dev/null && ok "the proxy is alive" || not_ok "the proxy is alive"
for pid in "${STALL_PIDS[@]}"; do
    kill "$pid" 2>/dev/null
    wait "$pid" 2>/dev/null
done
req GET "$P/base/mc/3/2/4/png" --max-time 15
check_status 200 "after the stalled clients left, tiles are served"
check_log_json "$PLOG" "proxy log lines are JSON" 3
finish
