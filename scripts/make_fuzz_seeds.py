"""Writes the generated seeds of fuzz/corpus/ (the others are copies of committed files):
small PNGs of every color type the decoder handles, and a golden file made from the tiny
checkpoint seed. Standard library only: python3 scripts/make_fuzz_seeds.py"""
import json
import struct
import zlib

CORPUS = "fuzz/corpus"


def png(path, width, height, color_type, depth, rows, extra=b""):
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, depth, color_type, 0, 0, 0)
    raw = b"".join(b"\x00" + r for r in rows)
    data = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + extra + chunk(b"IDAT", zlib.compress(raw, 9))
    open(f"{CORPUS}/image/{path}", "wb").write(data + chunk(b"IEND", b""))


def pngs():
    w, h = 5, 3
    png("rgb8.png", w, h, 2, 8, [bytes(v for x in range(w) for v in (x * 50, y * 80, 7)) for y in range(h)])
    png("rgba8.png", w, h, 6, 8, [bytes(v for x in range(w) for v in (x * 50, y * 80, 7, 128)) for y in range(h)])
    png("gray_alpha8.png", w, h, 4, 8, [bytes(v for x in range(w) for v in (x * 50, 200)) for y in range(h)])
    png("rgb16.png", w, h, 2, 16, [bytes(v for x in range(w) for v in (x * 50, 1, y * 80, 2, 7, 3)) for y in range(h)])
    plte = struct.pack(">I", 9) + b"PLTE" + bytes((255, 0, 0, 0, 255, 0, 0, 0, 255))
    plte += struct.pack(">I", zlib.crc32(plte[4:]))
    trns = struct.pack(">I", 1) + b"tRNS" + b"\x80"
    trns += struct.pack(">I", zlib.crc32(trns[4:]))
    png("palette4.png", w, h, 3, 4, [bytes(((x % 3) << 4 | ((x + 1) % 3)) for x in range(3)) for y in range(h)],
        plte + trns)


def safetensors(tensors, metadata):
    header, blob = {"__metadata__": metadata}, b""
    for name, (dtype, shape, data) in sorted(tensors.items()):
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [len(blob), len(blob) + len(data)]}
        blob += data
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * ((8 - len(h) % 8) % 8)
    return struct.pack("<Q", len(h)) + h + blob


def golden():
    b = open(f"{CORPUS}/checkpoint/tiny.safetensors", "rb").read()
    n = struct.unpack("<Q", b[:8])[0]
    header = json.loads(b[8:8 + n])
    meta = header.pop("__metadata__")
    tensors = {}
    for name, e in header.items():
        lo, hi = e["data_offsets"]
        tensors["param." + name] = (e["dtype"], e["shape"], b[8 + n + lo:8 + n + hi])
    batch, c, size = 2, 1, 8
    tensors["input"] = ("F32", [batch, c, size, size], struct.pack(f"<{batch * c * size * size}f",
                                                                   *[0.01 * i for i in range(batch * c * size * size)]))
    tensors["labels"] = ("I64", [batch], struct.pack("<2q", 0, 2))
    tensors["logits"] = ("F32", [batch, 3], struct.pack("<6f", *range(6)))
    tensors["loss"] = ("F32", [], struct.pack("<f", 1.5))
    adamw = '{"beta1":0.9,"beta2":0.999,"eps":1e-08,"lr":0.001,"steps":2,"weight_decay":0.05}'
    tensors["adamw.loss"] = ("F32", [2], struct.pack("<2f", 1.5, 1.4))
    data = safetensors(tensors, {"format": "vitmerge-golden", "config": meta["config"], "adamw": adamw})
    open(f"{CORPUS}/golden/tiny_golden.safetensors", "wb").write(data)


pngs()
golden()
