"""The result of mapping a cue: classes to look for, attention gains, and why."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Match:
    """How one cue label led to classes: ``method`` is override / wordnet / ontology / embedding."""

    label: str
    score: float
    method: str
    matched: str
    similarity: float
    classes: tuple[int, ...]
    via: str = ""

    def to_dict(self) -> dict:
        return {"label": self.label, "score": self.score, "method": self.method, "matched": self.matched,
                "similarity": self.similarity, "classes": list(self.classes), "via": self.via}


@dataclass(frozen=True)
class Guide:
    """Classes to look for (sorted indices) and gains for classes and WordNet tree nodes.

    ``confident`` is False when the cue has no visual counterpart (or too weak a score): then
    ``classes`` is empty and the pipeline must stay unguided.
    """

    classes: tuple[int, ...]
    gains: dict[int | str, float]
    confident: bool
    matches: tuple[Match, ...] = ()
    notes: tuple[str, ...] = ()
    class_names: dict[int, str] = field(default_factory=dict, repr=False, compare=False)

    def node_gains(self, tree: dict) -> dict[str, float]:
        """Gains for the internal nodes of any exported tree (``{"name", "children"}``).

        A node gets a gain when every class below it is cued: the smallest gain among them.
        """
        out: dict[str, float] = {}

        def visit(node: dict | int) -> list[float] | None:
            if isinstance(node, int):
                return [self.gains[node]] if node in self.gains else None
            below: list[float] = []
            full = True
            for child in node["children"]:
                got = visit(child)
                if got is None:
                    full = False
                else:
                    below.extend(got)
            if full and below:
                out[node["name"]] = min(below)
                return below
            return None

        visit(tree)
        return out

    def explain(self) -> str:
        """Human-readable account: which cue label matched which classes, how, how strongly."""
        if not self.confident:
            head = "unguided (confident=False): no cue label maps to an ImageNet class"
        else:
            head = f"guided: {len(self.classes)} class{'es' if len(self.classes) != 1 else ''}"
        lines = [head]
        for m in self.matches:
            names = ", ".join(f"{c} {self.class_names.get(c, '')}".strip() for c in m.classes[:6])
            names = names or "no ImageNet class (curated)"
            more = f" (+{len(m.classes) - 6} more)" if len(m.classes) > 6 else ""
            via = f" via {m.via}" if m.via else ""
            sim = f" (cosine {m.similarity:.2f})" if m.method == "embedding" else ""
            lines.append(f"  {m.label!r} (score {m.score:.2f}){via} -> {m.method} {m.matched!r}{sim} -> {names}{more}")
        lines.extend(f"  {note}" for note in self.notes)
        nodes = {k: v for k, v in self.gains.items() if isinstance(k, str)}
        if nodes:
            shown = [f"{k} {v:.2f}" for k, v in sorted(nodes.items())]
            more = f" (+{len(shown) - 8} more)" if len(shown) > 8 else ""
            lines.append("  node gains: " + ", ".join(shown[:8]) + more)
        if self.classes:
            gains = sorted({round(self.gains[c], 2) for c in self.classes})
            lines.append(f"  class gains: {gains[0]:.2f}..{gains[-1]:.2f}")
        return "\n".join(lines)

    def to_dict(self) -> dict:
        return {"classes": list(self.classes), "gains": {str(k): v for k, v in self.gains.items()},
                "confident": self.confident, "matches": [m.to_dict() for m in self.matches],
                "notes": list(self.notes)}
