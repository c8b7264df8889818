"""Modules: parameters in registration order, state dicts, train/eval."""
from __future__ import annotations

import functools
import math
import operator
from collections import OrderedDict

from .. import _device, ops
from .._tensor import Tensor
from ..ops._common import shape_str
from ..utils.checkpoint import checkpoint as _checkpoint
from . import functional as F


class Parameter(Tensor):
    """A leaf tensor that a Module registers as a parameter (requires grad)."""

    __slots__ = ()

    def __init__(self, data, requires_grad=True):
        if isinstance(data, Tensor):
            super().__init__(data._data, device=data.device)
        else:
            super().__init__(data)
        if requires_grad:
            self.requires_grad_(True)

    def __repr__(self):
        return "Parameter containing:\n" + super().__repr__()


class Module:
    """Base class of layers: assign Parameters and Modules as attributes to register them.

    >>> import gpugrad as gg
    >>> layer = gg.nn.Linear(3, 2)
    >>> [name for name, _ in layer.named_parameters()]
    ['weight', 'bias']
    """

    def __init__(self):
        object.__setattr__(self, "_parameters", OrderedDict())
        object.__setattr__(self, "_modules", OrderedDict())
        object.__setattr__(self, "training", True)

    def __setattr__(self, name, value):
        params = self.__dict__.get("_parameters")
        if params is None:
            raise RuntimeError(f"{type(self).__name__}.__init__ must call super().__init__() "
                               "before assigning attributes")
        if isinstance(value, Parameter):
            self._modules.pop(name, None)
            params[name] = value
        elif isinstance(value, Module):
            params.pop(name, None)
            self._modules[name] = value
        elif name in params and value is None:
            params[name] = None
        object.__setattr__(self, name, value)

    def __call__(self, *args, **kwargs):
        return self.forward(*args, **kwargs)

    def forward(self, *args, **kwargs):
        raise NotImplementedError(f"{type(self).__name__} does not define forward()")

    # -- parameters and children -------------------------------------------------------
    def named_parameters(self, prefix=""):
        seen = set()
        for mod_prefix, module in self.named_modules(prefix):
            for name, p in module._parameters.items():
                if p is not None and id(p) not in seen:
                    seen.add(id(p))
                    yield (f"{mod_prefix}.{name}" if mod_prefix else name), p

    def parameters(self):
        for _, p in self.named_parameters():
            yield p

    def named_modules(self, prefix=""):
        stack = [(prefix, self)]
        while stack:
            name, module = stack.pop(0)
            yield name, module
            children = [(f"{name}.{child_name}" if name else child_name, child)
                        for child_name, child in module._modules.items() if child is not None]
            stack[0:0] = children

    def modules(self):
        for _, m in self.named_modules():
            yield m

    def children(self):
        return iter(m for m in self._modules.values() if m is not None)

    def zero_grad(self):
        """Set every parameter's gradient to None (as PyTorch's default)."""
        for p in self.parameters():
            p._grad = None

    def train(self, mode=True):
        for m in self.modules():
            object.__setattr__(m, "training", bool(mode))
        return self

    def eval(self):
        return self.train(False)

    def to(self, device):
        dev = _device.device(device)
        for m in self.modules():
            for name, p in m._parameters.items():
                if p is not None and p.device is not dev:
                    moved = Parameter(p.to(dev).detach(), requires_grad=p.requires_grad)
                    m._parameters[name] = moved
                    object.__setattr__(m, name, moved)
        return self

    # -- state ------------------------------------------------------------------------
    def state_dict(self):
        """Parameter name -> detached tensor (sharing storage), in registration order."""
        return OrderedDict((name, p.detach()) for name, p in self.named_parameters())

    def load_state_dict(self, state_dict, strict=True):
        """Copy values into the parameters; names and shapes must match."""
        own = OrderedDict(self.named_parameters())
        missing = [k for k in own if k not in state_dict]
        unexpected = [k for k in state_dict if k not in own]
        if strict and (missing or unexpected):
            parts = []
            if missing:
                parts.append("missing keys: " + ", ".join(missing))
            if unexpected:
                parts.append("unexpected keys: " + ", ".join(unexpected))
            raise KeyError(f"load_state_dict for {type(self).__name__}: " + "; ".join(parts))
        for name, value in state_dict.items():
            if name not in own:
                continue
            p = own[name]
            arr = value._data if isinstance(value, Tensor) else value
            if tuple(arr.shape) != tuple(p.shape):
                raise ValueError(f"load_state_dict: '{name}' has shape {shape_str(arr.shape)} "
                                 f"in the state dict but {shape_str(p.shape)} in the model")
            if isinstance(value, Tensor) and value.device is not p.device:
                arr = p.device.asarray(value.numpy())
            elif not isinstance(value, Tensor) and _device.array_device(arr) is not p.device:
                arr = p.device.asarray(arr)
            p._data[...] = arr.astype(p.dtype, copy=False)
            from .._tensor import bump_version
            bump_version(p._ver)
        return self

    def extra_repr(self):
        return ""

    def __repr__(self):
        lines = [f"{type(self).__name__}({self.extra_repr()}"]
        for name, child in self._modules.items():
            child_repr = repr(child).replace("\n", "\n  ")
            lines.append(f"  ({name}): {child_repr}")
        return "\n".join(lines) + (")" if len(lines) == 1 else "\n)")


def _uniform(shape, bound, device):
    from ..creation import rand
    return rand(*shape, device=device) * (2 * bound) - bound


def _features(name, value):
    """A layer width as a Python int, or an error naming the argument."""
    try:
        width = operator.index(value)
    except TypeError:
        width = -1
    if width < 0 or isinstance(value, bool):
        raise ValueError(f"Linear: {name} must be a non-negative integer, got {value!r}")
    return width


class Linear(Module):
    """y = x @ weight.T + bias, weight (out_features, in_features), PyTorch's init:
    U(-1/sqrt(in), 1/sqrt(in)) for both weight and bias."""

    def __init__(self, in_features, out_features, bias=True, device=None):
        super().__init__()
        in_features = _features("in_features", in_features)
        out_features = _features("out_features", out_features)
        self.in_features = in_features
        self.out_features = out_features
        bound = 1.0 / math.sqrt(in_features) if in_features else 0.0
        self.weight = Parameter(_uniform((out_features, in_features), bound, device))
        self.bias = Parameter(_uniform((out_features,), bound, device)) if bias else None

    def forward(self, x):
        return F.linear(x, self.weight, self.bias)

    def extra_repr(self):
        return (f"in_features={self.in_features}, out_features={self.out_features}, "
                f"bias={self.bias is not None}")


class _Activation(Module):
    """A module for a row of the activation table (``activation`` names it)."""
    activation = None

    def forward(self, x):
        return ops.activation(self.activation, x)


class ReLU(_Activation):
    activation = "relu"


class Tanh(_Activation):
    activation = "tanh"


class Sigmoid(_Activation):
    activation = "sigmoid"


class GELU(Module):
    """GELU, exact by default; ``approximate="tanh"`` for the tanh form (as PyTorch)."""

    def __init__(self, approximate="none"):
        super().__init__()
        if approximate not in ("none", "tanh"):
            raise ValueError(f"GELU: approximate must be 'none' or 'tanh', got '{approximate}'")
        self.approximate = approximate

    @property
    def activation(self):
        return "gelu" if self.approximate == "none" else "gelu_tanh"

    def forward(self, x):
        return ops.activation(self.activation, x)

    def extra_repr(self):
        return f"approximate='{self.approximate}'"


class Dropout(Module):
    """Zero elements with probability p in training mode (RNG on the device)."""

    def __init__(self, p=0.5):
        super().__init__()
        if not 0.0 <= p <= 1.0:
            raise ValueError(f"dropout probability must be in [0, 1], got {p}")
        self.p = p

    def forward(self, x):
        return F.dropout(x, self.p, self.training)

    def extra_repr(self):
        return f"p={self.p}"


class Sequential(Module):
    """Modules applied in order."""

    def __init__(self, *modules):
        super().__init__()
        for i, m in enumerate(modules):
            if not isinstance(m, Module):
                raise TypeError(f"Sequential: element {i} is a {type(m).__name__}, not a Module")
            setattr(self, str(i), m)

    def forward(self, x):
        for m in self._modules.values():
            x = m(x)
        return x

    def __getitem__(self, i):
        return list(self._modules.values())[i]

    def __len__(self):
        return len(self._modules)

    def __iter__(self):
        return iter(self._modules.values())


def activation_module(name):
    """A new module for the activation ``name`` of the table."""
    class_name, kwargs = ops.ACTIVATIONS[name].module
    return globals()[class_name](**kwargs)


class MLP(Sequential):
    """Linear layers of the given sizes with an activation (and dropout) between them.

    ``MLP([784, 256, 10])`` is Linear(784, 256), ReLU, Linear(256, 10). With
    ``checkpoint_every=k`` the layers run in segments of k linear layers whose activations
    are recomputed in backward (``gg.checkpoint``): less memory where activations dominate
    it (deep and narrow layers, large batches), for about one more forward.
    """

    def __init__(self, sizes, activation="relu", dropout=0.0, device=None,
                 checkpoint_every=None):
        sizes = list(sizes)
        if checkpoint_every is not None and (int(checkpoint_every) != checkpoint_every
                                             or checkpoint_every < 1):
            raise ValueError(f"MLP: checkpoint_every must be a positive integer, got "
                             f"{checkpoint_every}")
        if len(sizes) < 2:
            raise ValueError(f"MLP needs at least two sizes, got {sizes}")
        if activation not in ops.ACTIVATIONS:
            raise ValueError(f"unknown activation '{activation}': expected one of "
                             f"{', '.join(ops.ACTIVATIONS)}")
        layers = []
        for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
            layers.append(Linear(a, b, device=device))
            if i < len(sizes) - 2:
                layers.append(activation_module(activation))
                if dropout:
                    layers.append(Dropout(dropout))
        super().__init__(*layers)
        self.sizes = sizes
        self.checkpoint_every = checkpoint_every

    def _steps(self):
        """(is a linear layer, callable) per step: a Linear followed by its activation runs
        as one fused bias + activation kernel."""
        layers = list(self._modules.values())
        steps = []
        i = 0
        while i < len(layers):
            layer = layers[i]
            nxt = layers[i + 1] if i + 1 < len(layers) else None
            act = getattr(nxt, "activation", None)
            if isinstance(layer, Linear) and layer.bias is not None and act is not None:
                steps.append((True, functools.partial(_fused_linear, layer, act)))
                i += 2
            else:
                steps.append((isinstance(layer, Linear), layer))
                i += 1
        return steps

    def forward(self, x):
        steps = self._steps()
        if not self.checkpoint_every:
            for _, step in steps:
                x = step(x)
            return x
        # segments of checkpoint_every linear layers, each recomputed in backward
        segment, linears = [], 0
        for is_linear, step in steps:
            if is_linear and linears == self.checkpoint_every:
                x = _checkpoint(_run_segment(segment), x)
                segment, linears = [], 0
            segment.append(step)
            linears += is_linear
        return _checkpoint(_run_segment(segment), x) if segment else x


def _fused_linear(layer, act, x):
    return F.linear(x, layer.weight, layer.bias, act)


def _run_segment(steps):
    def run(x):
        for step in steps:
            x = step(x)
        return x
    return run


class CrossEntropyLoss(Module):
    def __init__(self, reduction="mean"):
        super().__init__()
        self.reduction = reduction

    def forward(self, logits, labels):
        return F.cross_entropy(logits, labels, self.reduction)


class MSELoss(Module):
    def __init__(self, reduction="mean"):
        super().__init__()
        self.reduction = reduction

    def forward(self, input, target):
        return F.mse_loss(input, target, self.reduction)

