"""The public namespaces hold only the public API, and the first mistakes a newcomer makes
get PyTorch-like errors and warnings instead of odd results."""
import importlib
import inspect
import warnings

import numpy as np
import pytest

import gpugrad as gg

PUBLIC_MODULES = ["gpugrad", "gpugrad.nn", "gpugrad.nn.functional", "gpugrad.optim",
                  "gpugrad.profiler", "gpugrad.viz", "gpugrad.krylov", "gpugrad.memory",
                  "gpugrad.data", "gpugrad.functional", "gpugrad.autograd", "gpugrad.ops",
                  "gpugrad.distributed", "gpugrad.nn.parallel", "gpugrad.amp", "gpugrad.utils",
                  "gpugrad.utils.checkpoint", "gpugrad.dlpack"]


@pytest.mark.parametrize("name", PUBLIC_MODULES)
def test_public_modules_export_only_their_api(name):
    module = importlib.import_module(name)
    assert isinstance(module.__all__, list)
    missing = [n for n in module.__all__ if not hasattr(module, n)]
    assert not missing, f"{name}.__all__ names what it lacks: {missing}"
    # a public name is in __all__, a module, or an object of gpugrad's top-level API
    # (gg.Tensor seen from gg.optim); internal helpers and stray imports are not
    leaked = [n for n in dir(module) if not n.startswith("_") and n not in module.__all__
              and not inspect.ismodule(getattr(module, n))
              and getattr(gg, n, None) is not getattr(module, n)]
    assert not leaked, f"{name} exposes helpers: {leaked}"


def test_the_leaks_a_newcomer_found_are_gone():
    assert not hasattr(gg, "annotations")
    assert not hasattr(gg.nn.functional, "wrap")
    assert not hasattr(gg.optim, "bump_version")


def test_linear_with_a_bad_width_names_the_argument():
    with pytest.raises(ValueError, match="in_features must be a non-negative integer, got -1"):
        gg.nn.Linear(-1, 3)
    with pytest.raises(ValueError, match="out_features .* got 2.5"):
        gg.nn.Linear(3, 2.5)
    assert gg.nn.Linear(np.int64(3), 2).weight.shape == (2, 3)


@pytest.mark.parametrize("make", [gg.randn, gg.rand, gg.zeros, gg.ones, gg.empty])
def test_shapes_must_be_integers(make):
    with pytest.raises(TypeError, match="integers, got float 2.5"):
        make(2.5, 3)
    with pytest.raises(TypeError, match="integers"):
        make((2, "3"))
    assert make(np.int64(2), 3).shape == (2, 3)


@pytest.mark.parametrize("data", ["abc", ["a", "b"], b"xy"])
def test_tensors_hold_numbers_not_strings(data):
    with pytest.raises(TypeError, match="expected numbers or booleans"):
        gg.tensor(data)


def test_truth_value_of_many_or_no_elements_is_ambiguous():
    with pytest.raises(RuntimeError, match="more than one value is ambiguous"):
        bool(gg.ones(3))
    with pytest.raises(RuntimeError, match="no values is ambiguous"):
        if gg.zeros(0):
            pass
    assert bool(gg.ones(1)) and not gg.tensor([[0.0]])


def test_reading_grad_of_a_non_leaf_warns_unless_retained():
    x = gg.tensor([1.0, 2.0], requires_grad=True)
    h = x * 3
    kept = x * 2
    kept.retain_grad()
    (h * kept).sum().backward()
    with pytest.warns(UserWarning, match=r"not a leaf.*retain_grad\(\)"):
        assert h.grad is None
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert x.grad is not None and kept.grad is not None
        assert gg.ones(2).grad is None
