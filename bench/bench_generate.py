"""Generation speed: rustrnn's Rust token loop against the same loop written in Python
(torch.nn.Embedding + torch.nn.LSTM + torch.nn.Linear, softmax and torch.multinomial per
token) with the same weights; and RSS over a long generation.

Each side is timed over whole calls (prompt, set-up and token loop), best of
``--rounds`` interleaved rounds.

Run: python bench/bench_generate.py [--tokens N] [--rounds N] [--long N]
"""

import argparse
import platform
import resource
import time

import rustrnn
import torch
import torch.nn.functional as F
from rustrnn.corpus import default_corpus


def python_loop(emb, rnn, head, prompt_ids, max_tokens, num_samples):
    with torch.no_grad():
        out, state = rnn(emb(prompt_ids).unsqueeze(1))
        state = tuple(s.expand(-1, num_samples, -1).contiguous() for s in state)
        logits = head(out[-1]).expand(num_samples, -1)
        tokens = []
        for _ in range(max_tokens):
            nxt = torch.multinomial(F.softmax(logits, dim=-1), 1)
            tokens.append(nxt)
            out, state = rnn(emb(nxt.t()), state)
            logits = head(out[0])
    return torch.cat(tokens, 1)


CHAIN = dict(top_k=50, top_p=0.9, min_p=0.05, repetition_penalty=1.2)


def chain_bench(model, prompt, args, name):
    """Plain sampling against the full decoding chain (top-k 50, top-p 0.9, min-p 0.05,
    repetition penalty 1.2) on the same model, interleaved; the target is at most 1.2x."""
    for batch in (1, 64):
        plain = chain = float("inf")
        for _ in range(args.rounds):
            t = time.perf_counter()
            model.generate(prompt, args.tokens, num_samples=batch)
            plain = min(plain, time.perf_counter() - t)
            t = time.perf_counter()
            model.generate(prompt, args.tokens, num_samples=batch, **CHAIN)
            chain = min(chain, time.perf_counter() - t)
        print(
            f"{name} batch {batch:3}: plain {batch * args.tokens / plain:9.0f} tok/s, "
            f"full chain {batch * args.tokens / chain:9.0f} tok/s, "
            f"time chain/plain {chain / plain:.2f}x"
        )


def rss_mb():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * 4096 / 1e6


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--tokens", type=int, default=1000)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--long", type=int, default=100_000)
    args = ap.parse_args()
    torch.manual_seed(0)
    vocab = rustrnn.Vocab.build(default_corpus(), level="char")
    model = rustrnn.LanguageModel(vocab, 64, 256, 2).eval()
    emb = torch.nn.Embedding(len(vocab), 64)
    rnn = torch.nn.LSTM(64, 256, 2)
    head = torch.nn.Linear(256, len(vocab))
    emb.load_state_dict(model.embedding.state_dict())
    rnn.load_state_dict(model.rnn.state_dict())
    head.load_state_dict(model.head.state_dict())
    prompt = "The "
    ids = vocab.encode(prompt)
    print(
        f"machine: {platform.machine()}, {torch.get_num_threads()} torch threads; "
        f"char LSTM E=64 H=256 2 layers, vocab {len(vocab)}, {args.tokens} tokens"
    )
    for batch in (1, 64):
        model.generate(prompt, 20, num_samples=batch)
        python_loop(emb, rnn, head, ids, 20, batch)
        ours = ref = float("inf")
        for _ in range(args.rounds):
            t = time.perf_counter()
            model.generate(prompt, args.tokens, num_samples=batch)
            ours = min(ours, time.perf_counter() - t)
            t = time.perf_counter()
            python_loop(emb, rnn, head, ids, args.tokens, batch)
            ref = min(ref, time.perf_counter() - t)
        print(
            f"batch {batch:3}: rustrnn {batch * args.tokens / ours:9.0f} tok/s "
            f"({ours / args.tokens * 1e3:.3f} ms/step), python loop "
            f"{batch * args.tokens / ref:9.0f} tok/s ({ref / args.tokens * 1e3:.3f} ms/step), "
            f"ratio {ref / ours:.2f}x"
        )
    chain_bench(model, prompt, args, "char")
    words = rustrnn.Vocab.build(default_corpus(), level="word")
    torch.manual_seed(0)
    word_model = rustrnn.LanguageModel(words, 64, 256, 2).eval()
    chain_bench(word_model, "The ", args, f"word (vocab {len(words)})")
    weights = torch.rand(1024, 10000)
    for name, fn in (
        ("rustrnn.multinomial", lambda: rustrnn.multinomial(weights, 1, True)),
        ("torch.multinomial", lambda: torch.multinomial(weights, 1, True)),
    ):
        fn()
        t = time.perf_counter()
        for _ in range(20):
            fn()
        print(f"{name:20} [1024, 10000], 1 sample: {(time.perf_counter() - t) / 20 * 1e3:.2f} ms")
    if args.long:
        before = rss_mb()
        chunk = 10_000
        for i in range(args.long // chunk):
            model.generate(prompt, chunk)
            if i == 0:
                after_first = rss_mb()
        print(
            f"RSS over {args.long} generated tokens: {before:.0f} MB before, "
            f"{after_first:.0f} MB after the first {chunk}, {rss_mb():.0f} MB at the end "
            f"(peak {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e3:.0f} MB)"
        )


if __name__ == "__main__":
    main()
