"""Integer id lists as people write them: ``"281-285,300"`` or ``[281, "151-268"]``."""

from __future__ import annotations

import numbers
from collections.abc import Iterable


def parse_ids(spec: str | int | Iterable[str | int], *, what: str = "class list",
              limit: int | None = None) -> list[int]:
    """The ids of ``spec`` in the order given, ranges ``"a-b"`` expanded (both ends included).

    ``spec`` is a comma-separated string, one id, or a list of ids and range strings. With ``limit``,
    every id must lie in ``0..limit-1``. A ValueError names ``what`` and the offending item.
    """
    if isinstance(spec, str):
        items: list[str | int] = [part.strip() for part in spec.split(",")]
    elif isinstance(spec, numbers.Integral) and not isinstance(spec, bool):
        items = [int(spec)]
    elif isinstance(spec, Iterable):
        items = list(spec)
    else:
        raise ValueError(f"{what} {spec!r}: expected ids and ranges like '281-285,300'")
    out: list[int] = []
    for item in items:
        out.extend(_expand(item, what))
    if limit is not None:
        bad = [i for i in out if not 0 <= i < limit]
        if bad:
            raise ValueError(f"{what}: unknown id {bad[0]}, expected 0..{limit - 1}")
    return out


def _expand(item: str | int, what: str) -> range:
    if isinstance(item, numbers.Integral) and not isinstance(item, bool):
        return range(int(item), int(item) + 1)
    if isinstance(item, str):
        lo, sep, hi = item.strip().partition("-")
        try:
            first, last = int(lo), int(hi if sep else lo)
        except ValueError:
            first, last = 0, -1
        if first >= 0 and first <= last and lo.strip().isdigit():
            return range(first, last + 1)
    raise ValueError(f"{what}: {item!r} is not an id or a range like '281-285'")
