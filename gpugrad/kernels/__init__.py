"""Kernels: raw CUDA C in ``*.cu`` beside this file (``cuda.py`` launches them), and their
NumPy twins (``reference.py``), which are the CPU device's kernel table and the reference
the GPU kernels are tested against. ``shim.py`` runs the CUDA C on the CPU for tests.
"""
