"""Module structures on the "meta" device, without running their random initialisation.

A model that is loaded is first built on the meta device (shapes only) and then given its weights. There,
torch's random fills (``uniform_``, ``normal_``, as the default ``nn.Conv2d`` / ``nn.Linear`` init and ours
call them) produce nothing but run Python decompositions whose first call imports sympy and
``torch._dynamo``: 0.3 to 1 s of a cold start. Inside :func:`meta_device` they are skipped.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch
from torch import nn
from torch.overrides import TorchFunctionMode

# random fills, and the torch.nn.init functions that dispatch through torch-function modes before calling them
_RANDOM_FILLS = {torch.Tensor.uniform_, torch.Tensor.normal_, nn.init.uniform_, nn.init.normal_,
                 nn.init.kaiming_uniform_}


class _SkipRandomFills(TorchFunctionMode):
    def __torch_function__(self, func: Any, types: Any, args: tuple = (), kwargs: dict | None = None) -> Any:
        kwargs = kwargs or {}
        if func in _RANDOM_FILLS:
            tensor = args[0] if args else kwargs["tensor"]
            if tensor.is_meta:  # a tensor made elsewhere (e.g. device="cpu") is filled as usual
                return tensor
        return func(*args, **kwargs)


@contextmanager
def meta_device() -> Iterator[None]:
    """Like ``torch.device("meta")`` (modules built inside get meta tensors), without the random fills."""
    with torch.device("meta"), _SkipRandomFills():
        yield
