#!/bin/bash
# The shipped web server configurations keep the operators' endpoints
# (/readyz, /metrics, /metrics/prometheus, /admin/) off the public side:
# loopback is allowed, a private range is a commented line to enable,
# everyone else is refused by the web server itself (403) and never
# reaches hereproxy.  /healthz and the tiles stay public.
#
# How a public client is shown: every address in 127.0.0.0/8 is loopback
# on Linux, and a real non-loopback source would need root and a network
# namespace.  Instead each server gets a test-only overlay (never in the
# shipped files) that takes the client address from X-Forwarded-For sent
# by our loopback client: NGINX's realip module (set_real_ip_from
# 127.0.0.1; real_ip_header X-Forwarded-For) and Apache's mod_remoteip
# (RemoteIPHeader X-Forwarded-For; RemoteIPInternalProxy 127.0.0.1).
# Both replace the connection's client address before the access phase,
# so the shipped allow/deny and "Require ip" rules judge exactly the
# address a client connecting from there would have; a request without
# the header is judged as loopback.  hereproxy's access line records the
# address it was handed (REMOTE_ADDR), which shows the overlay works.
# The configurations this test does not run (Docker, Kubernetes) get a
# check of their text.
. "$(dirname "$0")/lib.sh"

require_cmds nginx spawn-fcgi curl python3
require_bin

PUBLIC=203.0.113.7
PRIVATE=10.1.2.3
TOKEN="adm-$(od -An -N10 -tx1 /dev/urandom | tr -d ' \n')"
NGINX_OVERLAY="    set_real_ip_from 127.0.0.1;
    real_ip_header X-Forwarded-For;"
INTERNAL=(/readyz /metrics /metrics/prometheus)

# served_by_proxy PATH: access lines for PATH in $PROXY_LOG so far.
served_by_proxy() {
    grep -c "\"event\":\"access\".*\"path\":\"$1\"" "$PROXY_LOG"
}

# check_refused NAME URL_BASE FROM [JSON]: every internal endpoint asked
# from FROM is 403 from the web server, and hereproxy never saw it.
check_refused() {
    local name=$1 base=$2 from=$3 json=${4:-0} p before
    for p in "${INTERNAL[@]}"; do
        before=$(served_by_proxy "$p")
        req GET "$base$p" -H "X-Forwarded-For: $from"
        if [ "$json" = 1 ]; then
            check_json_error 403 "$name: $p from $from: 403 JSON from the web server"
        else
            check_status 403 "$name: $p from $from: 403 from the web server"
        fi
        assert_eq "$(served_by_proxy "$p")" "$before" "$name: $p from $from never reached hereproxy"
    done
    before=$(served_by_proxy /admin/purge)
    req POST "$base/admin/purge?all=1" -H "X-Forwarded-For: $from" -H "Authorization: Bearer $TOKEN"
    check_status 403 "$name: POST /admin/purge from $from, even with the token: 403"
    assert_eq "$(served_by_proxy /admin/purge)" "$before" "$name: the purge from $from never reached hereproxy"
}

# check_admitted NAME URL_BASE [FROM]: every internal endpoint answers
# from loopback (or FROM) as hereproxy does.
check_admitted() {
    local name=$1 base=$2 from=${3:-} xff=() p
    [ -n "$from" ] && xff=(-H "X-Forwarded-For: $from")
    for p in "${INTERNAL[@]}"; do
        req GET "$base$p" "${xff[@]}"
        check_status 200 "$name: $p from ${from:-loopback}: 200"
    done
    req POST "$base/admin/purge?all=1" "${xff[@]}" -H "Authorization: Bearer $TOKEN"
    check_status 200 "$name: POST /admin/purge from ${from:-loopback} with the token: 200"
}

# check_public NAME URL_BASE: what the public may use, it still may.
check_public() {
    req GET "$2/healthz" -H "X-Forwarded-For: $PUBLIC"
    check_status 200 "$1: /healthz from $PUBLIC: 200 (public)"
    req GET "$2/here-proxy/base/mc/3/1/1/png?indice=pub" -H "X-Forwarded-For: $PUBLIC"
    check_status 200 "$1: a tile from $PUBLIC: 200"
}

start_upstream
start_memcached
start_proxy main "MEMCACHED_SERVERS=127.0.0.1:$MEMCACHED_PORT" \
    "HEREPROXY_ADMIN_TOKEN=$TOKEN" "METRICS_ALLOW=loopback,10.0.0.0/8"

# ------------------------------------------------ conf/nginx/hereproxy.conf
NGINX_EXTRA_LOCATIONS=$NGINX_OVERLAY start_nginx plain "$PROXY_ADDR"
check_admitted "hereproxy.conf" "$NGINX_URL"
check_refused "hereproxy.conf" "$NGINX_URL" "$PUBLIC" 1
check_refused "hereproxy.conf" "$NGINX_URL" "$PRIVATE" 1
check_public "hereproxy.conf" "$NGINX_URL"
assert_match "$(grep '"path":"/here-proxy/base/mc/3/1/1/png"' "$PROXY_LOG" | tail -n 1)" \
    "\"remote_addr\":\"$PUBLIC\"" "the overlay works: hereproxy was handed $PUBLIC as the client"

# The commented private range, enabled: that network is admitted, the
# public still refused.
SRC=$abs_top_srcdir/conf/nginx/hereproxy.conf
mkdir -p "$RUN_DIR/conf-private/conf/nginx"
sed 's|# allow 10\.0\.0\.0/8;|allow 10.0.0.0/8;|' "$SRC" >"$RUN_DIR/conf-private/conf/nginx/hereproxy.conf"
assert_eq "$(grep -c '^ *allow 10\.0\.0\.0/8;' "$RUN_DIR/conf-private/conf/nginx/hereproxy.conf")" 4 \
    "hereproxy.conf: one commented private range per internal location (4)"
abs_top_srcdir=$RUN_DIR/conf-private NGINX_EXTRA_LOCATIONS=$NGINX_OVERLAY start_nginx private "$PROXY_ADDR"
check_admitted "hereproxy.conf, private range on" "$NGINX_URL" "$PRIVATE"
check_refused "hereproxy.conf, private range on" "$NGINX_URL" "$PUBLIC" 1

# ------------------------------------------ conf/nginx/hereproxy-cache.conf
start_nginx_cache cache "$PROXY_ADDR" \
    -e "s|^\\( *listen 127\\.0\\.0\\.1:[0-9]*;\\)|\\1 set_real_ip_from 127.0.0.1; real_ip_header X-Forwarded-For;|"
grep -q "real_ip_header X-Forwarded-For" "$NGINX_DIR/nginx.conf" || die "the realip overlay is not in $NGINX_DIR/nginx.conf"
check_admitted "hereproxy-cache.conf" "$NGINX_URL"
check_refused "hereproxy-cache.conf" "$NGINX_URL" "$PUBLIC"
check_refused "hereproxy-cache.conf" "$NGINX_URL" "$PRIVATE"
check_public "hereproxy-cache.conf" "$NGINX_URL"

# ------------------------------------------------ conf/apache/hereproxy.conf
if command -v apache2 >/dev/null 2>&1 || [ -x /usr/sbin/apache2 ]; then
    REMOTEIP=/usr/lib/apache2/modules/mod_remoteip.so
    [ -f "$REMOTEIP" ] || die "missing $REMOTEIP (apt-get install apache2)"
    APACHE_EXTRA_CONF="LoadModule remoteip_module $REMOTEIP
RemoteIPHeader X-Forwarded-For
RemoteIPInternalProxy 127.0.0.1" start_apache main "$PROXY_ADDR"
    check_admitted "apache" "$APACHE_URL"
    check_refused "apache" "$APACHE_URL" "$PUBLIC"
    check_refused "apache" "$APACHE_URL" "$PRIVATE"
    check_public "apache" "$APACHE_URL"
else
    not_ok "apache2 is installed (apt-get install apache2)"
fi

# ---------------------------------------- the configurations not run here
# Every location of an internal endpoint (those not routed are not exposed
# either) allows loopback, has a commented private range, and denies the
# rest; Kubernetes serves them on a port of their own that its Service
# does not expose.
conf_check() { # NAME FILE [k8s]
    local out
    if out=$(python3 - "$2" "${3:-}" <<'PYEOF'
import re, sys
text = open(sys.argv[1]).read()
if sys.argv[2] == "k8s":
    import yaml
    docs = [d for d in yaml.safe_load_all(text) if d]
    text = next(d for d in docs if d["metadata"]["name"] == "hereproxy-nginx")["data"]["nginx.conf"]

def blocks(t, head):
    """(header, body) of every block whose header matches head."""
    out = []
    for m in re.finditer(head, t):
        i, depth = t.index("{", m.end() - 1), 0
        for j in range(i, len(t)):
            depth += {"{": 1, "}": -1}.get(t[j], 0)
            if depth == 0:
                out.append((m.group(0), t[i + 1:j]))
                break
    return out

internal = re.compile(r"location\s+(=\s*)?/(readyz|metrics|metrics/prometheus|admin/)\s*\{")
bad = []
servers = blocks(text, r"\bserver\s*\{")
if sys.argv[2] == "k8s":
    public = [b for _, b in servers if re.search(r"listen\s+8080\b", b)]
    if not public or internal.search(public[0]):
        bad.append("the public server (listen 8080) routes an internal endpoint")
    inner = [b for _, b in servers if not re.search(r"listen\s+8080\b", b)]
    if not inner or len(internal.findall(inner[0])) != 4:
        bad.append("no second server with the 4 internal endpoints")
else:
    # An endpoint a configuration does not route is not exposed either.
    found = blocks(text, internal.pattern)
    if not found:
        bad.append("no internal location at all: is this the right file?")
    for head, body in found:
        lines = [l.strip() for l in body.splitlines()]
        for need in ("allow 127.0.0.1;", "allow ::1;", "deny all;"):
            if need not in lines:
                bad.append("%s lacks %s" % (head, need))
        if not any(re.match(r"#\s*allow\s+(10\.|172\.|192\.168\.)", l) for l in lines):
            bad.append("%s has no commented private range" % head)
        allows = [i for i, l in enumerate(lines) if l.startswith("allow ")]
        if "deny all;" in lines and allows and lines.index("deny all;") < max(allows):
            bad.append("%s denies before it allows" % head)
print("\n".join(bad))
sys.exit(1 if bad else 0)
PYEOF
    ); then
        ok "$1: internal endpoints kept off the public side"
    else
        not_ok "$1: internal endpoints kept off the public side" "$out"
    fi
}
conf_check conf/nginx/hereproxy.conf "$abs_top_srcdir/conf/nginx/hereproxy.conf"
conf_check conf/nginx/hereproxy-cache.conf "$abs_top_srcdir/conf/nginx/hereproxy-cache.conf"
conf_check contrib/docker/nginx.conf "$abs_top_srcdir/contrib/docker/nginx.conf"
if python3 -c 'import yaml' 2>/dev/null; then
    conf_check contrib/k8s/configmap.yaml "$abs_top_srcdir/contrib/k8s/configmap.yaml" k8s
else
    not_ok "python3-yaml is installed (apt-get install python3-yaml)"
fi
apache_out=$(grep -nE 'Require (all granted|ip)' "$abs_top_srcdir/conf/apache/hereproxy.conf")
assert_eq "$(grep -c 'Require ip 127.0.0.1 ::1' <<<"$apache_out")" 2 \
    "apache: both internal sections Require ip 127.0.0.1 ::1"
assert_eq "$(grep -c '# Require ip 10\.0\.0\.0/8' "$abs_top_srcdir/conf/apache/hereproxy.conf")" 2 \
    "apache: both have a commented private range"
finish
