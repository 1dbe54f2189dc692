"""Generation and sampling under hostile arguments: huge sizes, mismatched model parts,
stop rules and ids that used to abort the process, panic on an OpenMP thread or quietly
return the wrong thing.

Every probe whose old failure was a crash (an abort, a panic, running out of memory)
runs in a subprocess, so that a crash fails the test instead of killing pytest.
"""

import json
import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest
import rustrnn
import torch
from torch import nn

DTYPES = ["float32", "float64"]
GIB = 2**30

PRELUDE = """
import json, resource, sys
import torch, rustrnn
from torch import nn

TEXT = "the quick brown fox jumps over the lazy dog. END\\n" * 3
vocab = rustrnn.Vocab.build(TEXT, level="char")
V = len(vocab)

def model(dtype="float32"):
    torch.manual_seed(0)
    return rustrnn.LanguageModel(vocab, 8, 16, 1, dropout=0.0).to(getattr(torch, dtype)).eval()

def outcome(f):
    try:
        f()
    except BaseException as e:
        return f"{type(e).__name__}: {e}"
    return "ok"

def limit_address_space(gib):
    resource.setrlimit(resource.RLIMIT_AS, (int(gib * 2**30),) * 2)
"""


def probe(code, timeout=180):
    """Runs ``code`` after PRELUDE in a fresh interpreter; returns the finished process."""
    script = PRELUDE + textwrap.dedent(code)
    return subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def lines(r):
    assert r.returncode == 0, f"the probe died (status {r.returncode}):\n{r.stderr[-3000:]}"
    return [json.loads(line) for line in r.stdout.splitlines() if line.strip()]


TEXT = "the quick brown fox jumps over the lazy dog. END\n" * 3


def char_model(dtype=torch.float32):
    torch.manual_seed(0)
    vocab = rustrnn.Vocab.build(TEXT, level="char")
    return rustrnn.LanguageModel(vocab, 8, 16, 1, dropout=0.0).to(dtype).eval()


# ----------------------------------------------------------------- sizes


@pytest.mark.parametrize("dtype", DTYPES)
def test_max_tokens_is_a_bound_not_a_reservation(dtype):
    """The output grows as tokens come: 10**12 and 2**61 tokens (that reserved 8 TB up
    front and aborted, or panicked with "capacity overflow") are fine for a run that
    stops after one token, also with an explicit generator (whose uniforms were drawn up
    front too)."""
    r = probe(
        f"""
        m = model("{dtype}")
        every = list(range(V))
        for n in (10**12, 2**61):
            _, ids = m.generate("the", n, num_samples=3, stop=every, return_ids=True)
            print(json.dumps([len(i) for i in ids]))
        g = torch.Generator().manual_seed(0)
        _, ids = m.generate("the", 10**12, stop=every, generator=g, return_ids=True)
        print(json.dumps([len(i) for i in ids]))
        """
    )
    assert lines(r) == [[1, 1, 1], [1, 1, 1], [1]]


@pytest.mark.parametrize("dtype", DTYPES)
def test_ctrl_c_ends_a_generation_of_a_trillion_tokens(dtype):
    r = probe(
        f"""
        import signal
        m = model("{dtype}")
        def interrupt(signum, frame):
            raise KeyboardInterrupt
        signal.signal(signal.SIGALRM, interrupt)
        signal.setitimer(signal.ITIMER_REAL, 0.5)
        print(json.dumps(outcome(lambda: m.generate("the", 10**12, num_samples=2))))
        print(json.dumps(len(m.generate("the", 5, greedy=True)[0]) > 0))
        """
    )
    assert lines(r) == ["KeyboardInterrupt: interrupted", True]


def _sigint_default():  # pragma: no cover - runs in the child
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def test_cli_generate_with_a_trillion_tokens_runs_until_interrupted(tmp_path):
    """``rustrnn generate --max-tokens 1000000000000`` aborted at once ("memory allocation
    of 8000000000000 bytes failed"); now it generates until Ctrl-C (exit status 130)."""
    ckpt = tmp_path / "m.safetensors"
    char_model().save(ckpt)
    proc = subprocess.Popen(
        [sys.executable, "-m", "rustrnn", "generate", str(ckpt), "--max-tokens", "1000000000000"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        # As from a terminal: a suite started as a background job inherits SIGINT ignored
        # (POSIX shells do that to `&` jobs), and a child then rightly ignores Ctrl-C too.
        preexec_fn=_sigint_default,
    )
    try:
        # Wait until the extension is loaded (the model loads and generation starts
        # right after), so that the signal lands in the generation, not in an import.
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and proc.poll() is None:
            with open(f"/proc/{proc.pid}/maps") as f:
                if "_rustrnn" in f.read():
                    break
            time.sleep(0.1)
        time.sleep(3)
        assert proc.poll() is None, f"generate ended early: {proc.communicate()[1][-2000:]}"
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 130, err[-2000:]
    assert "interrupted" in err and "memory allocation" not in err


@pytest.mark.parametrize("dtype", DTYPES)
def test_too_many_samples_is_a_runtime_error(dtype):
    """num_samples = 10**10 aborted the float32 path; under a 4.5 GiB address-space limit
    both paths refuse 10**10 and 10**8 rows with a RuntimeError, and stay usable."""
    r = probe(
        f"""
        m = model("{dtype}")
        limit_address_space(4.5)
        for n in (10**10, 10**8):
            print(json.dumps(outcome(lambda: m.generate("the", 2, num_samples=n))))
        print(json.dumps(len(m.generate("the", 3, num_samples=4))))
        """
    )
    *errors, usable = lines(r)
    for e in errors:
        assert e.startswith("RuntimeError"), e
    assert usable == 4


# ----------------------------------------------------------- model parts

BAD_PARTS = {
    # name: (how the model is broken, whether forward() raises for it too)
    "embedding narrower than the stack's input": ("m.embedding = nn.Embedding(V, 6)", True),
    "embedding wider than the stack's input": ("m.embedding = nn.Embedding(V, 10)", True),
    "head.bias shorter than the vocabulary": (
        "m.head.bias = nn.Parameter(torch.zeros(V - 1))",
        True,
    ),
    "head of the wrong width": ("m.head = nn.Linear(12, V)", True),
    "head with more rows than the vocabulary": ("m.head = nn.Linear(16, V + 5)", False),
}


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", BAD_PARTS)
def test_mismatched_model_parts_raise_runtime_error(name, dtype):
    """Every path (float64 ops; float32 fused kernels on one thread and on a team of two,
    where a panic on an OpenMP thread aborted the process) raises a RuntimeError where
    forward does, and also for a head that draws tokens the embedding cannot feed back."""
    breakage, forward_raises = BAD_PARTS[name]
    r = probe(
        f"""
        torch.set_num_threads(2)
        m = model()
        {breakage}
        m = m.to(torch.{dtype})
        ids = vocab.encode("the").unsqueeze(1)
        print(json.dumps(outcome(lambda: m(ids))))
        for n in (1, 8):
            print(json.dumps(outcome(lambda: m.generate("the", 20, num_samples=n))))
        """
    )
    forward, *generated = lines(r)
    assert forward.startswith("RuntimeError") == forward_raises, forward
    for g in generated:
        assert g.startswith("RuntimeError"), g


# ------------------------------------------------------------ multinomial


@pytest.mark.parametrize("fn", ["torch.multinomial", "rustrnn.multinomial"])
def test_multinomial_fits_where_torch_does(fn):
    """2**27 draws under a 4.5 GiB address-space limit: torch.multinomial succeeds, and so
    must rustrnn (which copied the uniforms and the result into extra buffers and
    aborted); 2**29 draws (a 4 GiB result) are a RuntimeError for both."""
    r = probe(
        f"""
        limit_address_space(4.5)
        w = torch.rand(4)
        def draw(n):
            out = {fn}(w, n, replacement=True)
            assert out.shape == (n,) and out.dtype == torch.int64
            assert 0 <= int(out.min()) and int(out.max()) < 4
        print(json.dumps(outcome(lambda: draw(2**27))))
        print(json.dumps(outcome(lambda: draw(2**29))))
        """
    )
    small, huge = lines(r)
    assert small == "ok"
    assert huge.startswith("RuntimeError"), huge


def test_many_draws_follow_the_uniforms():
    """Beyond one chunk of uniforms the draws still follow the definition: the first
    category whose running sum exceeds u * total, u the generator's uniforms in order."""
    w = torch.tensor([[1.0, 2.0, 0.0, 5.0], [0.5, 0.0, 0.25, 0.25], [3.0, 1.0, 1.0, 1.0]])
    n = (1 << 19) + 7  # 3 rows: more than the 2**20 uniforms fetched at once
    g = torch.Generator().manual_seed(5)
    got = rustrnn.multinomial(w, n, replacement=True, generator=g)
    u = torch.rand(3, n, generator=g.manual_seed(5), dtype=torch.float64)
    cum = w.double().cumsum(1)
    want = torch.searchsorted(cum, u * cum[:, -1:], right=True)
    assert torch.equal(got, want)
    one = rustrnn.multinomial(w[0], 1 << 21, replacement=True, generator=g.manual_seed(6))
    u = torch.rand(1 << 21, generator=g.manual_seed(6), dtype=torch.float64)
    assert torch.equal(one, torch.searchsorted(cum[0], u * cum[0, -1], right=True))


def test_num_samples_beyond_int64_is_torchs_value_error():
    with pytest.raises(ValueError, match="Overflow") as torch_error:
        torch.multinomial(torch.rand(4), 2**70, True)
    with pytest.raises(type(torch_error.value), match="Overflow"):
        rustrnn.multinomial(torch.rand(4), 2**70, True)


# ------------------------------------------------------------------ stop


def _ends_at_first_match(vocab, ids, strings, max_tokens):
    text = vocab.decode(ids)
    if not any(s in text for s in strings):
        return len(ids) == max_tokens
    before = vocab.decode(ids[:-1])
    return not any(s in before for s in strings)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_stop_strings_are_matched_on_the_decoded_text(dtype):
    """The string "END" is three characters, not a token: it became <unk>'s id, so samples
    stopped at the first <unk>. Now a sample ends at the token that completes a stop
    string in its decoded text, keeps it, and never stops at <unk> for it."""
    m = char_model(dtype)
    with torch.no_grad():
        m.head.bias[m.vocab.unk_id] += 3.0  # <unk> is drawn often
        for ch in "END":
            m.head.bias[m.vocab[ch]] += 2.0
    torch.manual_seed(1)
    for strings in (["END"], ["END", "he "], ["Zz"]):
        texts, ids = m.generate("the", 300, num_samples=6, stop=strings, return_ids=True)
        for t, i in zip(texts, ids):
            assert t == m.vocab.decode(i)
            assert _ends_at_first_match(m.vocab, i, strings, 300), (strings, t)
    _, ids = m.generate("the", 300, num_samples=6, stop="END", return_ids=True)
    unk = m.vocab.unk_id
    assert any(unk in i[:-1].tolist() for i in ids), "no <unk> was drawn; raise its bias"


def test_word_level_stop_strings():
    text = "the quick brown fox jumps over the lazy dog . the end\n" * 3
    vocab = rustrnn.Vocab.build(text, level="word")
    torch.manual_seed(0)
    m = rustrnn.LanguageModel(vocab, 8, 16, 1, dropout=0.0).eval()
    for stop in (["the end"], ["o"], ["\n"]):
        _, ids = m.generate("the", 200, num_samples=5, stop=stop, return_ids=True)
        for i in ids:
            assert _ends_at_first_match(vocab, i, stop, 200)
    # "<eos>" decodes as a line break at word level; as a stop string it stops there.
    _, ids = m.generate("the", 200, num_samples=5, stop="<eos>", return_ids=True)
    for i in ids:
        hits = (i == vocab.eos_id).nonzero().flatten().tolist()
        assert hits in ([], [len(i) - 1])


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_stop_ids_outside_the_vocabulary_raise(dtype):
    m = char_model(dtype)
    size = len(m.vocab)
    for bad in (size, -1, [0, size + 3]):
        with pytest.raises(IndexError, match=f"size {size}"):
            m.generate("the", 5, stop=bad)
    with pytest.raises(ValueError, match="empty"):
        m.generate("the", 5, stop="")
    for bad in (1.5, True, [None]):
        with pytest.raises(TypeError, match="stop"):
            m.generate("the", 5, stop=bad)
    # An id stops as before.
    _, ids = m.generate("the", 50, num_samples=3, stop=list(range(size)), return_ids=True)
    assert [len(i) for i in ids] == [1, 1, 1]


# ------------------------------------------------------------------- ids


@pytest.mark.parametrize(
    "ids",
    [[1.7, 2.2], torch.tensor([1.0, 2.0]), torch.tensor([3.0], dtype=torch.float64)],
    ids=["list", "float32", "float64"],
)
def test_float_ids_raise_as_embedding_does(ids):
    m = char_model()
    with pytest.raises(Exception) as want:
        nn.Embedding(len(m.vocab), 8)(torch.as_tensor(ids))
    with pytest.raises(type(want.value)) as got:
        m.generate(ids, 3)
    assert str(got.value) == str(want.value)


def test_int32_ids_generate_as_int64():
    m = char_model()
    ids = m.vocab.encode("the ")
    assert m.generate(ids.int(), 10, greedy=True) == m.generate(ids, 10, greedy=True)


# ------------------------------------------------------------------- cli


def test_word_level_cli_generate_separates_prompt_and_continuation(tmp_path):
    text = "the quick brown fox jumps over the lazy dog . the end\n" * 3
    vocab = rustrnn.Vocab.build(text, level="word")
    torch.manual_seed(0)
    m = rustrnn.LanguageModel(vocab, 8, 16, 1, dropout=0.0).eval()
    ckpt = tmp_path / "w.safetensors"
    m.save(ckpt)
    for prompt in ("the quick", "the quick "):
        continuation = m.generate(prompt, 8, greedy=True)[0]
        r = subprocess.run(
            [sys.executable, "-m", "rustrnn", "generate", str(ckpt), "--prompt", prompt]
            + ["--max-tokens", "8", "--greedy"],
            capture_output=True,
            text=True,
            timeout=300,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        assert r.returncode == 0, r.stderr
        sep = "" if prompt.endswith(" ") or continuation.startswith("\n") else " "
        assert r.stdout == prompt + sep + continuation + "\n"
