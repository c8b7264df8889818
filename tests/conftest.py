import os
import sys

import pytest

sys.path.insert(0, os.path.dirname(__file__))


def pytest_collection_modifyitems(config, items):
    import gpugrad as gg
    if gg.cuda_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA device (gg.cuda_available() is False)")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)
