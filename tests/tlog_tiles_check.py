#!/usr/bin/env python3
"""An independent check of a custody node's C2SP tlog-tiles view.

Usage: tlog_tiles_check.py BASE_URL CA CERT KEY

Downloads /tlog/checkpoint, every hash tile and entry bundle the checkpoint's
size calls for (mutual TLS), and checks, with nothing but the standard
library: each entry hashes (RFC 6962, SHA-256(0x00 || entry)) to its level-0
tile hash; each hash of a level-l tile (l >= 1) is the Merkle Tree Hash of the
full level-(l-1) tile below it; the root recomputed from the entries equals
the checkpoint's; resources the checkpoint does not cover answer 404. Prints
one JSON line of what it saw; exits non-zero on any failure.
"""
import base64
import hashlib
import json
import ssl
import sys
import urllib.error
import urllib.request

WIDTH = 256


def fail(msg):
    print("FAIL: " + msg, file=sys.stderr)
    sys.exit(1)


def leaf_hash(b):
    return hashlib.sha256(b"\x00" + b).digest()


def node_hash(l, r):
    return hashlib.sha256(b"\x01" + l + r).digest()


def mth(hashes):
    """RFC 6962 section 2.1 over already-hashed leaves."""
    n = len(hashes)
    if n == 0:
        return hashlib.sha256(b"").digest()
    if n == 1:
        return hashes[0]
    k = 1
    while k * 2 < n:
        k *= 2
    return node_hash(mth(hashes[:k]), mth(hashes[k:]))


def index_path(n):
    """The spec's encoding: 1234067 -> x001/x234/067."""
    parts = ["%03d" % (n % 1000)]
    n //= 1000
    while n > 0:
        parts.append("x%03d" % (n % 1000))
        n //= 1000
    return "/".join(reversed(parts))


def tile_path(level, n, width):
    p = "tile/%s/%s" % (level, index_path(n))
    return p + (".p/%d" % width if width < WIDTH else "")


class Client:
    def __init__(self, base, ca, cert, key):
        self.base = base.rstrip("/")
        self.ctx = ssl.create_default_context(cafile=ca)
        self.ctx.load_cert_chain(cert, key)
        self.fetched = 0

    def get(self, path):
        req = urllib.request.Request(self.base + "/tlog/" + path)
        try:
            with urllib.request.urlopen(req, context=self.ctx, timeout=20) as r:
                self.fetched += 1
                return r.status, {k.lower(): v for k, v in r.headers.items()}, r.read()
        except urllib.error.HTTPError as e:
            return e.code, {k.lower(): v for k, v in e.headers.items()}, e.read()


def main():
    assert index_path(1234067) == "x001/x234/067" and index_path(0) == "000" and index_path(1000) == "x001/000"
    base, ca, cert, key = sys.argv[1:5]
    c = Client(base, ca, cert, key)

    status, headers, body = c.get("checkpoint")
    if status != 200:
        fail("checkpoint: %s %r" % (status, body))
    if not headers.get("content-type", "").startswith("text/plain"):
        fail("checkpoint content type %r" % headers.get("content-type"))
    note = body.decode()
    text, _, sigs = note.partition("\n\n")
    lines = text.split("\n")
    origin, size, root = lines[0], int(lines[1]), base64.b64decode(lines[2])
    signatures = [l for l in sigs.split("\n") if l.startswith("\u2014 ")]
    if not signatures:
        fail("the checkpoint carries no signature")

    # Entry bundles and level-0 tiles.
    leaves = []
    entries = []
    full, part = divmod(size, WIDTH)
    for n in range(full + (1 if part else 0)):
        width = WIDTH if n < full else part
        s, h, bundle = c.get(tile_path("entries", n, width))
        if s != 200:
            fail("entries %d: %s %r" % (n, s, bundle))
        if h.get("content-type") != "application/octet-stream" or "immutable" not in h.get("cache-control", ""):
            fail("entries %d headers %r" % (n, h))
        got = []
        i = 0
        while i < len(bundle):
            ln = int.from_bytes(bundle[i:i + 2], "big")
            got.append(bundle[i + 2:i + 2 + ln])
            if len(got[-1]) != ln:
                fail("entries %d: truncated entry" % n)
            i += 2 + ln
        if len(got) != width:
            fail("entries %d: %d entries, want %d" % (n, len(got), width))
        for e in got:
            json.loads(e)  # our leaves are JSON records
        entries += got
        hashes = [leaf_hash(e) for e in got]
        s, h, tile = c.get(tile_path(0, n, width))
        if s != 200 or tile != b"".join(hashes):
            fail("level-0 tile %d does not hold its entries' hashes (%s)" % (n, s))
        leaves += hashes

    # Levels above: each hash is the MTH of the full tile below.
    level, below = 1, [leaves[i:i + WIDTH] for i in range(0, len(leaves), WIDTH)]
    levels_checked = 0
    while size >= WIDTH ** level:
        count = size // WIDTH ** level  # hashes at this level
        fullt, partt = divmod(count, WIDTH)
        hashes = []
        for n in range(fullt + (1 if partt else 0)):
            width = WIDTH if n < fullt else partt
            s, _, tile = c.get(tile_path(level, n, width))
            if s != 200 or len(tile) != 32 * width:
                fail("level-%d tile %d: %s, %d bytes" % (level, n, s, len(tile)))
            for i in range(width):
                want = mth(below[n * WIDTH + i])
                if tile[32 * i:32 * i + 32] != want:
                    fail("level-%d tile %d hash %d is not the hash of the tile below" % (level, n, i))
            hashes += [tile[32 * i:32 * i + 32] for i in range(width)]
        below = [hashes[i:i + WIDTH] for i in range(0, len(hashes), WIDTH)]
        levels_checked += 1
        level += 1

    if mth(leaves) != root:
        fail("the root of the entries is not the checkpoint's")

    # What the checkpoint does not cover is not served.
    for path in [
        tile_path("entries", full, part + 1) if part < WIDTH - 1 else tile_path("entries", full + 1, 1),
        tile_path(0, full, WIDTH),
        tile_path(0, full + 1, 1),
        tile_path(level, 0, 1),
        "tile/0/0",
        "tile/00/000",
        "tile/0/000.p/0",
    ]:
        s, _, _ = c.get(path)
        if s != 404:
            fail("%s answered %s, not 404" % (path, s))

    print(json.dumps({"origin": origin, "size": size, "signatures": len(signatures), "levels_above_0": levels_checked, "fetched": c.fetched}))


if __name__ == "__main__":
    main()
