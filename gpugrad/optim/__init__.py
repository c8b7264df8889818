"""Optimizers with PyTorch's names, parameter groups and update formulas, one fused in-place
update per parameter (a CUDA kernel on CuPy, its NumPy twin on the CPU); learning-rate
schedules in ``gg.optim.lr_scheduler``."""
from .. import _tensor
from .._autograd import graph as _graph
from .._autograd.mode import enable_grad
from .._autograd.mode import state as _mode
from .._tensor import Tensor
from ..kernels import reference
from . import lr_scheduler

__all__ = ["Optimizer", "SGD", "Adam", "AdamW", "lr_scheduler"]


class _Required:
    def __repr__(self):
        return "<required parameter>"


_REQUIRED = _Required()


class Optimizer:
    """Holds parameter groups and per-parameter state; ``step()`` updates the parameters in
    place, reading each group's options (``lr`` among them) at every step, so that a
    scheduler or the user may change them between steps (as PyTorch)."""

    def __init__(self, params, defaults):
        self.defaults = dict(defaults)
        self.state = {}
        self.param_groups = []
        if isinstance(params, Tensor):
            raise TypeError(f"{type(self).__name__}: params must be an iterable of tensors or "
                            "of dicts, got a Tensor")
        groups = list(params)
        if not groups:
            raise ValueError(f"{type(self).__name__} got an empty parameter list")
        if not isinstance(groups[0], dict):
            groups = [{"params": groups}]
        for group in groups:
            self.add_param_group(group)

    def add_param_group(self, param_group):
        """Add a group of parameters with its own options (the others from ``defaults``)."""
        if not isinstance(param_group, dict):
            raise TypeError(f"param_group must be a dict, got {type(param_group).__name__}")
        group = dict(param_group)
        params = group.get("params")
        if params is None:
            raise ValueError("a parameter group needs a 'params' entry")
        params = [params] if isinstance(params, Tensor) else list(params)
        for i, p in enumerate(params):
            if not isinstance(p, Tensor) or not p.requires_grad or not p.is_leaf:
                raise TypeError(f"{type(self).__name__}: parameter {i} is not a leaf tensor "
                                "that requires grad")
        group["params"] = params
        for name, default in self.defaults.items():
            if default is _REQUIRED and name not in group:
                raise ValueError(f"parameter group didn't specify a value of required "
                                 f"optimization parameter {name}")
            group.setdefault(name, default)
        self._check_group(group)
        seen = {id(p) for g in self.param_groups for p in g["params"]}
        if len({id(p) for p in params}) != len(params) or seen & {id(p) for p in params}:
            raise ValueError("some parameters appear in more than one parameter group")
        self.param_groups.append(group)

    def _check_group(self, group):
        """Validate a group's options (subclasses)."""

    def zero_grad(self, set_to_none=True):
        """Reset the gradients: to None (PyTorch's default), or to zeros in place."""
        for group in self.param_groups:
            for p in group["params"]:
                if set_to_none:
                    p._grad = None
                elif p._grad is not None:
                    p._grad._data[...] = 0
                    _tensor.bump_version(p._grad._ver)
        if _mode.compiling is not None:     # gg.compile: these gradients start afresh
            _mode.compiling.reset_grads(p for g in self.param_groups for p in g["params"])

    def step(self, closure=None):
        """One update of every parameter that has a gradient; with ``closure`` (a function
        that recomputes the loss), the loss it returns."""
        loss = None
        if closure is not None:
            with enable_grad():
                loss = closure()
        prof = _graph.profiler
        if prof is not None and hasattr(prof, "record_step"):
            prof.record_step(self)   # gg.compile: a replay calls step() again (lr, state live)
        for group in self.param_groups:
            for p in group["params"]:
                if p._grad is None:
                    continue
                state = self.state.get(p)
                if state is None:
                    state = self.state[p] = {}
                if prof is None:
                    self._update(p, p._grad._data, state, group)
                else:
                    self._profiled_update(prof, p, state, group)
                _tensor.bump_version(p._ver)     # a graph that saved p must not be replayed
        return loss

    def _update(self, p, grad, state, group):
        raise NotImplementedError

    def _device_update(self, p, grad, state, group):
        """gg.compile: this step's update of ``p`` as a launch of a device-scalar kernel,
        ``(kernel, arrays, scalars, flags)`` for ``p.device.kernels.<kernel>(*arrays,
        scalars_on_device, *flags)``, with the step's host bookkeeping (step counts) done as
        ``step()`` does it; None where the update has no such form (then a replay calls
        ``step()``)."""
        return None

    _fused = None      # the class whose ``_update`` its ``_device_update`` mirrors

    def _device_updates_ok(self):
        """gg.compile: whether ``step()`` may be replayed as ``_device_update`` launches;
        not where a subclass changes ``step()`` or the update."""
        cls, fused = type(self), self._fused
        return (fused is not None and cls.step is Optimizer.step
                and cls._update is fused._update
                and cls._device_update is fused._device_update)

    def _device_updates(self, grads):
        """gg.compile: ``step()`` as launches (``_device_update``) for the parameters in
        ``grads`` ({parameter: gradient array}), in ``step()``'s order; state buffers are
        made and versions bumped as ``step()`` does."""
        updates = []
        for group in self.param_groups:
            for p in group["params"]:
                grad = grads.get(p)
                if grad is None:
                    continue
                state = self.state.get(p)
                if state is None:
                    state = self.state[p] = {}
                updates.append(self._device_update(p, grad, state, group))
                _tensor.bump_version(p._ver)
        return updates

    def _update_cost(self, group):
        """(FLOPs per element, arrays read or written per element) of the fused update: the
        profiler's cost model."""
        return 0, 0

    def _profiled_update(self, prof, p, state, group):
        flops, arrays = self._update_cost(group)
        prof.kernel(f"{type(self).__name__.lower()}_update", "optimizer", p.device,
                    lambda: self._update(p, p._grad._data, state, group), shapes=(p.shape,),
                    dtype=p.dtype, flops=flops * p.numel(),
                    nbytes=arrays * p.numel() * p.dtype.itemsize)

    def _state_buffer(self, state, key, p):
        buf = state.get(key)
        if buf is None:
            with p.device.context():
                buf = p.device.xp.zeros_like(p._data)
            p.device.memory.track(buf)
            state[key] = buf
        return buf

    # -- state --------------------------------------------------------------------------------
    def state_dict(self):
        """PyTorch's layout: ``state`` keyed by parameter index (tensors for the buffers) and
        ``param_groups`` with their options and the indices of their parameters."""
        index = {}
        groups = []
        for group in self.param_groups:
            entry = {k: v for k, v in group.items() if k != "params"}
            entry["params"] = []
            for p in group["params"]:
                index[id(p)] = len(index)
                entry["params"].append(index[id(p)])
            groups.append(entry)
        state = {}
        for group in self.param_groups:
            for p in group["params"]:
                s = self.state.get(p)
                if s:
                    state[index[id(p)]] = {
                        k: (_tensor.wrap(v, p.device) if hasattr(v, "shape") else v)
                        for k, v in s.items()}
        return {"state": state, "param_groups": groups}

    def load_state_dict(self, state_dict):
        """Load what ``state_dict`` gave (possibly through gg.save/gg.load): group options and
        per-parameter state; the groups must have the same sizes."""
        groups = state_dict.get("param_groups")
        if groups is None or "state" not in state_dict:
            raise ValueError("optimizer state dict needs 'state' and 'param_groups' entries "
                             f"(got keys {sorted(state_dict)})")
        if len(groups) != len(self.param_groups):
            raise ValueError(f"loaded state dict has {len(groups)} parameter group(s), this "
                             f"optimizer {len(self.param_groups)}")
        for i, (saved, own) in enumerate(zip(groups, self.param_groups)):
            if len(saved["params"]) != len(own["params"]):
                raise ValueError(f"loaded state dict's parameter group {i} has "
                                 f"{len(saved['params'])} parameters, this optimizer's "
                                 f"{len(own['params'])}")
        by_index = {}
        for saved, own in zip(groups, self.param_groups):
            for idx, p in zip(saved["params"], own["params"]):
                by_index[int(idx)] = p
        new_state = {}
        for idx, s in state_dict["state"].items():
            p = by_index.get(int(idx))
            if p is None:
                raise ValueError(f"optimizer state names parameter {idx}, which no group holds")
            entry = {}
            for k, v in s.items():
                if isinstance(v, Tensor) or hasattr(v, "shape") and getattr(v, "ndim", 0):
                    value = v.numpy() if isinstance(v, Tensor) else v
                    if tuple(value.shape) != tuple(p.shape):
                        raise ValueError(f"optimizer state '{k}' of parameter {idx} has shape "
                                         f"{tuple(value.shape)}, the parameter "
                                         f"{tuple(p.shape)}")
                    with p.device.context():
                        arr = p.device.asarray(value).astype(p.dtype, copy=False)
                    p.device.memory.track(arr)
                    entry[k] = arr
                else:
                    entry[k] = v.item() if hasattr(v, "item") else v
            new_state[p] = entry
        for saved, own in zip(groups, self.param_groups):
            for k, v in saved.items():
                if k != "params":
                    own[k] = tuple(v) if isinstance(v, list) else v
        self.state = new_state

    def __repr__(self):
        lines = [f"{type(self).__name__} ("]
        for i, group in enumerate(self.param_groups):
            lines.append(f"Parameter Group {i}")
            lines += [f"    {k}: {v}" for k, v in sorted(group.items()) if k != "params"]
        return "\n".join(lines) + "\n)"


def _check_number(name, value, low=0.0):
    if not isinstance(value, (int, float)) or value < low:
        raise ValueError(f"invalid {name}: {value!r}")


class SGD(Optimizer):
    """Stochastic gradient descent as torch.optim.SGD: weight decay added to the gradient,
    momentum buffer started from the first gradient, dampening, Nesterov; ``maximize``
    ascends (the gradient negated)."""

    def __init__(self, params, lr=1e-3, momentum=0.0, dampening=0.0, weight_decay=0.0,
                 nesterov=False, *, maximize=False):
        super().__init__(params, dict(lr=lr, momentum=momentum, dampening=dampening,
                                      weight_decay=weight_decay, nesterov=nesterov,
                                      maximize=maximize))

    def _check_group(self, group):
        _check_number("learning rate", group["lr"])
        _check_number("momentum value", group["momentum"])
        _check_number("weight_decay value", group["weight_decay"])
        if group["nesterov"] and (group["momentum"] <= 0 or group["dampening"] != 0):
            raise ValueError("Nesterov momentum requires a momentum and zero dampening")

    def _update_cost(self, group):
        # p -= lr * g (+ weight decay, + momentum); p and g read, p written, the buffer
        # read and written
        momentum = group["momentum"] != 0
        flops = 2 + 2 * (group["weight_decay"] != 0) + 3 * momentum
        return flops, 3 + 2 * momentum

    def _update(self, p, grad, state, group):
        momentum = group["momentum"]
        buf = self._state_buffer(state, "momentum_buffer", p) if momentum else None
        first = not state.get("started", False)
        state["started"] = True
        p.device.kernels.sgd_update(p._data, grad, buf, group["lr"], momentum,
                                    group["dampening"], group["weight_decay"],
                                    group["nesterov"], first, group["maximize"])

    def _device_update(self, p, grad, state, group):
        momentum = group["momentum"]
        buf = self._state_buffer(state, "momentum_buffer", p) if momentum else None
        first = not state.get("started", False)
        state["started"] = True
        return ("sgd_update_dev", (p._data, grad, buf),
                (group["lr"], momentum, group["dampening"], group["weight_decay"]),
                (bool(group["nesterov"]), first, bool(group["maximize"])))


SGD._fused = SGD


class Adam(Optimizer):
    """Adam (Kingma and Ba) as torch.optim.Adam: bias-corrected moments, weight decay added
    to the gradient (L2); ``amsgrad`` divides by the running maximum of the second moment
    (state ``max_exp_avg_sq``), ``maximize`` ascends."""

    decoupled = False

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0,
                 amsgrad=False, *, maximize=False):
        super().__init__(params, dict(lr=lr, betas=tuple(betas), eps=eps,
                                      weight_decay=weight_decay, amsgrad=amsgrad,
                                      maximize=maximize))

    def _check_group(self, group):
        _check_number("learning rate", group["lr"])
        _check_number("epsilon value", group["eps"])
        _check_number("weight_decay value", group["weight_decay"])
        betas = group["betas"]
        if len(betas) != 2 or not all(0.0 <= b < 1.0 for b in betas):
            raise ValueError(f"invalid beta parameters: {betas!r}")

    def _update_cost(self, group):
        # two moment updates (5), sqrt, eps, divide, scale and subtract (5), weight decay (2);
        # p, g, m, v read, p, m, v written
        return 12, 7

    def _update(self, p, grad, state, group):
        state["step"] = state.get("step", 0) + 1
        m = self._state_buffer(state, "exp_avg", p)
        v = self._state_buffer(state, "exp_avg_sq", p)
        vmax = self._state_buffer(state, "max_exp_avg_sq", p) if group["amsgrad"] else None
        beta1, beta2 = group["betas"]
        p.device.kernels.adam_update(p._data, grad, m, v, group["lr"], beta1, beta2,
                                     group["eps"], group["weight_decay"], state["step"],
                                     self.decoupled, vmax, group["maximize"])

    def _device_update(self, p, grad, state, group):
        state["step"] = state.get("step", 0) + 1
        m = self._state_buffer(state, "exp_avg", p)
        v = self._state_buffer(state, "exp_avg_sq", p)
        vmax = self._state_buffer(state, "max_exp_avg_sq", p) if group["amsgrad"] else None
        beta1, beta2 = group["betas"]
        return ("adam_update_dev", (p._data, grad, m, v, vmax),
                reference.adam_scalars(group["lr"], beta1, beta2, group["eps"],
                                       group["weight_decay"], state["step"]),
                (self.decoupled, bool(group["maximize"])))


Adam._fused = Adam


class AdamW(Adam):
    """Adam with decoupled weight decay (Loshchilov and Hutter), as torch.optim.AdamW."""

    decoupled = True

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=1e-2,
                 amsgrad=False, *, maximize=False):
        super().__init__(params, lr, betas, eps, weight_decay, amsgrad, maximize=maximize)
