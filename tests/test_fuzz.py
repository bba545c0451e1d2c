"""Property-based fuzzing of GuidedClassifier.predict: random frame shapes, dtypes, modes, guides and sizes give a
result with finite probabilities in [0, 1], or a documented exception (ValueError) with a message - nothing else."""

from __future__ import annotations

import numpy as np
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from crossmodal import MODES, Guide, GuidedClassifier
from tests.vision_helpers import tiny_model

torch.set_num_threads(1)
CLF = GuidedClassifier(tiny_model(image_size=32))
SUCCESSES: list[str] = []
DTYPES = [np.uint8] * 6 + [np.uint16, np.int16, np.float32, np.float64, np.bool_]  # mostly valid


@st.composite
def frames(draw):
    kind = draw(st.sampled_from(["numpy"] * 3 + ["torch"] * 2 + ["pil"] * 2 + ["list", "junk"]))
    h, w = draw(st.integers(0, 40)), draw(st.integers(0, 40))
    channels = draw(st.sampled_from([3] * 6 + [1, 4]))
    dtype = draw(st.sampled_from(DTYPES))
    array = (np.random.default_rng(draw(st.integers(0, 99))).random((h, w, channels)) * 255).astype(dtype)
    if kind == "numpy":
        return array if channels != 1 or draw(st.booleans()) else array[:, :, 0]
    if kind == "torch":
        tensor = torch.from_numpy(np.ascontiguousarray(array.transpose(2, 0, 1)).astype(np.float32))
        return tensor / draw(st.sampled_from([1.0, 255.0, -1.0])) if draw(st.booleans()) else tensor.to(torch.uint8)
    if kind == "pil":
        mode = draw(st.sampled_from(["RGB", "L", "I;16", "F", "RGBA", "P", "1"]))
        return Image.new(mode, (max(1, w), max(1, h)))
    if kind == "list":
        return [array]
    return draw(st.sampled_from([None, 3, "not/a/file.png", b"bytes", {"x": 1}]))


@settings(max_examples=200, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
@given(frame=frames(), mode=st.sampled_from(MODES), top_k=st.integers(-1, 12),
       classes=st.lists(st.integers(-1, 8), max_size=4), gain=st.sampled_from([0.0, 0.5, 1.0, 3.0, 1e6]),
       min_agreement=st.sampled_from([None, 0.0, 0.5, 1.0]))
def test_predict_returns_finite_probabilities_or_raises_a_documented_error(frame, mode, top_k, classes, gain,
                                                                           min_agreement):
    try:
        guide = Guide.for_classes(classes, gain) if classes else None
        result = CLF.predict(frame, guide, mode, top_k=top_k, min_agreement=min_agreement)
    except ValueError as err:  # includes FileNotFoundError-free bad input: a message is always given
        assert str(err), type(err)
        return
    except FileNotFoundError as err:
        assert "not found" in str(err)
        return
    SUCCESSES.append(mode)
    probs = [p.prob for p in result.predictions]
    assert probs and all(np.isfinite(p) and 0 <= p <= 1 for p in probs)
    assert len(probs) <= top_k and result.mode in MODES
    assert result.cue_agreement is None or 0 <= result.cue_agreement <= 1


def test_zz_the_fuzzer_reached_every_mode():
    """Guards the fuzzer itself: enough generated inputs were valid to exercise every mode's success path."""
    assert set(SUCCESSES) == set(MODES) and len(SUCCESSES) >= 20, SUCCESSES
