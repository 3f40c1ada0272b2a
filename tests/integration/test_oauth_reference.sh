#!/bin/bash
# src/oauth.c against a reference implementation not written by us: the npm
# package oauth-1.0a 2.2.6 (tests/oauth/package-lock.json; HMACs by node's
# crypto). The same cases, fixed and random (keys, secrets and parameter
# values over all of printable ASCII and some UTF-8, HMAC-SHA256 and
# HMAC-SHA1, with and without a token, queries in the URL, form bodies),
# are signed by both: tests/oauth/oauth_sign (linked with src/oauth.c) and
# tests/oauth/reference.js; every base string and every Authorization
# header must be the same, byte for byte. Missing node or npm is a
# failure, never a skip.
. "$(dirname "$0")/lib.sh"

require_cmds node npm python3
SIGN=$abs_top_builddir/tests/oauth/oauth_sign
[ -x "$SIGN" ] || die "missing $SIGN (make check builds it)"

NODE_DIR=$abs_top_builddir/tests/oauth-node
if [ ! -f "$NODE_DIR/package-lock.json" ] ||
    ! cmp -s "$NODE_DIR/package-lock.json" "$abs_top_srcdir/tests/oauth/package-lock.json" ||
    [ ! -f "$NODE_DIR/node_modules/oauth-1.0a/oauth-1.0a.js" ]; then
    rm -rf "$NODE_DIR"
    mkdir -p "$NODE_DIR"
    cp "$abs_top_srcdir/tests/oauth/package.json" "$abs_top_srcdir/tests/oauth/package-lock.json" "$NODE_DIR/"
    (cd "$NODE_DIR" && timeout 180 npm ci --no-audit --no-fund --loglevel=error) \
        >"$RUN_DIR/npm.log" 2>&1 || die "npm ci failed: $(tail -n 5 "$RUN_DIR/npm.log" | tr '\n' ' ')"
fi
assert_eq "$(node -p 'require(process.argv[1] + "/node_modules/oauth-1.0a/package.json").version' "$NODE_DIR")" \
    2.2.6 "the reference is oauth-1.0a 2.2.6"

SEED=${OAUTH_SEED:-$RANDOM}
diag "random cases from seed $SEED (OAUTH_SEED=$SEED reproduces them)"
python3 - "$RUN_DIR/cases.json" "$SEED" <<'PYEOF'
import json, random, string, sys
out, seed = sys.argv[1], int(sys.argv[2])
rnd = random.Random(seed)
printable = string.printable[:95]          # every printable ASCII byte, space too
utf8 = "\u00e9\u00df\u2603\U0001F5FA"       # 2, 2, 3 and 4 bytes in UTF-8
def text(n, extra=""):
    return "".join(rnd.choice(printable + extra) for _ in range(rnd.randint(1, n)))
cases = [
    # HERE's own request, with the portal's kinds of values.
    {"id": "here", "method": "HMAC-SHA256", "http_method": "POST",
     "url": "https://account.api.here.com/oauth2/token",
     "key": "1tqA_sample1fLhs2z6_q1l", "secret": "Yh4-sample_SECRET-x9Zq/+=",
     "nonce": "ZGAaMP", "timestamp": "1512072698",
     "body": [["grant_type", "client_credentials"]]},
    {"id": "here-scope", "method": "HMAC-SHA256", "http_method": "POST",
     "url": "https://account.api.here.com/oauth2/token",
     "key": "KeyIdKeyIdKeyId12345", "secret": "s3cr3t&=%",
     "nonce": "abcdefghijklmnopqrstuvwxyz012345", "timestamp": "1700000000",
     "body": [["grant_type", "client_credentials"],
              ["scope", "hrn:here:authorization::org1:project/my-project"]]},
    {"id": "local", "method": "HMAC-SHA256", "http_method": "POST",
     "url": "http://127.0.0.1:8080/oauth2/token", "key": "k", "secret": "s",
     "nonce": "n", "timestamp": "1", "body": [["grant_type", "client_credentials"]]},
    {"id": "token-sha1", "method": "HMAC-SHA1", "http_method": "GET",
     "url": "http://photos.example.net/photos?file=vacation.jpg&size=original",
     "key": "dpf43f3p2l4k3l03", "secret": "kd94hf93k423kf44",
     "token": "nnch734d00sl2jdk", "token_secret": "pfkkdhi9sl3r4s00",
     "nonce": "kllo9940pd9333jh", "timestamp": "1191242096", "body": []},
]
for i in range(200):
    c = {"id": "random-%d" % i,
         "method": rnd.choice(["HMAC-SHA256", "HMAC-SHA256", "HMAC-SHA1"]),
         "http_method": rnd.choice(["POST", "GET"]),
         "url": "%s://%s%s/%s" % (rnd.choice(["https", "http"]),
                                  rnd.choice(["account.api.here.com", "127.0.0.1", "[::1]"]),
                                  rnd.choice(["", ":8443", ":1"]),
                                  rnd.choice(["oauth2/token", "a/b/c", ""])),
         "key": text(40, utf8), "secret": text(60, utf8),
         "nonce": "".join(rnd.choice(string.ascii_letters + string.digits) for _ in range(32)),
         "timestamp": str(rnd.randint(1, 4102444800)),
         "body": [["grant_type", "client_credentials"]]}
    if rnd.random() < 0.5:
        c["body"].append(["scope", text(50, utf8)])
    if rnd.random() < 0.3:
        c["body"].append([text(10), text(20, utf8)])
    if rnd.random() < 0.3:
        c["token"], c["token_secret"] = text(30), text(30, utf8)
    if rnd.random() < 0.3:
        # A query: values %-encoded. Not '+' (oauth-1.0a reads it as a '+',
        # RFC 5849 as a space), and names of letters and digits: oauth-1.0a
        # does not decode a query's names, as RFC 5849 3.4.1.3.1 says to.
        enc = lambda s: "".join(ch if ch.isalnum() else "".join("%%%02X" % b for b in ch.encode()) for ch in s)
        name = lambda: "".join(rnd.choice(string.ascii_letters + string.digits) for _ in range(rnd.randint(1, 8)))
        c["url"] += "?" + "&".join("%s=%s" % (name(), enc(text(15, utf8))) for _ in range(rnd.randint(1, 3)))
    cases.append(c)
json.dump(cases, open(out, "w"), ensure_ascii=False)
PYEOF
"$SIGN" "$RUN_DIR/cases.json" >"$RUN_DIR/ours.jsonl" 2>"$RUN_DIR/ours.err"
assert_eq "$?" 0 "src/oauth.c signed every case ($(cat "$RUN_DIR/ours.err" | head -c 300))"
NODE_PATH=$NODE_DIR/node_modules timeout 60 node "$abs_top_srcdir/tests/oauth/reference.js" "$RUN_DIR/cases.json" \
    >"$RUN_DIR/reference.jsonl" 2>"$RUN_DIR/reference.err"
assert_eq "$?" 0 "oauth-1.0a signed every case ($(head -c 300 "$RUN_DIR/reference.err"))"
OUT=$(python3 - "$RUN_DIR/ours.jsonl" "$RUN_DIR/reference.jsonl" <<'PYEOF'
import json, sys
ours = [json.loads(l) for l in open(sys.argv[1], encoding="utf-8")]
ref = [json.loads(l) for l in open(sys.argv[2], encoding="utf-8")]
bad = []
if len(ours) != len(ref):
    bad.append("%d cases against %d" % (len(ours), len(ref)))
for a, b in zip(ours, ref):
    for field in ("base", "header"):
        if a["id"] != b["id"] or a[field] != b[field]:
            bad.append("%s %s:\n  ours      %s\n  reference %s" % (a["id"], field, a[field], b[field]))
print("%d cases, %d differences" % (len(ref), len(bad)))
print("\n".join(bad[:3]))
PYEOF
)
diag "$(head -n 1 <<<"$OUT")"
assert_eq "$(head -n 1 <<<"$OUT")" "204 cases, 0 differences" \
    "every base string and Authorization header equals oauth-1.0a's" || diag "$OUT"
assert_contains "$(grep '"id":"here"' "$RUN_DIR/ours.jsonl")" 'oauth_signature_method=\"HMAC-SHA256\"' \
    "HERE's request is signed HMAC-SHA256"
finish
