"""Atomic file writes: a file is either its old version or its complete new one, never half-written."""

from __future__ import annotations

import os
import secrets
import stat
from collections.abc import Callable
from pathlib import Path


def atomic_write(path: str | os.PathLike, write: Callable[[str], None]) -> Path:
    """Call ``write(tmp)`` with the path of a temporary file beside ``path``, then move it onto ``path``.

    The new file gets the permissions a plain ``open(path, "w")`` would give it (0o666 minus the umask,
    or the folder's default ACL), also when ``write`` replaces the temporary file with one of its own
    (safetensors writes 0o600 files); the process umask is never read or changed. The data are flushed
    to disk before the rename, and the rename after it. On any error the temporary file is removed and
    ``path`` is left as it was.
    """
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(8)}.tmp")
    try:
        os.close(os.open(tmp, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o666))
        mode = stat.S_IMODE(os.stat(tmp).st_mode)  # what the kernel gives a new file here
        write(str(tmp))
        os.chmod(tmp, mode)
        with open(tmp, "rb+") as handle:
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _fsync_directory(path.parent)
    return path


def atomic_write_text(path: str | os.PathLike, text: str, encoding: str = "utf-8") -> Path:
    """Write ``text`` to ``path`` atomically."""
    return atomic_write(path, lambda tmp: Path(tmp).write_text(text, encoding=encoding))


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically."""
    return atomic_write(path, lambda tmp: Path(tmp).write_bytes(data))


def _fsync_directory(directory: Path) -> None:
    """Make a rename in ``directory`` durable (a no-op where directories cannot be opened, e.g. Windows)."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


DATA_SUFFIXES = (".json", ".yaml", ".yml")


def write_data_file(path: str | os.PathLike, data: object) -> Path:
    """Write plain data (dicts, lists, numbers, strings) as JSON (``.json``) or YAML (``.yaml``/``.yml``), atomically."""
    import json

    import yaml

    path = Path(path)
    if path.suffix not in DATA_SUFFIXES:
        raise ValueError(f"{path}: expected a {', '.join(DATA_SUFFIXES)} suffix")
    path.parent.mkdir(parents=True, exist_ok=True)
    text = json.dumps(data, indent=1) + "\n" if path.suffix == ".json" else \
        yaml.safe_dump(data, sort_keys=False, default_flow_style=None, width=120)
    return atomic_write_text(path, text)


def read_data_file(path: str | os.PathLike) -> object:
    """Read a JSON or YAML file (``yaml.safe_load``: plain data only); FileNotFoundError / ValueError naming it."""
    import json

    import yaml

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found")
    try:
        text = path.read_text(encoding="utf-8")
        return json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
    except (UnicodeDecodeError, json.JSONDecodeError, yaml.YAMLError) as err:
        raise ValueError(f"{path} is not valid {'JSON' if path.suffix == '.json' else 'YAML'}: {err}") from err
