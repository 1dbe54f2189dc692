"""Generation speed: rustrnn's Rust token loop against the same loop written in Python
(torch.nn.Embedding + torch.nn.LSTM + torch.nn.Linear, softmax and torch.multinomial per
token) with the same weights; and RSS over a long generation.

Each side is timed over whole calls (prompt, set-up and token loop), best of
``--rounds`` interleaved rounds.

Run: python bench/bench_generate.py [--tokens N] [--rounds N] [--long N] [--device cuda]
[--quick]  (``--quick``: 300 tokens, 2 rounds, no long run, for a short GPU check)
"""

import argparse
import platform
import resource

import device_timing
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


def chain_bench(model, prompt, args, name, device):
    """Plain sampling against the full decoding chain (top-k 50, top-p 0.9, min-p 0.05,
    repetition penalty 1.2) on the same model, interleaved; the target is at most 1.2x."""
    clock = device_timing.now
    for batch in (1, 64):
        plain = chain = float("inf")
        for _ in range(args.rounds):
            t = clock(device)
            model.generate(prompt, args.tokens, num_samples=batch)
            plain = min(plain, clock(device) - t)
            t = clock(device)
            model.generate(prompt, args.tokens, num_samples=batch, **CHAIN)
            chain = min(chain, clock(device) - t)
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
    ap.add_argument("--tokens", type=int, default=None, help="tokens per call (1000; --quick: 300)")
    ap.add_argument("--rounds", type=int, default=None, help="best of (3; --quick: 2)")
    ap.add_argument(
        "--long", type=int, default=None, help="tokens of the RSS run (100000; --quick: 0)"
    )
    ap.add_argument("--quick", action="store_true", help="fewer tokens and rounds, no RSS run")
    device_timing.add_argument(ap)
    args = ap.parse_args()
    device = device_timing.parse(args.device)
    for name, full, quick in (("tokens", 1000, 300), ("rounds", 3, 2), ("long", 100_000, 0)):
        if getattr(args, name) is None:
            setattr(args, name, quick if args.quick else full)
    clock = device_timing.now
    torch.manual_seed(0)
    vocab = rustrnn.Vocab.build(default_corpus(), level="char")
    model = rustrnn.LanguageModel(vocab, 64, 256, 2).eval()
    emb = torch.nn.Embedding(len(vocab), 64)
    rnn = torch.nn.LSTM(64, 256, 2)
    head = torch.nn.Linear(256, len(vocab))
    emb.load_state_dict(model.embedding.state_dict())
    rnn.load_state_dict(model.rnn.state_dict())
    head.load_state_dict(model.head.state_dict())
    for m in (model, emb, rnn, head):
        m.to(device)
    prompt = "The "
    ids = vocab.encode(prompt).to(device)
    where = "" if device.type == "cpu" else f"; on {device_timing.describe(device)}"
    print(
        f"machine: {platform.machine()}, {torch.get_num_threads()} torch threads; "
        f"char LSTM E=64 H=256 2 layers, vocab {len(vocab)}, {args.tokens} tokens{where}"
    )
    for batch in (1, 64):
        model.generate(prompt, 20, num_samples=batch)
        python_loop(emb, rnn, head, ids, 20, batch)
        ours = ref = float("inf")
        for _ in range(args.rounds):
            t = clock(device)
            model.generate(prompt, args.tokens, num_samples=batch)
            ours = min(ours, clock(device) - t)
            t = clock(device)
            python_loop(emb, rnn, head, ids, args.tokens, batch)
            ref = min(ref, clock(device) - t)
        print(
            f"batch {batch:3}: rustrnn {batch * args.tokens / ours:9.0f} tok/s "
            f"({ours / args.tokens * 1e3:.3f} ms/step), python loop "
            f"{batch * args.tokens / ref:9.0f} tok/s ({ref / args.tokens * 1e3:.3f} ms/step), "
            f"ratio {ref / ours:.2f}x"
        )
    chain_bench(model, prompt, args, "char", device)
    words = rustrnn.Vocab.build(default_corpus(), level="word")
    torch.manual_seed(0)
    word_model = rustrnn.LanguageModel(words, 64, 256, 2).eval().to(device)
    chain_bench(word_model, "The ", args, f"word (vocab {len(words)})", device)
    weights = torch.rand(1024, 10000).to(device)
    for name, fn in (
        ("rustrnn.multinomial", lambda: rustrnn.multinomial(weights, 1, True)),
        ("torch.multinomial", lambda: torch.multinomial(weights, 1, True)),
    ):
        fn()
        t = clock(device)
        for _ in range(20):
            fn()
        print(f"{name:20} [1024, 10000], 1 sample: {(clock(device) - t) / 20 * 1e3:.2f} ms")
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
