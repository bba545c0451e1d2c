"""The shared command-line contract: bad input -> one line and exit 2, any other failure -> exit 1."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from typing import Any


def run_main(main: Callable[[argparse.Namespace], dict[str, Any]], args: argparse.Namespace) -> tuple[int, Any]:
    """(exit code, result or None), with the error printed as one line on stderr."""
    try:
        return 0, main(args)
    except (ValueError, FileNotFoundError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2, None
    except Exception as err:  # noqa: BLE001 - every other failure is reported as an internal error
        print(f"internal error: {type(err).__name__}: {err}", file=sys.stderr)
        return 1, None
