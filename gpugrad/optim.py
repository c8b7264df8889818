"""Optimizers with PyTorch's update formulas, one fused in-place update per parameter
(a CUDA kernel on CuPy, its NumPy twin on the CPU), and learning-rate schedules."""
import math

from . import _tensor
from ._autograd import graph as _graph
from ._tensor import Tensor

__all__ = ["Optimizer", "SGD", "Adam", "AdamW", "StepLR", "CosineAnnealingLR"]


class Optimizer:
    """Holds the parameters and their state; ``step()`` updates them in place."""

    def __init__(self, params, defaults):
        params = list(params)
        if not params:
            raise ValueError(f"{type(self).__name__} got an empty parameter list")
        for i, p in enumerate(params):
            if not isinstance(p, Tensor) or not p.requires_grad or not p.is_leaf:
                raise TypeError(f"{type(self).__name__}: parameter {i} is not a leaf tensor "
                                "that requires grad")
        self.params = params
        self.defaults = dict(defaults)
        self.lr = defaults["lr"]
        self.state = [dict() for _ in params]
        self.step_count = 0

    def zero_grad(self):
        for p in self.params:
            p._grad = None

    def step(self):
        prof = _graph.profiler
        if prof is not None and hasattr(prof, "record_step"):
            prof.record_step(self)   # gg.compile: a replay calls step() again (lr, state live)
        self.step_count += 1
        for p, state in zip(self.params, self.state):
            if p._grad is None:
                continue
            if prof is None:
                self._update(p, p._grad._data, state)
            else:
                self._profiled_update(prof, p, state)
            _tensor.bump_version(p._ver)     # a graph that saved p must not be replayed

    # FLOPs per element and arrays read or written per element by the fused update (the
    # profiler's cost model; see _update's kernel)
    _update_cost = (0, 0)

    def _profiled_update(self, prof, p, state):
        flops, arrays = self._update_cost
        prof.kernel(f"{type(self).__name__.lower()}_update", "optimizer", p.device,
                    lambda: self._update(p, p._grad._data, state), shapes=(p.shape,),
                    dtype=p.dtype, flops=flops * p.numel(),
                    nbytes=arrays * p.numel() * p.dtype.itemsize)

    def _state_buffer(self, state, key, p):
        buf = state.get(key)
        if buf is None:
            xp = p.device.xp
            with p.device.context():
                buf = xp.zeros_like(p._data)
            p.device.memory.track(buf)
            state[key] = buf
        return buf

    def state_dict(self):
        """Hyper-parameters, step count, and the per-parameter state as tensors."""
        return {
            "type": type(self).__name__,
            "defaults": dict(self.defaults, lr=self.lr),
            "step_count": self.step_count,
            "state": [{k: (_tensor.wrap(v, p.device) if hasattr(v, "shape") else v)
                       for k, v in s.items()} for s, p in zip(self.state, self.params)],
        }

    def load_state_dict(self, state):
        if state.get("type") != type(self).__name__:
            raise ValueError(f"optimizer state of a {state.get('type')} given to a "
                             f"{type(self).__name__}")
        if len(state["state"]) != len(self.params):
            raise ValueError(f"optimizer state has {len(state['state'])} parameters, this "
                             f"optimizer {len(self.params)}")
        self.defaults.update(state["defaults"])
        self.lr = self.defaults["lr"]
        for k, v in state["defaults"].items():
            if hasattr(self, k) and k != "lr":
                setattr(self, k, tuple(v) if isinstance(v, list) else v)
        self.step_count = int(state["step_count"])
        loaded = []
        for s, p in zip(state["state"], self.params):
            entry = {}
            for k, v in s.items():
                if isinstance(v, Tensor):
                    if v.shape != p.shape:
                        raise ValueError(f"optimizer state '{k}' has shape {tuple(v.shape)}, "
                                         f"its parameter {tuple(p.shape)}")
                    arr = p.device.asarray(v.numpy()).astype(p.dtype)
                    p.device.memory.track(arr)
                    entry[k] = arr
                else:
                    entry[k] = v
            loaded.append(entry)
        self.state = loaded


class SGD(Optimizer):
    """Stochastic gradient descent with optional momentum, Nesterov and weight decay."""

    def __init__(self, params, lr, momentum=0.0, weight_decay=0.0, nesterov=False,
                 dampening=0.0):
        if lr < 0:
            raise ValueError(f"invalid learning rate {lr}")
        if nesterov and (momentum <= 0 or dampening != 0):
            raise ValueError("Nesterov momentum needs momentum > 0 and dampening 0")
        super().__init__(params, dict(lr=lr, momentum=momentum, weight_decay=weight_decay,
                                      nesterov=nesterov, dampening=dampening))
        self.momentum = momentum
        self.weight_decay = weight_decay
        self.nesterov = nesterov
        self.dampening = dampening

    @property
    def _update_cost(self):
        # p -= lr * g (+ weight decay, + momentum); p and g read, p written, the buffer
        # read and written
        flops = 2 + 2 * (self.weight_decay != 0) + 3 * (self.momentum != 0)
        return flops, 3 + 2 * (self.momentum != 0)

    def _update(self, p, grad, state):
        buf = self._state_buffer(state, "momentum_buffer", p) if self.momentum else None
        first = not state.get("started", False)
        state["started"] = True
        p.device.kernels.sgd_update(p._data, grad, buf, self.lr, self.momentum,
                                    self.dampening, self.weight_decay, self.nesterov, first)


class Adam(Optimizer):
    """Adam (Kingma and Ba) with PyTorch's bias correction; weight decay added to the
    gradient (L2), as torch.optim.Adam."""

    decoupled = False

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0):
        if lr < 0 or eps < 0 or not (0 <= betas[0] < 1 and 0 <= betas[1] < 1):
            raise ValueError(f"invalid Adam hyper-parameters lr={lr}, betas={betas}, eps={eps}")
        super().__init__(params, dict(lr=lr, betas=tuple(betas), eps=eps,
                                      weight_decay=weight_decay))
        self.betas = tuple(betas)
        self.eps = eps
        self.weight_decay = weight_decay

    # two moment updates (5), sqrt, eps, divide, scale and subtract (5), weight decay (2);
    # p, g, m, v read, p, m, v written
    _update_cost = (12, 7)

    def _update(self, p, grad, state):
        m = self._state_buffer(state, "exp_avg", p)
        v = self._state_buffer(state, "exp_avg_sq", p)
        state["step"] = state.get("step", 0) + 1
        p.device.kernels.adam_update(p._data, grad, m, v, self.lr, self.betas[0],
                                     self.betas[1], self.eps, self.weight_decay, state["step"],
                                     self.decoupled)


class AdamW(Adam):
    """Adam with decoupled weight decay (Loshchilov and Hutter), as torch.optim.AdamW."""

    decoupled = True

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=1e-2):
        super().__init__(params, lr, betas, eps, weight_decay)


class StepLR:
    """Multiply the learning rate by ``gamma`` every ``step_size`` epochs."""

    def __init__(self, optimizer, step_size, gamma=0.1):
        self.optimizer = optimizer
        self.step_size = step_size
        self.gamma = gamma
        self.base_lr = optimizer.lr
        self.epoch = 0

    def step(self):
        self.epoch += 1
        self.optimizer.lr = self.base_lr * self.gamma ** (self.epoch // self.step_size)


class CosineAnnealingLR:
    """Cosine decay of the learning rate from its initial value to ``eta_min`` over
    ``t_max`` steps."""

    def __init__(self, optimizer, t_max, eta_min=0.0):
        self.optimizer = optimizer
        self.t_max = t_max
        self.eta_min = eta_min
        self.base_lr = optimizer.lr
        self.epoch = 0

    def step(self):
        self.epoch += 1
        t = min(self.epoch, self.t_max)
        self.optimizer.lr = self.eta_min + (self.base_lr - self.eta_min) * (
            1 + math.cos(math.pi * t / self.t_max)) / 2
