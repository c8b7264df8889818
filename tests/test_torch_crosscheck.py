"""Values and first- to third-order gradients against PyTorch in float64, op by op
(skipped where torch is not installed; it is an optional extra)."""
import numpy as np
import pytest
from op_table import OPS, make_inputs

import gpugrad as gg
from gpugrad.kernels import reference

torch = pytest.importorskip("torch")
TF = torch.nn.functional


def _t_gelu_tanh(x):
    return TF.gelu(x, approximate="tanh")


def _t_checkpoint(fn, *args):
    from torch.utils.checkpoint import checkpoint
    return checkpoint(fn, *args, use_reentrant=False)


def _t_checkpoint_closure(x, w):
    h = x * w
    return _t_checkpoint(lambda t: torch.sin(t) * h, x) + h


def _t_checkpoint_pair(x, w):
    a, b = _t_checkpoint(lambda t: (torch.tanh(t @ w), t * t), x)
    return a * 2.0 + b.sum()


def _t_setitem_slice(x, v):
    y = x * 1.0
    y[1:, 1:3] = v[:2] * 2
    return y * x


def _t_setitem_index(x, v):
    y = x * 2.0
    y[torch.tensor([2, 0])] = v
    y[3] = 0.5
    return y.sin()


def _t_inplace_chain(a, b):
    y = a * 1.0
    y += b
    y *= b
    y -= 0.5
    y /= b + 1
    y.clamp_(-1.0, 2.5)
    return y


def _t_write_view(x, v):
    y = x * 1.0
    row = y[1]
    row.mul_(v)
    col = y.T[2]
    col += 1.0
    return y * row.sum()


# the same function written with torch, for every case of the op table
TORCH = {
    "add": lambda a, b: a + b, "sub": lambda a, b: a - b, "mul": lambda a, b: a * b,
    "div": lambda a, b: a / b, "pow": lambda a, b: a ** b, "pow_scalar": lambda a: a ** 3,
    "rpow_scalar": lambda a: 2.0 ** a, "rsub_scalar": lambda a: 1.5 - a,
    "rdiv_scalar": lambda a: 2.0 / a, "neg": lambda a: -a, "exp": torch.exp,
    "log": torch.log, "sqrt": torch.sqrt, "sin": torch.sin, "cos": torch.cos,
    "tanh": torch.tanh, "sigmoid": torch.sigmoid, "relu": torch.relu, "gelu": TF.gelu,
    "gelu_tanh": _t_gelu_tanh,
    "abs": torch.abs, "maximum": torch.maximum, "minimum": torch.minimum,
    "clip": lambda x: torch.clamp(x, -0.5, 0.7),
    "where": lambda a, b: torch.where(a > 0.1, a, b), "matmul": torch.matmul,
    "sum_all": lambda x: x.sum(), "sum_axis": lambda x: x.sum(-1, keepdim=True),
    "sum_axes": lambda x: x.sum((0, -1)), "mean": lambda x: x.mean(0),
    "max_all": lambda x: x.amax(), "max_axis": lambda x: x.max(-1).values,
    "max_dim_keepdim": lambda x: x.max(0, keepdim=True).values, "min_all": lambda x: x.min(),
    "min_dim": lambda x: torch.min(x, dim=-1).values,
    "logsumexp": lambda x: torch.logsumexp(x, -1),
    "logsumexp_all": lambda x: torch.logsumexp(x.reshape(-1), 0),
    "softmax": lambda x: torch.softmax(x, -1), "softmax_axis0": lambda x: torch.softmax(x, 0),
    "log_softmax": lambda x: torch.log_softmax(x, -1),
    "log_softmax_axis0": lambda x: torch.log_softmax(x, 0),
    "cross_entropy": lambda z, y: TF.cross_entropy(z, y),
    "mse_loss": lambda a, b: TF.mse_loss(a, b), "linear": lambda x, w, b: TF.linear(x, w, b),
    "linear_relu": lambda x, w, b: torch.relu(TF.linear(x, w, b)),
    "linear_tanh": lambda x, w, b: torch.tanh(TF.linear(x, w, b)),
    "linear_sigmoid": lambda x, w, b: torch.sigmoid(TF.linear(x, w, b)),
    "linear_gelu": lambda x, w, b: TF.gelu(TF.linear(x, w, b)),
    "linear_gelu_tanh": lambda x, w, b: _t_gelu_tanh(TF.linear(x, w, b)),
    "bias_grad": lambda g: g.sum(0), "reshape": lambda x: x.reshape(-1),
    "transpose": lambda x: x.transpose(0, -1),
    "permute": lambda x: x.permute(*reversed(range(x.ndim))), "T": lambda x: x.T @ x,
    "mT": lambda x: x.mT * 2,
    "getitem_int_slice_list": lambda x: x[1, :, [0, 2, 2]],
    "getitem_mask": lambda x: x[x > 0],
    "setitem_slice": _t_setitem_slice, "setitem_index_tensor": _t_setitem_index,
    "inplace_ops": _t_inplace_chain, "inplace_through_view": _t_write_view,
    "broadcast_to": lambda x: torch.broadcast_to(x, (2,) + tuple(x.shape)),
    "concatenate": lambda a, b: torch.cat([a, b, a], 0),
    "stack": lambda a, b: torch.stack([a, b], -1),
    "getitem_basic": lambda x: x[1:, ..., ::2],
    "getitem_int_array": lambda x: x[torch.tensor([0, 2, 0, 1])],
    "getitem_scalar": lambda x: x[1],
    "composite": lambda a, b: (torch.tanh(a) * b + a * a).exp().mean(),
    "fanout": lambda x: x * x * x + torch.sin(x) * x,
    "gelu_module_form": TF.gelu,
    "cast": lambda x: x.to(torch.float32).to(torch.float64),
    "to_device": lambda x: 2 * x,
    "bias_relu": lambda x, b: torch.relu(x + b), "bias_tanh": lambda x, b: torch.tanh(x + b),
    "bias_sigmoid": lambda x, b: torch.sigmoid(x + b), "bias_gelu": lambda x, b: TF.gelu(x + b),
    "bias_gelu_tanh": lambda x, b: _t_gelu_tanh(x + b),
    "checkpoint": lambda x, w: _t_checkpoint(lambda t: torch.tanh(t @ w) * t, x),
    "checkpoint_closure": _t_checkpoint_closure,
    "checkpoint_two_outputs": _t_checkpoint_pair,
    # the mask is gpugrad's Philox draw (torch's generator differs); the maths is torch's
    "dropout": lambda x: x * torch.from_numpy(
        reference.dropout_keep(x.numel(), 11, 5, 0.3).reshape(tuple(x.shape))) / 0.7,
}


def test_every_case_has_a_torch_twin():
    assert {c.name for c in OPS} == set(TORCH)


def _derivatives_gg(case, arrays, consts, order, weights):
    xs = [gg.tensor(a, dtype=gg.float64, requires_grad=True) for a in arrays]
    out = case.fn(*xs, *consts)
    results = [out.numpy()]
    current = (out * gg.tensor(weights[0])).sum()
    for k in range(order):
        grads = gg.autograd.grad(current, xs, create_graph=True, allow_unused=True)
        grads = [g if g is not None else gg.zeros_like(x) for g, x in zip(grads, xs)]
        results.append([g.numpy() for g in grads])
        current = sum(((g * gg.tensor(w)).sum() for g, w in zip(grads, weights[k + 1])),
                      gg.tensor(0.0, dtype=gg.float64))
        if not current.requires_grad:
            break
    return results


def _derivatives_torch(fn, arrays, consts, order, weights):
    xs = [torch.tensor(a, dtype=torch.float64, requires_grad=True) for a in arrays]
    out = fn(*xs, *consts)
    results = [out.detach().numpy()]
    current = (out * torch.tensor(weights[0])).sum()
    for k in range(order):
        grads = torch.autograd.grad(current, xs, create_graph=True, allow_unused=True)
        grads = [g if g is not None else torch.zeros_like(x) for g, x in zip(grads, xs)]
        results.append([g.detach().numpy() for g in grads])
        current = sum((g * torch.tensor(w)).sum() for g, w in zip(grads, weights[k + 1]))
        if not isinstance(current, torch.Tensor) or not current.requires_grad:
            break
    return results


@pytest.mark.parametrize("case", OPS, ids=lambda c: c.name)
def test_values_and_gradients_to_third_order_match_torch(case):
    rng = np.random.default_rng(7)
    arrays, consts = make_inputs(case, rng)
    torch_consts = [torch.tensor(c.numpy()) for c in consts]
    out_shape = np.shape(case.ref(*arrays, *[c.numpy() for c in consts]))
    weights = [rng.uniform(0.5, 1.5, size=out_shape)] + [
        [rng.uniform(0.5, 1.5, size=a.shape) for a in arrays] for _ in range(3)]
    order = 3 if case.smooth else 1
    ours = _derivatives_gg(case, arrays, consts, order, weights)
    theirs = _derivatives_torch(TORCH[case.name], arrays, torch_consts, order, weights)
    np.testing.assert_allclose(ours[0], theirs[0], rtol=1e-10, atol=1e-12)
    assert len(ours) == len(theirs)
    for k, (a, b) in enumerate(zip(ours[1:], theirs[1:]), start=1):
        for ga, gb in zip(a, b):
            np.testing.assert_allclose(ga, gb, rtol=1e-9, atol=1e-10,
                                       err_msg=f"{case.name}: order {k}")
