#!/usr/bin/env python3
"""Local imitation of HERE's Raster Tile API v3 (upstream for hereproxy tests).

Standard library only.  Plain HTTP/1.1 with keep-alive; TLS/HTTP2 are left to
a fronting NGINX.  See README in this directory for the control endpoints.
"""

import argparse
import base64
import hashlib
import hmac
import json
import math
import os
import re
import secrets
import signal
import socket
import struct
import sys
import threading
import time
import uuid
import zlib
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from itertools import repeat
from operator import add, mul
from urllib.parse import parse_qs, quote, unquote, urlsplit

# --------------------------------------------------------------------------
# Palettes.  Every tile is rendered as palette indices first, so PNG8 is free
# and RGB / YCbCr planes are produced with bytes.translate (C speed).
# --------------------------------------------------------------------------
BG, WATER, PARK, COAST, GRID, BORDER, TEXT, LABEL = range(8)

PALETTES = {  # bg, water, park, coast, grid, border, text, label box
    "day": [(245, 240, 225), (170, 211, 223), (200, 225, 180), (110, 150, 180),
            (218, 208, 188), (150, 140, 120), (30, 30, 30), (255, 255, 255)],
    "night": [(25, 35, 70), (10, 18, 40), (30, 55, 65), (80, 100, 150),
              (45, 60, 100), (100, 120, 160), (235, 235, 245), (12, 16, 32)],
    "satellite": [(112, 102, 62), (34, 52, 70), (72, 96, 46), (185, 175, 135),
                  (132, 122, 84), (60, 55, 35), (255, 255, 255), (20, 20, 20)],
    "topo": [(215, 235, 200), (160, 200, 230), (178, 212, 152), (90, 130, 170),
             (195, 215, 180), (110, 130, 100), (40, 40, 40), (255, 255, 255)],
    "lite": [(236, 236, 236), (203, 216, 226), (222, 230, 216), (160, 170, 182),
             (222, 222, 222), (170, 170, 170), (50, 50, 50), (255, 255, 255)],
    "other": [(180, 180, 180), (140, 160, 175), (165, 180, 160), (100, 110, 120),
              (165, 165, 165), (110, 110, 110), (20, 20, 20), (240, 240, 240)],
}


def palette_for(style):
    if style == "explore.night":
        return PALETTES["night"]
    if "satellite" in style:  # satellite.day, explore.satellite.day, lite.satellite.day
        return PALETTES["satellite"]
    for prefix in ("topo", "lite"):
        if style.startswith(prefix + "."):
            return PALETTES[prefix]
    return PALETTES["day"] if style == "explore.day" else PALETTES["other"]


# 5x7 bitmap font: 7 rows of 5 bits per glyph.
FONT = {
    "0": (14, 17, 19, 21, 25, 17, 14), "1": (4, 12, 4, 4, 4, 4, 14),
    "2": (14, 17, 1, 2, 4, 8, 31), "3": (31, 2, 4, 2, 1, 17, 14),
    "4": (2, 6, 10, 18, 31, 2, 2), "5": (31, 16, 30, 1, 1, 17, 14),
    "6": (6, 8, 16, 30, 17, 17, 14), "7": (31, 1, 2, 4, 8, 8, 8),
    "8": (14, 17, 17, 14, 17, 17, 14), "9": (14, 17, 17, 15, 1, 2, 12),
    "/": (1, 1, 2, 4, 8, 16, 16),
}

# Coastline noise: plane waves (amplitude, wavelength in tiles, direction in
# degrees) over absolute tile coordinates, so tile edges match their
# neighbours; the phase depends on z so zoom levels look different.
NOISE_TERMS = [(1.0, 1.7, 20), (0.8, 1.1, 75), (0.55, 0.6, 130),
               (0.4, 0.33, 200), (0.25, 0.17, 260), (0.15, 0.09, 320)]
WATER_LEVEL, PARK_LEVEL = 0.2, -1.05


def noise_columns(x, z, size, step):
    """Per-term column factors: amp*sin(kx*X) and amp*cos(kx*X) at the samples."""
    cols = []
    xs = [x + c * step / size for c in range(size // step + 1)]
    for i, (amp, wl, deg) in enumerate(NOISE_TERMS):
        kx = 2 * math.pi / wl * math.cos(math.radians(deg))
        ky = 2 * math.pi / wl * math.sin(math.radians(deg))
        phase = (z * 1.618 + i * 2.399) % (2 * math.pi)
        cols.append(([amp * math.sin(kx * X) for X in xs],
                     [amp * math.cos(kx * X) for X in xs], ky, phase))
    return cols


def noise_row(cols, Y):
    """Noise values at one pixel row: sum of sin(kx*X + ky*Y + p), separated."""
    vals = None
    for s_col, c_col, ky, phase in cols:
        a = ky * Y + phase
        term = map(add, map(mul, s_col, repeat(math.cos(a))),
                   map(mul, c_col, repeat(math.sin(a))))
        vals = list(term) if vals is None else list(map(add, vals, term))
    return vals


def spans_above(vals, level, step, limit, below=False):
    """Pixel ranges [a, b) where the linearly interpolated row is above level."""
    if below:
        vals = [-v for v in vals]
        level = -level
    if max(vals) <= level:
        return []
    out, start, prev = [], (0 if vals[0] > level else None), vals[0]
    for c in range(1, len(vals)):
        v = vals[c]
        if (v > level) != (prev > level):
            cross = (c - 1 + (prev - level) / (prev - v)) * step
            if v > level:
                start = math.floor(cross) + 1
            else:
                out.append((start, min(limit, math.ceil(cross))))
                start = None
        prev = v
    if start is not None:
        out.append((start, limit))
    return out


def draw_land(buf, size, z, x, y):
    """Water / land / park areas with a 1 px coastline (seamless across tiles)."""
    step = 4 if size <= 256 else 8
    cols = noise_columns(x, z, size, step)
    ones = b"\x01" * (size + 1)
    table = bytes([BG, WATER, PARK, PARK] + [COAST] * 4 + [0] * 248)
    prev = None
    for py in range(-1, size):  # row -1 belongs to the tile above: seamless edges
        vals = noise_row(cols, y + py / size)
        water = bytearray(size + 1)
        for a, b in spans_above(vals, WATER_LEVEL, step, size + 1):
            water[a:b] = ones[: b - a]
        park = bytearray(size)
        for a, b in spans_above(vals, PARK_LEVEL, step, size, below=True):
            park[a:b] = ones[: b - a]
        if prev is not None:
            m = int.from_bytes(water[:size], "big")
            edge = (m ^ int.from_bytes(water[1:], "big")) | (m ^ prev)
            code = m + (int.from_bytes(park, "big") << 1) + (edge << 2)
            buf[py * size:(py + 1) * size] = code.to_bytes(size, "big").translate(table)
        prev = int.from_bytes(water[:size], "big")


def draw_grid_and_border(buf, size):
    g = size // 8
    for r in range(size):
        if r % g == 0:
            buf[r * size:(r + 1) * size] = bytes([GRID]) * size
        else:
            buf[r * size:(r + 1) * size:g] = bytes([GRID]) * (size // g)
    buf[0:size] = bytes([BORDER]) * size
    buf[(size - 1) * size:] = bytes([BORDER]) * size
    buf[0::size] = bytes([BORDER]) * size
    buf[size - 1::size] = bytes([BORDER]) * size


def fill_rect(buf, size, x0, y0, w, h, colour):
    row = bytes([colour]) * w
    for r in range(y0, y0 + h):
        buf[r * size + x0:r * size + x0 + w] = row


def draw_label(buf, size, text):
    """Centred text on a box; scale 2-4 depending on what fits."""
    scale = max(1, min(size // 85, (size - 24) // (len(text) * 6)))
    tw, th = (len(text) * 6 - 1) * scale, 7 * scale
    pad = 2 * scale
    x0, y0 = (size - tw) // 2, (size - th) // 2
    fill_rect(buf, size, x0 - pad - 1, y0 - pad - 1, tw + 2 * pad + 2, th + 2 * pad + 2, BORDER)
    fill_rect(buf, size, x0 - pad, y0 - pad, tw + 2 * pad, th + 2 * pad, LABEL)
    for i, ch in enumerate(text):
        for gy, bits in enumerate(FONT[ch]):
            for gx in range(5):
                if bits & (16 >> gx):
                    fill_rect(buf, size, x0 + (i * 6 + gx) * scale, y0 + gy * scale,
                              scale, scale, TEXT)


def render_indices(resource, z, x, y, size):
    """The tile as a bytearray of palette indices, row-major."""
    buf = bytearray(size * size)  # all BG
    if resource in ("base", "background"):
        draw_land(buf, size, z, x, y)
    draw_grid_and_border(buf, size)
    draw_label(buf, size, "%d/%d/%d" % (z, x, y))
    return buf


# --------------------------------------------------------------------------
# PNG
# --------------------------------------------------------------------------
def png_chunk(kind, data):
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def encode_png(idx, size, palette, paletted, comment):
    if paletted:
        stride, pixels, ctype = size, bytes(idx), 3
    else:
        stride, ctype = size * 3, 2
        rgb = bytearray(size * size * 3)
        for ch in range(3):
            rgb[ch::3] = idx.translate(bytes(p[ch] for p in palette) + bytes(256 - len(palette)))
        pixels = bytes(rgb)
    raw = b"".join(b"\x00" + pixels[r * stride:(r + 1) * stride] for r in range(size))
    out = [b"\x89PNG\r\n\x1a\n",
           png_chunk(b"IHDR", struct.pack(">IIBBBBB", size, size, 8, ctype, 0, 0, 0))]
    if paletted:
        out.append(png_chunk(b"PLTE", b"".join(bytes(p) for p in palette)))
    out.append(png_chunk(b"tEXt", b"Comment\x00" + comment.encode("latin-1", "replace")))
    out.append(png_chunk(b"IDAT", zlib.compress(raw, 6)))
    out.append(png_chunk(b"IEND", b""))
    return b"".join(out)


# --------------------------------------------------------------------------
# Baseline JPEG, YCbCr 4:4:4, Annex K quantisation (quality 85) and Huffman
# tables.  Entropy data is built as a '0'/'1' string (cached per 8x8 block
# content: tiles are mostly flat colour, so few blocks need a DCT).
# --------------------------------------------------------------------------
JPEG_QUALITY = 85
Q_LUMA = [16, 11, 10, 16, 24, 40, 51, 61, 12, 12, 14, 19, 26, 58, 60, 55,
          14, 13, 16, 24, 40, 57, 69, 56, 14, 17, 22, 29, 51, 87, 80, 62,
          18, 22, 37, 56, 68, 109, 103, 77, 24, 35, 55, 64, 81, 104, 113, 92,
          49, 64, 78, 87, 103, 121, 120, 101, 72, 92, 95, 98, 112, 100, 103, 99]
Q_CHROMA = [17, 18, 24, 47, 99, 99, 99, 99, 18, 21, 26, 66, 99, 99, 99, 99,
            24, 26, 56, 99, 99, 99, 99, 99, 47, 66, 99, 99, 99, 99, 99, 99] + [99] * 32
# Natural index of each zigzag position: diagonals, alternating direction.
ZIGZAG = sorted(range(64), key=lambda i: (i // 8 + i % 8, i // 8 if (i // 8 + i % 8) % 2 else -(i // 8)))
ZIGZAG_T = [(n % 8) * 8 + n // 8 for n in ZIGZAG]  # same, column-major
DC_LUMA = ([0, 1, 5, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0], bytes(range(12)))
DC_CHROMA = ([0, 3, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0], bytes(range(12)))
AC_LUMA = ([0, 2, 1, 3, 3, 2, 4, 3, 5, 5, 4, 4, 0, 0, 1, 0x7d], bytes.fromhex(
    "01020300041105122131410613516107227114328191a1082342b1c11552d1f0"
    "2433627282090a161718191a25262728292a3435363738393a43444546474849"
    "4a535455565758595a636465666768696a737475767778797a83848586878889"
    "8a92939495969798999aa2a3a4a5a6a7a8a9aab2b3b4b5b6b7b8b9bac2c3c4c5"
    "c6c7c8c9cad2d3d4d5d6d7d8d9dae1e2e3e4e5e6e7e8e9eaf1f2f3f4f5f6f7f8f9fa"))
AC_CHROMA = ([0, 2, 1, 2, 4, 4, 3, 4, 7, 5, 4, 4, 0, 1, 2, 0x77], bytes.fromhex(
    "000102031104052131061241510761711322328108144291a1b1c109233352f0"
    "156272d10a162434e125f11718191a262728292a35363738393a434445464748"
    "494a535455565758595a636465666768696a737475767778797a828384858687"
    "88898a92939495969798999aa2a3a4a5a6a7a8a9aab2b3b4b5b6b7b8b9bac2c3"
    "c4c5c6c7c8c9cad2d3d4d5d6d7d8d9dae2e3e4e5e6e7e8e9eaf2f3f4f5f6f7f8f9fa"))


def scaled_quant(table):
    scale = 5000 // JPEG_QUALITY if JPEG_QUALITY < 50 else 200 - 2 * JPEG_QUALITY
    return [min(255, max(1, (q * scale + 50) // 100)) for q in table]


def huffman_codes(spec):
    """symbol -> bit string, canonical code construction (Annex C)."""
    counts, symbols = spec
    codes, code, k = {}, 0, 0
    for length in range(1, 17):
        for _ in range(counts[length - 1]):
            codes[symbols[k]] = format(code, "0%db" % length)
            code, k = code + 1, k + 1
        code <<= 1
    return codes


def magnitude_bits(v):
    """(category, additional bits) for a DC difference or AC coefficient."""
    if v == 0:
        return 0, ""
    n = abs(v).bit_length()
    return n, format(v if v > 0 else v + (1 << n) - 1, "0%db" % n)


MAGNITUDES = {v: magnitude_bits(v) for v in range(-2047, 2048)}  # all 8-bit values


AAN = [1.0] + [math.cos(k * math.pi / 16) * math.sqrt(2) for k in range(1, 8)]


def fdct_1d(d0, d1, d2, d3, d4, d5, d6, d7):
    """Arai-Agui-Nakajima forward DCT (scaled outputs), as in libjpeg jfdctflt."""
    t0, t7, t1, t6 = d0 + d7, d0 - d7, d1 + d6, d1 - d6
    t2, t5, t3, t4 = d2 + d5, d2 - d5, d3 + d4, d3 - d4
    t10, t13, t11, t12 = t0 + t3, t0 - t3, t1 + t2, t1 - t2
    z1 = (t12 + t13) * 0.707106781
    t10o, t11o, t12o = t4 + t5, t5 + t6, t6 + t7
    z5 = (t10o - t12o) * 0.382683433
    z2 = 0.541196100 * t10o + z5
    z4 = 1.306562965 * t12o + z5
    z3 = t11o * 0.707106781
    z11, z13 = t7 + z3, t7 - z3
    return (t10 + t11, z11 + z4, t13 + z1, z13 - z2, t10 - t11, z13 + z2, t13 - z1, z11 - z4)


class JpegTable:
    """Quantiser + Huffman codes for one component class, with a block cache."""

    def __init__(self, quant, dc_spec, ac_spec):
        self.quant = scaled_quant(quant)
        # 1/divisor per zigzag position, folding in the AAN output scaling
        self.inverse = [1.0 / (self.quant[n] * AAN[n // 8] * AAN[n % 8] * 8) for n in ZIGZAG]
        self.dc, self.ac = huffman_codes(dc_spec), huffman_codes(ac_spec)
        self.blocks, self.lock = {}, threading.Lock()

    def block(self, key):
        """(quantised DC, AC bit string) for an 8x8 block of samples."""
        hit = self.blocks.get(key)
        if hit is None:
            hit = self._encode_block(key)
            with self.lock:
                if len(self.blocks) > 50000:  # bounded memory
                    self.blocks.clear()
                self.blocks[key] = hit
        return hit

    def _encode_block(self, key):
        rows = [fdct_1d(*key[r:r + 8]) for r in range(0, 64, 8)]
        flat = [v for c in range(8) for v in fdct_1d(*[row[c] for row in rows])]  # column-major
        flat[0] -= 8192  # level shift (-128 per sample) only moves the DC term
        zz = [round(flat[j] * inv) for j, inv in zip(ZIGZAG_T, self.inverse)]
        bits, run, ac = [], 0, self.ac
        for v in zz[1:]:
            if v == 0:
                run += 1
                continue
            while run > 15:
                bits.append(ac[0xF0])
                run -= 16
            size, extra = MAGNITUDES[v]
            bits.append(ac[(run << 4) | size] + extra)
            run = 0
        if run:
            bits.append(ac[0x00])
        return zz[0], "".join(bits)

    def dc_bits(self, diff):
        size, extra = MAGNITUDES[diff]
        return self.dc[size] + extra

    def dht(self, table_id, spec, ac):
        counts, symbols = spec
        return bytes([(ac << 4) | table_id]) + bytes(counts) + symbols


LUMA = JpegTable(Q_LUMA, DC_LUMA, AC_LUMA)
CHROMA = JpegTable(Q_CHROMA, DC_CHROMA, AC_CHROMA)


def jpeg_segment(marker, payload):
    return bytes([0xFF, marker]) + struct.pack(">H", len(payload) + 2) + payload


def plane_blocks(plane, size):
    """The plane's 8x8 blocks (64 bytes each) in raster order."""
    out = []
    for by in range(0, size, 8):
        chunks = [[plane[(by + r) * size + bx:(by + r) * size + bx + 8] for bx in range(0, size, 8)]
                  for r in range(8)]
        out.extend(map(b"".join, zip(*chunks)))
    return out


def ycbcr_tables(palette):
    pad = bytes(256 - len(palette))
    clamp = lambda v: max(0, min(255, int(round(v))))  # noqa: E731
    y = bytes(clamp(0.299 * r + 0.587 * g + 0.114 * b) for r, g, b in palette) + pad
    cb = bytes(clamp(-0.168736 * r - 0.331264 * g + 0.5 * b + 128) for r, g, b in palette) + pad
    cr = bytes(clamp(0.5 * r - 0.418688 * g - 0.081312 * b + 128) for r, g, b in palette) + pad
    return y, cb, cr


def encode_jpeg(idx, size, palette, comment):
    tables = ycbcr_tables(palette)
    planes = [plane_blocks(idx.translate(t), size) for t in tables]
    coders = (LUMA, CHROMA, CHROMA)
    preds, bits = [0, 0, 0], []
    for mcu in zip(*planes):  # 4:4:4 interleaved: one Y, Cb, Cr block per MCU
        for comp, key in enumerate(mcu):
            coder = coders[comp]
            dc, ac = coder.block(key)
            bits.append(coder.dc_bits(dc - preds[comp]))
            bits.append(ac)
            preds[comp] = dc
    stream = "".join(bits)
    stream += "1" * (-len(stream) % 8)  # pad with 1-bits
    data = int(stream, 2).to_bytes(len(stream) // 8, "big").replace(b"\xff", b"\xff\x00")
    dqt = b"".join(bytes([i]) + bytes(t.quant[n] for n in ZIGZAG) for i, t in enumerate((LUMA, CHROMA)))
    sof = struct.pack(">BHHB", 8, size, size, 3) + bytes([1, 0x11, 0, 2, 0x11, 1, 3, 0x11, 1])
    dht = (LUMA.dht(0, DC_LUMA, 0) + LUMA.dht(0, AC_LUMA, 1)
           + CHROMA.dht(1, DC_CHROMA, 0) + CHROMA.dht(1, AC_CHROMA, 1))
    sos = bytes([3, 1, 0x00, 2, 0x11, 3, 0x11, 0, 63, 0])
    return b"".join([b"\xff\xd8",
                     jpeg_segment(0xE0, b"JFIF\x00\x01\x01\x00\x00\x01\x00\x01\x00\x00"),
                     jpeg_segment(0xFE, comment.encode("latin-1", "replace")),
                     jpeg_segment(0xDB, dqt), jpeg_segment(0xC0, sof),
                     jpeg_segment(0xC4, dht), jpeg_segment(0xDA, sos), data, b"\xff\xd9"])


# --------------------------------------------------------------------------
# Tile cache (LRU, 2000 tiles): same URL (apiKey aside) -> same bytes.
# --------------------------------------------------------------------------
TILE_PARAMS = ("style", "size", "ppi", "scale", "lang", "lang2", "pview", "features",
               "startTime", "endTime")
_tiles, _tiles_lock, TILE_CACHE_MAX = {}, threading.Lock(), 2000


def tile_bytes(resource, z, x, y, fmt, params, revision=0):
    """Rendered image for a tile request (params: normalised TILE_PARAMS dict;
    a revision other than 0 stands for a tile HERE has changed since)."""
    key = (resource, z, x, y, fmt, revision) + tuple(params[p] for p in TILE_PARAMS)
    with _tiles_lock:
        body = _tiles.pop(key, None)
        if body is not None:
            _tiles[key] = body  # most recently used last: an LRU in a dict
            return body
    size = int(params["size"])
    palette = palette_for(params["style"])
    idx = render_indices(resource, z, x, y, size)
    # The comment makes every distinct request give distinct bytes (and ETag).
    comment = "here_upstream %s/mc/%d/%d/%d/%s %s" % (
        resource, z, x, y, fmt, " ".join("%s=%s" % (p, params[p]) for p in TILE_PARAMS if params[p]))
    if revision:
        comment += " rev=%d" % revision
    if fmt == "jpeg":
        body = encode_jpeg(idx, size, palette, comment)
    else:
        body = encode_png(idx, size, palette, fmt == "png8", comment)
    with _tiles_lock:
        if len(_tiles) >= TILE_CACHE_MAX:
            del _tiles[next(iter(_tiles))]  # least recently used
        _tiles[key] = body
    return body


# --------------------------------------------------------------------------
# Metadata documents
# --------------------------------------------------------------------------
# Every feature and mode of the Raster Tile API 3.0.4 (its OpenAPI document);
# the first mode is HERE's default.
FEATURES = {"congestion_zones": ["disabled", "all"],
            "environmental_zones": ["disabled", "all"],
            "pois": ["all", "disabled"],
            "vehicle_restrictions": ["disabled", "active_and_inactive", "permanent_only",
                                     "active_and_inactive_differentiated", "active_only"],
            "public_transit": ["disabled", "asia_selected_systems", "all_systems"],
            "truck_preferred_roads": ["disabled", "all"]}
# The modes that take a time window (startTime, endTime).
TIMED_MODES = ("active_only", "active_and_inactive_differentiated")
LOCAL_TIME_RE = re.compile(r"^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}$")
STYLES = ["explore.day", "explore.night", "explore.satellite.day", "lite.day", "lite.night",
          "lite.satellite.day", "satellite.day", "topo.day", "topo.night",
          "logistics.day", "logistics.night"]
METADATA = {
    "info": {"resources": ["base", "background", "label", "blank"], "styles": STYLES,
             "imageFormats": ["png", "png8", "jpeg"], "imageSizes": [256, 512],
             "ppi": [100, 200, 400], "scale": [1, 2], "projections": ["mc"],
             "zoomLevels": {"min": 0, "max": 22}},
    # HERE's v3 form: copyright ids with their entries, and for each resource
    # and style the ids that apply (satellite styles credit imagery too).
    "copyright": {
        "copyrights": {
            "here": [{"label": "HERE", "copyrightText": "\u00a92026 HERE", "minLevel": 0,
                      "maxLevel": 22, "boundingBoxes": [{"west": -180, "south": -90,
                                                        "east": 180, "north": 90}]}],
            "sat": [{"label": "Imagery Example Co", "copyrightText": "Imagery Example Co",
                     "minLevel": 10, "maxLevel": 22,
                     "boundingBoxes": [{"west": -180, "south": -90, "east": 180, "north": 90}]}]},
        "resources": {r: {"styles": {s: ["here"] + (["sat"] if "satellite" in s else [])
                                     for s in STYLES}}
                      for r in ("base", "background", "label", "blank")}},
    "languages": {"languages": ["ar", "be", "bg", "ca", "cs", "da", "de", "el", "en", "es", "et",
                                "fi", "fr", "he", "hi", "hr", "hu", "id", "it", "ja", "ko", "lt",
                                "lv", "ms", "nl", "no", "pl", "pt", "ro", "ru", "sk", "sl", "sr",
                                "sv", "th", "tr", "uk", "vi", "zh", "zh-Hant"]},
    # HERE's shape: per style, a list of {"name", "modes"} (first mode: the default)
    "features": {"features": {style: [{"name": n, "modes": m} for n, m in sorted(FEATURES.items())]
                              for style in STYLES}},
    "politicalViews": {"politicalViews": ["ARG", "CYP", "EGY", "GRC", "IND", "KEN", "MAR", "PAK",
                                          "RUS", "SRB", "SUR", "SYR", "TUR", "TZA", "URY", "VNM"]},
}
METADATA_BYTES = {k: json.dumps(v, ensure_ascii=False).encode() for k, v in METADATA.items()}

TILE_RE = re.compile(r"^/v3/(base|background|label|blank)/mc/([^/]+)/([^/]+)/([^/]+)/(png|png8|jpeg)$")
META_RE = re.compile(r"^/v3/(info|copyright|languages|features|politicalViews)$")


# --------------------------------------------------------------------------
# HERE's token endpoint (POST /oauth2/token): OAuth 1.0a HMAC-SHA256 signed
# client_credentials requests, verified here with Python's own hmac and
# hashlib (RFC 5849), not with the proxy's code; bearer tokens for tiles.
# --------------------------------------------------------------------------
TOKEN_PATH = "/oauth2/token"
TIMESTAMP_WINDOW_S = 600


def pct(s):
    """RFC 5849 3.6 percent-encoding (RFC 3986 unreserved kept)."""
    return quote(s, safe="-._~")


def read_properties(path):
    """key = value / key: value lines of a credentials.properties file."""
    out = {}
    with open(path, encoding="ascii") as f:
        for line in f:
            line = line.strip()
            if not line or line[0] in "#!":
                continue
            m = re.match(r"([^=:\s]+)\s*[=:]?\s*(.*)$", line)
            if m:
                out[m.group(1)] = m.group(2)
    return out


def parse_oauth_header(value):
    """The parameters of an 'Authorization: OAuth ...' header, or None."""
    if not value or not value.startswith("OAuth "):
        return None
    params = {}
    for part in value[6:].split(","):
        m = re.match(r'\s*([A-Za-z_]+)="([^"]*)"\s*$', part)
        if not m or m.group(1) in params:
            return None  # malformed, or a parameter given twice
        params[m.group(1)] = unquote(m.group(2))
    return params


def oauth_signature(method, base_uri, params, consumer_secret, token_secret=""):
    """Base64 HMAC-SHA256 over the RFC 5849 signature base string."""
    pairs = sorted((pct(k), pct(v)) for k, v in params)
    norm = "&".join("%s=%s" % kv for kv in pairs)
    base = "&".join([method.upper(), pct(base_uri), pct(norm)])
    key = pct(consumer_secret) + "&" + pct(token_secret)
    return base64.b64encode(hmac.new(key.encode(), base.encode(), hashlib.sha256).digest()).decode()


def here_error(status, code, message, error="invalid_client"):
    """The shape of HERE account's error answers."""
    return {"errorId": "ERROR-" + str(uuid.uuid4()), "httpStatus": status, "errorCode": code,
            "message": message, "error": error,
            "error_description": "errorCode: '%d'. %s" % (code, message)}


class Tokens:
    """Accepted credentials, issued tokens and what happened to them."""

    def __init__(self, credential_files, lifetime):
        self.files, self.lifetime = list(credential_files), lifetime
        self.lock = threading.Lock()
        self.extra = {}     # access key id -> secret, added by control
        self.issued = {}    # token -> {"expires": t, "key_id": id, "revoked": bool}
        self.nonces = set()
        self.reset_counts()

    def reset_counts(self):
        with self.lock:
            self.counts = {"token_requests": 0, "tokens_issued": 0, "token_refused": 0,
                           "bearer_ok": 0, "bearer_refused": 0}

    def count(self, name):
        with self.lock:
            self.counts[name] += 1

    def secret_of(self, key_id):
        """The secret of an accepted access key id (files read each time)."""
        with self.lock:
            if key_id in self.extra:
                return self.extra[key_id]
        for path in self.files:
            try:
                props = read_properties(path)
            except OSError:
                continue
            if props.get("here.access.key.id") == key_id:
                return props.get("here.access.key.secret")
        return None

    def issue(self, key_id):
        token = "hpTOKEN." + secrets.token_urlsafe(48)
        with self.lock:
            self.issued[token] = {"expires": time.time() + self.lifetime, "key_id": key_id,
                                  "revoked": False}
            self.counts["tokens_issued"] += 1
        return token

    def valid(self, token):
        with self.lock:
            t = self.issued.get(token)
            return t is not None and not t["revoked"] and time.time() < t["expires"]

    def revoke(self, key_id=None):
        """Revoke every token issued so far (to key_id only, when given)."""
        n = 0
        with self.lock:
            for t in self.issued.values():
                if key_id is None or t["key_id"] == key_id:
                    t["revoked"] = True
                    n += 1
        return n

    def nonce_fresh(self, key_id, nonce, ts):
        with self.lock:
            if (key_id, nonce, ts) in self.nonces:
                return False
            if len(self.nonces) > 100000:
                self.nonces.clear()
            self.nonces.add((key_id, nonce, ts))
            return True

    def stats(self):
        with self.lock:
            return dict(self.counts, lifetime=self.lifetime,
                        tokens={t: v["key_id"] for t, v in self.issued.items()})


# --------------------------------------------------------------------------
# Shared state: counters, injected behaviour, record file
# --------------------------------------------------------------------------
class State:
    def __init__(self, api_key, record_path, max_age, delay_ms, tokens=None):
        self.api_key, self.default_max_age, self.delay_ms = api_key, max_age, delay_ms
        self.api_keys = {api_key} if api_key is not None else None  # None: any
        self.tokens = tokens if tokens is not None else Tokens([], 86399)
        self.lock = threading.Lock()
        self.record_file = open(record_path, "a", encoding="utf-8") if record_path else None
        self.connections = 0  # ids for accepted connections, never reset
        self.reset()

    def reset(self):
        with self.lock:
            self.requests, self.by_path = 0, {}
            self.inflight = self.max_inflight = 0  # /v3 requests being answered
            self.rules = {"fail": [], "delay": [], "slowbody": [], "truncate": [], "chunked": [],
                          "badheader": [], "ctype": [], "longetag": [], "redirect": [],
                          "badtoken": [], "stall": []}
            self.metadoc = {}  # metadata documents replaced by /__control/metadoc
            self.max_age = self.default_max_age
            self.revision = 0

    def count(self, path):
        with self.lock:
            self.requests += 1
            self.by_path[path] = self.by_path.get(path, 0) + 1

    def stats(self):
        with self.lock:
            out = {"requests": self.requests, "by_path": dict(self.by_path),
                   "inflight": self.inflight, "max_inflight": self.max_inflight}
        out.update((k, v) for k, v in self.tokens.stats().items() if k != "tokens")
        return out

    def enter(self):
        with self.lock:
            self.inflight += 1
            self.max_inflight = max(self.max_inflight, self.inflight)

    def leave(self):
        with self.lock:
            self.inflight -= 1

    def next_connection(self):
        with self.lock:
            self.connections += 1
            return self.connections

    def add_rule(self, kind, rule, replace=False):
        with self.lock:
            if replace:
                self.rules[kind] = []
            self.rules[kind].append(rule)

    def take(self, kind, path):
        """Consume one use of the first pending `kind` rule matching path."""
        with self.lock:
            for rule in self.rules[kind]:
                if rule["path"] in path and rule["times"] != 0:
                    if rule["times"] > 0:
                        rule["times"] -= 1
                    return rule
        return None

    def record(self, obj):
        if self.record_file is None:
            return
        line = json.dumps(obj, ensure_ascii=False) + "\n"
        with self.lock:
            self.record_file.write(line)
            self.record_file.flush()


STATE = None  # set in main()
REASONS = {301: "Moved Permanently", 302: "Found", 303: "See Other", 307: "Temporary Redirect",
           308: "Permanent Redirect", 400: "Bad Request", 401: "Unauthorized", 403: "Forbidden", 404: "Not Found",
           405: "Method Not Allowed", 429: "Too Many Requests", 500: "Internal Server Error",
           502: "Bad Gateway", 503: "Service Unavailable", 504: "Gateway Timeout"}


def etag_of(body):
    return '"%s"' % hashlib.sha1(body).hexdigest()[:16]


def etag_matches(header, etag):
    if not header:
        return False
    tags = [t.strip() for t in header.split(",")]
    return "*" in tags or etag in tags or ("W/" + etag) in tags


def error_doc(status, details):
    return {"title": REASONS.get(status, "Error"), "status": status, "detail": details}


def local_time(value):
    """A YYYY-MM-DDTHH:mm local time as a comparable string, or None."""
    if not LOCAL_TIME_RE.match(value):
        return None
    try:
        time.strptime(value, "%Y-%m-%dT%H:%M")  # a real date and time
    except ValueError:
        return None
    return value


def feature_problems(params):
    """What HERE would refuse in features, startTime and endTime."""
    problems, modes = [], {}
    if params["features"]:
        for item in params["features"].split(","):
            name, sep, mode = item.partition(":")
            if not sep or mode not in FEATURES.get(name, ()):
                problems.append("features: unknown feature or mode '%s'" % item)
            elif name in modes:
                problems.append("features: %s given twice" % name)
            else:
                modes[name] = mode
    times = {}
    for name in ("startTime", "endTime"):
        if not params[name]:
            continue
        times[name] = local_time(params[name])
        if times[name] is None:
            problems.append("%s must be YYYY-MM-DDTHH:mm" % name)
        elif modes.get("vehicle_restrictions") not in TIMED_MODES:
            problems.append("%s needs vehicle_restrictions:%s" % (name, " or ".join(TIMED_MODES)))
    if times.get("startTime") and times.get("endTime") and times["endTime"] < times["startTime"]:
        problems.append("endTime is before startTime")
    return problems


def padded(body, rule):
    """The body padded with zero bytes to rule["bytes"] (when larger): a body
    larger than the proxy keeps back before sending (HERE_BUFFER_MAX_BYTES)."""
    return body + b"\0" * max(0, rule.get("bytes", 0) - len(body))


def int_arg(query, name, default):
    vals = query.get(name)
    if not vals:
        return default
    return int(vals[-1])  # ValueError -> 400 in the control handler


def tile_answer(match, query, revision):
    """(status, Content-Type, body) of a tile request whose apiKey passed and
    that no injected rule changes: 200 with the image, or 400 with a JSON
    error. /__control/digest answers from it too, so both always agree."""
    resource, zs, xs, ys, fmt = match.groups()
    problems = []
    if not all(s.isdigit() and len(s) <= 9 for s in (zs, xs, ys)):
        problems.append("z, x and y must be non-negative integers")
    else:
        z, x, y = int(zs), int(xs), int(ys)
        if z > 22:
            problems.append("z must be between 0 and 22")
        elif x >= 1 << z or y >= 1 << z:
            problems.append("x and y must be less than 2^z (%d) at zoom %d" % (1 << z, z))
    params = {p: (query.get(p) or [""])[-1] for p in TILE_PARAMS}
    params["style"] = params["style"] or "explore.day"
    params["size"] = params["size"] or "256"
    if params["size"] not in ("256", "512"):
        problems.append("size must be 256 or 512")
    problems += feature_problems(params)
    if problems:
        return 400, "application/json", json.dumps(error_doc(400, problems)).encode()
    body = tile_bytes(resource, z, x, y, fmt, params, revision)
    return 200, "image/jpeg" if fmt == "jpeg" else "image/png", body


def digest_doc(target, revision):
    """What GET target (a /v3 tile or metadata path with its query, apiKey
    aside) would answer with no rule applied: status, Content-Type, length,
    SHA-256 and ETag of the body. Nothing is counted or recorded."""
    url = urlsplit(target)
    query = parse_qs(url.query, keep_blank_values=True)
    tile, meta = TILE_RE.match(url.path), META_RE.match(url.path)
    if tile:
        status, ctype, body = tile_answer(tile, query, revision)
    elif meta:
        status, ctype, body = 200, "application/json", METADATA_BYTES[meta.group(1)]
    else:
        raise ValueError("url must be a /v3 tile or metadata path, not %r" % url.path)
    return {"ok": True, "action": "digest", "url": target, "status": status,
            "content_type": ctype, "bytes": len(body),
            "sha256": hashlib.sha256(body).hexdigest(),
            "etag": etag_of(body) if status == 200 else None}


# --------------------------------------------------------------------------
# HTTP handler
# --------------------------------------------------------------------------
class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "here-upstream-imitation/1.0"
    timeout = 300  # idle keep-alive connections eventually go away

    def setup(self):
        super().setup()
        self.conn_id = STATE.next_connection()

    def handle(self):
        try:
            super().handle()
        except (BrokenPipeError, ConnectionResetError, ConnectionAbortedError, socket.timeout):
            self.close_connection = True  # client went away mid-response: not our problem

    def log_message(self, fmt, *args):
        if not self.server.quiet:
            super().log_message(fmt, *args)

    def do_GET(self):
        self.dispatch(head=False)

    def do_HEAD(self):
        self.dispatch(head=True)

    def do_POST(self):
        length = int(self.headers.get("Content-Length") or 0)
        # read whole to keep the connection usable; the token endpoint reads it
        self.body = self.rfile.read(length) if 0 < length <= 65536 else b""
        if length > 65536:
            self.rfile.read(length)
        self.dispatch(head=False)

    do_PUT = do_DELETE = do_PATCH = do_OPTIONS = do_POST

    # -- routing -----------------------------------------------------------
    def dispatch(self, head):
        url = urlsplit(self.path)
        path, query = url.path, parse_qs(url.query, keep_blank_values=True)
        if path == "/healthz":
            return self.reply(200, [("Content-Type", "text/plain")], b"ok", head)
        if path.startswith("/__control/"):
            return self.control(path[len("/__control/"):], query)
        if path == TOKEN_PATH:
            STATE.record({"ts": time.time(), "method": self.command, "path": path,
                          "headers": self.lowered_headers(), "conn": self.conn_id,
                          "version": self.request_version})
            status, headers, body = self.token_endpoint(path)
            return self.reply(status, headers, body, head)
        STATE.record({"ts": time.time(), "method": self.command, "path": path, "query": query,
                      "headers": self.lowered_headers(), "conn": self.conn_id,
                      "version": self.request_version})
        counted = path.startswith("/v3/") or path == "/v3"
        read_at = time.monotonic()
        if counted:
            STATE.count(path)
            STATE.enter()
        try:
            status, headers, body = self.route(path, query, head)
            self.apply_delay(path, read_at)
            self.reply(status, headers, body, head, path)
            STATE.record({"event": "response", "ts": time.time(), "path": path,
                          "status": status, "conn": self.conn_id})
        finally:
            if counted:
                STATE.leave()

    def lowered_headers(self):
        out = {}
        for name, value in self.headers.items():
            name = name.lower()
            out[name] = out[name] + ", " + value if name in out else value
        return out

    def apply_delay(self, path, read_at):
        """Answer no sooner than the delay after the request was read: the
        time spent making the response is part of the latency, as it is for a
        remote API, so a 50 ms upstream answers at 50 ms, not 50 ms + render."""
        ms = STATE.delay_ms
        rule = STATE.take("delay", path)
        if rule:
            ms += rule["ms"]
        left = ms / 1000.0 - (time.monotonic() - read_at)
        if left > 0:
            time.sleep(left)

    def route(self, path, query, head):
        tile, meta = TILE_RE.match(path), META_RE.match(path)
        if not tile and not meta:
            return self.json_response(404, error_doc(404, ["no route for %s" % path]))
        if self.command not in ("GET", "HEAD"):
            return self.json_response(405, error_doc(405, ["method %s not allowed" % self.command]))
        rule = STATE.take("fail", path)
        if rule:
            extra = [("Retry-After", "1")] if rule["status"] in (429, 503) else []
            return self.json_response(rule["status"], error_doc(rule["status"], ["injected failure"]), extra)
        rule = STATE.take("redirect", path)
        if rule:
            # a moved API, or a captive portal: the proxy must not follow it
            page = b"<html><body><a href=\"%s\">moved</a></body></html>" % rule["location"].encode()
            return rule["status"], [("Content-Type", "text/html"), ("Location", rule["location"])], page
        denied = self.check_api_key(query)
        if denied:
            return denied
        if meta:
            with STATE.lock:
                body = STATE.metadoc.get(meta.group(1), METADATA_BYTES[meta.group(1)])
            return self.cacheable("application/json", body, path)
        return self.tile(tile, query, path)

    def check_api_key(self, query):
        """An apiKey, or a bearer token the token endpoint issued."""
        auth = self.headers.get("Authorization") or ""
        key = (query.get("apiKey") or [""])[-1]
        if auth.startswith("Bearer "):
            if STATE.tokens.valid(auth[7:]):
                STATE.tokens.count("bearer_ok")
                return None
            STATE.tokens.count("bearer_refused")
            doc = {"error": "Unauthorized",
                   "error_description": "Token Validation Failure - invalid or expired token"}
            return self.json_response(401, doc, [("WWW-Authenticate", 'Bearer realm="HERE"')])
        if not key:
            doc = {"error": "Unauthorized", "error_description": "No credentials found"}
        elif STATE.api_keys is not None and key not in STATE.api_keys:
            doc = {"error": "Unauthorized", "error_description": "apiKey invalid. apiKey not found."}
        else:
            return None
        return self.json_response(401, doc, [("WWW-Authenticate", 'apiKey realm="HERE"')])

    def token_endpoint(self, path):
        """POST /oauth2/token, as HERE account answers it."""
        tokens = STATE.tokens
        tokens.count("token_requests")

        def refuse(status, code, message, error="invalid_client"):
            tokens.count("token_refused")
            return self.json_response(status, here_error(status, code, message, error))

        if self.command != "POST":
            return refuse(405, 405002, "Method not allowed", "invalid_request")
        rule = STATE.take("fail", path)
        if rule:
            extra = [("Retry-After", "1")] if rule["status"] in (429, 503) else []
            return self.json_response(rule["status"],
                                      here_error(rule["status"], rule["status"] * 1000,
                                                 "injected failure", "server_error"), extra)
        params = parse_oauth_header(self.headers.get("Authorization"))
        if params is None:
            return refuse(401, 401202, "Malformed OAuth 1.0 header (or none)")
        need = ("oauth_consumer_key", "oauth_nonce", "oauth_signature",
                "oauth_signature_method", "oauth_timestamp")
        if any(n not in params for n in need):
            return refuse(401, 401202, "Missing OAuth parameters")
        if params["oauth_signature_method"] != "HMAC-SHA256":
            return refuse(401, 401205, "Unsupported value for signature method")
        if params.get("oauth_version", "1.0") != "1.0":
            return refuse(401, 401206, "Unsupported value for oauth_version")
        if not params["oauth_timestamp"].isdigit() or \
                abs(int(params["oauth_timestamp"]) - time.time()) > TIMESTAMP_WINDOW_S:
            return refuse(401, 401204, "Time stamp is outside the valid period")
        ctype = (self.headers.get("Content-Type") or "").split(";")[0].strip().lower()
        if ctype != "application/x-www-form-urlencoded":
            return refuse(400, 400003, "Content-Type must be application/x-www-form-urlencoded",
                          "invalid_request")
        try:
            form = parse_qs(getattr(self, "body", b"").decode("ascii"), keep_blank_values=True,
                            strict_parsing=True)
        except (UnicodeDecodeError, ValueError):
            return refuse(400, 400200, "Received invalid data", "invalid_request")
        if form.get("grant_type") != ["client_credentials"]:
            return refuse(400, 400203, "grant_type must be client_credentials",
                          "unsupported_grant_type")
        key_id = params["oauth_consumer_key"]
        secret = tokens.secret_of(key_id)
        if secret is None:
            return refuse(401, 401300, "Invalid client credentials")
        host = (self.headers.get("Host") or "").lower()
        if host.endswith(":80"):
            host = host[:-3]
        signed = [(k, v) for k, v in params.items() if k not in ("oauth_signature", "realm")]
        signed += [(k, v) for k, vs in form.items() for v in vs]
        want = oauth_signature("POST", "http://%s%s" % (host, path), signed, secret)
        if not hmac.compare_digest(want, params["oauth_signature"]):
            return refuse(401, 401300,
                          "Signature mismatch. Authorization signature or client credential is wrong.")
        if not tokens.nonce_fresh(key_id, params["oauth_nonce"], params["oauth_timestamp"]):
            return refuse(401, 401207, "Nonce already consumed")
        token = tokens.issue(key_id)
        doc = {"accessToken": token, "tokenType": "bearer", "expiresIn": tokens.lifetime}
        rule = STATE.take("badtoken", path)
        if rule:
            kind = rule["kind"]
            if kind == "crlf":
                doc["accessToken"] = token + "\r\nX-Injected: 1"
            elif kind == "huge":
                doc["accessToken"] = token + "a" * 20000
            elif kind == "type":
                doc["tokenType"] = "mac"
            elif kind == "lifetime":
                doc["expiresIn"] = 0
            elif kind == "html":
                return 200, [("Content-Type", "text/html")], b"<html>captive portal</html>"
        return self.json_response(200, doc)

    def tile(self, match, query, path):
        status, ctype, body = tile_answer(match, query, STATE.revision)
        if status != 200:
            return status, [("Content-Type", ctype)], body
        return self.cacheable(ctype, body, path)

    def cacheable(self, ctype, body, path):
        """200 (or 304 on a matching If-None-Match) with ETag and Cache-Control."""
        etag = etag_of(body)
        rule = STATE.take("longetag", path)
        if rule:
            # a well-formed quoted ETag of exactly `bytes` bytes
            etag = '"%s"' % (etag_of(body)[1:-1] * (rule["bytes"] // 16 + 1))[: max(0, rule["bytes"] - 2)]
        headers = [("ETag", etag)]
        max_age = STATE.max_age
        if max_age > 0:
            headers.append(("Cache-Control", "max-age=%d" % max_age))
        if etag_matches(self.headers.get("If-None-Match"), etag):
            return 304, headers, b""
        rule = STATE.take("ctype", path)
        if rule:
            # the same bytes under another Content-Type (none when empty)
            return 200, ([("Content-Type", rule["value"])] if rule["value"] else []) + headers, body
        return 200, [("Content-Type", ctype)] + headers, body

    @staticmethod
    def json_response(status, doc, extra=()):
        return status, [("Content-Type", "application/json")] + list(extra), json.dumps(doc).encode()

    # -- sending -----------------------------------------------------------
    def reply(self, status, headers, body, head, path=None):
        """Send a response, applying any injected truncate/slowbody behaviour."""
        truncate = slow = chunked = stall = None
        if path is not None and body and not head:
            stall = STATE.take("stall", path)
            if not stall:
                truncate = STATE.take("truncate", path)
            if not stall and not truncate:
                slow = STATE.take("slowbody", path)
            if not stall and not truncate and not slow:
                chunked = STATE.take("chunked", path)
        for rule in (stall, truncate, slow):
            if rule:
                body = padded(body, rule)
        if stall and stall["after"] < 0:
            # HERE took the request and says nothing: not even a status line
            STATE.record({"event": "stall", "ts": time.time(), "path": path, "sent": -1})
            time.sleep(stall["ms"] / 1000.0)
            self.close_connection = True
            return
        if path is not None and STATE.take("badheader", path):
            # control bytes inside header values: a proxy must not reflect them
            headers = [(n, v + "\rX-Injected: 1") if n == "ETag" else (n, v) for n, v in headers]
            headers.append(("X-Correlation-Id", "abc\x00\x01def"))
        self.send_response(status)
        for name, value in headers:
            self.send_header(name, value)
        if path is not None:
            self.send_header("X-Correlation-Id", str(uuid.uuid4()))
        if chunked:
            self.send_header("Transfer-Encoding", "chunked")
        elif status != 304:
            self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if head or status == 304:
            return
        if chunked:
            # no Content-Length: the size shows only as the chunks come
            total = max(len(body), chunked["bytes"])
            data = body + b"\0" * (total - len(body))
            for i in range(0, total, 16384):
                part = data[i:i + 16384]
                try:
                    self.wfile.write(b"%x\r\n" % len(part) + part + b"\r\n")
                except OSError:
                    return
            self.wfile.write(b"0\r\n\r\n")
            self.close_connection = True
        elif truncate:
            self.wfile.write(body[: len(body) // 2])
            self.close_connection = True  # Content-Length promised more: hang up
        elif stall:
            sent = max(0, min(stall["after"], len(body) - 1))  # always hold back something
            try:
                self.wfile.write(body[:sent])
                self.wfile.flush()
            except OSError:
                return
            STATE.record({"event": "stall", "ts": time.time(), "path": path, "sent": sent,
                          "total": len(body)})
            time.sleep(stall["ms"] / 1000.0)
            self.close_connection = True  # never the rest: hang up
        elif slow:
            first = max(0, min(slow["first"], len(body) - 1))  # always hold back something
            self.wfile.write(body[:first])
            self.wfile.flush()
            time.sleep(slow["after_ms"] / 1000.0)
            self.wfile.write(body[first:])
            self.wfile.flush()
            STATE.record({"event": "body_done", "ts": time.time(), "path": path,
                          "first": first, "total": len(body)})
        else:
            self.wfile.write(body)

    # -- failure injection -------------------------------------------------
    def control(self, action, query):
        try:
            doc = self.control_action(action, query)
        except ValueError as exc:
            doc = {"ok": False, "status": 400, "error": str(exc)}
        if doc is None:
            doc = {"ok": False, "status": 404, "error": "unknown control action %r" % action}
        status = doc.get("status", 200) if not doc.get("ok", True) else 200
        self.reply(status, [("Content-Type", "application/json")], json.dumps(doc).encode(),
                   self.command == "HEAD")

    @staticmethod
    def control_action(action, query):
        path = (query.get("path") or [""])[-1]
        if action == "reset":
            STATE.reset()
            return {"ok": True, "action": "reset"}
        if action == "stats":
            return STATE.stats()
        if action == "digest":
            return digest_doc((query.get("url") or [""])[-1], STATE.revision)
        if action == "maxage":
            s = int_arg(query, "s", STATE.default_max_age)
            if s < 0:
                raise ValueError("s must be >= 0")
            STATE.max_age = s
            return {"ok": True, "action": "maxage", "s": s}
        if action == "metadoc":
            name = (query.get("name") or [""])[-1]
            if name not in METADATA:
                raise ValueError("name must be one of %s" % ", ".join(sorted(METADATA)))
            body = (query.get("body") or [""])[-1].encode()
            with STATE.lock:
                STATE.metadoc[name] = body
            return {"ok": True, "action": "metadoc", "name": name, "bytes": len(body)}
        if action == "revision":
            STATE.revision = int_arg(query, "n", 0)
            return {"ok": True, "action": "revision", "n": STATE.revision}
        if action == "apikeys":
            keys = [k for k in (query.get("keys") or [""])[-1].split(",") if k]
            STATE.api_keys = set(keys) if keys else None
            return {"ok": True, "action": "apikeys", "count": len(keys)}
        if action == "credentials":
            key_id = (query.get("id") or [""])[-1]
            if not key_id:
                raise ValueError("id is required")
            with STATE.tokens.lock:
                if (query.get("remove") or [""])[-1]:
                    STATE.tokens.extra.pop(key_id, None)
                else:
                    STATE.tokens.extra[key_id] = (query.get("secret") or [""])[-1]
            return {"ok": True, "action": "credentials"}
        if action == "tokens":
            return dict(STATE.tokens.stats(), ok=True)
        if action == "revoke":
            key_id = (query.get("id") or [None])[-1]
            return {"ok": True, "action": "revoke", "revoked": STATE.tokens.revoke(key_id)}
        if action == "lifetime":
            s = int_arg(query, "s", 86399)
            if s < 1:
                raise ValueError("s must be >= 1")
            STATE.tokens.lifetime = s
            return {"ok": True, "action": "lifetime", "s": s}
        if action == "fail":
            status = int_arg(query, "status", 500)
            if not 100 <= status <= 599:
                raise ValueError("status must be 100..599")
            rule = {"status": status, "times": int_arg(query, "times", 1), "path": path}
        elif action == "delay":
            rule = {"ms": int_arg(query, "ms", 0), "times": int_arg(query, "times", -1), "path": path}
        elif action == "slowbody":
            rule = {"first": int_arg(query, "first", 1024), "after_ms": int_arg(query, "after_ms", 2000),
                    "bytes": int_arg(query, "bytes", 0), "times": int_arg(query, "times", 1),
                    "path": path}
        elif action == "truncate":
            rule = {"bytes": int_arg(query, "bytes", 0), "times": int_arg(query, "times", 1),
                    "path": path}
        elif action == "stall":
            rule = {"after": int_arg(query, "after", 1024), "ms": int_arg(query, "ms", 30000),
                    "bytes": int_arg(query, "bytes", 0), "times": int_arg(query, "times", 1),
                    "path": path}
        elif action == "chunked":
            rule = {"bytes": int_arg(query, "bytes", 0), "times": int_arg(query, "times", 1),
                    "path": path}
        elif action == "badheader":
            rule = {"times": int_arg(query, "times", 1), "path": path}
        elif action == "badtoken":
            kind = (query.get("kind") or ["crlf"])[-1]
            if kind not in ("crlf", "huge", "type", "lifetime", "html"):
                raise ValueError("kind must be crlf, huge, type, lifetime or html")
            rule = {"kind": kind, "times": int_arg(query, "times", 1), "path": path}
        elif action == "ctype":
            rule = {"value": (query.get("value") or [""])[-1], "times": int_arg(query, "times", 1),
                    "path": path}
        elif action == "longetag":
            n = int_arg(query, "bytes", 3000)
            if not 2 <= n <= 60000:
                raise ValueError("bytes must be 2..60000")
            rule = {"bytes": n, "times": int_arg(query, "times", 1), "path": path}
        elif action == "redirect":
            status = int_arg(query, "status", 301)
            if not 300 <= status <= 399:
                raise ValueError("status must be 300..399")
            rule = {"status": status, "location": (query.get("location") or ["https://example.com/"])[-1],
                    "times": int_arg(query, "times", 1), "path": path}
        else:
            return None
        STATE.add_rule(action, rule, replace=(action == "delay"))
        return dict(rule, ok=True, action=action)


# --------------------------------------------------------------------------
# Main
# --------------------------------------------------------------------------
class Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 256
    quiet = False

    def handle_error(self, request, client_address):
        exc = sys.exc_info()[1]
        if not isinstance(exc, (BrokenPipeError, ConnectionResetError, ConnectionAbortedError)):
            super().handle_error(request, client_address)


def parse_args(argv):
    ap = argparse.ArgumentParser(description="Local imitation of HERE Raster Tile API v3.")
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=0, help="0 = pick a free port")
    ap.add_argument("--port-file", help="write the bound port here once listening")
    ap.add_argument("--api-key", help="expected apiKey (default: accept any non-empty)")
    ap.add_argument("--credentials-file", action="append", default=[],
                    help="a credentials.properties whose access key the token endpoint "
                         "accepts (read at each token request; repeatable)")
    ap.add_argument("--token-lifetime", type=int, default=86399,
                    help="expiresIn of the tokens issued, in seconds")
    ap.add_argument("--record", help="append one JSON line per received request")
    ap.add_argument("--max-age", type=int, default=3600, help="Cache-Control max-age; 0 = none")
    ap.add_argument("--delay-ms", type=int, default=0,
                    help="latency of every request: answered no sooner than this after it was read")
    ap.add_argument("--quiet", action="store_true")
    return ap.parse_args(argv)


def write_port_file(path, port):
    tmp = "%s.tmp.%d" % (path, os.getpid())
    with open(tmp, "w") as f:
        f.write("%d\n" % port)
    os.replace(tmp, path)  # readers never see a half-written file


def main(argv=None):
    global STATE
    args = parse_args(argv)
    STATE = State(args.api_key, args.record, args.max_age, args.delay_ms,
                  Tokens(args.credentials_file, args.token_lifetime))
    if ":" in args.host:
        Server.address_family = socket.AF_INET6
    server = Server((args.host, args.port), Handler)
    server.quiet = args.quiet
    port = server.server_address[1]
    if args.port_file:
        write_port_file(args.port_file, port)
    if not args.quiet:
        print("here_upstream listening on http://%s:%d/v3" % (args.host, port), file=sys.stderr, flush=True)

    def stop(signum, frame):
        raise SystemExit(0)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    try:
        server.serve_forever(poll_interval=0.2)
    except SystemExit:
        pass
    finally:
        server.server_close()
        if STATE.record_file:
            STATE.record_file.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
