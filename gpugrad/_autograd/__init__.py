"""The autograd engine, in layers: ``mode`` (thread-local switches), ``graph`` (the op
declaration, the node it records and ``apply``), ``backward`` (the reverse-mode
scheduler) and ``forward`` (tangents for forward mode). The public names live in
``gpugrad.autograd``; ``graph`` sits below the ops, ``backward`` and ``forward`` above.
"""
