"""The command-line contract of every ``python -m`` entry point of the project.

A CLI module defines ``get_args_parser()`` and ``main(args) -> dict`` (a library call that returns a
JSON-ready result) and ends with ``exit_process(cli())``, where ``cli`` calls :func:`run_cli`. Exit codes:
0 success, 2 bad input (one line on stderr that names the input and what was expected), 1 internal
error, 130 interrupted. Bad input is told by the exception's *type*, never by its message.
"""

from __future__ import annotations

import argparse
import gc
import json
import math
import sys
from collections.abc import Callable, Sequence
from typing import Any

EXIT_OK, EXIT_INTERNAL, EXIT_BAD_INPUT, EXIT_INTERRUPTED = 0, 1, 2, 130


class InputError(ValueError):
    """Bad input that is neither a malformed value nor a missing file (e.g. a model not available offline)."""


# Exceptions that mean "the input is wrong", as the standard library and this project raise them.
BAD_INPUT_ERRORS: tuple[type[BaseException], ...] = (
    ValueError, FileNotFoundError, IsADirectoryError, NotADirectoryError, PermissionError,
)

Main = Callable[[argparse.Namespace], Any]
Render = Callable[[Any, argparse.Namespace], str | None]


def one_line(error: BaseException) -> str:
    """The error's message on one line (newlines folded), or its type name when it has no message."""
    text = " ".join(str(error).split())
    return text or type(error).__name__


def run_main(main: Main, args: argparse.Namespace) -> tuple[int, Any]:
    """``(exit code, result or None)`` of ``main(args)``; a failure is printed as one line on stderr."""
    try:
        return EXIT_OK, main(args)
    except BAD_INPUT_ERRORS as err:
        print(f"error: {one_line(err)}", file=sys.stderr)
        return EXIT_BAD_INPUT, None
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED, None
    except Exception as err:  # noqa: BLE001 - every other failure is an internal error, reported as such
        print(f"internal error: {type(err).__name__}: {one_line(err)}", file=sys.stderr)
        return EXIT_INTERNAL, None


def run_cli(parser: argparse.ArgumentParser, main: Main, argv: Sequence[str] | None = None,
            render: Render | None = None) -> int:
    """Parse ``argv``, run ``main`` under :func:`run_main` and print ``render(result, args)`` (default: JSON).

    ``render`` may return ``None`` to print nothing. Returns the exit code.
    """
    args = parser.parse_args(argv)
    code, result = run_main(main, args)
    if code == EXIT_OK:
        text = (render or render_json)(result, args)
        if text is not None:
            print(text)
    return code


def exit_process(code: int) -> None:
    """End a command-line process with ``code``, without the interpreter's final sweep of the garbage collector.

    Once torch is imported, that sweep walks every object it created: about 0.4 s of the 2 s a
    ``python -m crossmodal.run`` takes on 2 CPU cores (measured with and without, fresh processes), spent only
    to free memory the operating system frees anyway. ``gc.freeze`` moves every object out of the collector's
    reach; standard output is flushed and atexit handlers run as usual, but an object kept alive only by a
    reference cycle is never finalised (close files before). Only for a process's last step: library code and
    tests call :func:`run_cli` instead.
    """
    gc.freeze()
    sys.exit(code)


def render_json(result: Any, args: argparse.Namespace | None = None) -> str:
    """``result`` as indented strict JSON (see :func:`to_json`)."""
    return to_json(result, indent=2)


def to_json(value: Any, **kwargs: Any) -> str:
    """Strict JSON: NaN and infinities become ``null`` (never the bare ``NaN`` that JSON parsers reject)."""
    return json.dumps(_finite(value), allow_nan=False, **kwargs)


def _finite(value: Any) -> Any:
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    return value
