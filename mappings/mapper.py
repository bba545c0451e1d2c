"""CueMapper: AudioSet tags or free text -> ImageNet classes to look for and attention gains.

Resolution order for each cue label (first hit wins, see ``explain()``):

1. **override**: the curated YAML (label, synonym or text phrase) - may also abstain explicitly;
2. **wordnet**: a synonym whose *most common* WordNet sense is an ImageNet class or one of their
   ancestors -> every class below it (``dog`` -> the 118 breeds);
3. **embedding**: cosine similarity of the label to the class texts (names + gloss) >= threshold;
4. **ontology**: an AudioSet label that did not match (Meow) resolves its direct parents in the
   ontology, the objects that make it (Cat), through steps 1-3 - unless the label names an animal
   or artifact itself (Helicopter: ImageNet-1k has none, and an airliner is no substitute).
   WordNet/embedding matches of AudioSet labels are narrowed by what their AudioSet ancestors name
   in WordNet (Cat under "Domestic animals, pets": the house cats, not cougar and lynx).

Audio cues (``source == "audio"``, an ``audio.Cue``) are decided by :func:`mappings.tag_decisions.decide`
from each label's :meth:`CueMapper.tag_label` (resolved by AudioSet mid; labels reached only through their
ontology parents need every parent to map: Tap (Door or any impact) maps to nothing): the same function and
entries as a :class:`~mappings.tag_decisions.TagDecisionTable` written by ``python -m mappings.tag_table``.
Abstaining guides carry their ``reason``.

Free text is scanned for the longest phrases (up to 4 words, function words skipped) that hit
steps 1-2 or an AudioSet label; without any, the whole text goes to step 3.

Gain of a class: ``lo + (hi - lo) * score * strength`` with the cue score in [0, 1] and the match
strength 1 for override/wordnet, ``0.5 + 0.5 * (sim - threshold) / (1 - threshold)`` for
embeddings - monotone in both; the highest gain wins when several labels hit a class. Guides carry
class gains only: the nodes of a vision model's own class tree get theirs from that tree
(``vision.SeqParModel.node_gains``), in ``crossmodal``.

One mapper serves many threads: its memo of query embeddings is guarded by a lock.
"""

from __future__ import annotations

import re
import threading
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from .embeddings import DEFAULT_MODEL, EmbeddingIndex, Hit, TextEncoder
from .guide import NO_COUNTERPART, WEAK, Guide, Match
from .ontology import AudioSetOntology, audioset_ontology, split_synonyms
from .overrides import Override, default_overrides_path, load_overrides
from .tag_decisions import LabelMatch, TagLabel, TagRules, decide, gain_of
from .wordnet import WordNetHierarchy, imagenet_hierarchy

MAX_NGRAM = 4
QUERY_MEMO = 4096
FUNCTION_WORDS = frozenset(
    "a an the this that these those some any my your his her its our their i you he she it we they me us "
    "him them is are was were be been am do does did have has had can could will would shall should may "
    "might must of in on at to for with from by about into there here where what which who how when why "
    "and or but not no yes please find look see hear show".split()
)


@dataclass(frozen=True)
class MapperConfig:
    """Settings of a CueMapper (see the module docstring for how they act)."""

    model: str = DEFAULT_MODEL
    gain_range: tuple[float, float] = (1.0, 4.0)
    min_score: float = 0.3
    similarity_threshold: float = 0.6
    max_classes: int = 150
    tag_top_k: int = 10  # audio cues: how many of the tagger's best labels count (mappings.tag_decisions)
    sure_score: float = 0.5  # audio cues: a label without ImageNet counterpart this sure vetoes the guide
    margin: float = 2.0  # audio cues: the best label must outscore a contradicting one by this factor
    tag_embeddings: bool = False  # audio cues: whether labels may map by embedding similarity (Train horn ~ French horn)
    overrides: str | None = None  # None: the packaged mappings/overrides.yaml; "" disables overrides
    cache_dir: str | None = None  # None: $CROSSMODAL_CACHE or the user cache dir

    def __post_init__(self) -> None:
        lo, hi = self.gain_range
        if not 0 < lo <= hi:
            raise ValueError(f"gain_range {self.gain_range} must satisfy 0 < lo <= hi")
        if not 0 <= self.min_score <= 1:
            raise ValueError(f"min_score {self.min_score} must be in [0, 1]")
        if not 0 < self.similarity_threshold < 1:
            raise ValueError(f"similarity_threshold {self.similarity_threshold} must be in (0, 1)")
        if self.max_classes < 1:
            raise ValueError(f"max_classes {self.max_classes} must be >= 1")
        self.tag_rules  # noqa: B018 - checks tag_top_k, sure_score and margin

    @property
    def tag_rules(self) -> TagRules:
        """The rules audio cues are decided by."""
        return TagRules(self.tag_top_k, self.min_score, self.sure_score, self.margin, self.gain_range)


def _norm(text: str) -> str:
    return " ".join(text.lower().split())


def cue_source(cue: object) -> str:
    """The modality of a cue: its ``source`` (an ``audio.Cue``), ``"text"`` for a string, else ``"manual"``."""
    if isinstance(cue, str):
        return "text"
    return str(getattr(cue, "source", "manual"))


def cue_labels(cue: object) -> tuple[tuple[str, float], ...]:
    """Normalise a cue: text, list of (label, score) or an object with ``labels`` (audio Cue)."""
    if isinstance(cue, str):
        pairs: object = [(cue, 1.0)]
    elif hasattr(cue, "labels"):
        pairs = cue.labels
    else:
        pairs = cue
    try:
        out = tuple((str(label), float(score)) for label, score in pairs)
    except (TypeError, ValueError):
        raise ValueError(f"cue {cue!r}: expected text, a list of (label, score) pairs or an object with "
                         "`labels`") from None
    for label, score in out:
        if not label.strip() or not 0.0 <= score <= 1.0:
            raise ValueError(f"cue label {label!r} with score {score}: expected non-empty text, score in [0, 1]")
    return out


class CueMapper:
    """Maps cues to a :class:`Guide` for one class list (ImageNet-1k or a model's own wnids)."""

    def __init__(self, config: MapperConfig = MapperConfig(), *, wnids: Sequence[str] | None = None,
                 encoder: TextEncoder | None = None):
        self.config = config
        self.hierarchy: WordNetHierarchy = imagenet_hierarchy(wnids)
        self.ontology: AudioSetOntology = audioset_ontology()
        self.overrides: dict[str, Override] = {}
        if config.overrides != "":
            path = Path(config.overrides) if config.overrides else default_overrides_path()
            self.overrides = load_overrides(path, self.hierarchy, config.gain_range)
        self.encoder = encoder or TextEncoder(model_name=config.model, cache_dir=config.cache_dir)
        self._index: EmbeddingIndex | None = None  # built on the first cue that needs embeddings
        self._label_hits: dict[str, Hit] | None = None
        self._index_lock = threading.Lock()
        self._query_hits: OrderedDict[str, Hit] = OrderedDict()  # LRU memo of free-text queries
        self._memo_lock = threading.Lock()
        self._tag_labels: dict[str, TagLabel] = {}
        self._class_names = {c.index: c.name for c in self.hierarchy.classes}

    @property
    def index(self) -> EmbeddingIndex:
        """The class-text embeddings (cache or packaged data; the sentence model only for other class lists)."""
        self._embeddings()
        return self._index

    def embedded_texts(self) -> tuple[list[str], list[str]]:
        """The texts this mapper embeds up front: its class texts and the sorted AudioSet label names
        (``scripts/make_text_embeddings.py`` ships them for the default model and class list)."""
        return [c.text for c in self.hierarchy.classes], sorted(self.ontology.names)

    def _embeddings(self) -> dict[str, Hit]:
        """Build, once and thread-safely, the class index and the nearest class of every AudioSet label
        (a closed set, searched in one go); returns the latter."""
        with self._index_lock:
            if self._label_hits is None:
                class_texts, names = self.embedded_texts()
                self._index = EmbeddingIndex.build(self.encoder, [c.index for c in self.hierarchy.classes],
                                                   class_texts)
                hits = self._index.search(self.encoder.encode_cached(names), top_k=1)
                self._label_hits = {n: h[0] for n, h in zip(names, hits, strict=True)}
            return self._label_hits

    @classmethod
    def default(cls, **overrides) -> CueMapper:
        """The packaged all-MiniLM-L6-v2 mapper; keyword arguments replace MapperConfig fields."""
        return cls(replace(MapperConfig(), **overrides))

    # --- single names -----------------------------------------------------------------------
    def _nearest_class(self, text: str) -> Hit:
        """Best class for a text: precomputed for AudioSet labels, memoised (LRU, thread-safe) for other texts."""
        label_hits = self._embeddings()
        if text in label_hits:
            return label_hits[text]
        with self._memo_lock:
            hit = self._query_hits.get(text)
            if hit is not None:
                self._query_hits.move_to_end(text)
                return hit
        hit = self.index.search(self.encoder.encode([text]), top_k=1)[0][0]  # outside the lock: the slow part
        with self._memo_lock:
            self._query_hits[text] = hit
            while len(self._query_hits) > QUERY_MEMO:
                self._query_hits.popitem(last=False)
        return hit

    def _override(self, label: str, score: float, phrase: str, via: str) -> Match | None:
        hit = self.overrides.get(_norm(phrase))
        if hit is None:
            return None
        return Match(label, score, "override", hit.key, 1.0, hit.classes, via)

    def _wordnet(self, label: str, score: float, phrase: str, via: str) -> Match | None:
        candidates = [phrase] + ([phrase[:-1]] if phrase.lower().endswith("s") and len(phrase) > 3 else [])
        for word in candidates:
            synset = self.hierarchy.main_sense(word)
            if synset is not None:
                return Match(label, score, "wordnet", synset, 1.0, self.hierarchy.classes_under(synset), via)
        return None

    def _embedding(self, label: str, score: float, text: str, via: str) -> Match | None:
        hit = self._nearest_class(text)
        if hit.score < self.config.similarity_threshold:
            return None
        return Match(label, score, "embedding", hit.text.split(":")[0], hit.score, (int(hit.key),), via)

    def _resolve_name(self, label: str, score: float, name: str, via: str = "", embeddings: bool = True) -> Match | None:
        synonyms = split_synonyms(name) or (name,)
        for phrase in (name, *synonyms):
            if (m := self._override(label, score, phrase, via)) is not None:
                return m
        for phrase in synonyms:
            if (m := self._wordnet(label, score, phrase, via)) is not None:
                return m
        return self._embedding(label, score, name, via) if embeddings else None

    def _resolve_audioset(self, label: str, score: float, name: str, tag: bool = False) -> list[Match]:
        """Matches of an AudioSet label; through its parents when it matches nothing itself. For audio tags
        (``tag``): embedding matches only with ``tag_embeddings``, and parents only when each of them matches
        (a sound that may come from a classless source is no evidence for the others)."""
        embeddings = self.config.tag_embeddings or not tag
        match = self._resolve_name(label, score, name, embeddings=embeddings)
        if match is not None:
            return [self._narrow(match, name)]
        if self.ontology.object_of(name) is not None:
            return []  # the label is an object itself (Helicopter): its family is no substitute
        found = [self._resolve_name(label, score, parent, f"AudioSet ontology {name} -> {parent}", embeddings)
                 for parent in self.ontology.parents(name)]
        if tag and None in found:
            return []
        return [self._narrow(m, name) for m in found if m is not None]

    def tag_label(self, mid: str) -> TagLabel:
        """What an AudioSet label (by mid) maps to for audio cues: the entry :func:`decide` uses (memoised).

        Generic labels (a root or a root's child) map to nothing; matches without classes or with more than
        ``max_classes`` are left out."""
        with self._memo_lock:
            if mid in self._tag_labels:
                return self._tag_labels[mid]
        name = self.ontology.name_of(mid)
        if name is None:
            raise ValueError(f"{mid!r} is not an AudioSet mid (expected an id like '/m/01yrx')")
        generic = self.ontology.is_generic(name)
        found = [] if generic else self._resolve_audioset(name, 1.0, name, tag=True)
        matches = tuple(LabelMatch(m.classes, self._strength(m), self._fixed_gain(m), m.method, m.matched,
                                   m.similarity, m.via)
                        for m in found if 0 < len(m.classes) <= self.config.max_classes)
        ancestors = tuple(sorted(self.ontology.mid_of(a) for a in self.ontology.ancestors(name)
                                 if not self.ontology.is_generic(a)))
        entry = TagLabel(mid, name, ancestors, generic, matches)
        with self._memo_lock:
            return self._tag_labels.setdefault(mid, entry)

    def _narrow(self, match: Match, name: str) -> Match:
        """Keep the classes that an AudioSet ancestor also names (Cat under "Domestic animals,
        pets": WordNet cat.n.01 holds cougar and lynx, domestic_animal.n.01 keeps the house cats)."""
        if match.method == "override":
            return match
        for ancestor in sorted(self.ontology.ancestors(name)):
            for phrase in split_synonyms(ancestor):
                context = self._wordnet(match.label, match.score, phrase, via="")
                if context is None:
                    continue
                kept = tuple(c for c in match.classes if c in set(context.classes))
                if kept and kept != match.classes:
                    via = f"{match.via}, " if match.via else ""
                    return replace(match, classes=kept, via=f"{via}narrowed by {ancestor!r} ({context.matched})")
        return match

    def _resolve_text(self, label: str, score: float) -> list[Match]:
        tokens = re.findall(r"[a-z0-9][a-z0-9'-]*", label.lower())
        matches: list[Match] = []
        i = 0
        while i < len(tokens):
            for n in range(min(MAX_NGRAM, len(tokens) - i), 0, -1):
                phrase = " ".join(tokens[i:i + n])
                if n == 1 and phrase in FUNCTION_WORDS:
                    continue
                found = self._phrase(label, score, phrase)
                if found is not None:
                    matches.extend(found)
                    i += n
                    break
            else:
                i += 1
        if matches:
            return matches
        match = self._embedding(label, score, label, via="")
        return [match] if match is not None else []

    def _phrase(self, label: str, score: float, phrase: str) -> list[Match] | None:
        via = f"phrase {phrase!r}"
        if (m := self._override(label, score, phrase, via=via)) is not None:
            return [m]
        name = self.ontology.lookup(phrase)
        if name is not None and not self.ontology.is_root(name):
            found = [m if m.via else replace(m, via=via) for m in self._resolve_audioset(label, score, name)]
            return found or None
        m = self._wordnet(label, score, phrase, via=via)
        return [m] if m is not None else None

    # --- whole cues -------------------------------------------------------------------------
    def map(self, cue: object) -> Guide:
        """Map a cue (text, [(label, score)], or an object with ``labels``) to a Guide."""
        pairs = cue_labels(cue)
        if cue_source(cue) == "audio":
            return self._map_tags(pairs, getattr(cue, "mids", None))
        notes: list[str] = []
        kept = [(label, score) for label, score in pairs if score >= self.config.min_score]
        notes.extend(f"ignored {label!r}: score {score:.2f} < min_score {self.config.min_score}"
                     for label, score in pairs if score < self.config.min_score)
        audio = {self.ontology.lookup(label) for label, _ in kept} - {None}
        matches: list[Match] = []
        for label, score in kept:
            name = self.ontology.lookup(label)
            if name is not None:
                specific = sorted(a for a in audio if name in self.ontology.ancestors(a))
                if specific or self.ontology.is_root(name):
                    why = f"more specific {specific[0]!r} present" if specific else "a top-level AudioSet category"
                    notes.append(f"skipped {label!r}: {why}")
                    continue
                found = self._resolve_audioset(label, score, name)
            else:
                found = self._resolve_text(label, score)
            for m in found:
                if len(m.classes) > self.config.max_classes:
                    notes.append(f"rejected {label!r} -> {m.matched!r}: {len(m.classes)} classes is too generic "
                                 f"(max_classes {self.config.max_classes})")
                else:
                    matches.append(m)
            if not found:
                notes.append(self._abstain_reason(label, name))
        gains = self._class_gains(matches)
        reason = "" if gains else NO_COUNTERPART if kept else WEAK
        return Guide(tuple(gains), tuple(gains.items()), bool(gains), tuple(matches), tuple(notes), pairs,
                     cue_source(cue), self._class_names, reason)

    def _map_tags(self, pairs: tuple[tuple[str, float], ...], mids: Sequence[str | None] | None) -> Guide:
        """An audio cue's guide: :func:`decide` on its labels by mid (a label without one is looked up by name)."""
        notes, tags, names = [], [], {}
        for i, (label, score) in enumerate(pairs):
            mid = mids[i] if mids is not None and mids[i] is not None else None
            if mid is None and (name := self.ontology.lookup(label)) is not None:
                mid = self.ontology.mid_of(name)
            if mid is None or self.ontology.name_of(mid) is None:
                notes.append(f"ignored {label!r}: not an AudioSet label")
                continue
            tags.append((mid, score))
            names.setdefault(mid, label)
        entries = {mid: self.tag_label(mid) for mid, _ in tags}
        decision = decide(entries, self.config.tag_rules, tags)
        notes.extend(decision.notes)
        if not decision.confident:
            return Guide.abstain(notes, pairs, "audio", decision.reason)
        matches = tuple(Match(names[mid], score, m.method, m.matched, m.similarity, m.classes, m.via)
                        for mid, score in decision.used for m in entries[mid].matches)
        return Guide(decision.classes, decision.gains, True, matches, tuple(notes), pairs, "audio",
                     self._class_names)

    def _abstain_reason(self, label: str, name: str | None) -> str:
        hit = self._nearest_class(name or label)
        why = (f"abstained on {label!r}: no curated entry or WordNet sense among the classes; nearest class "
               f"{hit.text.split(':')[0]!r} at cosine {hit.score:.2f} < {self.config.similarity_threshold}")
        if name is not None and self.ontology.object_of(name):
            return why + f"; it names {self.ontology.object_of(name)}, which has no class"
        if name is not None and self.ontology.parents(name):
            return why + f"; its AudioSet parents {list(self.ontology.parents(name))} match nothing either"
        return why

    def _strength(self, match: Match) -> float:
        if match.method != "embedding":
            return 1.0
        t = self.config.similarity_threshold
        return 0.5 + 0.5 * min(1.0, max(0.0, (match.similarity - t) / (1 - t)))

    def gain(self, score: float, strength: float) -> float:
        """The documented monotone gain function: ``lo + (hi - lo) * score * strength``."""
        return gain_of(self.config.gain_range, score, strength)

    def _fixed_gain(self, match: Match) -> float | None:
        """The curated gain of an override match, if its entry sets one."""
        override = self.overrides.get(match.matched) if match.method == "override" else None
        return override.gain if override is not None else None

    def _class_gains(self, matches: list[Match]) -> dict[int, float]:
        gains: dict[int, float] = {}
        for m in matches:
            fixed = self._fixed_gain(m)
            g = fixed if fixed is not None else self.gain(m.score, self._strength(m))
            for c in m.classes:
                gains[c] = max(gains.get(c, 0.0), g)
        return gains
