"""Modules: parameters in registration order, state dicts, train/eval."""
from __future__ import annotations

import functools
import math
import operator
import warnings
from collections import OrderedDict, namedtuple

import numpy as np

from .. import _device, ops
from .._autograd.mode import no_grad
from .._autograd.mode import state as _mode
from .._tensor import LeafNode, Tensor, bump_version
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


IncompatibleKeys = namedtuple("IncompatibleKeys", ["missing_keys", "unexpected_keys"])


class Module:
    """Base class of layers: assign Parameters and Modules as attributes to register them;
    ``register_buffer`` for state that is saved and moved but not trained.

    >>> import gpugrad as gg
    >>> layer = gg.nn.Linear(3, 2)
    >>> [name for name, _ in layer.named_parameters()]
    ['weight', 'bias']
    """

    def __init__(self):
        object.__setattr__(self, "_parameters", OrderedDict())
        object.__setattr__(self, "_buffers", OrderedDict())
        object.__setattr__(self, "_non_persistent", set())
        object.__setattr__(self, "_modules", OrderedDict())
        object.__setattr__(self, "training", True)

    def __setattr__(self, name, value):
        params = self.__dict__.get("_parameters")
        if params is None:
            raise RuntimeError(f"{type(self).__name__}.__init__ must call super().__init__() "
                               "before assigning attributes")
        if isinstance(value, Parameter):
            self._modules.pop(name, None)
            self._buffers.pop(name, None)
            params[name] = value
        elif isinstance(value, Module):
            params.pop(name, None)
            self._buffers.pop(name, None)
            self._modules[name] = value
        elif name in params and value is None:
            params[name] = None
        elif name in self._buffers:
            if value is not None and not isinstance(value, Tensor):
                raise TypeError(f"cannot assign a {type(value).__name__} to buffer '{name}' "
                                "(a Tensor or None is required)")
            self._buffers[name] = value
        object.__setattr__(self, name, value)

    def __call__(self, *args, **kwargs):
        return self.forward(*args, **kwargs)

    def forward(self, *args, **kwargs):
        raise NotImplementedError(f"{type(self).__name__} does not define forward()")

    # -- registration ------------------------------------------------------------------
    def register_buffer(self, name, tensor, persistent=True):
        """Add state that is not a parameter (running statistics): in ``state_dict`` unless
        ``persistent=False``, moved by ``.to()``."""
        if "_buffers" not in self.__dict__:
            raise RuntimeError("cannot assign a buffer before Module.__init__() is called")
        if not isinstance(name, str) or not name or "." in name:
            raise KeyError(f"buffer name must be a non-empty string without '.', got {name!r}")
        if hasattr(self, name) and name not in self._buffers:
            raise KeyError(f"attribute '{name}' already exists")
        if tensor is not None and not isinstance(tensor, Tensor):
            raise TypeError(f"cannot assign a {type(tensor).__name__} to buffer '{name}' "
                            "(a Tensor or None is required)")
        self._buffers[name] = tensor
        if persistent:
            self._non_persistent.discard(name)
        else:
            self._non_persistent.add(name)
        object.__setattr__(self, name, tensor)

    def register_parameter(self, name, param):
        if param is not None and not isinstance(param, Parameter):
            raise TypeError(f"cannot assign a {type(param).__name__} as parameter '{name}' "
                            "(a Parameter or None is required)")
        self._parameters[name] = param
        object.__setattr__(self, name, param)

    def add_module(self, name, module):
        if module is not None and not isinstance(module, Module):
            raise TypeError(f"{type(module).__name__} is not a Module")
        self._modules[name] = module
        object.__setattr__(self, name, module)

    register_module = add_module

    # -- parameters, buffers and children -------------------------------------------------
    def named_parameters(self, prefix="", recurse=True):
        seen = set()
        modules = self.named_modules(prefix=prefix) if recurse else [(prefix, self)]
        for mod_prefix, module in modules:
            for name, p in module._parameters.items():
                if p is not None and id(p) not in seen:
                    seen.add(id(p))
                    yield (f"{mod_prefix}.{name}" if mod_prefix else name), p

    def parameters(self, recurse=True):
        for _, p in self.named_parameters(recurse=recurse):
            yield p

    def named_buffers(self, prefix="", recurse=True):
        seen = set()
        modules = self.named_modules(prefix=prefix) if recurse else [(prefix, self)]
        for mod_prefix, module in modules:
            for name, b in module._buffers.items():
                if b is not None and id(b) not in seen:
                    seen.add(id(b))
                    yield (f"{mod_prefix}.{name}" if mod_prefix else name), b

    def buffers(self, recurse=True):
        for _, b in self.named_buffers(recurse=recurse):
            yield b

    def named_modules(self, memo=None, prefix="", remove_duplicate=True):
        """(name, module) for this module and every descendant, depth first, each once."""
        memo = set() if memo is None else memo
        stack = [(prefix, self)]
        while stack:
            name, module = stack.pop(0)
            if remove_duplicate:
                if id(module) in memo:
                    continue
                memo.add(id(module))
            yield name, module
            children = [(f"{name}.{child_name}" if name else child_name, child)
                        for child_name, child in module._modules.items() if child is not None]
            stack[0:0] = children

    def modules(self):
        for _, m in self.named_modules():
            yield m

    def named_children(self):
        seen = set()
        for name, m in self._modules.items():
            if m is not None and id(m) not in seen:
                seen.add(id(m))
                yield name, m

    def children(self):
        for _, m in self.named_children():
            yield m

    def apply(self, fn):
        """Call ``fn`` on every submodule (children first) and on this module; returns it."""
        for child in self.children():
            child.apply(fn)
        fn(self)
        return self

    def requires_grad_(self, requires_grad=True):
        for p in self.parameters():
            p.requires_grad_(requires_grad)
        return self

    def zero_grad(self, set_to_none=True):
        """Reset every parameter's gradient: to None (PyTorch's default), or to zeros."""
        for p in self.parameters():
            if set_to_none:
                p._grad = None
            elif p._grad is not None:
                p._grad._data[...] = 0
                bump_version(p._grad._ver)
        if _mode.compiling is not None:     # gg.compile: these gradients start afresh
            _mode.compiling.reset_grads(self.parameters())

    def train(self, mode=True):
        for m in self.modules():
            object.__setattr__(m, "training", bool(mode))
        return self

    def eval(self):
        return self.train(False)

    # -- moving -------------------------------------------------------------------------
    def to(self, *args, **kwargs):
        """Move parameters (the same Parameter objects, as PyTorch) and buffers to a device
        and/or floating dtype: ``to(device)``, ``to(dtype)``, ``to(device, dtype)``."""
        device = kwargs.pop("device", None)
        dtype = kwargs.pop("dtype", None)
        if kwargs:
            raise TypeError(f"to() got unexpected arguments {sorted(kwargs)}")
        for a in args:
            if isinstance(a, (str, _device.Device)):
                device = a
            elif a is not None:
                dtype = a
        dev = None if device is None else _device.device(device)
        dtype = None if dtype is None else np.dtype(dtype)
        for m in self.modules():
            for p in m._parameters.values():
                if p is not None:
                    _move_in_place(p, dev, dtype)
            for name, b in m._buffers.items():
                if b is not None:
                    # integer buffers (num_batches_tracked) keep their dtype
                    moved = b.to(dev) if dev is not None else b
                    if dtype is not None and b.dtype.kind == "f":
                        moved = moved.to(dtype)
                    if moved is not b:
                        m._buffers[name] = moved.detach()
                        object.__setattr__(m, name, m._buffers[name])
        return self

    def cpu(self):
        return self.to("cpu")

    def cuda(self, device=None):
        return self.to("cuda" if device is None else f"cuda:{device}")

    def float(self):
        return self.to(np.float32)

    def double(self):
        return self.to(np.float64)

    def half(self):
        return self.to(np.float16)

    # -- state ------------------------------------------------------------------------
    def state_dict(self):
        """Name -> detached tensor (sharing storage): each module's parameters, then its
        persistent buffers, depth first, as PyTorch."""
        out = OrderedDict()
        for prefix, m in self.named_modules():
            dot = f"{prefix}." if prefix else ""
            for name, p in m._parameters.items():
                if p is not None:
                    out[dot + name] = p.detach()
            for name, b in m._buffers.items():
                if b is not None and name not in m._non_persistent:
                    out[dot + name] = b.detach()
        return out

    def load_state_dict(self, state_dict, strict=True):
        """Copy values into the parameters and buffers. Returns PyTorch's
        ``(missing_keys, unexpected_keys)``; with ``strict`` either non-empty raises, and a
        shape mismatch always raises (before anything is copied)."""
        own = self.state_dict()
        targets = OrderedDict()
        for prefix, m in self.named_modules():
            dot = f"{prefix}." if prefix else ""
            for name, t in list(m._parameters.items()) + list(m._buffers.items()):
                if dot + name in own:
                    targets[dot + name] = t
        missing = [k for k in own if k not in state_dict]
        unexpected = [k for k in state_dict if k not in own]
        errors = []
        if strict:
            if unexpected:
                errors.append("Unexpected key(s) in state_dict: "
                              + ", ".join(f'"{k}"' for k in unexpected) + ".")
            if missing:
                errors.append("Missing key(s) in state_dict: "
                              + ", ".join(f'"{k}"' for k in missing) + ".")
        for name, value in state_dict.items():
            if name in targets:
                shape = tuple(getattr(value, "shape", np.shape(value)))
                if shape != tuple(targets[name].shape):
                    errors.append(f"size mismatch for {name}: copying a param with shape "
                                  f"{shape_str(shape)} from checkpoint, the shape in current "
                                  f"model is {shape_str(targets[name].shape)}.")
        if errors:
            raise RuntimeError(f"Error(s) in loading state_dict for {type(self).__name__}:\n\t"
                               + "\n\t".join(errors))
        for name, value in state_dict.items():
            target = targets.get(name)
            if target is None:
                continue
            arr = value.numpy() if isinstance(value, Tensor) and \
                value.device is not target.device else getattr(value, "_data", value)
            if _device.array_device(arr) is not target.device:
                arr = target.device.asarray(arr)
            target._data[...] = arr.astype(target.dtype, copy=False)
            bump_version(target._ver)
        return IncompatibleKeys(missing, unexpected)

    def extra_repr(self):
        return ""

    def __repr__(self):
        lines = [f"{type(self).__name__}({self.extra_repr()}"]
        for name, child in self._modules.items():
            child_repr = repr(child).replace("\n", "\n  ")
            lines.append(f"  ({name}): {child_repr}")
        return "\n".join(lines) + (")" if len(lines) == 1 else "\n)")


def _move_in_place(p, dev, dtype):
    """Give the Parameter ``p`` its data on ``dev`` with ``dtype``, keeping the object."""
    data = p._data
    target_dev = dev or p.device
    if dev is not None and dev is not p.device:
        data = dev.asarray(p.device.to_host(data))
    if dtype is not None and data.dtype.kind == "f" and data.dtype != dtype:
        data = data.astype(dtype)
    if data is p._data:
        return
    p._data = target_dev.adopt(data)
    p.device = target_dev
    if p._grad is not None:
        p._grad = p._grad.to(target_dev).to(p._data.dtype).detach()
    if p._node is not None:
        # its gradient sink knew the old device and dtype; the hooks stay (as PyTorch's)
        p._node = LeafNode(p, p._node.retained)
    bump_version(p._ver)


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


def _inplace_repr(inplace, lead=""):
    """PyTorch's repr of an activation's ``inplace``: shown only when set."""
    if not inplace:
        return lead
    return f"{lead}, inplace=True" if lead else "inplace=True"


class _Activation(Module):
    """A module for a row of the activation table (``activation`` names it;
    ``activation_params`` holds the row's parameter, if it has one). With ``inplace`` the
    result is written into the input, as PyTorch's."""
    activation = None
    activation_params = ()
    inplace = False

    def forward(self, x):
        name, params = self.activation, self.activation_params
        if not self.inplace:
            return ops.activation(name, x, *params)
        return F._maybe_inplace(x, True, lambda t: ops.activation(name, t, *params),
                                ops.ACTIVATIONS[name].saves == "input")


class _InplaceActivation(_Activation):
    def __init__(self, inplace=False):
        super().__init__()
        self.inplace = inplace

    def extra_repr(self):
        return _inplace_repr(self.inplace)


class ReLU(_InplaceActivation):
    activation = "relu"


class Tanh(_Activation):
    activation = "tanh"


class Sigmoid(_Activation):
    activation = "sigmoid"


class SiLU(_InplaceActivation):
    activation = "silu"


class LeakyReLU(_InplaceActivation):
    activation = "leaky_relu"

    def __init__(self, negative_slope=0.01, inplace=False):
        super().__init__(inplace)
        self.negative_slope = negative_slope
        self.activation_params = (float(negative_slope),)

    def extra_repr(self):
        return _inplace_repr(self.inplace, f"negative_slope={self.negative_slope}")


class ELU(_InplaceActivation):
    activation = "elu"

    def __init__(self, alpha=1.0, inplace=False):
        super().__init__(inplace)
        self.alpha = alpha
        self.activation_params = (float(alpha),)

    def extra_repr(self):
        return _inplace_repr(self.inplace, f"alpha={self.alpha}")


class _Functional(Module):
    """A module around a function of nn.functional with fixed keyword arguments (and
    ``inplace``, passed on when the function takes it)."""

    def __init__(self, fn, inplace=None, **kwargs):
        super().__init__()
        self._fn = fn
        self._kwargs = kwargs
        for k, v in kwargs.items():
            object.__setattr__(self, k, v)
        if inplace is not None:
            object.__setattr__(self, "inplace", inplace)
            if inplace:
                self._kwargs = dict(kwargs, inplace=True)

    def forward(self, x):
        return self._fn(x, **self._kwargs)

    def extra_repr(self):
        return ", ".join(f"{k}={v}" for k, v in self._kwargs.items())


class SELU(_Functional):
    def __init__(self, inplace=False):
        super().__init__(F.selu, inplace)


class CELU(_Functional):
    def __init__(self, alpha=1.0, inplace=False):
        super().__init__(F.celu, inplace, alpha=alpha)


class Softplus(_Functional):
    def __init__(self, beta=1.0, threshold=20.0):
        super().__init__(F.softplus, beta=beta, threshold=threshold)


class Mish(_Functional):
    def __init__(self, inplace=False):
        super().__init__(F.mish, inplace)


class Softsign(_Functional):
    def __init__(self):
        super().__init__(F.softsign)


class Hardtanh(_Functional):
    def __init__(self, min_val=-1.0, max_val=1.0, inplace=False):
        super().__init__(F.hardtanh, inplace, min_val=min_val, max_val=max_val)


class ReLU6(_Functional):
    def __init__(self, inplace=False):
        super().__init__(F.relu6, inplace)


class Hardswish(_Functional):
    def __init__(self, inplace=False):
        super().__init__(F.hardswish, inplace)


class Hardsigmoid(_Functional):
    def __init__(self, inplace=False):
        super().__init__(F.hardsigmoid, inplace)


class LogSigmoid(_Functional):
    def __init__(self):
        super().__init__(F.logsigmoid)


def _softmax_dim(ndim, dim, name):
    if dim is not None:
        return dim
    warnings.warn(f"Implicit dimension choice for {name} has been deprecated. Change the call "
                  "to include dim=X as an argument.", UserWarning, stacklevel=3)
    return 0 if ndim in (0, 1, 3) else 1


class Softmax(Module):
    def __init__(self, dim=None):
        super().__init__()
        self.dim = dim

    def forward(self, x):
        return ops.softmax(x, _softmax_dim(x.ndim, self.dim, "softmax"))

    def extra_repr(self):
        return f"dim={self.dim}"


class LogSoftmax(Softmax):
    def forward(self, x):
        return ops.log_softmax(x, _softmax_dim(x.ndim, self.dim, "log_softmax"))


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

    def __init__(self, p=0.5, inplace=False):
        super().__init__()
        if not 0.0 <= p <= 1.0:
            raise ValueError(f"dropout probability must be in [0, 1], got {p}")
        self.p = p
        self.inplace = inplace

    def forward(self, x):
        return F.dropout(x, self.p, self.training, self.inplace)

    def extra_repr(self):
        return f"p={self.p}, inplace={self.inplace}"


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
                steps.append((True, functools.partial(
                    _fused_linear, layer, act, getattr(nxt, "activation_params", ()))))
                i += 2
            else:
                steps.append((isinstance(layer, Linear), layer))
                i += 1
        return steps

    def forward(self, x):
        # the fused steps, rebuilt only when the layers change (not per forward: a tiny
        # MLP's whole step costs little more than building them would)
        layers = list(self._modules.values())
        cache = self.__dict__.get("_steps_cache")
        if cache is None or cache[0] != layers:
            cache = (layers, self._steps())
            self.__dict__["_steps_cache"] = cache
        steps = cache[1]
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


def _fused_linear(layer, act, params, x):
    if params:
        return F._linear_act(x, layer.weight, layer.bias, act, params)
    return F.linear(x, layer.weight, layer.bias, act)


def _run_segment(steps):
    def run(x):
        for step in steps:
            x = step(x)
        return x
    return run


# -- containers and shape modules ----------------------------------------------------------
class Identity(Module):
    """Returns its input (any arguments to the constructor are ignored, as PyTorch)."""

    def __init__(self, *args, **kwargs):
        super().__init__()

    def forward(self, x):
        return x


class Flatten(Module):
    """Flatten the axes ``start_dim`` to ``end_dim`` into one."""

    def __init__(self, start_dim=1, end_dim=-1):
        super().__init__()
        self.start_dim = start_dim
        self.end_dim = end_dim

    def forward(self, x):
        ndim = max(x.ndim, 1)
        start, end = self.start_dim % ndim, self.end_dim % ndim
        if start > end:
            raise ValueError(f"Flatten: start_dim {self.start_dim} comes after end_dim "
                             f"{self.end_dim} for a tensor of shape {shape_str(x.shape)}")
        shape = tuple(x.shape)
        merged = 1
        for s in shape[start:end + 1]:
            merged *= s
        return ops.reshape(x, shape[:start] + (merged,) + shape[end + 1:])

    def extra_repr(self):
        return f"start_dim={self.start_dim}, end_dim={self.end_dim}"


class ModuleList(Module):
    """A list of modules, registered (their parameters are the list's)."""

    def __init__(self, modules=None):
        super().__init__()
        if modules is not None:
            self.extend(modules)

    def _index(self, i):
        n = len(self._modules)
        if not -n <= i < n:
            raise IndexError(f"index {i} is out of range for a ModuleList of {n}")
        return str(i % n)

    def __getitem__(self, i):
        if isinstance(i, slice):
            return ModuleList(list(self._modules.values())[i])
        return self._modules[self._index(i)]

    def __setitem__(self, i, module):
        self.add_module(self._index(i), module)

    def __len__(self):
        return len(self._modules)

    def __iter__(self):
        return iter(self._modules.values())

    def append(self, module):
        self.add_module(str(len(self._modules)), module)
        return self

    def extend(self, modules):
        for m in modules:
            self.append(m)
        return self

    def insert(self, index, module):
        items = list(self._modules.values())
        items.insert(index, module)
        self._modules.clear()
        for i, m in enumerate(items):
            self.add_module(str(i), m)

    def forward(self, *args, **kwargs):
        raise NotImplementedError("ModuleList has no forward(): iterate over it")


class ModuleDict(Module):
    """A dict of modules, registered in insertion order."""

    def __init__(self, modules=None):
        super().__init__()
        if modules is not None:
            self.update(modules)

    def __getitem__(self, key):
        return self._modules[key]

    def __setitem__(self, key, module):
        self.add_module(key, module)

    def __delitem__(self, key):
        del self._modules[key]
        object.__delattr__(self, key)

    def __len__(self):
        return len(self._modules)

    def __iter__(self):
        return iter(self._modules)

    def __contains__(self, key):
        return key in self._modules

    def keys(self):
        return self._modules.keys()

    def values(self):
        return self._modules.values()

    def items(self):
        return self._modules.items()

    def update(self, modules):
        items = modules.items() if hasattr(modules, "items") else modules
        for k, m in items:
            self[k] = m

    def pop(self, key):
        m = self._modules[key]
        del self[key]
        return m

    def forward(self, *args, **kwargs):
        raise NotImplementedError("ModuleDict has no forward(): index it")


# -- normalisation and embedding ------------------------------------------------------------
class LayerNorm(Module):
    """Normalise over the trailing ``normalized_shape`` axes, then scale (weight, ones) and
    shift (bias, zeros): one fused kernel forward, one backward."""

    def __init__(self, normalized_shape, eps=1e-5, elementwise_affine=True, bias=True,
                 device=None, dtype=None):
        super().__init__()
        shape = (normalized_shape,) if isinstance(normalized_shape, int) else \
            tuple(int(s) for s in normalized_shape)
        self.normalized_shape = shape
        self.eps = eps
        self.elementwise_affine = elementwise_affine
        if elementwise_affine:
            self.weight = Parameter(_full(shape, 1.0, device, dtype))
            self.bias = Parameter(_full(shape, 0.0, device, dtype)) if bias else None
        else:
            self.weight = None
            self.bias = None
        self._parameters.setdefault("weight", None)
        self._parameters.setdefault("bias", None)

    def forward(self, x):
        return F.layer_norm(x, self.normalized_shape, self.weight, self.bias, self.eps)

    def extra_repr(self):
        return (f"{self.normalized_shape}, eps={self.eps}, "
                f"elementwise_affine={self.elementwise_affine}")


def _full(shape, value, device, dtype=None):
    from ..creation import full
    return full(shape, value, dtype=np.float32 if dtype is None else dtype, device=device)


class BatchNorm1d(Module):
    """Batch normalisation of (N, C) or (N, C, L) input over all axes but C: batch
    statistics in training (the biased variance normalises, the unbiased one enters the
    running average), the running statistics in eval mode; ``momentum=None`` averages
    cumulatively, as PyTorch."""

    def __init__(self, num_features, eps=1e-5, momentum=0.1, affine=True,
                 track_running_stats=True, device=None, dtype=None):
        super().__init__()
        self.num_features = num_features
        self.eps = eps
        self.momentum = momentum
        self.affine = affine
        self.track_running_stats = track_running_stats
        if affine:
            self.weight = Parameter(_full((num_features,), 1.0, device, dtype))
            self.bias = Parameter(_full((num_features,), 0.0, device, dtype))
        if track_running_stats:
            self.register_buffer("running_mean", _full((num_features,), 0.0, device, dtype))
            self.register_buffer("running_var", _full((num_features,), 1.0, device, dtype))
            self.register_buffer("num_batches_tracked", _full((), 0, device, np.int64))
        else:
            self.running_mean = self.running_var = self.num_batches_tracked = None

    def _check(self, x):
        if x.ndim not in (2, 3) or x.shape[1] != self.num_features:
            raise ValueError(f"BatchNorm1d({self.num_features}) expects input of shape (N, "
                             f"{self.num_features}) or (N, {self.num_features}, L), got "
                             f"{shape_str(x.shape)}")

    def forward(self, x):
        self._check(x)
        axes = (0,) if x.ndim == 2 else (0, 2)
        shape = (1, self.num_features) + ((1,) if x.ndim == 3 else ())
        use_batch = self.training or not self.track_running_stats
        if use_batch:
            count = x.numel() // self.num_features
            if count <= 1:
                raise ValueError(f"BatchNorm1d: expected more than 1 value per channel when "
                                 f"training, got input of shape {shape_str(x.shape)}")
            mean = ops.mean(x, axes, True)
            centred = x - mean
            var = ops.mean(centred * centred, axes, True)
            if self.training and self.track_running_stats:
                self._update_running(mean, var, count)
            y = centred / ops.sqrt(var + self.eps)
        else:
            rm = ops.reshape(self.running_mean, shape)
            rv = ops.reshape(self.running_var, shape)
            y = (x - rm) / ops.sqrt(rv + self.eps)
        if self.affine:
            y = y * ops.reshape(self.weight, shape) + ops.reshape(self.bias, shape)
        return y

    def _update_running(self, mean, var, count):
        with no_grad():
            self.num_batches_tracked._data[...] += 1
            bump_version(self.num_batches_tracked._ver)
            if self.momentum is None:      # a cumulative moving average
                factor = 1.0 / float(self.num_batches_tracked._data)
            else:
                factor = self.momentum
            batch_mean = mean._data.reshape(-1)
            unbiased = var._data.reshape(-1) * (count / (count - 1))
            for buf, value in ((self.running_mean, batch_mean), (self.running_var, unbiased)):
                buf._data[...] = (1 - factor) * buf._data + factor * value.astype(buf.dtype)
                bump_version(buf._ver)

    def extra_repr(self):
        return (f"{self.num_features}, eps={self.eps}, momentum={self.momentum}, "
                f"affine={self.affine}, track_running_stats={self.track_running_stats}")


class Embedding(Module):
    """A table of ``num_embeddings`` vectors looked up by integer indices; weights drawn from
    N(0, 1) with the ``padding_idx`` row zeroed, as PyTorch."""

    def __init__(self, num_embeddings, embedding_dim, padding_idx=None, max_norm=None,
                 norm_type=2.0, scale_grad_by_freq=False, sparse=False, _weight=None,
                 _freeze=False, device=None, dtype=None):
        super().__init__()
        self.num_embeddings = num_embeddings
        self.embedding_dim = embedding_dim
        if padding_idx is not None:
            if not -num_embeddings <= padding_idx < num_embeddings:
                raise ValueError(f"padding_idx {padding_idx} must be within num_embeddings "
                                 f"{num_embeddings}")
            padding_idx %= num_embeddings
        self.padding_idx = padding_idx
        self.max_norm = max_norm
        self.norm_type = norm_type
        self.scale_grad_by_freq = scale_grad_by_freq
        self.sparse = sparse
        if _weight is None:
            from ..creation import randn
            weight = randn(num_embeddings, embedding_dim, device=device,
                           dtype=np.float32 if dtype is None else dtype)
            if padding_idx is not None:
                weight._data[padding_idx] = 0
        else:
            weight = _weight
        self.weight = Parameter(weight, requires_grad=not _freeze)

    @classmethod
    def from_pretrained(cls, embeddings, freeze=True, padding_idx=None, max_norm=None,
                        norm_type=2.0, scale_grad_by_freq=False, sparse=False):
        rows, dim = embeddings.shape
        return cls(rows, dim, padding_idx, max_norm, norm_type, scale_grad_by_freq, sparse,
                   _weight=embeddings.detach(), _freeze=freeze)

    def forward(self, input):
        return F.embedding(input, self.weight, self.padding_idx, self.max_norm,
                           self.norm_type, self.scale_grad_by_freq, self.sparse)

    def extra_repr(self):
        text = f"{self.num_embeddings}, {self.embedding_dim}"
        return text + (f", padding_idx={self.padding_idx}" if self.padding_idx is not None
                       else "")


# -- losses ---------------------------------------------------------------------------------
class _Loss(Module):
    def __init__(self, reduction="mean"):
        super().__init__()
        self.reduction = reduction

    def extra_repr(self):
        return f"reduction='{self.reduction}'" if self.reduction != "mean" else ""


class CrossEntropyLoss(_Loss):
    def __init__(self, weight=None, ignore_index=-100, reduction="mean", label_smoothing=0.0):
        super().__init__(reduction)
        self.weight = weight
        self.ignore_index = ignore_index
        self.label_smoothing = label_smoothing

    def forward(self, input, target):
        return F.cross_entropy(input, target, self.weight, self.ignore_index, self.reduction,
                               self.label_smoothing)


class NLLLoss(_Loss):
    def __init__(self, weight=None, ignore_index=-100, reduction="mean"):
        super().__init__(reduction)
        self.weight = weight
        self.ignore_index = ignore_index

    def forward(self, input, target):
        return F.nll_loss(input, target, self.weight, self.ignore_index, self.reduction)


class MSELoss(_Loss):
    def forward(self, input, target):
        return F.mse_loss(input, target, self.reduction)


class L1Loss(_Loss):
    def forward(self, input, target):
        return F.l1_loss(input, target, self.reduction)


class SmoothL1Loss(_Loss):
    def __init__(self, reduction="mean", beta=1.0):
        super().__init__(reduction)
        self.beta = beta

    def forward(self, input, target):
        return F.smooth_l1_loss(input, target, self.reduction, self.beta)


class HuberLoss(_Loss):
    def __init__(self, reduction="mean", delta=1.0):
        super().__init__(reduction)
        self.delta = delta

    def forward(self, input, target):
        return F.huber_loss(input, target, self.reduction, self.delta)


class BCELoss(_Loss):
    def __init__(self, weight=None, reduction="mean"):
        super().__init__(reduction)
        self.weight = weight

    def forward(self, input, target):
        return F.binary_cross_entropy(input, target, self.weight, self.reduction)


class BCEWithLogitsLoss(_Loss):
    def __init__(self, weight=None, reduction="mean", pos_weight=None):
        super().__init__(reduction)
        self.weight = weight
        self.pos_weight = pos_weight

    def forward(self, input, target):
        return F.binary_cross_entropy_with_logits(input, target, self.weight, self.reduction,
                                                  self.pos_weight)


class KLDivLoss(_Loss):
    def __init__(self, reduction="mean", log_target=False):
        super().__init__(reduction)
        self.log_target = log_target

    def forward(self, input, target):
        return F.kl_div(input, target, self.reduction, self.log_target)

