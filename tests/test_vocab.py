"""The vocabulary against plain-Python references (collections.Counter, re,
torch.nn.functional.one_hot) and the file-format contract."""

import json
import os
import re
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pydoc_data.topics import topics

import pytest
import rustrnn
import torch
import torch.nn.functional as F
from rustrnn import Vocab

SPECIALS = ("<unk>", "<eos>")
PROSE = "\n".join(topics[k] for k in sorted(topics))  # ~460 kB of English, some non-ASCII
NON_ASCII = "héllo wörld — 日本語 🙂\nÇa va? Ünïcödé…\n"
WORD_RE = re.compile(r"\w+|[^\w\s]")


def ref_words(text, eos=True):
    """Python's reading of the word-level rule: `\\w+` runs and single other
    non-space characters per line, `<eos>` after each "\\n"."""
    lines = text.split("\n")
    out = []
    for i, line in enumerate(lines):
        out += WORD_RE.findall(line)
        if eos and i < len(lines) - 1:
            out.append("<eos>")
    return out


def ref_tokens(tokens, specials=SPECIALS, min_freq=1, max_size=None):
    """The id order recomputed with a Counter: specials, then frequency
    descending, ties by the token."""
    counts = Counter(t for t in tokens if t not in specials)
    ranked = sorted((t for t, n in counts.items() if n >= min_freq), key=lambda t: (-counts[t], t))
    if max_size is not None:
        ranked = ranked[: max_size - len(specials)]
    return list(specials) + ranked


# -- ids ------------------------------------------------------------------------


def test_reexported():
    assert rustrnn.Vocab is rustrnn._rustrnn.Vocab
    assert "Vocab" in rustrnn.__all__


@pytest.mark.parametrize("text", [PROSE, NON_ASCII, ""])
def test_char_ids_match_counter(text):
    v = Vocab.build(text)
    assert v.level == "char"
    assert v.tokens() == ref_tokens(list(text))
    assert list(v) == v.tokens() and len(v) == len(v.tokens())
    assert [v[t] for t in v.tokens()] == list(range(len(v)))
    assert [v.token(i) for i in range(len(v))] == v.tokens()


def test_word_ids_match_counter():
    v = Vocab.build(PROSE, level="word")
    assert v.level == "word"
    assert v.tokenize(PROSE) == ref_words(PROSE)
    assert v.tokens() == ref_tokens(ref_words(PROSE))


@pytest.mark.parametrize("level", ["char", "word"])
@pytest.mark.parametrize(
    "min_freq, max_size, lower",
    [
        (1, None, False),
        (3, None, False),
        (1, 40, False),
        (2, 25, True),
        (1, None, True),
        (5, 2, True),
    ],
)
def test_min_freq_max_size_lower(level, min_freq, max_size, lower):
    text = PROSE[:50_000]
    v = Vocab.build(text, level=level, min_freq=min_freq, max_size=max_size, lower=lower)
    norm = text.lower() if lower else text
    toks = list(norm) if level == "char" else ref_words(norm)
    assert v.tokens() == ref_tokens(toks, min_freq=min_freq, max_size=max_size)
    assert v.lower is lower
    if max_size is not None:
        assert len(v) <= max_size
    # Encoding lower-cases too; unknown or dropped tokens map to <unk>.
    ids = v.encode(text).tolist()
    assert ids == [v[t] for t in toks]
    assert v.tokenize(text) == toks


def test_specials_order_and_properties():
    v = Vocab.build("abc\n", specials=("<pad>", "<unk>", "<bos>"))
    assert v.tokens()[:3] == ["<pad>", "<unk>", "<bos>"]
    assert v.specials == ["<pad>", "<unk>", "<bos>"]
    assert (v.unk_id, v.eos_id) == (1, None)
    v = Vocab.build("abc", specials=())
    assert (v.unk_id, v.eos_id) == (None, None)
    assert v.tokens() == ["a", "b", "c"]
    v = Vocab.build("abc")
    assert (v.unk_id, v.eos_id) == (0, 1)
    # A special that also occurs in the text keeps its special id, counted once.
    v = Vocab.build("a<unk>b <unk>\n", level="word")
    assert v.tokens() == ["<unk>", "<eos>", "a", "b"]


# -- tokenization, encode, decode ---------------------------------------------------


def test_char_round_trip_non_ascii():
    v = Vocab.build(NON_ASCII)
    ids = v.encode(NON_ASCII)
    assert ids.dtype == torch.int64 and ids.dim() == 1
    assert len(ids) == len(NON_ASCII)  # code points, not UTF-8 bytes
    assert ids.tolist() == [v[c] for c in NON_ASCII]
    assert v.decode(ids) == NON_ASCII
    assert v.decode(ids.tolist()) == NON_ASCII
    assert "\n" in v and v.encode("\n").tolist() == [v["\n"]]  # an ordinary character
    assert v.tokenize("日🙂\n") == ["日", "🙂", "\n"]


def test_word_tokenization_of_punctuation():
    v = Vocab.build("x", level="word")
    text = 'Hello, world! It\'s 3.14 -- (ok)? snake_case..."q"'
    assert v.tokenize(text) == [
        "Hello", ",", "world", "!", "It", "'", "s", "3", ".", "14", "-", "-",
        "(", "ok", ")", "?", "snake_case", ".", ".", ".", '"', "q", '"',
    ]  # fmt: skip
    assert v.tokenize(text) == ref_words(text)
    assert v.tokenize(NON_ASCII) == ref_words(NON_ASCII)
    # Combining marks stay with their letter (Python's \w would split them off).
    assert v.tokenize("cafe\u0301, 👍🏽!") == ["cafe\u0301", ",", "👍🏽", "!"]
    # Specials written in the text are single tokens (WikiText's <unk>), but do
    # not split words.
    assert v.tokenize("a <unk> b<eos>") == ["a", "<unk>", "b", "<eos>"]
    w = Vocab.build("x", level="word", specials=("PAD",))
    assert w.tokenize("PAD PADDING (PAD)") == ["PAD", "PADDING", "(", "PAD", ")"]


def test_eos_at_line_ends():
    text = "a b\nc\n\nd\r\ne"
    v = Vocab.build(text, level="word")
    assert v.tokenize(text) == ["a", "b", "<eos>", "c", "<eos>", "<eos>", "d", "<eos>", "e"]
    ids = v.encode(text).tolist()
    assert [i for i, t in enumerate(ids) if t == v.eos_id] == [2, 4, 5, 7]
    assert v.decode(ids) == "a b\nc\n\nd\ne"
    # Without an <eos> special, a newline is plain whitespace.
    w = Vocab.build(text, level="word", specials=("<unk>",))
    assert w.tokenize(text) == ["a", "b", "c", "d", "e"]
    assert w.decode(w.encode(text)) == "a b c d e"


def test_word_decode_rule():
    text = "  Hello,   world!\n\tbye .\n"
    v = Vocab.build(text, level="word")
    ids = v.encode(text)
    # Tokens joined by one space; <eos> becomes "\n" with no space around it.
    assert v.decode(ids) == "Hello , world !\nbye .\n"
    assert v.decode(ids) == "\n".join(" ".join(ref_words(line)) for line in text.split("\n"))
    assert v.decode([v.unk_id, v["bye"], v.eos_id, v.eos_id]) == "<unk> bye\n\n"
    assert v.decode([]) == ""
    # Round trip on prose, whose whitespace is normalized the same way.
    w = Vocab.build(PROSE, level="word")
    assert w.encode(w.decode(w.encode(PROSE))).tolist() == w.encode(PROSE).tolist()


@pytest.mark.parametrize("shape", [(), (7,), (2, 3), (2, 1, 4)])
@pytest.mark.parametrize("dtype", [torch.int64, torch.int32, torch.uint8])
def test_decode_flattens_any_shape(shape, dtype):
    v = Vocab.build("abcdefgh")
    ids = torch.randint(0, len(v), shape).to(dtype)
    assert v.decode(ids) == "".join(v.token(i) for i in ids.flatten().tolist())


def test_decode_rejects_float_ids():
    v = Vocab.build("abc")
    with pytest.raises(TypeError, match="integer"):
        v.decode(torch.tensor([1.0]))


# -- unknown tokens and bad ids ----------------------------------------------------------


@pytest.mark.parametrize("level", ["char", "word"])
def test_unknown_maps_to_unk(level):
    v = Vocab.build("aa bb\n", level=level)
    assert v["zzz"] == v.unk_id == 0
    assert "zzz" not in v and 3 not in v
    unknown = "z" if level == "char" else "zz"
    ids = v.encode(f"aa {unknown}").tolist()
    assert ids[-1] == v.unk_id
    assert v.decode(ids).endswith("<unk>")


@pytest.mark.parametrize("level", ["char", "word"])
def test_unknown_without_unk_raises_key_error(level):
    v = Vocab.build("aa bb\n", level=level, specials=("<eos>",))
    assert v.unk_id is None
    with pytest.raises(KeyError, match="zzz"):
        v["zzz"]
    unknown = "q" if level == "char" else "qq"
    with pytest.raises(KeyError, match=unknown):
        v.encode(f"aa {unknown} bb")


def test_lookup_is_exact_while_encode_lowers():
    v = Vocab.build("Hello hello", level="word", lower=True)
    assert v.tokens() == ["<unk>", "<eos>", "hello"]
    assert "Hello" not in v and v["Hello"] == v.unk_id
    assert v.encode("HELLO").tolist() == [v["hello"]]
    assert v.tokenize("HeLLo") == ["hello"]


@pytest.mark.parametrize("bad", [-1, -100, "len", "len+5"])
def test_bad_ids_raise_index_error(bad):
    v = Vocab.build("abc")
    n = len(v)
    bad = {"len": n, "len+5": n + 5}.get(bad, bad)
    pattern = rf"{bad}\b.*size {n}"
    with pytest.raises(IndexError, match=pattern):
        v.token(bad)
    with pytest.raises(IndexError, match=pattern):
        v.decode([0, bad])
    with pytest.raises(IndexError, match=pattern):
        v.decode(torch.tensor([[0], [bad]]))
    with pytest.raises(IndexError, match=pattern):
        v.one_hot(torch.tensor([1, bad, 2]))


# -- one_hot -------------------------------------------------------------------------------------


@pytest.mark.parametrize("shape", [(), (5,), (2, 3, 4), (0,), (3, 0)])
def test_one_hot_matches_torch(shape):
    v = Vocab.build(PROSE[:2000])
    ids = torch.randint(0, len(v), shape)
    out = v.one_hot(ids)
    ref = F.one_hot(ids, len(v)).float()
    assert out.dtype == torch.float32 and out.shape == (*shape, len(v))
    assert torch.equal(out, ref)
    assert torch.equal(v.one_hot(ids.to(torch.int32)), ref)
    if ids.dim() == 1:
        assert torch.equal(v.one_hot(ids.tolist()), ref)


def test_one_hot_rejects_float_ids():
    v = Vocab.build("abc")
    with pytest.raises(TypeError, match="integer"):
        v.one_hot(torch.tensor([0.0, 1.0]))


# -- save / load ---------------------------------------------------------------------------------


@pytest.mark.parametrize("level", ["char", "word"])
@pytest.mark.parametrize("lower", [False, True])
def test_save_load_round_trip(tmp_path, level, lower):
    v = Vocab.build(
        PROSE[:20_000] + NON_ASCII, level=level, lower=lower, specials=("<pad>", "<unk>")
    )
    path = tmp_path / "vocab.json"
    v.save(path)  # os.PathLike
    back = Vocab.load(str(path))  # str
    assert back == v and back is not v
    assert back.tokens() == v.tokens()
    assert (back.level, back.lower, back.specials) == (level, lower, ["<pad>", "<unk>"])
    assert (back.unk_id, back.eos_id) == (1, None)
    assert torch.equal(back.encode(PROSE[:5000]), v.encode(PROSE[:5000]))
    doc = json.loads(path.read_text(encoding="utf-8"))
    assert doc == {
        "format": "rustrnn.vocab",
        "version": 1,
        "level": level,
        "lower": lower,
        "specials": ["<pad>", "<unk>"],
        "tokens": v.tokens(),
    }


def test_vocab_equality():
    assert Vocab.build("abc") == Vocab.build("cba")
    assert Vocab.build("abc") != Vocab.build("abcd")
    assert Vocab.build("abc") != Vocab.build("abc", level="word")
    assert Vocab.build("abc") != Vocab.build("abc", lower=True)


def _good_doc():
    return {
        "format": "rustrnn.vocab",
        "version": 1,
        "level": "char",
        "lower": False,
        "specials": ["<unk>"],
        "tokens": ["<unk>", "a", "b"],
    }


def _without(key):
    doc = _good_doc()
    del doc[key]
    return json.dumps(doc)


def _with(**changes):
    return json.dumps({**_good_doc(), **changes})


CORRUPT = {
    "empty": b"",
    "blank": b" \n\t ",
    "invalid_json": b'{"format": "rustrnn.vocab", ',
    "not_utf8": b"\xff\xfe\x00garbage",
    "not_an_object": b"[1, 2, 3]",
    "foreign_json": json.dumps({"vocab_size": 3, "tokens": ["a"]}).encode(),
    "wrong_format_tag": _with(format="tokenizers.vocab").encode(),
    "unknown_version": _with(version=2).encode(),
    "version_as_string": _with(version="1").encode(),
    "missing_level": _without("level").encode(),
    "missing_lower": _without("lower").encode(),
    "missing_specials": _without("specials").encode(),
    "missing_tokens": _without("tokens").encode(),
    "missing_version": _without("version").encode(),
    "bad_level": _with(level="byte").encode(),
    "duplicate_tokens": _with(tokens=["<unk>", "a", "b", "a"]).encode(),
    "duplicate_specials": _with(specials=["<unk>", "<unk>"], tokens=["<unk>", "<unk>"]).encode(),
    "tokens_without_specials": _with(tokens=["a", "b"]).encode(),
    "multichar_token_at_char_level": _with(tokens=["<unk>", "ab"]).encode(),
    "whitespace_in_word": _with(level="word", tokens=["<unk>", "a b"]).encode(),
    "token_not_a_string": _with(tokens=["<unk>", 5]).encode(),
}


@pytest.mark.parametrize("case", sorted(CORRUPT))
def test_corrupt_file_raises_value_error_naming_it(tmp_path, case):
    path = tmp_path / f"{case}.json"
    path.write_bytes(CORRUPT[case])
    with pytest.raises(ValueError, match=re.escape(str(path))):
        Vocab.load(path)


def test_good_doc_is_readable(tmp_path):
    # The corrupt cases above differ from this document in one way only.
    path = tmp_path / "good.json"
    path.write_text(json.dumps({**_good_doc(), "comment": "extra fields are ignored"}))
    assert Vocab.load(path).tokens() == ["<unk>", "a", "b"]


def test_missing_file_raises_os_error_naming_it(tmp_path):
    path = tmp_path / "nope.json"
    with pytest.raises(OSError, match=re.escape(str(path))):
        Vocab.load(path)
    with pytest.raises(OSError, match=re.escape(str(tmp_path))):
        Vocab.load(tmp_path)  # a directory


def test_save_is_atomic(tmp_path):
    path = tmp_path / "vocab.json"
    path.write_text("x" * 100_000)  # a longer old file: no tail may survive
    inode = os.stat(path).st_ino
    v = Vocab.build("abc")
    v.save(path)
    assert Vocab.load(path) == v
    assert os.stat(path).st_ino != inode  # replaced by rename, not rewritten in place
    assert os.listdir(tmp_path) == ["vocab.json"]  # no temporary file left

    # A save that fails leaves what was there intact and no temporary file.
    target = tmp_path / "taken"
    target.mkdir()
    (target / "keep.txt").write_text("keep")
    with pytest.raises(OSError, match=re.escape(str(target))):
        v.save(target)
    assert (target / "keep.txt").read_text() == "keep"
    assert sorted(os.listdir(tmp_path)) == ["taken", "vocab.json"]
    assert Vocab.load(path) == v

    with pytest.raises(OSError, match="no_such_dir"):
        v.save(tmp_path / "no_such_dir" / "v.json")


# -- arguments, repr, threads ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "kwargs, exc",
    [
        ({"level": "byte"}, ValueError),
        ({"min_freq": 0}, ValueError),
        ({"min_freq": -1}, ValueError),
        ({"max_size": 1}, ValueError),  # smaller than the two specials
        ({"max_size": -3}, ValueError),
        ({"specials": ("<unk>", "<unk>")}, ValueError),
        ({"specials": ("",)}, ValueError),
        ({"specials": "<unk>"}, TypeError),  # a str, not a sequence of str
    ],
)
def test_build_rejects_bad_arguments(kwargs, exc):
    with pytest.raises(exc):
        Vocab.build("abc", **kwargs)


def test_max_size_equal_to_specials_keeps_only_specials():
    v = Vocab.build("abc", max_size=2)
    assert v.tokens() == ["<unk>", "<eos>"]
    assert v.encode("ab").tolist() == [0, 0]


def test_repr():
    v = Vocab.build(PROSE)
    assert repr(v) == f"Vocab(level='char', size={len(v)})"
    w = Vocab.build("a b", level="word", lower=True, specials=("<pad>",))
    assert repr(w) == "Vocab(level='word', size=3, lower=True, specials=('<pad>',))"


def test_encode_from_threads():
    v = Vocab.build(PROSE, level="word")
    ref = v.encode(PROSE)
    with ThreadPoolExecutor(4) as pool:
        outs = list(pool.map(v.encode, [PROSE] * 4))
    assert all(torch.equal(o, ref) for o in outs)


def test_docstrings_have_args():
    for name in ["build", "load", "save", "encode", "decode", "one_hot", "tokenize"]:
        assert "Args:" in getattr(Vocab, name).__doc__, name
    assert "specials=('<unk>', '<eos>')" in Vocab.build.__text_signature__


def test_json_in_memory(tmp_path):
    v = Vocab.build(NON_ASCII, level="word", lower=True)
    path = tmp_path / "v.json"
    v.save(path)
    assert v.to_json() == path.read_text(encoding="utf-8")
    assert Vocab.from_json(v.to_json()) == v
    with pytest.raises(ValueError, match="version 2"):
        Vocab.from_json(_with(version=2))


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_one_hot_and_decode_on_cuda():
    v = Vocab.build("abcdef")
    ids = torch.randint(0, len(v), (3, 4), device="cuda")
    out = v.one_hot(ids)
    assert out.device == ids.device
    assert torch.equal(out, F.one_hot(ids, len(v)).float())
    assert v.decode(ids) == v.decode(ids.cpu())
    with pytest.raises(IndexError, match=f"size {len(v)}"):
        v.one_hot(torch.tensor([len(v)], device="cuda"))


def test_numpy_integer_arrays_cross_directly():
    import numpy as np

    v = rustrnn.Vocab.build("hello world\nhello there\n", level="word")
    ids = v.encode("hello there world")
    for dtype in (np.int64, np.int32):
        arr = ids.numpy().astype(dtype)
        assert v.decode(arr) == v.decode(ids.tolist())
        assert torch.equal(v.one_hot(arr), v.one_hot(ids))
    assert v.decode(ids.numpy().reshape(1, -1)) == v.decode(ids)
