"""A sound-to-answer loop for a robot without PyTorch: microphone (or a WAV file) -> tagger -> guide -> cutout -> answer.

    python examples/robot_loop.py prepare --out-dir robot/          # once, with torch: writes the files below
    python examples/robot_loop.py run --dir robot/ --audio cat.wav --image photo.jpg   # torch-free
    python examples/robot_loop.py run --dir robot/ --image photo.jpg --seconds 3       # microphone (sounddevice)

``run`` imports only numpy, onnxruntime and Pillow (plus the standard library and the project's torch-free
``audio.windows``, ``mappings.tag_decisions`` and ``xmcommon``): the WAV file is read with ``wave`` and resampled
to the tagger's rate in numpy; windows, silence dropping and mean pooling are ``audio.windows``, the very code
``audio.AudioTagger`` pools with; the decision is ``TagDecisionTable.decide_scores``, the code ``CueMapper``
decides with; the image is preprocessed as the cutout file's metadata says (timm's eval transform, in Pillow +
numpy) and the answer's probabilities are the library's ``cutout`` mode: ``softmax(logits / T)`` times the cue
agreement ``sigmoid(scale * max(logits) + offset)``, both from the file's calibration metadata.

``prepare`` (torch) writes ``yamnet.onnx`` (the tagger, front end inside), ``table.json`` (the decisions for its
label set), one cutout ONNX file per class set the table gives for a single label (every label that maps to
classes: a cue heard alone), plus the class sets of ``--clips``, and ``full.onnx``, the full model. Cutouts are
exported ahead of time because making one needs torch; a class set that only a mix of labels gives (no file
prepared) runs ``full.onnx`` and keeps that set's logits: the same numbers as its cutout (the branches of a
SeqPar model are independent) at the full model's cost, and the answer says so (``"network": "full"``).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import time
import wave
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
from PIL import Image

from audio.windows import pool_scores, sound_windows
from mappings.guide import SILENT
from mappings.tag_decisions import TagDecision, TagDecisionTable
from xmcommon.cli import exit_process, run_cli
from xmcommon.files import atomic_write_text

MANIFEST, TAGGER_FILE, TABLE_FILE, FULL_FILE = "manifest.json", "yamnet.onnx", "table.json", "full.onnx"
BATCH_WINDOWS = 64  # windows per tagger run (as audio.yamnet.YAMNetTagger.batch_size)
INTERPOLATIONS = {"bilinear": Image.BILINEAR, "bicubic": Image.BICUBIC, "nearest": Image.NEAREST,
                  "box": Image.BOX, "hamming": Image.HAMMING, "lanczos": Image.LANCZOS}


# ------------------------------------------------------------------------------------------------ audio
def read_wav(path: Path) -> tuple[np.ndarray, int]:
    """Mono float32 samples in [-1, 1) and the rate of a PCM WAV file (8/16/24/32-bit), with the stdlib ``wave``;
    other formats through soundfile when it is installed."""
    if not path.is_file():
        raise FileNotFoundError(f"audio file {path} not found")
    try:
        with wave.open(str(path), "rb") as handle:
            rate, channels, width = handle.getframerate(), handle.getnchannels(), handle.getsampwidth()
            data = handle.readframes(handle.getnframes())
    except (wave.Error, EOFError) as error:
        try:
            import soundfile
        except ImportError:
            raise ValueError(f"{path}: not a PCM WAV file ({error}); install soundfile for other formats") from None
        samples, rate = soundfile.read(str(path), dtype="float32", always_2d=True)
        return samples.mean(axis=1, dtype=np.float32), int(rate)
    if width == 1:
        pcm = (np.frombuffer(data, np.uint8).astype(np.float32) - 128.0) / 128.0
    elif width == 3:
        raw = np.frombuffer(data, np.uint8).reshape(-1, 3)
        pcm = (raw[:, 0].astype(np.int32) | raw[:, 1].astype(np.int32) << 8 | raw[:, 2].astype(np.int8).astype(
            np.int32) << 16).astype(np.float32) / 2.0**23
    else:
        pcm = np.frombuffer(data, f"<i{width}").astype(np.float32) / float(2 ** (8 * width - 1))
    if pcm.size == 0:
        raise ValueError(f"{path}: zero-length audio (no samples)")
    pcm = pcm.reshape(-1, channels)
    return (pcm.mean(axis=1, dtype=np.float32) if channels > 1 else pcm[:, 0]), rate


def resample(samples: np.ndarray, rate: int, target: int, passband: float = 0.913,
             attenuation: float = 120.0) -> np.ndarray:
    """Resample in numpy with a Kaiser-windowed sinc low-pass shaped like soxr's default (flat to ``passband`` of
    the lower Nyquist frequency, ``attenuation`` dB from it on): local, so digital silence stays exactly zero and
    the tagger's silence rule sees what it sees after soxr."""
    if rate == target:
        return samples
    ratio = min(1.0, target / rate)
    cutoff, transition = (1.0 + passband) / 2 * ratio, (1.0 - passband) * ratio  # of the input's Nyquist
    beta = 0.1102 * (attenuation - 8.7)
    half = int(np.ceil((attenuation - 8.0) / (2.285 * np.pi * transition) / 2))
    step = rate // math.gcd(rate, target)  # output n sits at n * step / up input samples; phases repeat every up
    up = target // math.gcd(rate, target)
    offsets = np.arange(-half + 1, half + 1)
    distance = (np.arange(up) * step % up / up)[:, None] - offsets[None, :]  # one filter per phase
    taper = np.i0(beta * np.sqrt(np.clip(1.0 - (distance / half) ** 2, 0.0, None))) / np.i0(beta)
    bank = cutoff * np.sinc(cutoff * distance) * taper
    padded = np.pad(samples.astype(np.float64), (half, half + 1))
    count = round(len(samples) * target / rate)
    out = np.empty(count, dtype=np.float32)
    for start in range(0, count, 4096):
        n = np.arange(start, min(start + 4096, count))
        base = n * step // up
        out[n] = (padded[base[:, None] + offsets[None, :] + half] * bank[n % up]).sum(axis=1)
    return out


def microphone_blocks(rate: int, seconds: float, block_seconds: float = 0.48) -> Iterator[np.ndarray]:
    """Mono float32 blocks from the default microphone (sounddevice), ``seconds`` in all."""
    import sounddevice

    block = round(block_seconds * rate)
    with sounddevice.InputStream(samplerate=rate, channels=1, dtype="float32", blocksize=block) as stream:
        for _ in range(max(1, round(seconds / block_seconds))):
            data, _overflowed = stream.read(block)
            yield np.ascontiguousarray(data[:, 0])


class OnnxTagger:
    """The exported tagger: pooled scores of a stream of sample blocks, as ``audio.AudioTagger.scores`` pools."""

    def __init__(self, path: Path):
        self.session = _session(path)
        meta = _metadata(self.session)
        self.rate, self.window, self.hop = meta["sampling_rate"], meta["window_samples"], meta["hop_samples"]
        self.pooling, self.drop_silence, self.mids = meta["pooling"], meta["drop_silence"], meta["mids"]

    def scores(self, blocks: Iterable[np.ndarray]) -> np.ndarray | None:
        windows = sound_windows(blocks, self.window, self.hop, drop_silence=self.drop_silence,
                                sampling_rate=self.rate)
        return pool_scores((self._run(batch) for batch in _batched(windows, BATCH_WINDOWS)), self.pooling)

    def _run(self, windows: list[np.ndarray]) -> np.ndarray:
        batch = np.stack([np.pad(w, (0, self.window - len(w))) for w in windows]).astype(np.float32)
        return self.session.run(None, {"waveforms": batch})[0]


# ------------------------------------------------------------------------------------------------ vision
def preprocess(path: Path, preprocessing: dict[str, Any]) -> np.ndarray:
    """``(1, 3, S, S)`` float32 input as the file's preprocessing says (timm's eval transform, centre crop)."""
    if not path.is_file():
        raise FileNotFoundError(f"image file {path} not found")
    size, crop_pct, mode = preprocessing["image_size"], preprocessing["crop_pct"], preprocessing["crop_mode"]
    if mode != "center":
        raise ValueError(f"crop_mode {mode!r}: the robot loop implements 'center' only")
    with Image.open(path) as image:
        image = image.convert("RGB")
    scale = int(size / crop_pct)  # math.floor for positive numbers
    width, height = image.size
    if width <= height:
        new = (scale, int(scale * height / width))
    else:
        new = (int(scale * width / height), scale)
    image = image.resize(new, INTERPOLATIONS[preprocessing["interpolation"]])
    left, top = round((new[0] - size) / 2.0), round((new[1] - size) / 2.0)  # torchvision's CenterCrop
    image = image.crop((left, top, left + size, top + size))
    pixels = np.asarray(image, dtype=np.float32) / np.float32(255.0)
    mean, std = (np.asarray(preprocessing[k], dtype=np.float32) for k in ("mean", "std"))
    return ((pixels - mean) / std).transpose(2, 0, 1)[None].copy()


def answer(logits: np.ndarray, calibration: dict[str, Any], class_ids: list[int], names: list[str],
           top_k: int) -> list[dict[str, Any]]:
    """The library's ``cutout`` probabilities (``crossmodal.scoring.Scorer``) of one image's logits, top ``top_k``."""
    logits = logits.astype(np.float32)
    scaled = logits / np.float32(calibration["temperatures"].get("cutout", 1.0))
    probs = np.exp(scaled - scaled.max())
    probs /= probs.sum()
    scale, offset = calibration.get("agreement") or (1.0, 0.0)
    probs *= 1.0 / (1.0 + np.exp(-(scale * float(logits.max()) + offset)))
    order = np.argsort(-probs, kind="stable")[:top_k]
    return [{"class_id": class_ids[i], "name": names[i], "prob": float(probs[i])} for i in order]


# ------------------------------------------------------------------------------------------------ run
def classes_key(classes: Iterable[int]) -> str:
    return ",".join(map(str, classes))


def run(args: argparse.Namespace) -> dict[str, Any]:
    directory = Path(args.dir)
    manifest_path = directory / MANIFEST
    if not manifest_path.is_file():
        raise FileNotFoundError(f"{manifest_path} not found: run 'robot_loop.py prepare --out-dir {directory}'")
    manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    times: dict[str, float] = {}
    clock = time.perf_counter()

    def lap(name: str) -> None:
        nonlocal clock
        now = time.perf_counter()
        times[name] = round(1e3 * (now - clock), 2)
        clock = now

    tagger = OnnxTagger(directory / manifest["tagger"])
    table = TagDecisionTable.load(directory / manifest["table"])
    lap("load_tagger_and_table_ms")
    if args.audio is not None:
        samples, rate = read_wav(Path(args.audio))
        blocks: Iterable[np.ndarray] = [resample(samples, rate, tagger.rate)]
        source = str(args.audio)
    else:
        blocks, source = microphone_blocks(tagger.rate, args.seconds), f"microphone ({args.seconds} s)"
    lap("read_audio_ms")
    scores = tagger.scores(blocks)
    lap("tagger_ms")
    if scores is None:
        decision = TagDecision((), (), SILENT)
    else:
        decision = table.decide_scores(scores)
    lap("decide_ms")
    result: dict[str, Any] = {"audio": source, "image": str(args.image), "tags": _top_tags(scores, table, 5),
                              "guide": {"classes": list(decision.classes), "reason": decision.reason,
                                        "used": [list(u) for u in decision.used]}}
    if not decision.classes:
        result.update(network=None, predictions=[], timings=times)
        return result
    file = manifest["cutouts"].get(classes_key(decision.classes))
    network = "cutout" if file is not None else "full"
    session = _session(directory / (file or manifest["full"]))
    meta = _metadata(session)
    lap("load_vision_ms")
    inputs = preprocess(Path(args.image), meta["preprocessing"])
    lap("preprocess_ms")
    logits = session.run(None, {"image": inputs})[0][0]
    lap("vision_ms")
    ids, names = meta["class_ids"], meta["class_names"]
    if network == "full":  # the cutout's logits are the full model's at its classes
        columns = [ids.index(c) for c in decision.classes]
        logits, ids, names = logits[columns], list(decision.classes), [names[i] for i in columns]
    result.update(network=network, file=str(file or manifest["full"]),
                  file_bytes=(directory / (file or manifest["full"])).stat().st_size,
                  predictions=answer(logits, meta["calibration"], ids, names, args.top_k))
    lap("answer_ms")
    result["timings"] = times
    return result


def _top_tags(scores: np.ndarray | None, table: TagDecisionTable, k: int) -> list[list[Any]]:
    if scores is None:
        return []
    order = np.argsort(-scores, kind="stable")[:k]
    return [[table.labels[i].name, round(float(scores[i]), 4)] for i in order]


def _session(path: Path) -> ort.InferenceSession:
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found")
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])


def _metadata(session: ort.InferenceSession) -> dict[str, Any]:
    return {k: json.loads(v) for k, v in session.get_modelmeta().custom_metadata_map.items()}


def _batched(items: Iterable, size: int) -> Iterator[list]:
    batch: list = []
    for item in items:
        batch.append(item)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


# ------------------------------------------------------------------------------------------------ prepare
def prepare(args: argparse.Namespace) -> dict[str, Any]:
    """Export the tagger, the decision table, the full model and the cutouts (needs torch; see the module doc)."""
    from audio.yamnet import YAMNetTagger
    from audio.yamnet.onnx import export_tagger_onnx
    from mappings import CueMapper
    from mappings.tag_table import build_table, tagger_labels
    from vision import load_seqpar
    from vision.io import model_digest
    from vision.onnx import export_classes

    out = Path(args.out_dir)
    (out / "cutouts").mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    tagger = YAMNetTagger.from_pretrained("yamnet")
    export_tagger_onnx(tagger, out / TAGGER_FILE)
    table = build_table(CueMapper.default(cache_dir=args.cache_dir), tagger_labels("yamnet"), tagger="yamnet")
    table.save(out / TABLE_FILE)
    sets = {} if args.only_clips else {d.classes: None for d in
                                       (table.decide([(label.mid, 1.0)]) for label in table.labels) if d.classes}
    for clip in args.clips:
        scores = tagger.scores(clip)
        decision = table.decide_scores(scores) if scores is not None else None
        if decision is not None and decision.classes:
            sets[decision.classes] = None
    model = load_seqpar(args.model).eval()
    digest = model_digest(model)
    export_classes(model, None, out / FULL_FILE, gains=False, provenance={"source": str(args.model)})
    cutouts = {}
    for classes in sets:
        key = classes_key(classes)
        name = f"cutouts/{hashlib.sha256(key.encode()).hexdigest()[:16]}.onnx"
        export_classes(model, classes, out / name, gains=False, provenance={"source": str(args.model)},
                       parent_digest=digest)
        cutouts[key] = name
    manifest = {"tagger": TAGGER_FILE, "table": TABLE_FILE, "full": FULL_FILE, "cutouts": cutouts}
    atomic_write_text(out / MANIFEST, json.dumps(manifest, indent=1) + "\n")
    files = [out / TAGGER_FILE, out / TABLE_FILE, out / FULL_FILE, *(out / n for n in cutouts.values())]
    return {"out_dir": str(out), "cutouts": len(cutouts), "seconds": round(time.perf_counter() - start, 1),
            "bytes": {"tagger": files[0].stat().st_size, "table": files[1].stat().st_size,
                      "full": files[2].stat().st_size, "cutouts": sum(f.stat().st_size for f in files[3:])}}


def get_args_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    ready = commands.add_parser("prepare", help="export the files the loop runs (needs torch)")
    ready.add_argument("--out-dir", required=True)
    ready.add_argument("--model", default="default", help="SeqPar model directory (default: the packaged one)")
    ready.add_argument("--clips", nargs="*", default=[], help="also export the class sets these sounds give")
    ready.add_argument("--cache-dir", default=None, help="embedding cache (default: the user cache dir)")
    ready.add_argument("--only-clips", action="store_true", help="cutouts for the --clips' class sets only")
    loop = commands.add_parser("run", help="one sound -> guide -> cutout -> answer (torch-free)")
    loop.add_argument("--dir", required=True, help="what prepare wrote")
    loop.add_argument("--image", required=True)
    loop.add_argument("--audio", default=None, help="a WAV file (default: the microphone, with sounddevice)")
    loop.add_argument("--seconds", type=float, default=3.0, help="microphone: seconds to listen")
    loop.add_argument("--top-k", type=int, default=5)
    return parser


def main(args: argparse.Namespace) -> dict[str, Any]:
    if args.command == "prepare":
        return prepare(args)
    if args.top_k < 1:
        raise ValueError(f"--top-k {args.top_k}: expected a positive number")
    if args.audio is None:
        try:
            import sounddevice  # noqa: F401
        except (ImportError, OSError):
            raise ValueError("no --audio file and no microphone: install sounddevice or pass --audio clip.wav") \
                from None
    return run(args)


if __name__ == "__main__":
    exit_process(run_cli(get_args_parser(), main))
