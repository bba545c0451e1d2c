"""One classifier, many threads: first-ever free-text cues and new cutouts at the same moment (bounded, ~20 s).

transformers' loader patches torch.nn.Module.register_parameter for the whole process while it runs
(see xmcommon.threads): without the project's model-build lock, cutouts built during the MiniLM load
land on the meta device and overlapping loads can leave the patch in place.
"""

from __future__ import annotations

import threading

import torch
from torch import nn

from crossmodal import MODES, Guide, GuidedClassifier
from tests.vision_helpers import tiny_model

THREADS = 8
torch.set_num_threads(1)  # as the other test modules: tiny models on a shared machine
CLASS_IDS = (281, 282, 283, 284, 285, 151, 152)
# Free text that no curated entry, WordNet sense or AudioSet label matches reaches the MiniLM encoder,
# which then loads (lazily, for the first time) while the other threads work.
TEXTS = [f"zxq blorf {i} wubba" for i in range(THREADS // 2 - 1)] + ["meow"]
SUBSETS = [(0, 1, 2), (4, 5), (3, 6), (1, 2, 3, 4)]
REBUILDS = 10  # cutouts built from scratch by each odd thread, to overlap the MiniLM load


def _jobs(clf: GuidedClassifier, index: int, inputs: torch.Tensor) -> list:
    """Thread ``index``'s work: even threads cue with free text (the first one loads MiniLM), odd ones
    build fresh cutouts over and over; then all predict in every mode."""
    out = []
    if index % 2 == 0:
        guide = clf.guide(text=TEXTS[index // 2])
    else:
        classes = [CLASS_IDS[c] for c in SUBSETS[index // 2]]
        guide = Guide.for_classes(classes, gain=2.0)
        with torch.inference_mode():
            out += [clf.model.cutout(classes)(inputs).tolist() for _ in range(REBUILDS)]
    for mode in MODES:
        for result in clf.predict_preprocessed(inputs, guide, mode, top_k=7):
            out.append([(p.class_id, p.prob) for p in result.predictions])
    return out


def test_eight_threads_first_cues_and_new_cutouts_at_once_match_serial_results():
    original_register = nn.Module.register_parameter
    inputs = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(3))
    model = tiny_model(image_size=64, class_ids=CLASS_IDS)
    clf = GuidedClassifier(model)
    barrier, results, errors = threading.Barrier(THREADS), [None] * THREADS, []

    def work(index: int) -> None:
        barrier.wait()
        try:
            results[index] = _jobs(clf, index, inputs)
        except Exception as err:  # noqa: BLE001 - every failure is collected and reported
            errors.append(f"thread {index}: {type(err).__name__}: {err}")

    threads = [threading.Thread(target=work, args=(i,)) for i in range(THREADS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not errors, errors
    assert nn.Module.register_parameter is original_register  # no loader patch left behind
    for subset in SUBSETS:  # the cutouts built while MiniLM loaded hold real weights, not meta tensors
        entry, cached = clf.cutouts.get(tuple(sorted(CLASS_IDS[c] for c in subset)))
        assert cached and all(p.device.type == "cpu" for p in entry.model.parameters())
    serial = GuidedClassifier(model)
    assert results == [_jobs(serial, i, inputs) for i in range(THREADS)]  # bit-identical probabilities
