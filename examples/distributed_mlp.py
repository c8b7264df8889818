"""Data-parallel training of an MLP on MNIST with DistributedDataParallel.

    mpiexec -n 2 python examples/distributed_mlp.py         # or: srun python examples/...

Each rank reads its own shard of every epoch (DistributedSampler), DDP averages the
gradients across ranks during backward, and rank 0 prints the global mean loss.
"""
import numpy as np

import gpugrad as gg
import gpugrad.distributed as dist
import gpugrad.nn.functional as F

dist.init_process_group()                   # NCCL on GPUs, else MPI; rank from the launcher
rank, world = dist.get_rank(), dist.get_world_size()
dev = dist.get_device()                     # this rank's GPU, or the CPU

train, test = gg.data.mnist()
gg.manual_seed(0)
model = gg.nn.parallel.DistributedDataParallel(gg.nn.MLP([784, 256, 10], device=dev))
opt = gg.optim.Adam(model.parameters(), lr=1e-3)
sampler = gg.data.DistributedSampler(len(train), shuffle=True, seed=0)
loader = gg.data.DataLoader(train, 64, sampler=sampler, device=dev)

for epoch in range(3):
    sampler.set_epoch(epoch)                # a new shuffle each epoch, the same on every rank
    losses = []
    for x, y in loader:
        loss = F.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()                     # gradients averaged across ranks in buckets
        opt.step()
        losses.append(loss.detach())
    mean = gg.tensor([float(np.mean([v.item() for v in losses]))])
    dist.all_reduce(mean, op="avg")         # the loss over all ranks, not rank 0's share
    if rank == 0:
        print(f"epoch {epoch}: loss {mean.item():.4f} on {world} rank(s)")
dist.destroy_process_group()
