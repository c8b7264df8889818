"""Track the top Hessian eigenvalue of an MLP's loss while it trains.

    python examples/hessian_tracking.py

The eigenvalue comes from Lanczos on Hessian-vector products (forward over reverse),
on a fixed batch of 512 training digits; the Hessian itself is never formed.
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import gpugrad as gg  # noqa: E402
import gpugrad.nn.functional as F  # noqa: E402

gg.manual_seed(0)
train, test = gg.data.mnist()
model = gg.nn.MLP([784, 64, 10])
opt = gg.optim.Adam(model.parameters(), lr=1e-3)
probe_x = gg.tensor(train.images[:512])
probe_y = gg.tensor(train.labels[:512])


def probe_loss(*params):
    h = F.linear(probe_x, params[0], params[1], "relu")
    return F.cross_entropy(F.linear(h, params[2], params[3]), probe_y)


for epoch in range(1, 6):
    for x, y in gg.data.DataLoader(train, 128, seed=epoch):
        loss = F.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    (top,) = gg.krylov.hessian_eigenvalues(probe_loss, list(model.parameters()), k=1, tol=1e-3)
    print(f"epoch {epoch}: loss {loss.item():.4f}  top Hessian eigenvalue {top:.3f}")
