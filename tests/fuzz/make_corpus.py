#!/usr/bin/env python3
"""Seed corpus for the fuzz targets, written under OUT/<target>/ (a build folder).

Real images come from libvips (`vips`, the same library the worker decodes with):
JPEG (baseline, progressive), PNG (plain, interlaced), GIF, WebP (lossy, lossless,
with alpha), AVIF and HEIC, at a few small sizes. Without `vips` only the hand-made
images are written (a warning says so). Hand-made seeds cover what encoders never
write: HEIF with mdat before meta, boxes with 64-bit and zero sizes, JPEGs with many
segments, and the other targets' inputs (multipart, JWT, JSON, RESP, SigV4, cursors).
Nothing here is committed as a binary: the corpus is made at run time.

Usage: make_corpus.py OUT
"""
import base64
import hashlib
import os
import shutil
import struct
import subprocess
import sys
import tempfile


def write(out, target, data):
    folder = os.path.join(out, target)
    os.makedirs(folder, exist_ok=True)
    if isinstance(data, str):
        data = data.encode()
    name = "seed-" + hashlib.sha1(data).hexdigest()[:16]
    with open(os.path.join(folder, name), "wb") as f:
        f.write(data)


# ------------------------------------------------------------------ images

def box(kind, body=b"", full=False):
    payload = (b"\0\0\0\0" if full else b"") + body
    return struct.pack(">I", 8 + len(payload)) + kind + payload


def heif(brand, w, h, mdat_first=False):
    ftyp = box(b"ftyp", brand + b"\0\0\0\0" + b"mif1" + b"miaf")
    ispe = box(b"ispe", struct.pack(">II", w, h), True)
    meta = box(b"meta", box(b"hdlr", b"\0" * 4 + b"pict" + b"\0" * 12, True) + box(b"iprp", box(b"ipco", ispe)), True)
    mdat = box(b"mdat", b"\x55" * 24)
    return ftyp + (mdat + meta if mdat_first else meta + mdat)


def riff(chunks):
    return b"RIFF" + struct.pack("<I", 4 + len(chunks)) + b"WEBP" + chunks


def hand_images(out):
    png_ihdr = b"\x89PNG\r\n\x1a\n" + struct.pack(">I", 13) + b"IHDR" + struct.pack(">IIBBBBB", 3, 2, 8, 2, 0, 0, 0)
    jpeg_sof = b"\xff\xd8\xff\xe0\x00\x10JFIF\x00\x01\x01\x00\x00\x01\x00\x01\x00\x00" \
               b"\xff\xc0\x00\x11\x08\x00\x20\x00\x30\x03\x01\x22\x00\x02\x11\x01\x03\x11\x01\xff\xd9"
    seeds = [
        heif(b"heic", 4032, 3024),
        heif(b"avif", 640, 480, mdat_first=True),
        heif(b"heic", 1, 1)[:60],
        # Issue 10, item 1: a 64-bit box size that wraps the offset.
        box(b"ftyp", b"heic\0\0\0\0") + struct.pack(">I", 1) + b"free" + struct.pack(">Q", 0xFFFFFFFFFFFFFFF0),
        box(b"ftyp", b"avif\0\0\0\0") + struct.pack(">I", 0) + b"mdat" + b"\0" * 16,
        png_ihdr + b"\0\0\0\0IEND\xaeB`\x82",
        jpeg_sof,
        b"\xff\xd8" + b"\xff\xfe\x00\x02" * 40 + jpeg_sof[2:],
        b"GIF89a\x40\x01\xf0\x00\x00\x00\x00;",
        riff(b"VP8X" + struct.pack("<I", 10) + b"\0" * 4 + (63).to_bytes(3, "little") + (31).to_bytes(3, "little")),
        riff(b"VP8L" + struct.pack("<I", 13) + b"\x2f" + struct.pack("<I", 7 | (7 << 14)) + b"\0" * 8),
        # Issue 22, item 7 (decode_cost): an interlaced 16-bit RGBA IHDR at 48 MP; a
        # progressive 4:2:0 frame header; an animated VP8X; a HEIF with pixi and auxC.
        png_ihdr[:16] + struct.pack(">IIBBBBB", 8000, 6000, 16, 6, 0, 0, 1) + b"\0\0\0\0IEND\xaeB`\x82",
        jpeg_sof.replace(b"\xff\xc0\x00\x11\x08\x00\x20\x00\x30", b"\xff\xc2\x00\x11\x08\x17\x70\x1f\x40"),
        riff(b"VP8X" + struct.pack("<I", 10) + b"\x12\0\0\0" + (7999).to_bytes(3, "little")
             + (5999).to_bytes(3, "little")),
        box(b"ftyp", b"avif\0\0\0\0mif1") + box(b"meta", box(b"iprp", box(b"ipco", box(
            b"ispe", struct.pack(">II", 8000, 6000), True) + box(b"pixi", b"\x03\x0a\x0a\x0a", True)
            + box(b"auxC", b"urn:mpeg:mpegB:cicp:systems:auxiliary:alpha\0", True))), True),
    ]
    for s in seeds:
        write(out, "image", s)


def vips_images(out):
    vips = shutil.which("vips")
    if not vips:
        print("make_corpus: vips not found, only hand-made image seeds (apt-get install libvips-tools)",
              file=sys.stderr)
        return 0
    made = 0
    with tempfile.TemporaryDirectory() as tmp:
        for w, h in ((1, 1), (17, 9), (64, 48)):
            for bands in (3, 4):
                src = os.path.join(tmp, f"src-{w}x{h}-{bands}.v")
                subprocess.run([vips, "black", src, str(w), str(h), "--bands", str(bands)], check=True)
                outputs = [
                    ("jpg", ["jpegsave", "--Q", "70"]), ("jpg", ["jpegsave", "--interlace"]),
                    ("png", ["pngsave"]), ("png", ["pngsave", "--interlace"]), ("gif", ["gifsave"]),
                    ("webp", ["webpsave"]), ("webp", ["webpsave", "--lossless"]),
                    ("avif", ["heifsave", "--compression", "av1"]), ("heic", ["heifsave", "--compression", "hevc"]),
                ]
                for i, (ext, op) in enumerate(outputs):
                    if bands == 4 and ext == "jpg":
                        continue
                    dst = os.path.join(tmp, f"out-{w}x{h}-{bands}-{i}.{ext}")
                    run = subprocess.run([vips, op[0], src, dst] + op[1:], capture_output=True)
                    if run.returncode != 0 or not os.path.exists(dst):
                        continue  # this libvips lacks the encoder (AVIF, HEIC): skip it
                    with open(dst, "rb") as f:
                        write(out, "image", f.read())
                    made += 1
    return made


# ------------------------------------------------------------------ the other parsers

def multipart(out):
    file_part = ('--XyZ\r\nContent-Disposition: form-data; name="file"; filename="a.png"\r\n'
                 'Content-Type: image/png\r\n\r\n\x89PNG\r\n\x1a\n-data\r\n--XyZ--\r\n')
    bodies = [
        file_part,
        '--XyZ\r\nContent-Disposition: form-data; name="title"\r\n\r\nhello\r\n' + file_part,
        'preamble\r\n' + file_part,
        '--XyZ\r\n\r\nheaderless\r\n--XyZ--\r\n',
        '--XyZ\r\nContent-Disposition: form-data; filename="x; name=file"; name="photo"\r\n\r\nD\r\n--XyZ--\r\n',
        '--XyZ--\r\n',
        '--XyZ\r\nContent-Disposition: form-data; name="file"\r\n\r\nno trailer',
    ]
    types = ["multipart/form-data; boundary=XyZ", 'Multipart/Form-Data; charset=utf-8; boundary="XyZ"',
             "multipart/form-data; boundary=----WebKitFormBoundary7MA4YWxkTrZu0gW"]
    for t in types:
        for b in bodies:
            write(out, "multipart", t + "\n" + b)


def b64url(data):
    return base64.urlsafe_b64encode(data if isinstance(data, bytes) else data.encode()).rstrip(b"=").decode()


def jwt(out):
    header = '{"alg":"EdDSA","typ":"JWT","kid":"k1"}'
    claims = ('{"iss":"nimbus","aud":"nimbus-api","sub":"0190b5e4-8c7e-7b6a-9b1e-3f2a1c0d4e5f",'
              '"sid":"s1","jti":"j1","iat":1767225000,"exp":1767226000}')
    # Mode 0 (last byte even): the bytes are the token.
    for token in (b64url(header) + "." + b64url(claims) + "." + b64url(b"\0" * 64),
                  b64url('{"alg":"none"}') + "." + b64url(claims) + ".",
                  b64url('{"alg":"EdDSA","kid":"k1","jwk":{}}') + "." + b64url(claims) + "." + b64url(b"x" * 64),
                  "a.b.c", "..", "not a token"):
        write(out, "jwt", token + "\x00")
    # Mode 1 (last byte odd): header JSON, a '\' break, payload JSON; the target signs them.
    for h, c in ((header, claims), ('{"alg":"EdDSA","kid":"k2"}', claims),
                 (header, claims.replace('"exp":1767226000', '"exp":1767225000,"nbf":1767300000')),
                 (header, '{"iss":"nimbus","aud":"other","sub":"s","sid":"s","jti":"j","iat":1,"exp":9e99}')):
        write(out, "jwt", h + "\\x" + c + "\x01")


def json_body(out):
    bodies = ['{"title":"Lunch?","options":["pizza","sushi"],"max_choices":1}', '{"email":"a@example.com"}',
              '{"code":"123456","email":"x@y"}', '{"content_type":"image/png","bytes":1024}', "[]", "{}",
              '{"a":"\\u0000"}', '{"a":{"b":[1,2.5e300,-0,true,null]}}', "{" * 20 + "}" * 20, '{"\\ud800":1}']
    for t in ("application/json", "application/json; charset=utf-8", "APPLICATION/JSON ", "text/plain"):
        for b in bodies:
            write(out, "json_body", chr(len(t)) + t + b)


def resp(out):
    replies = ["+OK\r\n", "-LOADING Redis is loading the dataset in memory\r\n", "-NOSCRIPT No matching script\r\n",
               ":1000\r\n", ":-1\r\n", "$5\r\nhello\r\n", "$0\r\n\r\n", "$-1\r\n", "*-1\r\n", "*0\r\n",
               "*2\r\n$3\r\nfoo\r\n:1\r\n", "*3\r\n*1\r\n:1\r\n*2\r\n+a\r\n-b\r\n$1\r\nz\r\n",
               "*2\r\n$6\r\n_total\r\n$2\r\n42\r\n", "+PONG\r\n:1\r\n$1\r\nx\r\n"]
    for r in replies:
        write(out, "resp", r)
    write(out, "resp", "".join(replies))


def sigv4(out):
    for s in ("/nimbus/originals/0190b5e4-8c7e-7b6a-9b1e-3f2a1c0d4e5f\\xX-Amz-Expires\\x600\\x",
              "/bucket/a b/ü?&=\\xprefix\\xoriginals/\\xcontent-type\\ximage/png\\x\x02\x01",
              "/\\x\\x\\x\x00\x00\x00"):
        write(out, "sigv4", s)


def paging(out):
    cursor = b64url("0190b5e4-8c7e-7b6a-9b1e-3f2a1c0d4e5f")
    for q in ("limit=20", "limit=100&cursor=" + cursor, "cursor=" + cursor + "&limit=1", "limit=0", "limit=101",
              "limit=+5", "limit=1e2", "limit=%31%30", "cursor=====", "cursor=%41%41", "cursor=&cursor=x",
              "limit=20&limit=abc", "a=b&&c", ""):
        write(out, "paging", q)


def main():
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    out = sys.argv[1]
    hand_images(out)
    made = vips_images(out)
    multipart(out)
    jwt(out)
    json_body(out)
    resp(out)
    sigv4(out)
    paging(out)
    counts = {t: len(os.listdir(os.path.join(out, t))) for t in sorted(os.listdir(out))}
    print(f"make_corpus: {made} images from vips; files per target: {counts}")


if __name__ == "__main__":
    main()
