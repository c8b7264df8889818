"""Functional layers and losses with PyTorch's names and arguments: the activations of the
activation table (fused kernels), layer_norm (a primitive with fused kernels), and the rest as
compositions of the primitive ops."""
import math
import warnings

from .. import _autocast, _device, _tensor, ops
from .._autograd.mode import no_grad
from .._methods import apply_inplace as _apply_inplace
from .._tensor import Tensor
from ..ops._amp import to_float32 as _to_float32
from ..ops._amp import to_low as _to_low
from ..ops._common import shape_str as _shape_str
from ..ops._derivative import class_onehot as _class_weights
from ..ops._derivative import zero_mask as _zero_mask
from ..ops.normalization import check_normalized_shape as _check_normalized_shape

__all__ = [
    "relu", "tanh", "sigmoid", "gelu", "silu", "leaky_relu", "elu", "selu", "celu", "softplus",
    "relu_", "leaky_relu_", "elu_", "selu_", "celu_", "hardtanh_",
    "mish", "softsign", "hardtanh", "relu6", "hardswish", "hardsigmoid", "logsigmoid",
    "softmax", "log_softmax", "linear", "layer_norm", "normalize", "embedding", "dropout",
    "cross_entropy", "nll_loss", "mse_loss", "l1_loss", "smooth_l1_loss", "huber_loss",
    "binary_cross_entropy", "binary_cross_entropy_with_logits", "kl_div",
]

tanh = ops.tanh
sigmoid = ops.sigmoid


def _softmax_dim(input, dim, name):
    if dim is not None:
        return dim
    warnings.warn(f"Implicit dimension choice for {name} has been deprecated. Change the call "
                  "to include dim=X as an argument.", UserWarning, stacklevel=3)
    return 0 if input.ndim in (0, 1, 3) else 1


def softmax(input, dim=None, _stacklevel=3, dtype=None):
    """e^x / sum(e^x) along ``dim`` (one fused kernel), as torch.nn.functional.softmax."""
    if dtype is not None:
        input = input.to(dtype)
    return ops.softmax(input, _softmax_dim(input, dim, "softmax"))


def log_softmax(input, dim=None, _stacklevel=3, dtype=None):
    """x - logsumexp(x) along ``dim`` (one fused kernel)."""
    if dtype is not None:
        input = input.to(dtype)
    return ops.log_softmax(input, _softmax_dim(input, dim, "log_softmax"))

# SELU's constants (Klambauer et al.), PyTorch's values
_SELU_ALPHA = 1.6732632423543772848170429916717
_SELU_SCALE = 1.0507009873554804934193349852946


# -- activations ----------------------------------------------------------------------------
# ``inplace=True`` writes the result into the input, as PyTorch's: the same object comes back,
# its version counter moves, and autograd records the write as the other in-place ops.
def _maybe_inplace(input, inplace, fn, saves_input=True):
    if inplace:
        return _apply_inplace(input, fn, saves_input)
    return fn(input)


def relu(input, inplace=False):
    """max(x, 0) (fused kernel)."""
    return _maybe_inplace(input, inplace, ops.relu, saves_input=False)


def relu_(input):
    """relu in place."""
    return _apply_inplace(input, ops.relu, saves_input=False)


def silu(input, inplace=False):
    """x * sigmoid(x) (fused kernel)."""
    return _maybe_inplace(input, inplace, ops.silu)


def leaky_relu(input, negative_slope=0.01, inplace=False):
    """x where x > 0 else negative_slope * x (fused kernel)."""
    return _maybe_inplace(input, inplace, lambda x: ops.leaky_relu(x, negative_slope))


def leaky_relu_(input, negative_slope=0.01):
    """leaky_relu in place."""
    return leaky_relu(input, negative_slope, True)


def elu(input, alpha=1.0, inplace=False):
    """x where x > 0 else alpha (e^x - 1) (fused kernel)."""
    return _maybe_inplace(input, inplace, lambda x: ops.elu(x, alpha))


def elu_(input, alpha=1.0):
    """elu in place."""
    return elu(input, alpha, True)


def selu(input, inplace=False):
    """scale * elu(x, alpha) with SELU's constants."""
    return _maybe_inplace(input, inplace, lambda x: ops.elu(x, _SELU_ALPHA) * _SELU_SCALE)


def selu_(input):
    """selu in place."""
    return selu(input, True)


def celu(input, alpha=1.0, inplace=False):
    """max(0, x) + min(0, alpha (e^(x / alpha) - 1)), i.e. alpha * elu(x / alpha)."""
    if alpha == 0:
        raise ValueError("celu: alpha must not be zero")
    return _maybe_inplace(input, inplace, lambda x: ops.elu(x * (1.0 / alpha), 1.0) * alpha)


def celu_(input, alpha=1.0):
    """celu in place."""
    return celu(input, alpha, True)


def softplus(input, beta=1.0, threshold=20.0):
    """log(1 + e^(beta x)) / beta, and x where beta x > threshold."""
    return ops.softplus(input, beta, threshold)


def mish(input, inplace=False):
    """x * tanh(softplus(x))."""
    return _maybe_inplace(input, inplace, lambda x: x * ops.tanh(ops.softplus(x, 1.0, 20.0)))


def softsign(input):
    """x / (1 + |x|)."""
    return input / (ops.abs(input) + 1.0)


def _hardtanh(input, min_val, max_val):
    inner = ops.where(input >= max_val, float(max_val), input)
    return ops.where(input <= min_val, float(min_val), inner)


def hardtanh(input, min_val=-1.0, max_val=1.0, inplace=False):
    """x clamped to [min_val, max_val]; the gradient passes strictly inside (as PyTorch)."""
    if min_val > max_val:
        raise ValueError(f"hardtanh: min_val {min_val} is larger than max_val {max_val}")
    return _maybe_inplace(input, inplace, lambda x: _hardtanh(x, min_val, max_val))


def hardtanh_(input, min_val=-1.0, max_val=1.0):
    """hardtanh in place."""
    return hardtanh(input, min_val, max_val, True)


def relu6(input, inplace=False):
    """min(max(x, 0), 6)."""
    return hardtanh(input, 0.0, 6.0, inplace)


def hardswish(input, inplace=False):
    """x * relu6(x + 3) / 6."""
    return _maybe_inplace(input, inplace,
                          lambda x: x * _hardtanh(x + 3.0, 0.0, 6.0) * (1.0 / 6.0))


def hardsigmoid(input, inplace=False):
    """relu6(x + 3) / 6."""
    return _maybe_inplace(input, inplace, lambda x: _hardtanh(x + 3.0, 0.0, 6.0) * (1.0 / 6.0))


def logsigmoid(input):
    """log(sigmoid(x)) = -softplus(-x), computed stably."""
    return -ops.softplus(-input, 1.0, math.inf)


def gelu(x, approximate="none"):
    """GELU as PyTorch's: exact, x/2 (1 + erf(x / sqrt 2)), or with ``approximate="tanh"``
    x/2 (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))."""
    if approximate == "none":
        return ops.gelu(x)
    if approximate == "tanh":
        return ops.gelu_tanh(x)
    raise ValueError(f"gelu: approximate must be 'none' or 'tanh', got '{approximate}'")


def linear(x, weight, bias=None, activation="none"):
    """activation(x @ weight.T + bias), with PyTorch's layout: weight has shape (out, in).
    ``activation``: none or a name of the activation table (relu, tanh, sigmoid, gelu
    (exact), gelu_tanh); bias and activation run as one fused kernel. Under autocast, in
    its low dtype with float32 accumulation."""
    if _autocast.active:
        x, weight, bias = _to_low(x, weight, bias)
    if (bias is not None and activation in ops.LINEAR_ACTS and weight.ndim == 2
            and x.ndim >= 1 and x.shape[-1] == weight.shape[1]
            and bias.shape == (weight.shape[0],) and x.dtype == weight.dtype == bias.dtype):
        return ops.linear_act(x, weight, bias, activation)
    if weight.ndim != 2:
        raise ValueError(f"linear: weight must be 2-D (out, in), got {_shape_str(weight.shape)}")
    if x.shape[-1] != weight.shape[1]:
        raise ValueError(f"linear: input of shape {_shape_str(x.shape)} does not fit weight of "
                         f"shape {_shape_str(weight.shape)} (in_features {weight.shape[1]})")
    y = ops.matmul(x, ops.swap_last(weight))
    if bias is not None:
        if bias.shape != (weight.shape[0],):
            raise ValueError(f"linear: bias of shape {_shape_str(bias.shape)} does not fit "
                             f"weight of shape {_shape_str(weight.shape)}")
        return ops.bias_act(y, bias, activation)
    if activation != "none":
        if activation not in ops.ACTIVATIONS:
            raise ValueError(f"unknown activation '{activation}': expected none, "
                             + ", ".join(ops.ACTIVATIONS))
        return ops.activation(activation, y)
    return y


def _linear_act(x, weight, bias, activation, params):
    """activation(x @ weight.T + bias) for an activation with a parameter (MLP's fused path)."""
    if _autocast.active:
        x, weight, bias = _to_low(x, weight, bias)
    if not params:
        return linear(x, weight, bias, activation)
    return ops.bias_act(linear(x, weight), bias, activation, *params)


def layer_norm(input, normalized_shape, weight=None, bias=None, eps=1e-5):
    """Normalise over the trailing ``normalized_shape`` axes, then scale and shift (one fused
    kernel forward, one backward); in float32 under autocast."""
    if _autocast.active:
        input = _to_float32(input)
    ndim = _check_normalized_shape(input, normalized_shape, weight, bias)
    p = ops.layer_norm_params(ndim, eps)
    if weight is not None and bias is not None:
        return ops.layer_norm(input, p, weight, bias)
    out = ops.layer_norm(input, p)
    if weight is not None:
        out = out * weight
    if bias is not None:
        out = out + bias
    return out


def normalize(input, p=2.0, dim=1, eps=1e-12):
    """x / max(||x||_p, eps) along ``dim``, as PyTorch's: a zero vector stays zero and its
    gradient is 1/eps (the norm's own gradient is 0 where the norm is)."""
    return input / ops.clip(ops.norm(input, p, dim, True), min=eps)


def embedding(input, weight, padding_idx=None, max_norm=None, norm_type=2.0,
              scale_grad_by_freq=False, sparse=False):
    """Rows of ``weight`` picked by the integer tensor ``input``; the row ``padding_idx``
    gets no gradient; ``max_norm`` renormalises the picked rows of weight in place."""
    if scale_grad_by_freq or sparse:
        raise NotImplementedError("embedding: scale_grad_by_freq and sparse are not supported")
    idx = _as_index(input, weight, "embedding")
    if weight.ndim != 2:
        raise ValueError(f"embedding: weight must be 2-D, got {_shape_str(weight.shape)}")
    n = weight.shape[0]
    if padding_idx is not None:
        if not -n <= padding_idx < n:
            raise ValueError(f"embedding: padding_idx {padding_idx} is out of range for "
                             f"{n} embeddings")
        padding_idx %= n
    if idx.device.is_host and idx.numel():
        lo, hi = int(idx._data.min()), int(idx._data.max())
        if lo < 0 or hi >= n:
            raise IndexError(f"embedding: index {lo if lo < 0 else hi} is out of range for "
                             f"{n} embeddings")
    if max_norm is not None:
        _renorm_rows(weight, idx, max_norm, norm_type)
    out = weight[idx]
    if padding_idx is not None:
        # an op on the indices, not a host mask: gg.compile replays it with new indices
        pad = ops.reshape(_zero_mask(idx - padding_idx), tuple(idx.shape) + (1,))
        out = ops.where(pad, out.detach(), out)
    return out


def _renorm_rows(weight, idx, max_norm, norm_type):
    if _device.recording_thread is not None:
        _device.refuse_while_recording(
            "embedding's max_norm (rows renormalized in place on the host)",
            "a replay would not renormalize; renormalize outside the compiled step")
    xp = weight.device.xp
    with no_grad():
        rows = xp.unique(idx._data.reshape(-1))
        picked = weight._data[rows]
        norms = xp.linalg.norm(picked, ord=norm_type, axis=1) if norm_type != 2 else \
            xp.sqrt((picked * picked).sum(axis=1))
        scale = xp.where(norms > max_norm, max_norm / (norms + 1e-7), 1.0)
        weight._data[rows] = picked * scale[:, None].astype(picked.dtype)
        _tensor.bump_version(weight._ver)


def _as_index(target, like, what):
    if not isinstance(target, Tensor):
        target = _tensor.wrap(like.device.asarray(target), like.device)
    if target.dtype.kind not in "iu":
        raise TypeError(f"{what} expects integer indices, got dtype {target.dtype}")
    if target.device is not like.device:
        raise ValueError(f"{what}: input on {like.device}, indices on {target.device}")
    return target


# -- losses ---------------------------------------------------------------------------------
def _reduce(loss, reduction, what):
    if reduction == "mean":
        return ops.mean(loss)
    if reduction == "sum":
        return ops.sum(loss)
    if reduction == "none":
        return loss
    raise ValueError(f"{what}: unknown reduction '{reduction}': expected 'mean', 'sum' or "
                     "'none'")


def _same_shape(input, target, what):
    if not isinstance(target, Tensor):
        target = _tensor.wrap(input.device.asarray(target, dtype=input.dtype), input.device)
    if target.shape != input.shape:
        raise ValueError(f"{what}: input of shape {_shape_str(input.shape)} and target of "
                         f"shape {_shape_str(target.shape)} differ")
    return target


def _class_onehot(input, target, weight, ignore_index, what):
    """(onehot scaled by the class weights, per-element weights) as constant tensors for
    class indices ``target``: input (N, C, d1, ...) or (C,); ignored targets weigh 0."""
    class_axis = 0 if input.ndim == 1 else 1
    c = input.shape[class_axis]
    expected = () if input.ndim == 1 else input.shape[:1] + input.shape[2:]
    if target.shape != expected:
        raise ValueError(f"{what}: target of shape {_shape_str(target.shape)} does not fit "
                         f"input of shape {_shape_str(input.shape)} (expected "
                         f"{_shape_str(expected)})")
    dev = input.device
    xp = dev.xp
    t = target._data
    if dev.is_host and t.size:
        safe = xp.where(t != ignore_index, t, 0)
        lo, hi = int(safe.min()), int(safe.max())
        if lo < 0 or hi >= c:
            raise IndexError(f"{what}: target {lo if lo < 0 else hi} is out of range for {c} "
                             "classes")
    w = None
    if weight is not None:
        w = weight if isinstance(weight, Tensor) else _tensor.wrap(xp.asarray(weight), dev)
        if w.shape != (c,):
            raise ValueError(f"{what}: weight of shape {_shape_str(w.shape)} does not fit "
                             f"{c} classes")
    # an op, not host arithmetic on the labels: gg.compile replays it with new labels
    onehot = _class_weights(target, c, class_axis, ignore_index, input.dtype, w)
    return onehot, ops.sum(onehot, class_axis)


def nll_loss(input, target, weight=None, ignore_index=-100, reduction="mean"):
    """-weight[t] * input[n, t] per element, for log-probabilities ``input`` of shape (N, C),
    (N, C, d1, ...) or (C,); ``mean`` divides by the summed weights of the targets not
    ignored."""
    target = _as_index(target, input, "nll_loss")
    onehot, per_element = _class_onehot(input, target, weight, ignore_index, "nll_loss")
    class_axis = 0 if input.ndim == 1 else 1
    loss = -ops.sum(input * onehot, class_axis)
    if reduction == "mean":
        return ops.sum(loss) / ops.sum(per_element)
    return _reduce(loss, reduction, "nll_loss")


def cross_entropy(input, target, weight=None, ignore_index=-100, reduction="mean",
                  label_smoothing=0.0):
    """Softmax cross-entropy of logits ``input`` ((N, C), (N, C, d1, ...) or (C,)) against
    class indices or class probabilities (a float ``target`` of input's shape), with
    PyTorch's ``weight``, ``ignore_index`` and ``label_smoothing``. (N, C) logits with class
    indices, no weight or smoothing, and an ``ignore_index`` outside [0, C) (the default -100
    is) run as one fused kernel forward and one backward. A class index outside [0, C) that is
    not ``ignore_index`` raises a ValueError on a host device, as in PyTorch; on a GPU the
    fused kernel treats it as ignored (checking would cost a host sync per call)."""
    if not 0.0 <= label_smoothing <= 1.0:
        raise ValueError(f"cross_entropy: label_smoothing must be in [0, 1], got "
                         f"{label_smoothing}")
    shape = input.shape
    if not shape:
        raise ValueError("cross_entropy: input must have at least one dimension")
    class_axis = 0 if len(shape) == 1 else 1
    c = shape[class_axis]
    if isinstance(target, Tensor) and target._data.dtype.kind == "f":
        return _cross_entropy_probs(input, target, weight, reduction, label_smoothing,
                                    class_axis)
    target = _as_index(target, input, "cross_entropy")
    if (len(shape) == 2 and weight is None and label_smoothing == 0.0
            and not 0 <= ignore_index < c):
        return ops.softmax_cross_entropy(input, target, reduction, ignore_index)
    logp = ops.log_softmax(input, class_axis)
    nll = nll_loss(logp, target, weight, ignore_index, reduction)
    if label_smoothing == 0.0:
        return nll
    dev = input.device
    if weight is not None:
        shape = [1] * input.ndim
        shape[class_axis] = c
        # the weight tensor through ops (a constant: detached), so that gg.compile reads it
        # where it lives at every replay rather than a copy made when recording
        w = weight.detach() if isinstance(weight, Tensor) else \
            _tensor.wrap(dev.asarray(weight), dev)
        if w.dtype != input.dtype:
            w = ops.cast(w, input.dtype)
        smooth = -ops.sum(logp * ops.reshape(w, tuple(shape)), class_axis)
    else:
        smooth = -ops.sum(logp, class_axis)
    _, valid = _class_onehot(input, target, None, ignore_index, "cross_entropy")
    smooth = smooth * valid
    if reduction == "mean":
        if weight is not None:
            _, per_element = _class_onehot(input, target, weight, ignore_index,
                                           "cross_entropy")
            denominator = ops.sum(per_element)
        else:
            denominator = ops.sum(valid)
        smooth = ops.sum(smooth) / denominator
    else:
        smooth = _reduce(smooth, reduction, "cross_entropy")
    return nll * (1.0 - label_smoothing) + smooth * (label_smoothing / c)


def _cross_entropy_probs(input, target, weight, reduction, label_smoothing, class_axis):
    if target.shape != input.shape:
        raise TypeError(f"cross_entropy expects integer class indices, or class probabilities "
                        f"of the input's shape {_shape_str(input.shape)}; got a {target.dtype} "
                        f"target of shape {_shape_str(target.shape)}")
    c = input.shape[class_axis]
    logp = ops.log_softmax(input, class_axis)
    if label_smoothing > 0:
        target = target * (1.0 - label_smoothing) + label_smoothing / c
    terms = logp * target
    if weight is not None:
        shape = [1] * input.ndim
        shape[class_axis] = c
        w = weight if isinstance(weight, Tensor) else _tensor.wrap(
            input.device.asarray(weight), input.device)
        terms = terms * ops.reshape(w.to(input.dtype), tuple(shape))
    if reduction == "mean":
        return -ops.sum(terms) * (c / input.numel()) if input.numel() else \
            ops.sum(terms) * float("nan")
    if reduction == "sum":
        return -ops.sum(terms)
    return _reduce(-ops.sum(terms, class_axis), reduction, "cross_entropy")


def mse_loss(input, target, reduction="mean"):
    """Mean (or sum) of squared differences; shapes must match."""
    diff = input - _same_shape(input, target, "mse_loss")
    return _reduce(diff * diff, reduction, "mse_loss")


def l1_loss(input, target, reduction="mean"):
    """Mean (or sum) of absolute differences; shapes must match."""
    return _reduce(ops.abs(input - _same_shape(input, target, "l1_loss")), reduction,
                   "l1_loss")


def smooth_l1_loss(input, target, reduction="mean", beta=1.0):
    """0.5 d^2 / beta where |d| < beta, else |d| - 0.5 beta (d = input - target)."""
    if beta < 0:
        raise ValueError(f"smooth_l1_loss: beta must be non-negative, got {beta}")
    d = ops.abs(input - _same_shape(input, target, "smooth_l1_loss"))
    if beta == 0:
        return _reduce(d, reduction, "smooth_l1_loss")
    loss = ops.where(d < beta, d * d * (0.5 / beta), d - 0.5 * beta)
    return _reduce(loss, reduction, "smooth_l1_loss")


def huber_loss(input, target, reduction="mean", delta=1.0):
    """0.5 d^2 where |d| < delta, else delta (|d| - 0.5 delta) (d = input - target)."""
    if delta <= 0:
        raise ValueError(f"huber_loss: delta must be positive, got {delta}")
    d = ops.abs(input - _same_shape(input, target, "huber_loss"))
    loss = ops.where(d < delta, d * d * 0.5, (d - 0.5 * delta) * delta)
    return _reduce(loss, reduction, "huber_loss")


def binary_cross_entropy(input, target, weight=None, reduction="mean"):
    """-w (t log x + (1 - t) log(1 - x)) for probabilities x, each log clamped at -100 as
    PyTorch's."""
    target = _same_shape(input, target, "binary_cross_entropy")
    if input.device.is_host and input.numel():
        lo, hi = float(input._data.min()), float(input._data.max())
        if lo < 0 or hi > 1:
            raise ValueError("binary_cross_entropy: all elements of input should be between 0 "
                             f"and 1, got {lo if lo < 0 else hi}")
    log_x = ops.clip(ops.log(input), min=-100.0)
    log_1mx = ops.clip(ops.log(1.0 - input), min=-100.0)
    loss = -(target * log_x + (1.0 - target) * log_1mx)
    if weight is not None:
        loss = loss * weight
    return _reduce(loss, reduction, "binary_cross_entropy")


def binary_cross_entropy_with_logits(input, target, weight=None, reduction="mean",
                                     pos_weight=None):
    """BCE of sigmoid(x) computed from the logits x stably: (1 - t) x + l softplus(-x) with
    l = 1 + (pos_weight - 1) t."""
    target = _same_shape(input, target, "binary_cross_entropy_with_logits")
    log_term = ops.softplus(-input, 1.0, math.inf)
    if pos_weight is not None:
        log_term = log_term * ((pos_weight - 1.0) * target + 1.0)
    loss = (1.0 - target) * input + log_term
    if weight is not None:
        loss = loss * weight
    return _reduce(loss, reduction, "binary_cross_entropy_with_logits")


def kl_div(input, target, reduction="mean", log_target=False):
    """Pointwise KL divergence for log-probabilities ``input``: t (log t - x), or
    e^t (t - x) with ``log_target``; ``batchmean`` divides the sum by the batch size."""
    target = _same_shape(input, target, "kl_div")
    if log_target:
        loss = ops.exp(target) * (target - input)
    else:
        zero = target == 0
        # t log t with 0 log 0 = 0 (xlogy); a negative t gives nan, as PyTorch's
        safe = ops.where(zero, 1.0, target)
        loss = ops.where(zero, 0.0, target * ops.log(safe)) - target * input
    if reduction == "batchmean":
        if input.ndim == 0:
            return ops.sum(loss)
        return ops.sum(loss) * (1.0 / input.shape[0])
    return _reduce(loss, reduction, "kl_div")


def dropout(x, p=0.5, training=True, inplace=False):
    """Zero each element with probability p and scale the rest by 1/(1-p) (in x itself with
    ``inplace``). The mask is drawn by a counter-based generator (Philox): the backward pass
    redraws it, and a compiled step draws a new one at every replay."""
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"dropout probability must be in [0, 1], got {p}")
    if not training or p == 0.0:
        return x
    if p == 1.0:
        return _maybe_inplace(x, inplace, lambda t: t * 0.0)
    return _maybe_inplace(x, inplace, lambda t: ops.dropout(t, p), saves_input=False)
