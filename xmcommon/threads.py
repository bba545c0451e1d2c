"""One process-wide lock around building and loading models.

transformers' ``from_pretrained`` (behind sentence-transformers and the AST tagger) patches
``torch.nn.Module.register_parameter`` and ``torch.nn.init`` for the whole process while it runs: a module
built meanwhile in another thread gets its parameters on the "meta" device or skips its initialisation,
and two overlapping loads can leave the patch in place for good. Every model load and every module
construction in this project holds :data:`MODEL_BUILD_LOCK`, so none of them can overlap another.
"""

from __future__ import annotations

import threading

MODEL_BUILD_LOCK = threading.RLock()
