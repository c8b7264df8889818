"""Values and first- to third-order gradients against PyTorch in float64, op by op
(skipped where torch is not installed; it is an optional extra)."""
import numpy as np
import pytest
from op_table import OPS, _inplace_selection, make_inputs

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
# the rows of the activation table added with the nn.functional set, in their three forms
for _name, _fn in (("silu", TF.silu), ("leaky_relu", TF.leaky_relu), ("elu", TF.elu)):
    TORCH[_name] = _fn
    TORCH[f"bias_{_name}"] = lambda x, b, f=_fn: f(x + b)
    TORCH[f"linear_{_name}"] = lambda x, w, b, f=_fn: f(TF.linear(x, w, b))

TORCH.update({
    "layer_norm_affine": lambda x, w, b: TF.layer_norm(x, x.shape[-1:], w, b),
    "layer_norm_2d": lambda x: TF.layer_norm(x, x.shape[-2:], eps=1e-3),
    "layer_norm_weight_only": lambda x, w: TF.layer_norm(x, x.shape[-1:], w),
    "softplus": TF.softplus, "softplus_beta_threshold": lambda x: TF.softplus(x, 2.0, 2.5),
    "leaky_relu_slope": lambda x: TF.leaky_relu(x, 0.2), "elu_alpha": lambda x: TF.elu(x, 0.6),
    "selu": TF.selu, "celu": lambda x: TF.celu(x, 0.7), "mish": TF.mish,
    "softsign": TF.softsign, "logsigmoid": TF.logsigmoid,
    "hardtanh": lambda x: TF.hardtanh(x, -0.5, 0.7), "relu6": lambda x: TF.relu6(x * 5),
    "hardswish": lambda x: TF.hardswish(x * 3), "hardsigmoid": lambda x: TF.hardsigmoid(x * 3),
    "nll_loss": TF.nll_loss,
    "nll_loss_weight_ignore_nd": lambda x, t, w: TF.nll_loss(x, t, weight=w, ignore_index=1),
    "cross_entropy_nd": TF.cross_entropy,
    "cross_entropy_label_smoothing": lambda x, t, w: TF.cross_entropy(
        x, t, weight=w, ignore_index=0, label_smoothing=0.2),
    "cross_entropy_probs": lambda x, q: TF.cross_entropy(x, torch.softmax(q, -1),
                                                         label_smoothing=0.1),
    "l1_loss": TF.l1_loss,
    "smooth_l1_loss": lambda a, b: TF.smooth_l1_loss(a, b, reduction="sum", beta=0.5),
    "huber_loss": lambda a, b: TF.huber_loss(a, b, delta=0.4),
    "binary_cross_entropy": lambda x, t: TF.binary_cross_entropy(torch.sigmoid(x),
                                                                 torch.sigmoid(t)),
    "bce_with_logits_pos_weight": lambda x, t, pw: TF.binary_cross_entropy_with_logits(
        x, torch.sigmoid(t), pos_weight=pw),
    "kl_div": lambda x, t: TF.kl_div(torch.log_softmax(x, -1), torch.softmax(t, -1),
                                     reduction="batchmean"),
    "kl_div_log_target": lambda x, t: TF.kl_div(x, t, reduction="sum", log_target=True),
    "normalize": TF.normalize, "normalize_p3": lambda x: TF.normalize(x, p=3, dim=0),
    "embedding": lambda w, i: TF.embedding(i, w),
})


# torch's third derivative of layer_norm (the derivative of its hand-written double backward)
# disagrees with central differences of its own second derivative, while ours agrees with
# them (tests/test_nn_functional.py checks our third order against central differences)
TORCH_MAX_ORDER = {"layer_norm_affine": 2, "layer_norm_2d": 2, "layer_norm_weight_only": 2}
# torch's kernels for these use float32 constants (1/6; celu's 1/alpha) even in float64
TORCH_RTOL = {"celu": 1e-7, "hardsigmoid": 1e-7, "hardswish": 1e-7}


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
    order = min(case.torch_order if case.smooth else 1, TORCH_MAX_ORDER.get(case.name, 3))
    ours = _derivatives_gg(case, arrays, consts, order, weights)
    theirs = _derivatives_torch(TORCH[case.name], arrays, torch_consts, order, weights)
    np.testing.assert_allclose(ours[0], theirs[0], rtol=1e-10, atol=1e-12)
    # one side may stop an order early where its graph no longer reaches the inputs (the
    # other then records a zero derivative): the orders it lacks must be zero
    for extra in ours[len(theirs):] + theirs[len(ours):]:
        assert all(not np.any(g) for g in extra), f"{case.name}: a derivative only one has"
    for k, (a, b) in enumerate(zip(ours[1:], theirs[1:]), start=1):
        for ga, gb in zip(a, b):
            np.testing.assert_allclose(ga, gb, rtol=TORCH_RTOL.get(case.name, 1e-9), atol=1e-10,
                                       err_msg=f"{case.name}: order {k}")


def _t_pad(x, widths, mode, value=0.0):
    return TF.pad(x, widths, mode=mode, value=value) if mode == "constant" else \
        _t_pad_nonconstant(x, widths, mode)


def _t_pad_nonconstant(x, widths, mode):
    # torch pads reflect/replicate/circular on 2-D to 5-D inputs with batch dims: add them
    lead = 3 - x.ndim if x.ndim < 3 else 0
    y = x.reshape((1,) * lead + tuple(x.shape)) if lead else x
    return TF.pad(y, widths, mode=mode).reshape(tuple(x.shape[:-1]) + (-1,))


def _t_scatter_add(x, s, i):
    return x.scatter_add(-1, i, s)


TORCH.update({
    "tan": torch.tan, "asin": lambda x: torch.asin(x * 0.6),
    "acos": lambda x: torch.acos(x * 0.6), "atan": torch.atan, "sinh": torch.sinh,
    "cosh": torch.cosh, "asinh": torch.asinh, "acosh": lambda x: torch.acosh(x + 1.0),
    "atanh": lambda x: torch.atanh(x * 0.6), "erf": torch.erf, "exp2": torch.exp2,
    "expm1": torch.expm1, "log2": torch.log2, "log10": torch.log10, "log1p": torch.log1p,
    "rsqrt": torch.rsqrt, "square": torch.square,
    "floor": lambda x: torch.floor(x * 3), "ceil": lambda x: torch.ceil(x * 3),
    "trunc": lambda x: torch.trunc(x * 3),
    "round": lambda x: torch.round(x * 3) + torch.round(x, decimals=1),
    "sign": lambda x: torch.sign(x) * x,
    "atan2": torch.atan2, "logaddexp": torch.logaddexp, "remainder": lambda a, b: a % b,
    # torch has no derivative of a number % a tensor; a tensor of the number has one
    "remainder_scalar": lambda a: (a % 0.7) + (torch.full_like(a, 2.0) % a),
    "fmod": torch.fmod,
    "floor_divide": lambda x, c: x * (c // 0.7), "lerp": torch.lerp,
    "lerp_scalar": lambda a, b: torch.lerp(a, b, 0.3),
    "amax_dims": lambda x: torch.amax(x, dim=(0, -1), keepdim=True),
    "amin": lambda x: torch.amin(x, -1), "amin_all": lambda x: torch.amin(x) + torch.min(x),
    "min_dim_keepdim": lambda x: x.min(dim=0).values * 2 + x.min(0, keepdim=True)[0].sum(),
    "prod_all": torch.prod, "prod_dim": lambda x: x.prod(dim=-1, keepdim=True),
    "prod_zero": lambda x: torch.prod(x - x[..., :1], dim=-1),
    "cumsum": lambda x: torch.cumsum(x, dim=0), "cumprod": lambda x: x.cumprod(-1),
    "cumprod_zero": lambda x: torch.cumprod(torch.roll(x - x[..., :1], 1, -1), -1),
    "logcumsumexp": lambda x: torch.logcumsumexp(x, -1),
    "var": lambda x: torch.var(x, dim=-1) + x.var(correction=0),
    "std": lambda x: torch.std(x, 0, keepdim=True, unbiased=False),
    "norm": lambda x: torch.norm(x),
    "norm_dim": lambda x: x.norm(dim=-1, keepdim=True) + x.norm(3, dim=-1, keepdim=True),
    "norm_1_inf": lambda x: x.norm(1) + x.norm(float("inf"), dim=0),
    "squeeze_unsqueeze": lambda x: torch.unsqueeze(torch.squeeze(x), -1).squeeze(0),
    "unflatten": lambda x: x.flatten().unflatten(0, (-1, 1)),
    "expand": lambda x: x.expand(2, *x.shape) * x.expand_as(x),
    "repeat": lambda x: x.repeat(2, *([1] * (x.ndim - 1)), 3) if x.ndim else x.repeat(2),
    "tile": lambda x: torch.tile(x, (2,)),
    "repeat_interleave": lambda x: torch.repeat_interleave(x, 2, dim=0)
    + torch.repeat_interleave(x, torch.tensor([2] * x.shape[0]), dim=0),
    "roll": lambda x: torch.roll(x, (1, -2), (0, -1)) + torch.roll(x, 1),
    "flip": lambda x: torch.flip(x, (0, -1)), "clone": lambda x: x.clone() * x.contiguous(),
    "cat_dim": lambda a, b: torch.cat([a, b], dim=-1),
    "stack_dim": lambda a, b: torch.stack([a, b], dim=1),
    "split_chunk": lambda x: torch.cat(torch.split(x, 1)[::-1] + x.chunk(2)[:1]),
    "unbind": lambda x: torch.stack(x.unbind(-1)[::-1], -1),
    "pad_constant": lambda x: TF.pad(x, (1, 2, -1, 1), value=0.5),
    "pad_reflect": lambda x: _t_pad_nonconstant(x, (1, 2), "reflect")
    + _t_pad_nonconstant(x, (2, 1), "replicate") + _t_pad_nonconstant(x, (3, 0), "circular"),
    "movedim": lambda x: torch.movedim(x, 0, -1),
    "gather": lambda x, i: torch.gather(x, -1, i),
    "take_along_dim": lambda x, i: torch.take_along_dim(x, i, 0),
    "index_select": lambda x: torch.index_select(x, 0, torch.tensor([0, 0, x.shape[0] - 1])),
    "scatter": lambda x, s, i: torch.scatter(x, 0, i, s), "scatter_add": _t_scatter_add,
    "masked_fill": lambda x, m: x.masked_fill(m, 0.25),
    "norm_nuc": lambda x: torch.norm(x, "nuc"),
    "norm_nuc_dims": lambda x: x.norm("nuc", dim=(2, 0), keepdim=True)
    + torch.norm(x, "fro", dim=(0, 2), keepdim=True),
    "index_add": lambda x, s, i: torch.index_add(x, 1, i, s, alpha=1.5),
    "index_copy": lambda x, s, i: x.index_copy(1, i, s),
    "index_fill": lambda x, v, i: x.index_fill(1, i, v) * torch.index_fill(x, -1, i, 0.5),
    "index_put_accumulate": lambda x, v, i: torch.index_put(x, (i,), v, accumulate=True),
    "index_put_positions": lambda x, v, p: x.put(p, v),
    "inplace_selection": lambda x, s, m: _inplace_selection(x, s, m, torch),
    "masked_select": lambda x, m: torch.masked_select(x, m),
    "tril_triu": lambda x: torch.tril(x, -1) + torch.triu(x, 1) * 2,
    "diagonal": lambda x: torch.diagonal(x, 1, -1, 0) + 0,
    "diag": lambda x: torch.diag(torch.diag(x, 1), -1),
    "sort": lambda x: torch.sort(x, 0, descending=True).values + x.sort().values,
    "topk": lambda x: torch.topk(x, 2, dim=-1).values * torch.topk(x, 1, largest=False)[0],
    "outer": torch.outer, "tensordot": lambda a, b: torch.tensordot(a, b, dims=([0], [1])),
    "meshgrid": lambda a, b: (lambda g: g[0] * g[1])(torch.meshgrid(a, b, indexing="xy")),
    **{f"einsum_{kind}": (lambda *xs, e=eq: torch.einsum(e, *xs))
       for kind, eq in {"mm": "ij,jk->ik", "diag": "ii->i", "all": "ij->",
                        "batch": "bij,bjk->bik", "ell": "...ij,...jk", "dot": "i,i->",
                        "three": "ij,jk,k->i", "outer_rep": "iij->ji"}.items()},
})


# -- values and dtypes of the ops without gradients, against torch --------------------------------
def _ints(rng):
    return [rng.integers(-9, 9, size=(3, 4)), rng.integers(1, 9, size=(4,))]


def _floats(rng):
    a = rng.normal(size=(3, 4)) * 3
    a[0, 0], a[1, 1], a[2, 2] = np.nan, np.inf, -np.inf
    return [a.astype(np.float32), rng.normal(size=(4,)).astype(np.float32)]


def _bools(rng):
    return [rng.random((3, 4)) < 0.5, rng.random(4) < 0.5]


NONDIFF = [
    (name, kind, fn) for kind, names in {
        "ints": ["floor_divide", "remainder", "fmod", "bitwise_and", "bitwise_or", "bitwise_xor",
                 "eq", "ne", "lt", "le", "gt", "ge", "logical_and", "logical_xor"],
        "floats": ["eq", "lt", "isclose", "logical_or", "remainder", "fmod", "floor_divide"],
        "bools": ["bitwise_and", "bitwise_xor", "logical_and", "eq"],
    }.items() for name in names for fn in [lambda m, a, b, n=name: getattr(m, n)(a, b)]
] + [
    (name, kind, fn) for kind, names in {
        "ints": ["floor", "sign", "square", "bitwise_not", "logical_not", "argmax", "argmin",
                 "any", "all", "prod", "exp2", "log1p", "tan", "round", "argsort"],
        "floats": ["isnan", "isinf", "isfinite", "isposinf", "isneginf", "sign", "floor",
                   "round", "logical_not", "any", "argsort"],
        "bools": ["bitwise_not", "logical_not", "any", "all", "sign", "prod"],
    }.items() for name in names for fn in [lambda m, a, b, n=name: getattr(m, n)(a)]
] + [
    ("cumsum", "ints", lambda m, a, b: m.cumsum(a, 1)),
    ("cumsum", "bools", lambda m, a, b: m.cumsum(a, dim=0)),
    ("argmax_dim", "ints", lambda m, a, b: m.argmax(a, 1, keepdim=True)),
    ("any_dim", "floats", lambda m, a, b: m.any(a, dim=0)),
    ("all_dim", "ints", lambda m, a, b: m.all(a, dim=1, keepdim=True)),
    ("sort_desc", "ints", lambda m, a, b: m.sort(a, dim=1, descending=True, stable=True)[1]),
    ("topk_idx", "floats", lambda m, a, b: m.topk(b, 2)[1]),
    ("chunk", "ints", lambda m, a, b: m.cat(m.chunk(m.arange(7), 3)[1:])),
    ("tensor_split", "ints", lambda m, a, b: m.tensor_split(a, 3, dim=1)[1]),
    ("one_hot", "ints", lambda m, a, b: (TF.one_hot if m is torch else gg.ops.one_hot)(b)),
    ("repeat_interleave", "ints", lambda m, a, b: m.repeat_interleave(b)),
    ("rshift", "ints", lambda m, a, b: (a >> 1) ^ (a << 2) | (b & 3)),
    ("ops", "ints", lambda m, a, b: (a // b) + (a % b) - (7 // b) + (-7 % b)),
    ("bool_ops", "bools", lambda m, a, b: (a & b) | ~a ^ b),
    ("linspace_int", "ints", lambda m, a, b: m.linspace(-3, 10, 6, dtype=m.int64)),
    ("logspace", "ints", lambda m, a, b: m.logspace(-1, 2, 5, base=3)),
    ("eye", "ints", lambda m, a, b: m.eye(2, 4)),
    ("arange_float", "ints", lambda m, a, b: m.arange(0, 2.5, 0.5)),
    ("arange_dtype", "ints", lambda m, a, b: m.arange(1, 7, 2, dtype=m.float64)),
]


@pytest.mark.parametrize("name,kind,fn", NONDIFF, ids=[f"{n}-{k}" for n, k, _ in NONDIFF])
def test_values_and_dtypes_of_ops_without_gradients_match_torch(name, kind, fn):
    arrays = {"ints": _ints, "floats": _floats, "bools": _bools}[kind](np.random.default_rng(3))
    ours = fn(gg, *[gg.tensor(a) for a in arrays])
    theirs = fn(torch, *[torch.tensor(a) for a in arrays])
    assert str(ours.dtype) == str(theirs.dtype).replace("torch.", ""), name
    np.testing.assert_allclose(ours.numpy(), theirs.numpy(), rtol=1e-6, atol=0)


def _t_sr(reduce, include_self=True):
    return lambda x, s, i: x.scatter_reduce(-1, i, s, reduce, include_self=include_self)


TORCH.update({
    "nansum": lambda x, m: torch.nansum(x.masked_fill(m, float("nan")), -1) + x.nansum(),
    "nanmean": lambda x, m: x.masked_fill(m, float("nan")).nanmean(0, keepdim=True)
    * torch.nanmean(x),
    "median_all": lambda x: torch.median(x) + x.nanmedian() * 2,
    "median_dim": lambda x: x.median(-1, keepdim=True).values
    * torch.nanmedian(x, 0, keepdim=True)[0],
    "mode": lambda x: x.mode(0).values * 2 + torch.mode(x, keepdim=True)[0].sum(),
    "unique": lambda x, c: x * torch.unique(c).sum() + torch.unique_consecutive(c, dim=0).sum(),
    "scatter_reduce_sum": lambda x, s, i: _t_sr("sum")(x, s, i) + _t_sr("sum", False)(x, s, i),
    "scatter_reduce_mean": lambda x, s, i: _t_sr("mean")(x, s, i)
    * _t_sr("mean", False)(x, s, i),
    "scatter_reduce_prod": lambda x, s, i: _t_sr("prod")(x, s, i)
    + _t_sr("prod", False)(x, s, i),
    "scatter_reduce_prod_zero": lambda x, s, i: _t_sr("prod")(x - x[..., :1], s, i)
    + _t_sr("prod", False)(x, s - s[..., -1:], i),
    "scatter_reduce_amax_amin": lambda x, s, i: _t_sr("amax")(x, s, i)
    + _t_sr("amin", False)(x, s, i) * 2,
})
