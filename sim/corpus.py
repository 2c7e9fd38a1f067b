"""The images the uploaders send: JPEG, PNG, WebP and HEIC from about 50 KB to 8 MB,
made once per run folder (photo-like colour fields with grain; noise where a file
must be large) and kept, since making an 8 MB JPEG or a HEIC costs seconds."""
import io
import os
import random
import subprocess
import tempfile

from PIL import Image

# name, format, width, height, grain (0-1: how much noise), quality, weight (how often
# an uploader picks it: small files are the common case).
SPECS = [
    ("small.jpg", "JPEG", 640, 480, 0.05, 75, 6),
    ("medium.jpg", "JPEG", 2000, 1500, 0.3, 88, 4),
    ("large.jpg", "JPEG", 4000, 3000, 0.8, 88, 1),
    ("small.png", "PNG", 480, 360, 0.1, None, 3),
    ("medium.png", "PNG", 1200, 900, 0.6, None, 2),
    ("small.webp", "WEBP", 800, 600, 0.2, 80, 3),
    ("medium.webp", "WEBP", 2400, 1800, 0.8, 90, 1),
    ("small.heic", "HEIC", 1024, 768, 0.2, 60, 2),
]
CONTENT_TYPES = {"JPEG": "image/jpeg", "PNG": "image/png", "WEBP": "image/webp", "HEIC": "image/heic"}


class CorpusImage:
    def __init__(self, name, fmt, data, width, height, weight):
        self.name, self.format, self.data = name, fmt, data
        self.width, self.height, self.weight = width, height, weight
        self.content_type = CONTENT_TYPES[fmt]


def _picture(width, height, grain, seed):
    rnd = random.Random(seed)
    small = Image.new("RGB", (8, 6))
    small.putdata([(rnd.randrange(256), rnd.randrange(256), rnd.randrange(256)) for _ in range(48)])
    img = small.resize((width, height), Image.BICUBIC)
    if grain:
        noise = Image.effect_noise((width, height), 40 + 60 * grain).convert("RGB")
        img = Image.blend(img, noise, min(0.9, 0.15 + 0.7 * grain))
    return img


def _make(fmt, width, height, grain, quality, seed):
    img = _picture(width, height, grain, seed)
    if fmt == "HEIC":
        with tempfile.TemporaryDirectory() as d:
            src, dst = os.path.join(d, "in.png"), os.path.join(d, "out.heic")
            img.save(src, "PNG")
            subprocess.run(["vips", "heifsave", src, dst, "--Q", str(quality)], check=True, capture_output=True)
            with open(dst, "rb") as f:
                return f.read()
    out = io.BytesIO()
    if fmt == "PNG":
        img.save(out, "PNG", compress_level=6)
    else:
        img.save(out, fmt, quality=quality)
    return out.getvalue()


def load(folder, small_only=False):
    """The corpus, made into `folder` where missing. small_only: the seconds-long runs."""
    os.makedirs(folder, exist_ok=True)
    images = []
    for i, (name, fmt, w, h, grain, quality, weight) in enumerate(SPECS):
        if small_only and not name.startswith("small"):
            continue
        path = os.path.join(folder, name)
        if not os.path.exists(path):
            data = _make(fmt, w, h, grain, quality, seed=i)
            with open(path + ".tmp", "wb") as f:
                f.write(data)
            os.replace(path + ".tmp", path)
        with open(path, "rb") as f:
            images.append(CorpusImage(name, fmt, f.read(), w, h, weight))
    return images


def pick(images, rnd=random):
    return rnd.choices(images, weights=[i.weight for i in images])[0]
