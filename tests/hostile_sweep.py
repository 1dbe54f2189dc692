"""The hostile-input sweep: every public function and method of rustrnn, called from a
valid call with one argument at a time replaced by each hostile value (sizes 0, 1, huge
and negative; ints past int64; nan/inf; every dtype torch has, uint16-64, bool and
complex included; empty, 0-d, extra-dimension, strided and meta tensors; wrong types;
FIFOs, directories, devices, dangling and looping links, garbage files).

    python tests/hostile_sweep.py GROUP        # one group; tests/test_hostile_sweep.py

A probe may return or raise any ``Exception`` (a command line must return, its errors
being one line and status 2). What it may not do is what the test looks
for: kill the interpreter (a signal, an abort), raise something that is not an
``Exception`` (pyo3's PanicException derives from BaseException), or hang. Each probe is
announced on stdout before it runs, so the last line names the probe that died or hung;
the test runs each group in its own interpreter under a timeout and an address-space limit,
so a size that is allocated instead of refused fails fast.
"""

from __future__ import annotations

import math
import os
import sys
import tempfile
from pathlib import Path

import rustrnn
import torch
from torch.nn.utils.rnn import pack_sequence

TEXT = "the cat sat on the mat\nthe dog sat on the log\na cat ran\n" * 4


class PathArg(str):
    """Marks a base argument that names a file, so the sweep also tries odd files there."""


class Big:
    """Marks an argument that counts work (tokens to generate): huge positive values are
    legitimate there (they run until stopped), so the sweep leaves them out."""

    def __init__(self, value):
        self.value = value


# ------------------------------------------------------------------------ values

GENERAL = [
    ("None", None),
    ("0", 0),
    ("1", 1),
    ("-1", -1),
    ("2**31", 2**31),
    ("2**62", 2**62),
    ("2**63", 2**63),
    ("2**64", 2**64),
    ("-2**63-1", -(2**63) - 1),
    ("0.5", 0.5),
    ("-0.5", -0.5),
    ("nan", math.nan),
    ("inf", math.inf),
    ("-inf", -math.inf),
    ("True", True),
    ("''", ""),
    ("'\\x00'", "\x00"),
    ("lone surrogate", "\udcff"),
    ("'meta'", "meta"),
    ("[]", []),
    ("[-1]", [-1]),
    ("[2**63]", [2**63]),
    ("b'x'", b"x"),
    ("1j", 1j),
    ("object()", object()),
    ("torch.device('meta')", torch.device("meta")),
    ("torch.complex64", torch.complex64),
    ("torch.uint16", torch.uint16),
    ("scalar tensor", torch.tensor(3)),
    ("float tensor", torch.tensor([0.5, 1.5])),
]
BIG = {"2**31", "2**62", "2**63", "2**64", "inf"}
DTYPES = [
    torch.float16,
    torch.bfloat16,
    torch.float32,
    torch.float64,
    torch.int64,
    torch.int32,
    torch.int16,
    torch.uint8,
    torch.uint16,
    torch.uint32,
    torch.uint64,
    torch.bool,
    torch.complex64,
]


def tensor_variants(t: torch.Tensor):
    for dtype in DTYPES:
        if dtype != t.dtype:
            yield f"as {dtype}", _to(t, dtype)
    yield "meta", t.to("meta")
    yield "0-d", t.reshape(-1)[0].clone() if t.numel() else torch.tensor(0, dtype=t.dtype)
    yield "1-d", t.reshape(-1).clone()
    yield "empty", t.reshape(-1)[:0].clone()
    if t.dim() >= 1:
        shape = list(t.shape)
        shape[0] = 0
        yield "size 0 in dim 0", t.new_zeros(shape)
        shape[0] = 1
        yield "size 1 in dim 0", t.new_zeros(shape)
        yield "extra dim", t.unsqueeze(0)
        yield "strided", torch.cat([t, t]).narrow(0, 0, t.shape[0] * 2)[::2]
    if t.dim() >= 2:
        yield "size 0 in the last dim", t[..., :0].clone()
        yield "transposed", t.transpose(0, -1)
        yield "stride 0", t[:, :1].expand(t.shape)
    if t.is_floating_point():
        yield "nan", torch.full_like(t, math.nan)
        yield "inf", torch.full_like(t, math.inf)
        yield "-inf", torch.full_like(t, -math.inf)
        yield "requires grad", t.detach().clone().requires_grad_()
    elif t.dtype == torch.long:
        yield "ids -1", torch.full_like(t, -1)
        yield "ids 2**31", torch.full_like(t, 2**31)
        yield "ids 2**62", torch.full_like(t, 2**62)
        yield "ids int64 min", torch.full_like(t, -(2**63))


def _to(t, dtype):
    try:
        return t.to(dtype)
    except (RuntimeError, TypeError):  # pragma: no cover - a dtype this torch cannot cast to
        return torch.zeros(t.shape, dtype=dtype)


def path_variants(root: Path):
    root.mkdir(parents=True, exist_ok=True)
    fifo = root / "fifo"
    if not fifo.exists():
        os.mkfifo(fifo)
    loop = root / "loop"
    if not os.path.lexists(loop):
        os.symlink(loop, loop)
    dangling = root / "dangling"
    if not os.path.lexists(dangling):
        os.symlink(root / "nowhere", dangling)
    garbage = root / "garbage"
    garbage.write_bytes(bytes(range(256)) * 64)
    huge_header = root / "huge_header"
    huge_header.write_bytes((2**62).to_bytes(8, "little") + b"{}")
    empty = root / "empty"
    empty.write_bytes(b"")
    (root / "dir").mkdir(exist_ok=True)
    return [
        ("a FIFO", str(fifo)),
        ("a directory", str(root / "dir")),
        ("a symlink loop", str(loop)),
        ("a dangling symlink", str(dangling)),
        ("a missing file", str(root / "missing")),
        ("under a file", str(garbage / "below")),
        ("garbage bytes", str(garbage)),
        ("a 2**62 header length", str(huge_header)),
        ("an empty file", str(empty)),
        ("Path of a FIFO", fifo),
    ]


READ_ONLY_DEVICES = [("/dev/null", "/dev/null"), ("/dev/zero", "/dev/zero")]


def variants(base, name, root: Path, writes: bool):
    big = isinstance(base, Big)
    for label, v in GENERAL:
        if big and label in BIG:
            continue
        yield label, v
    if isinstance(base, torch.Tensor):
        yield from tensor_variants(base)
    if isinstance(base, list) and base and isinstance(base[0], torch.Tensor):
        yield "one tensor short", base[:-1]
        yield "one tensor more", base + base[:1]
        for i in (0, len(base) - 1):
            for label, v in tensor_variants(base[i]):
                yield f"[{i}] {label}", base[:i] + [v] + base[i + 1 :]
    if isinstance(base, PathArg):
        yield from path_variants(root / f"{name}-files")
        if not writes:  # never hand a device to a writer: we run as root in CI
            yield from READ_ONLY_DEVICES


def _unwrap(x):
    return x.value if isinstance(x, Big) else x


# ------------------------------------------------------------------------ targets


def _vocab():
    return rustrnn.Vocab.build(TEXT, level="word")


def _lm(cell="lstm"):
    torch.manual_seed(0)
    return rustrnn.LanguageModel(
        _vocab(), embed_size=8, hidden_size=8, num_layers=2, cell=cell, dropout=0.1
    )


def _stack(kind):
    torch.manual_seed(0)
    cls = {"lstm": rustrnn.LSTM, "gru": rustrnn.GRU, "rnn": rustrnn.RNN}[kind]
    return cls(4, 6, num_layers=2)


def _files(root: Path):
    lm = _lm()
    lm.save(root / "model.safetensors")
    lm.vocab.save(root / "vocab.json")
    ng = rustrnn.NGramLM.fit(TEXT, lm.vocab, order=3)
    ng.save_arpa(root / "model.arpa")
    return lm, ng


def targets(group: str, root: Path):
    """``(name, function, args, kwargs, writes)`` of the group: a valid call each."""
    x = torch.randn(5, 3, 4)
    if group == "stacks":
        for kind, cls in (("lstm", rustrnn.LSTM), ("gru", rustrnn.GRU), ("rnn", rustrnn.RNN)):
            kw = {"num_layers": 2, "bias": True, "batch_first": False, "dropout": 0.1}
            kw.update(bidirectional=True, device="cpu", dtype=torch.float32)
            if kind == "lstm":
                kw["proj_size"] = 3
            if kind == "rnn":
                kw["nonlinearity"] = "relu"
            yield f"{kind}()", cls, (4, 6), kw, False
            m = _stack(kind)
            h = torch.zeros(2, 3, 6)
            hx = (h, torch.zeros(2, 3, 6)) if kind == "lstm" else h
            yield f"{kind}.forward", m, (x, hx), {}, False
            packed = pack_sequence([torch.randn(n, 4) for n in (4, 2, 1)])
            yield f"{kind}.forward(packed)", m, (packed,), {}, False
            yield f"{kind}.step", m.step, (x[0], hx), {}, False
            yield f"{kind}.from_torch", type(m).from_torch, (m.to_torch(),), {}, False
    elif group == "cells":
        for kind, cls in (
            ("lstm", rustrnn.LSTMCell),
            ("gru", rustrnn.GRUCell),
            ("rnn", rustrnn.RNNCell),
        ):
            kw = {"bias": True, "device": "cpu", "dtype": torch.float32}
            yield f"{kind}cell()", cls, (4, 6), kw, False
            torch.manual_seed(0)
            cell = cls(4, 6)
            h = torch.zeros(3, 6)
            yield f"{kind}cell.forward", cell, (x[0], (h, h) if kind == "lstm" else h), {}, False
            yield f"{kind}cell.from_torch", cls.from_torch, (cell.to_torch(),), {}, False
        yield "Dropout()", rustrnn.nn.Dropout, (0.5,), {}, False
        yield "functional.dropout", rustrnn.functional.dropout, (x, 0.5, True), {}, False
        head = (
            torch.randn(6, 4, requires_grad=True),
            torch.randn(5, 4),
            torch.tensor([0, 4, 1, 2, 3, 0]),
        )
        kw = {"bias": torch.randn(5), "reduction": "mean", "ignore_index": -100}
        lce = rustrnn.functional.linear_cross_entropy
        yield "functional.linear_cross_entropy", lce, head, kw, False
        yield "functional.linear_cross_entropy(none)", lce, head, {**kw, "reduction": "none"}, False
    elif group == "sampler":
        probs = torch.rand(3, 7)
        gen = torch.Generator().manual_seed(0)
        yield "multinomial", rustrnn.multinomial, (probs, 2, False), {"generator": gen}, False
        yield "multinomial(replacement)", rustrnn.multinomial, (probs, 5, True), {}, False
        kw = {"temperature": 0.8, "top_k": 3, "top_p": 0.9, "greedy": False, "generator": gen}
        yield "sample", rustrnn.sample, (torch.randn(3, 7),), kw, False
        chain = {"min_p": 0.05, "typical_p": 0.9, "repetition_penalty": 1.2}
        chain.update(frequency_penalty=0.1, presence_penalty=0.1, no_repeat_ngram_size=2)
        chain["previous"] = torch.tensor([[1, 2, 1], [0, 0, 0], [6, 5, 6]])
        yield "sample(chain)", rustrnn.sample, (torch.randn(3, 7),), {**kw, **chain}, False
        process = rustrnn._rustrnn.process_logits
        yield "process_logits", process, (torch.randn(3, 7), 0.8, 3, 0.9), chain, False
    elif group == "vocab":
        v = _vocab()
        kw = {"level": "word", "min_freq": 1, "max_size": 10, "lower": True}
        kw["specials"] = ("<unk>", "<eos>")
        yield "Vocab.build", rustrnn.Vocab.build, (TEXT,), kw, False
        ids = v.encode("the cat sat")
        for name in ("encode", "tokenize"):
            yield f"Vocab.{name}", getattr(v, name), ("the cat sat",), {}, False
        for name in ("decode", "one_hot"):
            yield f"Vocab.{name}", getattr(v, name), (ids,), {}, False
        yield "Vocab.token", v.token, (1,), {}, False
        yield "Vocab[]", v.__getitem__, ("cat",), {}, False
        yield "Vocab.__contains__", v.__contains__, ("cat",), {}, False
        yield "Vocab.from_json", rustrnn.Vocab.from_json, (v.to_json(),), {}, False
        v.save(root / "vocab.json")
        yield "Vocab.load", rustrnn.Vocab.load, (PathArg(root / "vocab.json"),), {}, False
        yield "Vocab.save", v.save, (PathArg(root / "out.json"),), {}, True
    elif group == "lm":
        lm, _ = _files(root)
        ids = lm.vocab.encode("the cat sat")
        kw = {"embed_size": 8, "hidden_size": 8, "num_layers": 2, "cell": "gru"}
        kw.update(dropout=0.1, tie_weights=True)
        yield "LanguageModel()", rustrnn.LanguageModel, (lm.vocab,), kw, False
        yield "lm.forward", lm, (ids.unsqueeze(1), None), {}, False
        yield "lm.log_prob", lm.log_prob, ("the cat sat",), {}, False
        yield "lm.log_prob(ids)", lm.log_prob, (ids,), {}, False
        yield "lm.perplexity", lm.perplexity, ("the cat sat",), {}, False
        yield "lm.score", lm.score, (["the cat", "a dog"],), {"bos": True, "eos": True}, False
        yield "lm.full_scores", lm.full_scores, ("the cat",), {"bos": True, "eos": False}, False
        yield "lm.evaluate", lm.evaluate, (TEXT,), {"bos": True, "eos": True}, False
        yield "lm.similarity", lm.similarity, ("cat", "dog"), {}, False
        yield "lm.similar", lm.similar, ("cat",), {"k": 3}, False
        gen = torch.Generator().manual_seed(0)
        kw = {"temperature": 0.9, "top_k": 5, "top_p": 0.95, "greedy": False}
        kw.update(num_samples=2, stop="sat", generator=gen, return_ids=True)
        kw.update(min_p=0.05, typical_p=0.95, repetition_penalty=1.2, frequency_penalty=0.1)
        kw.update(presence_penalty=0.1, no_repeat_ngram_size=2)
        yield "lm.generate", lm.generate, ("the cat", Big(6)), kw, False
        yield "lm.generate(ids)", lm.generate, (ids, Big(4)), {}, False
        kw = {"num_beams": 3, "length_penalty": 0.5, "early_stopping": True, "stop": 2}
        kw.update(num_return_sequences=2, return_ids=True, return_log_probs=True)
        yield "lm.generate(beams)", lm.generate, ("the cat", Big(5)), kw, False
        path = PathArg(root / "model.safetensors")
        yield (
            "LanguageModel.load",
            rustrnn.LanguageModel.load,
            (path,),
            {"map_location": "cpu"},
            False,
        )
        yield "lm.save", lm.save, (PathArg(root / "saved.safetensors"),), {}, True
    elif group == "train":
        kw = {"batch_size": 2, "bptt": 4, "epochs": 1, "max_steps": 2, "time_budget": 60.0}
        kw.update(optimizer="sgd", lr=0.5, weight_decay=0.0, momentum=0.9, clip=0.25)
        kw.update(lr_decay=0.25, patience=0, eval_every=1, seed=0, checkpoint_dir=None)
        kw.update(resume=False, overwrite=False, progress=False, callback=None)
        yield "train", "train", (TEXT, TEXT), kw, True
        yield "evaluate", "evaluate", (TEXT,), {"batch_size": 2, "bptt": 4}, False
    elif group == "ngram":
        lm, ng = _files(root)
        v = lm.vocab
        kw = {"order": 3, "smoothing": "add_k", "k": 0.5}
        yield "NGramLM.fit", rustrnn.NGramLM.fit, (TEXT, v), kw, False
        yield "NGramLM.fit(ids)", rustrnn.NGramLM.fit, (v.encode(TEXT), v), {"order": 2}, False
        path = PathArg(root / "model.arpa")
        kw = {"level": "word", "lower": False}
        yield "NGramLM.load_arpa", rustrnn.NGramLM.load_arpa, (path,), kw, False
        yield "ng.save_arpa", ng.save_arpa, (PathArg(root / "saved.arpa"),), {}, True
        yield "ng.log_prob", ng.log_prob, ("the cat sat",), {}, False
        yield "ng.perplexity", ng.perplexity, (v.encode("the cat"),), {}, False
        kw = {"bos": True, "eos": True, "log10": True}
        yield "ng.score", ng.score, (["the cat", "a dog"],), kw, False
        yield "ng.full_scores", ng.full_scores, ("the cat",), kw, False
        yield "ng.evaluate", ng.evaluate, (TEXT,), {"bos": True, "eos": False}, False
        yield "ng.next_log_probs", ng.next_log_probs, ("the",), {"bos": True}, False
        gen = torch.Generator().manual_seed(0)
        kw = {"temperature": 0.9, "top_k": 5, "top_p": 0.95, "greedy": False}
        kw.update(num_samples=2, stop="sat", generator=gen, return_ids=True)
        yield "ng.generate", ng.generate, ("the", Big(6)), kw, False
    elif group == "vectors":
        yield from _vector_targets(root)
    elif group == "extension":
        yield from _extension_targets(root)
    else:
        raise SystemExit(f"unknown group {group!r}")


def _vector_targets(root: Path):
    torch.manual_seed(0)
    keys = ["a", "B", "b", "c", "d", "e"]
    vec = torch.randn(6, 4)
    wv = rustrnn.WordVectors(vec, keys)
    yield "WordVectors()", rustrnn.WordVectors, (vec, keys), {}, False
    kw = {"topn": 3, "clip_start": 0, "clip_end": 5, "restrict_vocab": 6}
    yield "wv.most_similar", wv.most_similar, (["a", ("b", 2.0)], ["c"]), kw, False
    kw = {"topn": 3, "restrict_vocab": 6}
    yield "wv.most_similar_cosmul", wv.most_similar_cosmul, (["a", "b"], ["c"]), kw, False
    yield "wv.similar_by_vector", wv.similar_by_vector, (vec[0],), {"topn": 2}, False
    yield "wv.similar_by_key", wv.similar_by_key, ("a",), {"topn": 2}, False
    yield "wv.doesnt_match", wv.doesnt_match, (["a", "b", "c"],), {}, False
    yield "wv.similarity", wv.similarity, ("a", "b"), {}, False
    yield "wv.n_similarity", wv.n_similarity, (["a"], ["b", "c"]), {}, False
    yield "wv.distances", wv.distances, ("a", ["b", "c"]), {}, False
    yield "wv.rank", wv.rank, ("a", "b"), {}, False
    yield "wv.get_mean_vector", wv.get_mean_vector, (["a", "b"],), {"weights": [1.0, 2.0]}, False
    yield "wv[]", wv.__getitem__, (["a", "b"],), {}, False
    pairs, analogies = root / "pairs.tsv", root / "analogies.txt"
    pairs.write_text("# a comment\na\tb\t3.5\nA\tc\t1.0\nb\td\t2.0\nx\ty\t4\n")
    analogies.write_text(": one\na b c d\nA B c E\n: two\nb c d e\n")
    kw = {"delimiter": "\t", "restrict_vocab": 6, "case_insensitive": True, "dummy4unknown": True}
    yield "wv.evaluate_word_pairs", wv.evaluate_word_pairs, (PathArg(pairs),), kw, False
    kw = {"restrict_vocab": 6, "case_insensitive": False, "dummy4unknown": True}
    yield "wv.evaluate_word_analogies", wv.evaluate_word_analogies, (PathArg(analogies),), kw, False
    for binary in (False, True):
        path = root / f"vectors.{'bin' if binary else 'txt'}"
        wv.save_word2vec_format(path, binary=binary)
        kw = {"binary": binary, "limit": 5, "no_header": False}
        load = rustrnn.WordVectors.load_word2vec_format
        yield f"load_word2vec_format({binary})", load, (PathArg(path),), kw, False
        kw = {"binary": binary, "write_header": True}
        out = PathArg(root / "out.vec")
        yield f"wv.save_word2vec_format({binary})", wv.save_word2vec_format, (out,), kw, True
    lm = _lm()
    wide = rustrnn.WordVectors(torch.randn(3, 8), ["the", "cat", "zebra"])
    yield "lm.vectors", lm.vectors, (), {}, False
    yield "lm.load_vectors", lm.load_vectors, (wide,), {"binary": False, "freeze": False}, False


def _extension_targets(root: Path):
    """The extension's own functions: private, but reachable (``rustrnn._rustrnn``)."""
    ext = rustrnn._rustrnn
    spec_args = ("LSTM", 4, 6, 2, True, False, 0.0, True, 3)
    yield "RnnSpec", ext.RnnSpec, spec_args, {}, False
    m = rustrnn.LSTM(4, 6, num_layers=2, bidirectional=True, proj_size=3)
    w = [p.detach() for p in m._flat_weights]
    x, h, c = torch.randn(5, 2, 4), torch.zeros(4, 2, 3), torch.zeros(4, 2, 6)
    yield "RnnSpec.forward", m._spec.forward, (x, h, c, w, True, True, None), {}, False
    packed = pack_sequence([torch.randn(n, 4) for n in (3, 1)])
    args = (packed.data, h, c, w, False, False, packed.batch_sizes.tolist())
    yield "RnnSpec.forward(packed)", m._spec.forward, args, {}, False
    yield "RnnSpec.check_host_allocation", m._spec.check_host_allocation, (4,), {}, False

    def backward(*args):  # a fresh tape each probe: backward may consume it
        *_, tape = m._spec.forward(x, h, c, w, True, True, None)
        return tape.backward(*args)

    dy = torch.randn(5, 2, 6)
    yield (
        "Tape.backward",
        backward,
        (dy, torch.randn(4, 2, 3), torch.randn(4, 2, 6), True),
        {},
        False,
    )
    cw = [p.detach() for p in rustrnn.GRUCell(4, 6).parameters()]
    yield "cell_forward", ext.cell_forward, ("GRU", x[0], h[0].new_zeros(2, 6), None, cw), {}, False
    yield "cell_param_specs", ext.cell_param_specs, ("GRU", 4, 6, True), {}, False
    yield "check_dropout", ext.check_dropout, (0.5,), {}, False
    lm = _lm()
    prompt = lm.vocab.encode("the cat")
    args = (lm, prompt, Big(5), 2, [1], ["sat"], 0.9, 5, 0.9, False, None)
    yield "generate", ext.generate, args, {}, False
    yield "score_lines", ext.score_lines, (lm, [[1, 2], [3]], [[2, 3], [1]]), {}, False
    args = (lm, prompt, Big(4), [1], 3, 1.0, False, 2)
    yield "beam_search", ext.beam_search, args, {}, False
    # The model crosses as one handle: its tensors are swept one name at a time.
    for name in (
        "embedding.weight",
        "rnn.weight_hh_l0",
        "rnn.bias_ih_l1",
        "head.weight",
        "head.bias",
    ):
        base = lm.state_dict()[name].detach()

        def gen(t, name=name):
            return ext.generate(
                _Swapped(lm, name, t), prompt, 5, 2, [1], ["sat"], 0.9, 5, 0.9, False, None
            )

        def score(t, name=name):
            return ext.score_lines(_Swapped(lm, name, t), [[1, 2], [3]], [[2, 3], [1]])

        def save(t, name=name):
            return ext.save_model(root / "swapped.safetensors", _Swapped(lm, name, t))

        yield f"generate {name}", gen, (base,), {}, False
        yield f"score_lines {name}", score, (base,), {}, False
        yield f"save_model {name}", save, (base,), {}, False
    yield "dropout_mask", ext.dropout_mask, (x, 0.3), {}, False
    rows, w, y, b = (
        torch.randn(6, 4),
        torch.randn(5, 4),
        torch.tensor([0, 4, 1, 2, 3, 0]),
        torch.randn(5),
    )
    args = (rows, w, y, b, "sum", -100, (True, True, True))
    yield "linear_cross_entropy", ext.linear_cross_entropy, args, {"chunk_rows": 4}, False
    args = (rows, w, y, b, torch.randn(6), -100, (True, True, True))
    yield (
        "linear_cross_entropy_backward",
        ext.linear_cross_entropy_backward,
        args,
        {"chunk_rows": 4},
        False,
    )
    yield "linear_cross_entropy_chunk_rows", ext.linear_cross_entropy_chunk_rows, (6, 5), {}, False
    params = [torch.zeros(3, 2), torch.zeros(4)]
    opt_args = ("adam", params, 0.1, 0.01, 0.0, (0.9, 0.99), 1e-8)
    yield "Optimizer", ext.Optimizer, opt_args, {}, False
    opt = ext.Optimizer("sgd", [p.clone() for p in params], 0.1, 0.0, 0.9)
    yield "Optimizer.step", opt.step, ([torch.ones(3, 2), torch.ones(4)],), {}, False
    yield "clip_grad_norm", ext.clip_grad_norm, ([torch.ones(3, 2), torch.ones(4)], 0.5), {}, False
    yield from _train_lm_targets(root)
    lm.save(root / "lm.safetensors")
    yield "load_model", ext.load_model, (PathArg(root / "lm.safetensors"),), {}, False
    yield "save_model", ext.save_model, (PathArg(root / "saved.safetensors"), lm), {}, True
    yield "claim_checkpoint_dir", ext.claim_checkpoint_dir, (PathArg(root / "run"), True), {}, True


class _Swapped:
    """A language model's handle (config, vocab, state_dict) with one tensor replaced."""

    def __init__(self, lm, name, t):
        self.config, self.vocab = lm.config, lm.vocab
        self._tensors = {**lm.state_dict(keep_vars=True), name: t}

    def state_dict(self, keep_vars=False):
        return self._tensors


class _NoHooks:
    """The hooks ``train_lm`` calls, doing nothing."""

    def on_start(self, total, done):
        pass

    def on_step(self, metrics):
        pass

    def on_eval(self, metrics):
        pass

    def rng_state(self):
        return []

    def set_rng_state(self, states):
        pass

    def all_reduce(self, grads):
        pass


def _train_lm_targets(root: Path):
    """``train_lm`` (each option swept as a keyword), its resume path, ``evaluate_lm``:
    each target on a model of its own (a probe may ruin it; its valid call may not fail)."""
    ext = rustrnn._rustrnn
    ids = _vocab().encode(TEXT)
    options = {"batch_size": 2, "bptt": 4, "epochs": 1, "max_steps": 2, "time_budget": 60.0}
    options.update(optimizer="sgd", lr=0.5, weight_decay=0.0, momentum=0.9, clip=0.25)
    options.update(lr_decay=0.25, patience=0, eval_every=1, checkpoint_dir=None, rank=0)
    options.update(world_size=1, resume=False, overwrite=False)
    options.update(weight_drop=0.0, dropout_input=None, dropout_hidden=None, dropout_output=None)
    options.update(dropout_embedding=0.0, alpha=0.0, beta=0.0, variable_bptt=False, nonmono=5)
    run = {**options, "checkpoint_dir": str(root / "ext-run"), "overwrite": True}
    ext.train_lm(_lm(), ids, None, run, None, _NoHooks(), False)
    last = PathArg(root / "ext-run" / "last.safetensors")

    def train_lm(model, train, valid, resume, hooks, distributed, /, **options):
        return ext.train_lm(model, train, valid, options, resume, hooks, distributed)

    args = (_lm(), ids, ids[:40], None, _NoHooks(), False)
    yield "train_lm", train_lm, args, options, False
    args = (_lm(), ids, None, options, None, _NoHooks(), False)
    yield "train_lm(options)", ext.train_lm, args, {}, False
    lm = _lm()

    def resume(path):
        return ext.train_lm(lm, ids, None, options, path, _NoHooks(), False)

    yield "train_lm resume", resume, (last,), {}, False
    yield "evaluate_lm", ext.evaluate_lm, (_lm(), ids, 2, 4), {}, False


CLI_VALUES = [
    ("'0'", "0"),
    ("'-1'", "-1"),
    ("'2**63'", str(2**63)),
    ("'1e309'", "1e309"),
    ("'nan'", "nan"),
    ("'-inf'", "-inf"),
    ("''", ""),
    ("'-'", "-"),
    ("'\\x00'", "\x00"),
    ("'x'", "x"),
    ("'meta'", "meta"),
]


def _cli_targets(root: Path):
    """Command lines: each value after the subcommand is replaced in turn (flags stay)."""
    lm, _ = _files(root)
    (root / "text.txt").write_text(TEXT)
    text, ckpt, arpa = (PathArg(root / n) for n in ("text.txt", "model.safetensors", "model.arpa"))
    train = ["train", text, "--level", "word", "--cell", "gru", "--embed", "8", "--hidden", "8"]
    train += ["--layers", "1", "--dropout", "0.1", "--bptt", "4", "--batch-size", "2"]
    train += ["--optimizer", "sgd", "--lr", "0.5", "--clip", "0.25", "--epochs", "1"]
    train += ["--max-steps", "1", "--time-budget", "30", "--eval-every", "1", "--seed", "0"]
    train += ["--device", "cpu", "--out", PathArg(root / "run"), "--overwrite", "--no-progress"]
    train += ["--prompt", "the"]
    yield "cli train", train, True
    for model in (ckpt, arpa):
        generate = ["generate", model, "--prompt", "the", "--max-tokens", Big("5")]
        generate += ["--temperature", "0.9", "--top-k", "3", "--top-p", "0.9"]
        generate += ["--num-samples", "2", "--seed", "1"]
        yield f"cli generate {model.rsplit('.', 1)[-1]}", generate, False
        yield f"cli perplexity {model.rsplit('.', 1)[-1]}", ["perplexity", model, text], False
        score = ["score", model, text, "--per-token"]
        yield f"cli score {model.rsplit('.', 1)[-1]}", score, False
    chain = ["generate", ckpt, "--prompt", "the", "--max-tokens", Big("5"), "--min-p", "0.05"]
    chain += ["--typical-p", "0.9", "--repetition-penalty", "1.2", "--no-repeat-ngram", "2"]
    yield "cli generate chain", chain, False
    beams = ["generate", ckpt, "--prompt", "the", "--max-tokens", Big("5"), "--beams", "3"]
    yield "cli generate beams", beams, False
    ngram = ["ngram", text, "--order", "3", "--level", "word", "--smoothing", "add_k", "--k"]
    ngram += ["0.5", "--out", PathArg(root / "out.arpa")]
    yield "cli ngram", ngram, True
    vectors = ["vectors", ckpt, "--out", PathArg(root / "vectors.bin"), "--binary"]
    yield "cli vectors", vectors, True
    yield "cli similar", ["similar", ckpt, "cat", "-dog", "+sat", "--topn", "3"], False


def _cli_probes(root: Path):
    from rustrnn.cli import main as cli_main

    def run(*argv):
        try:
            return cli_main([str(a) for a in argv])
        except SystemExit as e:  # argparse's usage error: status 2, as the CLI's own
            if e.code != 2:
                raise
            return 2

    for name, argv, writes in _cli_targets(root):
        plain = [_unwrap(a) for a in argv]
        yield f"{name} (valid)", run, plain, {}
        for i, base in enumerate(argv):
            if i == 0 or str(base).startswith("--"):
                continue
            values = [
                (lb, v) for lb, v in CLI_VALUES if not (isinstance(base, Big) and lb == "'2**63'")
            ]
            if isinstance(base, PathArg):
                values += path_variants(root / f"{name}-{i}".replace(" ", "_"))
                values += [] if writes else READ_ONLY_DEVICES
            for label, v in values:
                yield f"{name} {argv[i - 1]} = {label}", run, plain[:i] + [v] + plain[i + 1 :], {}


def _train_call(which):
    """``train``/``evaluate`` on a fresh tiny model each probe (a probe may ruin it)."""

    def call(*args, **kwargs):
        fn = rustrnn.train if which == "train" else rustrnn.evaluate
        return fn(_lm(), *args, **kwargs)

    return call


# ------------------------------------------------------------------------ driver


def probes(group: str, root: Path):
    if group == "cli":
        yield from _cli_probes(root)
        return
    for name, fn, args, kwargs, writes in targets(group, root):
        if isinstance(fn, str):
            fn = _train_call(fn)
        plain = [_unwrap(a) for a in args]
        yield f"{name} (valid)", fn, plain, dict(kwargs)
        for i, base in enumerate(args):
            for label, v in variants(base, f"{name}-{i}".replace(" ", "_"), root, writes):
                yield f"{name} arg {i} = {label}", fn, plain[:i] + [v] + plain[i + 1 :], kwargs
        for key, base in kwargs.items():
            for label, v in variants(base, f"{name}-{key}".replace(" ", "_"), root, writes):
                yield f"{name} {key}={label}", fn, plain, {**kwargs, key: v}


def main(group: str) -> int:
    torch.set_num_threads(2)
    counts = {"returned": 0, "raised": 0}
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        os.chdir(root)  # relative paths a probe writes (--out 0, ...) land here
        valid_failures = []
        skip = set(filter(None, os.environ.get("SWEEP_SKIP", "").split("|")))  # to explore
        for desc, fn, args, kwargs in probes(group, root):
            if desc in skip:
                continue
            print(f"PROBE {desc}", flush=True)
            try:
                fn(*args, **kwargs)
                counts["returned"] += 1
            except Exception as e:  # noqa: BLE001 - any Exception is an answer ...
                counts["raised"] += 1
                if desc.endswith("(valid)"):
                    valid_failures.append(f"{desc}: {type(e).__name__}: {e}")
                if group == "cli":  # ... but the command line's is one line and status 2
                    print(f"TRACEBACK in {desc}: {type(e).__name__}: {e}")
                    return 5
            except BaseException as e:  # a PanicException (or SystemExit, KeyboardInterrupt)
                print(f"NOT AN EXCEPTION in {desc}: {type(e).__module__}.{type(e).__name__}: {e}")
                return 3
    if valid_failures:  # the sweep's own calls must be valid, or it tests nothing
        print("VALID CALLS FAILED:\n" + "\n".join(valid_failures))
        return 4
    print(f"DONE {group}: {counts['returned']} returned, {counts['raised']} raised", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
