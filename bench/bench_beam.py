"""Beam search: rustrnn's Rust loop (``generate(num_beams=8)``) against the same beam
search written in Python over torch.nn.Embedding + torch.nn.LSTM + torch.nn.Linear with
the same weights, in one process, interleaved, best of ``--rounds``. Both must return
the same best continuation. Not a test: nothing here gates CI.

    python bench/bench_beam.py [--tokens 100] [--beams 8] [--rounds 3]
"""

import argparse
import time

import rustrnn
import torch
import torch.nn.functional as F
from rustrnn.corpus import default_corpus


def python_beam(emb, rnn, head, context, max_tokens, beams):
    """transformers' beam search with no stop token, one hypothesis per beam."""
    with torch.no_grad():
        out, (h, c) = rnn(emb(context).unsqueeze(1))
        logits = head(out[-1])
        running = [([], 0.0)]
        for step in range(max_tokens):
            logp = F.log_softmax(logits.double(), dim=-1)
            sums = torch.tensor([b[1] for b in running], dtype=torch.double)
            total = (logp + sums[:, None]).reshape(-1)
            values, flat = total.topk(min(2 * beams, total.numel()))
            vocab = logp.shape[1]
            nxt, parents = [], []
            for v, f in zip(values.tolist(), flat.tolist()):
                parent, token = divmod(f, vocab)
                if len(nxt) < beams:
                    nxt.append((running[parent][0] + [token], v))
                    parents.append(parent)
            running = nxt
            if step + 1 == max_tokens:
                break
            idx = torch.tensor(parents)
            h, c = h.index_select(1, idx), c.index_select(1, idx)
            tokens = torch.tensor([b[0][-1] for b in running])
            out, (h, c) = rnn(emb(tokens).unsqueeze(0), (h, c))
            logits = head(out[0])
    return running[0]


def bench(model, prompt, args, name):
    emb = torch.nn.Embedding(len(model.vocab), model.config["embed_size"])
    rnn = torch.nn.LSTM(model.config["embed_size"], model.config["hidden_size"], 2)
    head = torch.nn.Linear(model.config["hidden_size"], len(model.vocab))
    emb.load_state_dict(model.embedding.state_dict())
    rnn.load_state_dict(model.rnn.state_dict())
    head.load_state_dict(model.head.state_dict())
    context = torch.cat([torch.tensor([model._boundary_id()]), model.vocab.encode(prompt)])
    kw = dict(num_beams=args.beams, return_ids=True, return_log_probs=True)
    ours = ref = float("inf")
    for _ in range(args.rounds):
        t = time.perf_counter()
        _, ids, lps = model.generate(prompt, args.tokens, **kw)
        ours = min(ours, time.perf_counter() - t)
        t = time.perf_counter()
        best, lp = python_beam(emb, rnn, head, context, args.tokens, args.beams)
        ref = min(ref, time.perf_counter() - t)
    assert ids[0].tolist() == best, "the two searches disagree"
    print(
        f"{name}: {args.beams} beams x {args.tokens} tokens: rustrnn {ours * 1e3:7.1f} ms, "
        f"python loop {ref * 1e3:7.1f} ms, ratio {ref / ours:.2f}x (log P {lps[0]:.3f} / {lp:.3f})"
    )


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--tokens", type=int, default=100)
    ap.add_argument("--beams", type=int, default=8)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    print(f"{torch.get_num_threads()} torch threads; LSTM E=64 H=256, 2 layers")
    for level in ("char", "word"):
        vocab = rustrnn.Vocab.build(default_corpus(), level=level)
        torch.manual_seed(0)
        model = rustrnn.LanguageModel(vocab, 64, 256, 2).eval()
        bench(model, "The ", args, f"{level} (vocab {len(vocab)})")


if __name__ == "__main__":
    main()
