"""Where a word-level training step's time goes: rustrnn.train against the plain-torch
word_language_model loop (bench_train.py's), the same model and windows, one process.

Each side first runs the steps once (warm-up), then is timed over them, then profiled
over them with torch.profiler (ATen ops, self CPU time). The windows are the first
``--steps`` of the corpus, the same on both sides; the torch loop keeps nn.Linear.

    python bench/profile_step.py --head full
    python bench/profile_step.py --head adaptive --rows 30
"""

import argparse
import time

import rustrnn
import torch
from bench_train import WORD, PlainLM, torch_train
from torch.profiler import ProfilerActivity, profile
from word_corpus import word_corpus


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--head", choices=("full", "adaptive"), default="full")
    ap.add_argument("--steps", type=int, default=60)
    ap.add_argument("--rows", type=int, default=22, help="profile rows printed per side")
    args = ap.parse_args()

    train_text, _, _ = word_corpus()
    vocab = rustrnn.Vocab.build(train_text, level="word", max_size=10_000)
    batch, bptt = WORD["batch"], WORD["bptt"]
    ids = vocab.encode(train_text)[: batch * (args.steps * bptt + 1)]
    torch.manual_seed(0)
    size = (WORD["embed"], WORD["hidden"], 2)
    ours = rustrnn.LanguageModel(vocab, *size, dropout=0.2, head=args.head)
    ref = PlainLM(len(vocab), "lstm", *size, 0.2)
    if args.head == "full":
        ref.load_state_dict(ours.state_dict())
    ref_args = argparse.Namespace(**{**WORD, "steps": args.steps, "clip": 0.25})

    def run_ours():
        rustrnn.train(
            ours,
            ids,
            batch_size=batch,
            bptt=bptt,
            max_steps=args.steps,
            optimizer="sgd",
            lr=WORD["lr"],
            clip=0.25,
            progress=False,
        )

    def run_ref():
        torch_train(ref, ids, ref_args, 1)

    print(
        f"{torch.get_num_threads()} threads, torch {torch.__version__}; LSTM 200/200 x 2, "
        f"vocab {len(vocab)}, B={batch} bptt={bptt}, rustrnn head {args.head}, "
        f"{args.steps} steps per side"
    )
    sides = (("rustrnn.train", run_ours), ("torch loop", run_ref))
    for _, run in sides:
        run()
    ms = {}
    for name, run in sides:
        t0 = time.perf_counter()
        run()
        ms[name] = (time.perf_counter() - t0) / args.steps * 1e3
        print(f"{name:14} {ms[name]:7.1f} ms/step")
    print(f"ratio (torch / rustrnn): {ms['torch loop'] / ms['rustrnn.train']:.2f}x")
    for name, run in sides:
        with profile(activities=[ProfilerActivity.CPU]) as p:
            run()
        print(f"===== {name}")
        print(p.key_averages().table(sort_by="self_cpu_time_total", row_limit=args.rows))


if __name__ == "__main__":
    main()
