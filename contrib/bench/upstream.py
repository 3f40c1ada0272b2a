#!/usr/bin/env python3
"""The local HERE imitation for benchmarks: tests/upstream/here_upstream.py
with cheap tiles.

here_upstream.py draws every tile in pure Python (about 30 ms for a 256 px
base PNG), so 50,000 distinct tiles, or a miss test at 64 in flight / 50 ms,
would measure the renderer.  This wrapper runs here_upstream.py unchanged
(HTTP/1.1 keep-alive, apiKey check, ETag/304, Cache-Control, --delay-ms,
/__control/delay, /__control/stats, ...) and replaces only tile_bytes():
each (resource, format, parameters) is drawn once, and each tile is that
image with its own text chunk (PNG tEXt, JPEG COM: "here_upstream
resource/mc/z/x/y/format ...", so every tile has distinct bytes and ETag)
and, with --tile-bytes N, an ancillary padding chunk (PNG "hpAd", JPEG
APP15) of incompressible bytes that brings the tile to about N bytes, the
size of a real HERE tile.  The images stay valid PNG / JPEG.  It also sets
TCP_NODELAY on its connections (here_upstream.py's two writes per response
otherwise wait ~40 ms for a delayed ACK), and /__control/stats also reports
"connections": connections accepted since the last reset.

  python3 contrib/bench/upstream.py [--tile-bytes 16384] [here_upstream.py options]
"""

import os
import random
import struct
import sys
import threading

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "..", "tests", "upstream"))

import here_upstream as hu  # noqa: E402

_real_tile_bytes = hu.tile_bytes
_templates, _lock = {}, threading.Lock()
_PAD = random.Random(20260101).randbytes(1 << 20)  # incompressible, fixed
TILE_BYTES = 0


def _png_parts(png):
    """(chunks before IDAT less the template's tEXt, IDAT on) of a PNG."""
    pos, head = 8, [png[:8]]
    while pos < len(png):
        length, kind = struct.unpack(">I4s", png[pos:pos + 8])
        if kind == b"IDAT":
            return b"".join(head), png[pos:]
        if kind != b"tEXt":
            head.append(png[pos:pos + 12 + length])
        pos += 12 + length
    raise ValueError("PNG without IDAT")


def _template(resource, fmt, params):
    key = (resource, fmt) + tuple(params[p] for p in hu.TILE_PARAMS)
    with _lock:
        t = _templates.get(key)
    if t is None:
        img = _real_tile_bytes(resource, 0, 0, 0, fmt, params)
        if fmt == "jpeg":  # SOI + APP0 (JFIF) | the rest
            app0_len = struct.unpack(">H", img[4:6])[0]
            head, tail = img[:4 + app0_len], img[4 + app0_len:]
            if tail[:2] == b"\xff\xfe":  # the template's own COM segment
                tail = tail[2 + struct.unpack(">H", tail[2:4])[0]:]
            t = (head, tail)
        else:
            t = _png_parts(img)
        with _lock:
            _templates[key] = t
    return t


def tile_bytes(resource, z, x, y, fmt, params, revision=0):
    head, tail = _template(resource, fmt, params)
    comment = ("here_upstream %s/mc/%d/%d/%d/%s %s%s" % (
        resource, z, x, y, fmt,
        " ".join("%s=%s" % (p, params[p]) for p in hu.TILE_PARAMS if params[p]),
        " revision=%d" % revision if revision else "")).encode(
            "latin-1", "replace")
    if fmt == "jpeg":
        text = hu.jpeg_segment(0xFE, comment)
        pad_len = TILE_BYTES - len(head) - len(tail) - len(text)
        pads = []
        while pad_len > 4:
            n = min(pad_len - 4, 65533 - 2)
            pads.append(hu.jpeg_segment(0xEF, _PAD[:n]))
            pad_len -= n + 4
        return b"".join([head, text] + pads + [tail])
    text = hu.png_chunk(b"tEXt", b"Comment\x00" + comment)
    pad_len = TILE_BYTES - len(head) - len(tail) - len(text) - 12
    pad = hu.png_chunk(b"hpAd", _PAD[:pad_len]) if pad_len > 0 else b""
    return head + text + pad + tail


def main(argv):
    global TILE_BYTES
    rest, i = [], 0
    while i < len(argv):
        if argv[i] == "--tile-bytes":
            TILE_BYTES = int(argv[i + 1])
            i += 2
        elif argv[i].startswith("--tile-bytes="):
            TILE_BYTES = int(argv[i].split("=", 1)[1])
            i += 1
        else:
            rest.append(argv[i])
            i += 1
    if not 0 <= TILE_BYTES <= len(_PAD):
        sys.exit("--tile-bytes must be between 0 and %d" % len(_PAD))
    hu.tile_bytes = tile_bytes
    # here_upstream.py writes the headers and the body with two send()s;
    # with Nagle on, the body waits for the client's delayed ACK of the
    # headers (about 40 ms on Linux loopback). HERE's servers do not add
    # that: send at once.
    hu.Handler.disable_nagle_algorithm = True
    count_connections()
    return hu.main(rest)


def count_connections():
    """/__control/stats also says how many connections were accepted since
    the last reset ("connections"): a client that does not reuse its
    connections shows there."""
    lock, accepted = threading.Lock(), [0]
    setup, stats, reset = hu.Handler.setup, hu.State.stats, hu.State.reset

    def counting_setup(self):
        with lock:
            accepted[0] += 1
        setup(self)

    def stats_with_connections(self):
        doc = stats(self)
        with lock:
            doc["connections"] = accepted[0]
        return doc

    def reset_connections(self):
        reset(self)
        with lock:
            accepted[0] = 0

    hu.Handler.setup = counting_setup
    hu.State.stats = stats_with_connections
    hu.State.reset = reset_connections


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
