#!/usr/bin/env python3
"""Write the seed corpora of the libFuzzer targets (tests/fuzz/README).

    tests/fuzz/gen_corpus.py [DIR]     (default: tests/fuzz/corpus)

Each seed is a file named after what it is, in DIR/<target>/. The output is
deterministic and checked in; rerun this after changing a seed here. Files
in DIR/<target>/ that this script does not write (reproducers of fixed bugs,
crash-*) are kept. The entry blobs are built by an independent
implementation of the layout in src/entry.h, so the fuzz run also checks
that the two agree.
"""

import os
import struct
import sys

# ------------------------------------------------------------ fuzz_request
# Control byte: bits 0-1 method, bits 2-3 URI form, bit 4 logistics,
# bit 5 zmax 22 (see fuzz_request.c).
GET, HEAD, OPTIONS, POST = 0, 1, 2, 3
RAW, Q_TILE, Q_META, Q_SHORT = 0 << 2, 1 << 2, 2 << 2, 3 << 2
LOGISTICS, ZMAX22 = 1 << 4, 1 << 5

TILE = "/here-proxy/base/mc/12/2200/1343/png"
ALL_PARAMS = ("style=explore.night&size=512&ppi=400&scale=2&lang=pt-BR"
              "&lang2=en&pview=ARG&features=pois:all,congestion_zones:"
              "disabled,environmental_zones:all,vehicle_restrictions:"
              "active_and_inactive&indice=client-1.a_b")

REQUEST = {
    # valid tiles, every resource and format
    "tile_base_png": (GET, TILE),
    "tile_background_png8": (GET, "/here-proxy/background/mc/0/0/0/png8"),
    "tile_label_jpeg_z20": (GET,
                            "/here-proxy/label/mc/20/1048575/1048575/jpeg"),
    "tile_blank_png": (GET, "/here-proxy/blank/mc/1/1/1/png"),
    "tile_short_form": (GET, "/here-proxy/mc/12/2200/1343/png"),
    "tile_head": (HEAD, TILE),
    "tile_z22": (GET | ZMAX22, "/here-proxy/base/mc/22/4194303/0/png"),
    "tile_all_params": (GET, TILE + "?" + ALL_PARAMS),
    "tile_defaults_explicit": (GET, TILE + "?style=explore.day&size=256"
                               "&ppi=100&scale=1"),
    "tile_features_permanent": (GET, TILE + "?features=vehicle_restrictions:"
                                "permanent_only"),
    "tile_features_all_modes": (GET, TILE + "?features=public_transit:"
                                "all_systems,truck_preferred_roads:all,"
                                "vehicle_restrictions:active_only"
                                "&startTime=2024-02-29T08:00"
                                "&endTime=2024-02-29T18:00"),
    "tile_time_window_reversed": (GET, TILE + "?features=vehicle_"
                                  "restrictions:active_and_inactive_"
                                  "differentiated&startTime=2025-12-03T18:00"
                                  "&endTime=2025-12-03T08:00"),
    "tile_time_without_mode": (GET, TILE + "?startTime=2023-02-29T08:00"),
    "tile_logistics": (GET | LOGISTICS, TILE + "?style=logistics.night"),
    "tile_logistics_disabled": (GET, TILE + "?style=logistics.day"),
    "tile_dropped_params": (GET, TILE + "?indice=abc&apiKey=secret&app_id=x"
                            "&app_code=y&lg=eng&mv=123"),
    "tile_empty_params": (GET, TILE + "?&&style=lite.day&&"),
    "tile_plus_space": (GET, TILE + "?lang=e+n"),
    "tile_encoded_name": (GET, TILE + "?%73tyle=topo.day&%61piKey=z"),
    # metadata, health, preflight, methods
    "meta_info": (GET, "/here-proxy/info"),
    "meta_copyright_lang": (GET, "/here-proxy/copyright?lang=de"),
    "meta_languages": (GET, "/here-proxy/languages"),
    "meta_features": (GET, "/here-proxy/features?features=pois:disabled"),
    "meta_politicalviews": (GET, "/here-proxy/politicalViews?pview=IND"),
    "healthz": (GET, "/healthz"),
    "readyz_head": (HEAD, "/readyz"),
    "healthz_post": (POST, "/healthz"),
    "preflight": (OPTIONS, "/here-proxy/base/mc/1/0/0/png"),
    "post_tile": (POST, TILE),
    # the query after a fixed valid path
    "query_tile_all": (Q_TILE, ALL_PARAMS),
    "query_tile_size": (Q_TILE, "size=512&scale=2"),
    "query_meta_lang": (Q_META, "lang=en&lang2=fr"),
    "query_short_ppi": (Q_SHORT, "ppi=200"),
    "query_features_twice": (Q_TILE, "features=pois:all,pois:all"),
    "query_features_empty": (Q_TILE, "features="),
    "query_features_trailing_comma": (Q_TILE, "features=pois:all,"),
    "query_features_nine": (Q_TILE, "features=" + ",".join(
        ["pois:all"] * 9)),
    "query_lang_twice": (Q_TILE, "lang=en&lang=de"),
    "query_apikey_twice": (Q_TILE, "apiKey=x&apiKey=y"),
    "query_indice_twice": (Q_TILE, "indice=a&indice=b"),
    "query_indice_65": (Q_TILE, "indice=" + "a" * 65),
    "query_indice_escaped": (Q_TILE, "indice=%41b.c-d_e"),
    "query_unknown": (Q_TILE, "callback=alert(1)"),
    "query_no_value": (Q_TILE, "style"),
    "query_bad_escape": (Q_TILE, "style=%zz"),
    "query_trailing_percent": (Q_TILE, "style=explore.day%"),
    "query_short_escape": (Q_TILE, "lang=e%6"),
    "query_size_leading_zero": (Q_TILE, "size=0512"),
    "query_size_plus": (Q_TILE, "size=%2B256"),
    "query_ppi_huge": (Q_TILE, "ppi=99999999999999999999"),
    "query_33_params": (Q_TILE, "&".join(["lg=1"] + ["x%d=1" % i
                                                      for i in range(32)])),
    "query_2000_empty": (Q_TILE, "&" * 2000 + "size=512"),
    # attacks: traversal, encodings, injection, size
    "attack_dotdot": (GET, "/here-proxy/../etc/passwd"),
    "attack_pct2e": (GET, "/here-proxy/%2e%2e/mc/1/0/0/png"),
    "attack_pct2e_upper": (GET, "/here-proxy/base/mc/1/0/0/%2E%2E"),
    "attack_dot_segment": (GET, "/here-proxy/./base/mc/1/0/0/png"),
    "attack_trailing_dotdot": (GET, TILE + "/.."),
    "attack_double_slash": (GET, "/here-proxy//base/mc/1/0/0/png"),
    "attack_backslash": (GET, "/here-proxy/base/mc/1/0/0/png\\..\\x"),
    "attack_pct00_path": (GET, "/here-proxy/base/mc/1/0/0/png%00.jpg"),
    "attack_pct00_query": (GET, TILE + "?style=explore.day%00"),
    "attack_crlf_query": (GET, TILE + "?indice=a%0d%0aSet-Cookie:%20x=1"),
    "attack_crlf_raw": (GET, "/here-proxy/info\r\nX-Injected: 1"),
    "attack_style_traversal": (GET, TILE + "?style=../../x"),
    "attack_pct2f_query": (GET, TILE + "?style=%2f%2e%2e%2f"),
    "attack_fragment": (GET, TILE + "#frag"),
    "attack_absolute_form": (GET, "http://evil.example/here-proxy/info"),
    "attack_asterisk": (OPTIONS, "*"),
    "attack_empty": (GET, ""),
    "attack_high_bytes": (GET, "/here-proxy/info\xff\xfe"),
    "attack_2000_params": (GET, TILE + "?" + "&".join(["a=1"] * 2000)),
    "attack_long_path": (GET, "/here-proxy/" + "a/" * 2100),
    "coord_leading_zero": (GET, "/here-proxy/base/mc/01/0/0/png"),
    "coord_x_out_of_range": (GET, "/here-proxy/base/mc/1/2/0/png"),
    "coord_z21": (GET, "/here-proxy/base/mc/21/0/0/png"),
    "coord_huge": (GET, "/here-proxy/base/mc/20/99999999/0/png"),
    "coord_negative": (GET, "/here-proxy/base/mc/1/-1/0/png"),
    "unknown_resource": (GET, "/here-proxy/street/mc/1/0/0/png"),
    "unknown_format": (GET, "/here-proxy/base/mc/1/0/0/gif"),
    "too_many_segments": (GET, "/here-proxy/base/mc/1/0/0/png/extra"),
}

# ----------------------------------------------------------- fuzz_settings
def example_conf():
    here = os.path.dirname(os.path.abspath(__file__))
    path = os.path.join(here, "..", "..", "conf", "hereproxy.conf.example")
    with open(path) as f:
        text = f.read()
    # The example with every line uncommented (and a key).
    live = "\n".join(l[1:] if l.startswith("#") and "=" in l[:40] and
                     l[1:2].isupper() and "KEY_FILE" not in l else l
                     for l in text.splitlines())
    return text, live.replace("your-here-api-key", "abc123")


SETTINGS = {
    "minimal_key": "HERE_API_KEY=abc-._~123\n",
    "key_quoted": "HERE_API_KEY='k3y'\nHERE_BASE_URL=\"http://127.0.0.1:8081/v3\"\n",
    "key_bad_chars": "HERE_API_KEY=a b&c\n",
    "key_too_long": "HERE_API_KEY=" + "k" * 513 + "\n",
    "url_trailing_slashes": "HERE_BASE_URL=https://maps.example/v3///\n",
    "url_no_host": "HERE_BASE_URL=https://\n",
    "url_query": "HERE_BASE_URL=https://x.example/v3?apiKey=1\n",
    "url_ftp": "HERE_BASE_URL=ftp://x.example/\n",
    "url_only_slash": "HERE_BASE_URL=http:///\n",
    "cors_list": "HEREPROXY_CORS_ORIGINS=https://a.example, http://b.example:8080\n",
    "cors_trailing_comma": "HEREPROXY_CORS_ORIGINS=https://a.example,\n",
    "cors_empty_item": "HEREPROXY_CORS_ORIGINS=https://a.example,,http://b\n",
    "servers_two": "MEMCACHED_SERVERS=127.0.0.1:11211,mc2.local:11212\n",
    "servers_port0": "MEMCACHED_SERVERS=127.0.0.1:0\n",
    "servers_port_big": "MEMCACHED_SERVERS=127.0.0.1:65536\n",
    "servers_no_port": "MEMCACHED_SERVERS=localhost\n",
    "servers_colon_only": "MEMCACHED_SERVERS=host:\n",
    "zmax_22": "HEREPROXY_ZMAX=22\n",
    "zmax_23": "HEREPROXY_ZMAX=23\n",
    "threads_negative": "HEREPROXY_THREADS=-1\n",
    "threads_plus": "HEREPROXY_THREADS=+5\n",
    "threads_hex": "HEREPROXY_THREADS=0x10\n",
    "threads_overflow": "HEREPROXY_THREADS=99999999999999999999999\n",
    "size_suffixes": "CACHE_MAXBYTES=256M\nUPSTREAM_MAX_BYTES=8m\n",
    "size_g": "CACHE_MAXBYTES=16G\n",
    "size_max": "CACHE_MAXBYTES=18446744073709551615\n",
    "size_overflow": "CACHE_MAXBYTES=18446744073709551616\n",
    "size_suffix_overflow": "CACHE_MAXBYTES=99999999999G\n",
    "size_two_suffixes": "CACHE_MAXBYTES=1KK\n",
    "upstream_below_min": "UPSTREAM_MAX_BYTES=1023\n",
    "ttl_all": "CACHE_TTL_DEFAULT=0\nCACHE_TTL_CAP=31536000\n"
               "CACHE_META_TTL=31536001\n",
    "bool_words": "HERE_ALLOW_LOGISTICS=yes\nHERE_ALLOW_LOGISTICS=Off\n",
    "bool_bad": "HERE_ALLOW_LOGISTICS=2\n",
    "level_lower": "LOG_LEVEL=debug\n",
    "level_bad": "LOG_LEVEL=TRACE\n",
    "listen_socket": "HEREPROXY_LISTEN=/run/hereproxy/fcgi.sock\n"
                     "HEREPROXY_LISTEN=127.0.0.1:9000\n",
    "ca_file": "HERE_CA_FILE=/etc/ssl/certs/ca-certificates.crt\n",
    "comments_blank": "\n# comment\n   \n\t# indented\nLOG_LEVEL=WARN\n\n",
    "crlf": "LOG_LEVEL=ERROR\r\nHEREPROXY_ZMAX=18\r\n",
    # Found by the fuzzer: tokens other than the HERE key may hold spaces
    # and '=' until settings_validate (the harness checked every secret).
    "admin_token_with_spaces": "HEREPROXY_ADMIN_TOKEN= one token:x! a b=\n"
                               "HEREPROXY_CLIENT_TOKENS=to ken=1:a\n",
    "spaces_around": "  HEREPROXY_ZMAX =  19  \n",
    "no_equals": "HEREPROXY_ZMAX\n",
    "unknown_name": "HEREPROXY_ZOOM=3\n",
    "empty_name": "=value\n",
    "empty_value": "HEREPROXY_ZMAX=\n",
    "lone_quote": "HERE_API_KEY=\"\n",
    "value_too_long": "HERE_CA_FILE=" + "/x" * 2100 + "\n",
    "error_on_line_3": "LOG_LEVEL=INFO\n\nHEREPROXY_ZMAX=99\n",
    "no_final_newline": "LOG_LEVEL=INFO",
    "repeated": "HERE_CA_FILE=/a\nHERE_CA_FILE=/b\nHERE_CA_FILE=/c\n",
}

# ------------------------------------------------------ fuzz_cache_control
def ttl_seed(value, cap=86400, default=3600):
    return struct.pack("<II", cap, default) + value.encode("latin-1")


CACHE_CONTROL = {
    "public_max_age": ttl_seed("public, max-age=86400"),
    "max_age_over_cap": ttl_seed("max-age=604800"),
    "max_age_zero": ttl_seed("max-age=0"),
    "s_maxage_wins": ttl_seed("s-maxage=60, max-age=3600"),
    "s_maxage_after": ttl_seed("max-age=3600,s-maxage=60"),
    "no_store": ttl_seed("no-store"),
    "no_cache": ttl_seed("no-cache"),
    "private": ttl_seed("private, max-age=600"),
    "upper_case": ttl_seed("NO-STORE"),
    "mixed_case": ttl_seed("Max-Age=120"),
    "quoted": ttl_seed('max-age="120"'),
    "quoted_empty": ttl_seed('s-maxage=""'),
    "quoted_one": ttl_seed('max-age="'),
    "huge": ttl_seed("max-age=99999999999999999999"),
    "two_pow_31": ttl_seed("max-age=2147483648"),
    "huge_unbounded_cap": ttl_seed("max-age=99999999999999999999",
                                   31536000, 31536000),
    "negative": ttl_seed("max-age=-1"),
    "empty_value": ttl_seed("max-age="),
    "no_value": ttl_seed("max-age"),
    "commas": ttl_seed(",,, ,"),
    "empty": ttl_seed(""),
    "repeated": ttl_seed("max-age=10,max-age=20"),
    "many_directives": ttl_seed("must-revalidate, max-age=300, "
                                "stale-while-revalidate=60, "
                                "stale-if-error=86400, immutable"),
    "exponent": ttl_seed("max-age=1e3"),
    "space_in_value": ttl_seed("max-age= 5"),
    "padded": ttl_seed("  max-age=5  "),
    "tabs": ttl_seed("\tno-cache\t"),
    "quoted_comma": ttl_seed('foo="a,b", max-age=7'),
    "no_store_arg": ttl_seed('no-store="x"'),
    "private_field": ttl_seed('private="Set-Cookie"'),
    "no_store_prefix": ttl_seed("no-storex, max-age=9"),
    "cap_zero": ttl_seed("max-age=100", 0, 0),
    "default_is_cap": ttl_seed("public", 31536000, 31536000),
    "crlf": ttl_seed("max-age=5\r\nSet-Cookie: x"),
    "high_bytes": ttl_seed("max-age=5\xff"),
}

# -------------------------------------------------------------- fuzz_entry
MAGIC = b"HPXE"
PNG = (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x01\x00\x00\x00\x01"
       b"\x00\x08\x06\x00\x00\x00\x5c\x72\xa8\x66")


def entry_blob(status=200, fresh=1700000000, keep=1700086400,
               ctype=b"image/png", etag=b'"abc123"', body=PNG,
               version=3, flags=0, lens=None, seal=b"\x00" * 28):
    """The layout of src/entry.h (version 3); lens override the computed
    ones; seal is the MAC's nonce and tag (unsealed: zeros)."""
    clen, elen, blen = lens or (len(ctype), len(etag), len(body))
    head = (MAGIC + struct.pack("<BBHqqIHH", version, flags, status, fresh,
                                keep, blen, clen, elen) + seal)
    assert len(head) == 60
    return bytes(head + ctype + etag + body)


def corrupt(blob, offset, value):
    b = bytearray(blob)
    b[offset] = value
    return bytes(b)


GOOD = entry_blob()
ENTRY = {
    "tile_png": GOOD,
    "tile_jpeg_weak_etag": entry_blob(ctype=b"image/jpeg",
                                      etag=b'W/"0815"', body=b"\xff\xd8" +
                                      bytes(range(256)) + b"\xff\xd9"),
    "no_etag": entry_blob(etag=b""),
    "empty_body": entry_blob(body=b""),
    "empty_everything": entry_blob(ctype=b"", etag=b"", body=b""),
    "json_404": entry_blob(status=404, ctype=b"application/json",
                           etag=b"", body=b'{"error":"not found"}'),
    "metadata_json": entry_blob(ctype=b"application/json; charset=utf-8",
                                body=b'{"copyrights":{"base":[]}}'),
    "status_100": entry_blob(status=100),
    "status_599": entry_blob(status=599),
    "ctype_max": entry_blob(ctype=b"t/" + b"x" * 126),
    "etag_max": entry_blob(etag=b'"' + b"e" * 254 + b'"'),
    "times_negative": entry_blob(fresh=-1, keep=-(2 ** 63)),
    "times_max": entry_blob(fresh=2 ** 63 - 1, keep=2 ** 63 - 1),
    "body_4k": entry_blob(body=bytes(i * 7 % 256 for i in range(4096))),
    # refused
    "bad_magic": corrupt(GOOD, 0, ord("X")),
    "bad_version": entry_blob(version=1),
    "bad_version_2": entry_blob(version=2),
    "bad_flags": entry_blob(flags=1),
    "random_seal": entry_blob(seal=bytes(range(28))),
    "flipped_body_bit": corrupt(GOOD, len(GOOD) - 1, GOOD[-1] ^ 1),
    "flipped_ttl_bit": corrupt(GOOD, 9, GOOD[9] ^ 1),
    "truncated_header": GOOD[:59],
    "truncated_body": GOOD[:-1],
    "trailing_byte": GOOD + b"\x00",
    "ctype_too_long": entry_blob(ctype=b"t/" + b"x" * 127),
    "etag_too_long": entry_blob(etag=b'"' + b"e" * 255 + b'"'),
    "status_99": entry_blob(status=99),
    "status_600": entry_blob(status=600),
    "body_len_huge": entry_blob(lens=(9, 8, 0xffffffff)),
    "ctype_len_past_end": entry_blob(lens=(0xffff, 8, len(PNG))),
    "ctype_crlf": entry_blob(ctype=b"text/plain\r\nSet-Cookie: a=b"),
    "ctype_nul": entry_blob(ctype=b"image/png\x00.html"),
    "etag_lf": entry_blob(etag=b'"a"\nX-Injected: 1'),
    "header_only_magic": MAGIC,
    "empty": b"",
}

# --------------------------------------------------------------- fuzz_etag
def etag_seed(inm, etag):
    return inm.encode("latin-1") + b"\x00" + etag.encode("latin-1")


ETAG = {
    "strong_equal": etag_seed('"abc"', '"abc"'),
    "strong_differ": etag_seed('"abc"', '"abd"'),
    "weak_request": etag_seed('W/"abc"', '"abc"'),
    "weak_stored": etag_seed('"abc"', 'W/"abc"'),
    "weak_both": etag_seed('W/"abc"', 'W/"abc"'),
    "star": etag_seed("*", '"x"'),
    "star_in_list": etag_seed('"a", *', '"b"'),
    "list_middle": etag_seed('"a", "b", "c"', '"b"'),
    "list_last_weak": etag_seed('"a" , W/"b"', '"b"'),
    "list_no_match": etag_seed('"a", "b"', '"c"'),
    "comma_in_tag": etag_seed('"a,b"', '"a,b"'),
    "comma_in_tag_split": etag_seed('"a,b", "c"', '"b"'),
    "empty_tag": etag_seed('""', '""'),
    "empty_elements": etag_seed(' , ,"a",, ', '"a"'),
    "no_comma": etag_seed('"a" "b"', '"b"'),
    "unterminated": etag_seed('"abc', '"abc"'),
    "unquoted_stored": etag_seed('"abc"', "abc"),
    "unquoted_both": etag_seed("abc", "abc"),
    "empty_stored": etag_seed('"x"', ""),
    "empty_request": etag_seed("", '"x"'),
    "w_slash_only": etag_seed("W/", "W/"),
    "tabs": etag_seed('\t"a"\t,\t"b"\t', '"b"'),
    "long_list": etag_seed(", ".join('"tag%d"' % i for i in range(300)),
                           '"tag299"'),
    "case_differs": etag_seed('"ABC"', '"abc"'),
    "w_lowercase": etag_seed('w/"abc"', '"abc"'),
    "high_bytes": etag_seed('"\xe9t\xe9"', '"\xe9t\xe9"'),
}


def write(outdir, target, seeds):
    d = os.path.join(outdir, target)
    os.makedirs(d, exist_ok=True)
    for name, data in sorted(seeds.items()):
        if isinstance(data, str):
            data = data.encode("latin-1")
        with open(os.path.join(d, name), "wb") as f:
            f.write(data)


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    outdir = sys.argv[1] if len(sys.argv) > 1 else os.path.join(here,
                                                                "corpus")
    text, live = example_conf()
    settings = dict(SETTINGS, example_conf=text, example_conf_live=live)
    write(outdir, "fuzz_request", {k: bytes([c]) + u.encode("latin-1")
                                   for k, (c, u) in REQUEST.items()})
    write(outdir, "fuzz_settings", settings)
    write(outdir, "fuzz_cache_control", CACHE_CONTROL)
    write(outdir, "fuzz_entry", ENTRY)
    write(outdir, "fuzz_etag", ETAG)


if __name__ == "__main__":
    main()
