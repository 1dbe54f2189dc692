"""Data-parallel training on torch.distributed (gloo, two processes on 127.0.0.1): the
replicas stay identical and match single-process training on the combined batch."""

import os

import pytest
import rustrnn
import torch
from dist_helpers import run_ranks
from lm_helpers import TEXT, tiny_lm


@pytest.mark.skipif(not torch.distributed.is_available(), reason="torch.distributed missing")
def test_two_ranks_match_one_process_on_the_combined_batch(tmp_path):
    r0, r1 = run_ranks(2, tmp_path)
    for k in r0:
        if k != "losses":  # each rank reports its own shard's loss
            assert torch.equal(r0[k], r1[k]), k

    # One process, both shards as one batch of 4 streams, from rank 0's initial weights.
    torch.manual_seed(100)
    model = tiny_lm("lstm", tie=True)
    hist = rustrnn.train(
        model,
        TEXT,
        TEXT[:120],
        batch_size=4,
        bptt=6,
        max_steps=7,
        eval_every=3,
        optimizer="adam",
        lr=0.01,
        clip=0.25,
        progress=False,
    )
    for k, v in model.state_dict().items():
        if k != "head.weight":
            torch.testing.assert_close(r0[k], v, rtol=0, atol=1e-10)
    torch.testing.assert_close(
        (r0["losses"] + r1["losses"]) / 2,
        torch.tensor(hist.losses, dtype=torch.float64),
        rtol=1e-10,
        atol=0,
    )
    torch.testing.assert_close(
        r0["valid_ppls"], torch.tensor(hist.valid_ppls, dtype=torch.float64), rtol=1e-10, atol=0
    )
    # Only rank 0 writes checkpoints (both ranks were given the same directory).
    assert sorted(os.listdir(tmp_path / "ckpt")) == ["best.safetensors", "last.safetensors"]
