"""A real English word-level corpus for the training benchmarks: Jane Austen's six novels.

867,000 tokens (729,000 words and 138,000 punctuation marks) in 31,400 sentences of
19th-century English prose, 13,700 distinct tokens of which the 10,000 most frequent in train
cover 99.6% of train and 99.0% of valid and test: the scale of the Penn Treebank (about 1M
tokens, 10K vocabulary). Our machines reach only package registries, and the package there
that ships whole English books as data is Debian's ``r-cran-janeaustenr`` (Julia Silge's CRAN
package janeaustenr: the Project Gutenberg texts of the novels, which are in the public domain;
the package is MIT-licensed). It is fetched with ``apt-get download`` at a pinned version and
checked against a pinned sha256; R is not needed: the novels are read out of R's lazy-load data
files by the small reader below.

The text is normalised PTB-like: front matter, chapter headings and end notes dropped, the
italics underscores and hard line wraps of the Gutenberg files undone, ``--`` written as an em
dash, one sentence per line, lower-cased, and tokens separated by single spaces exactly where
``rustrnn.Vocab(level="word")`` splits them (a word is a run of ``\\w``; every other character
is a token of its own), so ``line.split()`` are the tokens the vocabulary sees.

Each novel is split in reading order: its first 90% of sentences go to train, the next 5% to
valid, the last 5% to test. Not a test: nothing here gates CI.

    python bench/word_corpus.py [--cache-dir DIR]
"""

from __future__ import annotations

import argparse
import collections
import gzip
import hashlib
import io
import os
import re
import shutil
import struct
import subprocess
import tarfile
import tempfile
import time
import zlib
from pathlib import Path

PACKAGE = "r-cran-janeaustenr"
VERSION = "1.0.0-1"  # Debian 12 (bookworm)
DEB = f"{PACKAGE}_{VERSION}_all.deb"
SHA256 = "df6bddf211906d1ff404f8ff662c21b34e6660e7f54a311084e749050c019c95"
DATA_DIR = "./usr/lib/R/site-library/janeaustenr/data/"

# In publication order; the names are the package's R objects.
NOVELS = [
    "sensesensibility",
    "prideprejudice",
    "mansfieldpark",
    "emma",
    "northangerabbey",
    "persuasion",
]

SPLIT = (0.90, 0.05, 0.05)


def default_cache_dir() -> Path:
    root = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(root) / "rustrnn-bench"


def word_corpus(cache_dir: str | os.PathLike | None = None) -> tuple[str, str, str]:
    """The corpus as ``(train, valid, test)`` strings, one sentence per line.

    Args:
        cache_dir: where the Debian package is kept after the first call
            (default ``$XDG_CACHE_HOME/rustrnn-bench``, else ``~/.cache/rustrnn-bench``).

    Raises:
        RuntimeError: the package is not in ``cache_dir`` and ``apt-get download`` could not
            fetch it (the message says how to provide it by hand).
        ValueError: the package's sha256 is not the pinned one.
    """
    novels = read_novels(fetch_deb(Path(cache_dir) if cache_dir else default_cache_dir()))
    parts: tuple[list[str], list[str], list[str]] = ([], [], [])
    for name in NOVELS:
        lines = sentences(novels[name])
        a = round(len(lines) * SPLIT[0])
        b = round(len(lines) * (SPLIT[0] + SPLIT[1]))
        for part, chunk in zip(parts, (lines[:a], lines[a:b], lines[b:])):
            part.extend(chunk)
    train, valid, test = ("".join(line + "\n" for line in part) for part in parts)
    return train, valid, test


# --- fetching ---------------------------------------------------------------------------------


def fetch_deb(cache_dir: Path) -> Path:
    """The verified package in ``cache_dir``, downloaded first if it is not there."""
    path = cache_dir / DEB
    if not path.exists():
        cache_dir.mkdir(parents=True, exist_ok=True)
        # A private directory, so that a failed or concurrent download never leaves a partial
        # file under the final name.
        with tempfile.TemporaryDirectory(dir=cache_dir) as tmp:
            got = apt_download(Path(tmp))
            check_sha256(got)
            os.replace(got, path)
    check_sha256(path)
    return path


def apt_download(into: Path) -> Path:
    how = (
        f"Provide it by hand: put {DEB} (sha256 {SHA256}), Debian 12 (bookworm)'s package,\n"
        f"from any Debian mirror's pool/main/r/{PACKAGE}/ or from `apt-get download "
        f"{PACKAGE}={VERSION}`\n(after `apt-get update`) on a Debian machine, into "
        f"{into.parent}/"
    )
    apt = shutil.which("apt-get")
    if apt is None:
        raise RuntimeError(f"{DEB} is not cached and apt-get is not on PATH.\n{how}")
    cmd = [apt, "download", f"{PACKAGE}={VERSION}"]
    try:
        run = subprocess.run(cmd, cwd=into, capture_output=True, text=True, timeout=600)
    except subprocess.TimeoutExpired:
        raise RuntimeError(f"`{' '.join(cmd)}` gave no answer in 600 s.\n{how}") from None
    got = into / DEB
    if run.returncode != 0 or not got.exists():
        detail = (run.stderr or run.stdout).strip()
        raise RuntimeError(
            f"`{' '.join(cmd)}` failed (exit {run.returncode}): {detail}\n"
            f"If the package is unknown, `apt-get update` may fetch the package lists.\n{how}"
        )
    return got


def check_sha256(path: Path) -> None:
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    if digest != SHA256:
        raise ValueError(f"{path}: expected sha256 {SHA256}, got {digest}; delete it and retry")


def deb_member(deb: bytes, prefix: str) -> bytes:
    """The ``ar`` member of a .deb whose name starts with ``prefix``."""
    if not deb.startswith(b"!<arch>\n"):
        raise ValueError("not a Debian package (no ar header)")
    i = 8
    while i + 60 <= len(deb):
        name = deb[i : i + 16].decode("ascii").strip().rstrip("/")
        size = int(deb[i + 48 : i + 58].decode("ascii"))
        if name.startswith(prefix):
            return deb[i + 60 : i + 60 + size]
        i += 60 + size + (size & 1)
    raise ValueError(f"no {prefix}* member in the package")


def read_novels(deb_path: Path) -> dict[str, list[str]]:
    """``{name: lines}`` of the novels in the package's R data files."""
    data = deb_member(deb_path.read_bytes(), "data.tar")
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:

        def read(name: str) -> bytes:
            f = tar.extractfile(DATA_DIR + name)
            if f is None:
                raise ValueError(f"{DATA_DIR + name} is not a file in the package")
            return f.read()

        rdx, rdb = read("Rdata.rdx"), read("Rdata.rdb")
    # A lazy-load database: the index is a gzipped serialized list whose "variables" entry maps
    # each object's name to (offset, length) in the .rdb, where each object is serialized on its
    # own and zlib-compressed behind a 4-byte big-endian length.
    index = dict(dict(RReader(gzip.decompress(rdx)).read())["variables"])
    novels = {}
    for name in NOVELS:
        offset, length = index[name]
        blob = rdb[offset : offset + length]
        (size,) = struct.unpack(">I", blob[:4])
        raw = zlib.decompress(blob[4:])
        if len(raw) != size:
            raise ValueError(f"{name}: expected {size} bytes, inflated {len(raw)}")
        novels[name] = RReader(raw).read()
    return novels


class RReader:
    """Reads R's XDR serialization format (``serialize``, versions 2 and 3), as far as the
    package needs: vectors, pairlists, symbols and references. A vector with a ``names``
    attribute comes back as a list of ``(name, value)`` pairs, a pairlist as a dict."""

    def __init__(self, data: bytes):
        self.data, self.pos, self.refs = data, 0, []

    def read(self):
        if self.data[:2] != b"X\n":
            raise ValueError(f"not R XDR serialization: starts {self.data[:2]!r}")
        self.pos = 2
        version = self.i32()
        self.pos += 8  # the writer's R version, the oldest reader's
        if version == 3:
            skip = self.i32()  # the length of the native encoding's name, which follows
            self.pos += skip
        return self.item()

    def i32(self) -> int:
        (v,) = struct.unpack_from(">i", self.data, self.pos)
        self.pos += 4
        return v

    def length(self) -> int:
        n = self.i32()
        return n if n != -1 else (self.i32() << 32) + self.i32()

    def item(self):
        flags = self.i32()
        kind, has_attr, has_tag = flags & 0xFF, flags & (1 << 9), flags & (1 << 10)
        if kind == 254:  # NILVALUE_SXP
            return None
        if kind == 255:  # REFSXP
            return self.refs[(flags >> 8) - 1]
        if kind == 1:  # SYMSXP
            name = self.item()
            self.refs.append(name)
            return name
        if kind == 9:  # CHARSXP
            n = self.i32()
            if n == -1:
                return None
            raw = self.data[self.pos : self.pos + n]
            self.pos += n
            return raw.decode("latin-1" if flags & (1 << 14) else "utf-8")
        if kind == 2:  # LISTSXP
            if has_attr:
                self.item()  # the pairlist's own attributes: not needed
            tag = self.item() if has_tag else None
            car = self.item()
            return {tag: car, **(self.item() or {})}
        n = self.length()
        if kind in (16, 19):  # STRSXP, VECSXP
            value = [self.item() for _ in range(n)]
        elif kind in (10, 13):  # LGLSXP, INTSXP
            value = list(struct.unpack_from(f">{n}i", self.data, self.pos))
            self.pos += 4 * n
        elif kind == 14:  # REALSXP
            value = list(struct.unpack_from(f">{n}d", self.data, self.pos))
            self.pos += 8 * n
        else:
            raise ValueError(f"R object of SEXPTYPE {kind} is not supported")
        if has_attr:
            names = self.item().get("names")
            if names is not None:
                return list(zip(names, value))
        return value


# --- normalising ------------------------------------------------------------------------------

HEADING = re.compile(r"(chapter|volume)\s+([ivxlc]+|\d+)\.?", re.IGNORECASE)
# Where a novel's text ends: the end mark, or (Northanger Abbey) the edition's note after it.
END = {"the end", "finis", "a note on the text"}
# Abbreviations after which a full stop does not end a sentence (lower case, without it).
ABBREV = {"mr", "mrs", "dr", "st", "messrs", "esq", "col", "capt", "gen", "sir", "rev"}
SENTENCE_END = re.compile(r"""[.!?]["')\]]*\s+(?=["'(\[]*[A-Z])""")
TOKEN = re.compile(r"\w+|[^\w\s]")
TOKEN_WORD = re.compile(r"\w+")


def paragraphs(lines: list[str]) -> list[str]:
    """The novel's body, a paragraph a string: from its first chapter heading up to its end
    mark, without headings, editorial brackets and ``* * *`` breaks."""
    paras, cur = [], []
    for line in [*lines, ""]:
        if line.strip():
            cur.append(line.strip())
        elif cur:
            paras.append(" ".join(cur))
            cur = []
    start = next(i for i, p in enumerate(paras) if HEADING.fullmatch(p))
    body = []
    for p in paras[start:]:
        if p.lower() in END:
            break
        if HEADING.fullmatch(p) or (p.startswith("[") and p.endswith("]")) or not p.strip("* "):
            continue
        body.append(p)
    return body


def sentences(lines: list[str]) -> list[str]:
    """The novel's sentences, normalised and tokenised (see the module docs)."""
    out = []
    for para in paragraphs(lines):
        para = para.replace("_", "").replace("--", " \u2014 ")
        start = 0
        for m in SENTENCE_END.finditer(para):
            words = re.findall(r"\w+", para[start : m.start()])
            # "Mr. Darcy", "F. C. Weston": a title or an initial, not the end of a sentence.
            last = words[-1] if words else ""
            initial = len(last) == 1 and last.isupper()  # not the "s" of "father's."
            if para[m.start()] == "." and (last.lower() in ABBREV or initial):
                continue
            out.append(para[start : m.end()])
            start = m.end()
        out.append(para[start:])
    return [" ".join(TOKEN.findall(s.lower())) for s in out if s.strip()]


# --- statistics -------------------------------------------------------------------------------


def stats(name: str, text: str, top: collections.Counter | None = None) -> collections.Counter:
    """Prints the tokens (words and punctuation, as the Penn Treebank counts its "words"),
    words, lines and distinct tokens of ``text``, and the share of its tokens among the 10,000
    most frequent of ``top`` (default: of ``text``); returns ``text``'s token counts."""
    counts = collections.Counter(text.split())
    tokens = sum(counts.values())
    words = sum(n for t, n in counts.items() if TOKEN_WORD.fullmatch(t))
    kept = {t for t, _ in (top or counts).most_common(10_000)}
    covered = sum(n for t, n in counts.items() if t in kept)
    print(
        f"{name:>5}: {tokens:>9,} tokens {words:>9,} words {text.count(chr(10)):>7,} lines "
        f"{len(counts):>7,} distinct; the top 10,000 of train cover {covered / tokens:.2%}"
    )
    return counts


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cache-dir", help=f"default {default_cache_dir()}")
    args = ap.parse_args()

    cache_dir = Path(args.cache_dir) if args.cache_dir else default_cache_dir()
    cached = (cache_dir / DEB).exists()
    t0 = time.perf_counter()
    fetch_deb(cache_dir)
    t1 = time.perf_counter()
    train, valid, test = word_corpus(cache_dir)
    t2 = time.perf_counter()
    how = "checked in the cache" if cached else "fetched and checked"
    print(f"{cache_dir / DEB}: {how} in {t1 - t0:.1f} s; read and normalised in {t2 - t1:.1f} s")
    counts = stats("train", train)
    stats("valid", valid, counts)
    stats("test", test, counts)
    stats("all", train + valid + test, counts)
    unseen = sum(1 for t in collections.Counter((valid + test).split()) if t not in counts)
    print(f"distinct tokens of valid and test not in train: {unseen:,}")
    try:
        import torch  # noqa: F401  (rustrnn needs torch loaded first)
        from rustrnn import Vocab
    except ImportError:
        print("(rustrnn not importable: Vocab not checked)")
        return
    # The lines are pre-split the way Vocab splits: its tokens are a line's, then <eos>.
    vocab = Vocab.build(train, level="word", max_size=10_000)
    sample = train[: train.index("\n", 200_000) + 1]
    expected = [t for line in sample.splitlines() for t in (*line.split(), "<eos>")]
    if vocab.tokenize(sample) != expected:
        raise RuntimeError("Vocab splits the normalised text differently from str.split")
    ids = vocab.encode(valid)
    print(
        f"Vocab.build(train, level='word', max_size=10000): {len(vocab):,} tokens; "
        f"<unk> is {(ids == vocab.unk_id).float().mean().item():.2%} of valid's "
        f"{ids.numel():,} ids (<eos> included)"
    )


if __name__ == "__main__":
    main()
