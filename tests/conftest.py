"""Shared test settings: never touch the network, and locate the read-only shared data."""

import os
from pathlib import Path

import pytest

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The read-only `../shared/data` folder; tests that need it skip cleanly without it."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"shared data folder not found at {SHARED_DATA}")
    return SHARED_DATA


@pytest.fixture(scope="session")
def cache_dir(tmp_path_factory):
    """An embedding cache for this session (the user's cache is never written)."""
    return tmp_path_factory.mktemp("embedding-cache")


@pytest.fixture(scope="session")
def mapper(cache_dir):
    """One packaged MiniLM CueMapper for the whole session (building it takes seconds)."""
    import torch

    from mappings import CueMapper

    torch.set_num_threads(1)
    return CueMapper.default(cache_dir=str(cache_dir))
