"""One rank of the data-parallel tests: python dist_train_worker.py RANK WORLD PORT OUT_DIR
[BACKEND]. BACKEND gloo (the default; tests/test_train_distributed.py) trains on the CPU;
nccl (tests/test_cuda.py) trains on GPU number RANK."""

import os
import sys

import rustrnn
import torch
import torch.distributed as dist
from lm_helpers import TEXT, tiny_lm
from safetensors.torch import save_file


def main():
    rank, world, port, out = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], sys.argv[4]
    backend = sys.argv[5] if len(sys.argv) > 5 else "gloo"
    device = torch.device("cuda", rank) if backend == "nccl" else torch.device("cpu")
    if device.type == "cuda":
        torch.cuda.set_device(device)  # NCCL's communicator for this rank lives there
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=port)
    dist.init_process_group(backend, rank=rank, world_size=world)
    torch.manual_seed(100 + rank)  # different initial weights: rank 0's are broadcast
    model = tiny_lm("lstm", tie=True).to(device)
    hist = rustrnn.train(
        model,
        TEXT,
        TEXT[:120],
        batch_size=2,
        bptt=6,
        max_steps=7,
        eval_every=3,
        optimizer="adam",
        lr=0.01,
        clip=0.25,
        progress=False,
        checkpoint_dir=os.path.join(out, "ckpt"),
    )
    tensors = {
        k: v.detach().to("cpu", copy=True).contiguous() for k, v in model.state_dict().items()
    }
    tensors.pop("head.weight")  # tied to embedding.weight
    tensors["losses"] = torch.tensor(hist.losses, dtype=torch.float64)
    tensors["valid_ppls"] = torch.tensor(hist.valid_ppls, dtype=torch.float64)
    save_file(tensors, os.path.join(out, f"rank{rank}.safetensors"))
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
