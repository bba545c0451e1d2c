"""GuidedClassifier contracts on a tiny SeqPar model: modes are exact, fallbacks are explicit, threads agree."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import torch

from crossmodal import MODES, Guide, GuidedClassifier
from crossmodal.cutouts import CutoutCache
from tests.vision_helpers import tiny_model
from vision.cost import measure

torch.set_num_threads(1)
SIZE = 64


@pytest.fixture(scope="module")
def clf() -> GuidedClassifier:
    return GuidedClassifier(tiny_model(image_size=SIZE))


@pytest.fixture(scope="module")
def inputs() -> torch.Tensor:
    return torch.randn(3, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(1))


def probs_by_class(results) -> torch.Tensor:
    """(B, K) probabilities ordered by class id, from results with all classes predicted."""
    rows = [sorted((p.class_id, p.prob) for p in r.predictions) for r in results]
    return torch.tensor([[p for _, p in row] for row in rows])


def test_unguided_and_attend_are_the_models_softmax(clf, inputs):
    guide = Guide.for_classes([4, 5], gain=2.5)
    with torch.no_grad():
        plain = torch.softmax(clf.model(inputs), 1)
        attended = torch.softmax(clf.model(inputs, gains={4: 2.5, 5: 2.5}), 1)
    assert torch.allclose(probs_by_class(clf.predict_preprocessed(inputs, None, "unguided", top_k=7)), plain, atol=1e-6)
    results = clf.predict_preprocessed(inputs, guide, "attend", top_k=7)
    assert torch.allclose(probs_by_class(results), attended, atol=1e-6)
    assert not torch.allclose(attended, plain, atol=1e-4)
    assert results[0].mode == "attend" and results[0].fallback is None
    assert results[0].gains == ((4, 2.5), (5, 2.5))


def test_cutout_is_eq3_softmax_over_kept_classes(clf, inputs):
    guide = Guide.for_classes([5, 1, 4], gain=3.0)
    with torch.no_grad():
        full = clf.model(inputs)
        attended = clf.model(inputs, gains={1: 3.0, 4: 3.0, 5: 3.0})
    kept = [1, 4, 5]
    cut = clf.predict_preprocessed(inputs, guide, "cutout", top_k=10)
    assert all(len(r.predictions) == 3 and r.mode == "cutout" for r in cut)
    # P(class) = P(the image shows a cued class) x softmax over the kept classes (uncalibrated: sigmoid(max logit))
    agreement = torch.sigmoid(full[:, kept].max(1).values)
    assert torch.allclose(torch.tensor([r.cue_agreement for r in cut]), agreement, atol=1e-6)
    assert torch.allclose(probs_by_class(cut), agreement[:, None] * torch.softmax(full[:, kept], 1), atol=1e-5)
    both = clf.predict_preprocessed(inputs, guide, "cutout+attend", top_k=3)
    assert torch.allclose(probs_by_class(both), agreement[:, None] * torch.softmax(attended[:, kept], 1), atol=1e-5)
    masked = clf.predict_preprocessed(inputs, guide, "mask", top_k=10)  # the full model restricted: same answer
    assert all(r.mode == "mask" and r.cost.macs == clf.full_cost.macs for r in masked)
    assert torch.allclose(probs_by_class(masked), probs_by_class(cut), atol=1e-5)


def test_costs_are_what_ran(clf):
    guide = Guide.for_classes([4, 5])
    full = measure(clf.model, (1, 3, SIZE, SIZE))
    cut = measure(clf.model.cutout([4, 5]), (1, 3, SIZE, SIZE))
    frame = np.zeros((40, 50, 3), np.uint8)
    r_full = clf.predict(frame, guide, "attend")
    r_cut = clf.predict(frame, guide, "cutout")
    assert (r_full.cost.params, r_full.cost.macs) == (full.params, full.macs)
    assert (r_cut.cost.params, r_cut.cost.macs) == (cut.params, cut.macs)
    assert (r_cut.cost.full_params, r_cut.cost.full_macs) == (full.params, full.macs)
    assert r_cut.cost.mac_reduction == pytest.approx(1 - cut.macs / full.macs)
    assert 0 < r_cut.cost.param_reduction < 1


@pytest.mark.parametrize("backbone, kw", [("resnet18", {}), ("tf_efficientnet_lite0", {}), ("convnextv2_atto", {}),
                                         ("resnet18", {"tree": None}),
                                         ("resnet18", {"branch_depth": (1, 2, 0)})])
def test_cutout_costs_without_running_them_equal_measured_costs(backbone, kw):
    model = tiny_model(backbone, image_size=SIZE, **kw)
    costs = CutoutCache(model).costs
    for classes in ([0], [4, 5], [6, 3], [5, 0, 6], list(range(7))):
        cut = model.cutout(classes, share_trunk=True)
        measured, estimated = measure(cut, (1, 3, SIZE, SIZE)), costs.cost(cut)
        assert (estimated.params, estimated.macs) == (measured.params, measured.macs)
    full = measure(model, (1, 3, SIZE, SIZE))
    assert (costs.cost(model).params, costs.cost(model).macs) == (full.params, full.macs)


def test_gains_are_restricted_to_keys_the_network_knows(clf, inputs):
    guide = Guide((4, 5, 999), {4: 2.0, 5: 1.5, 999: 4.0, "c": 2.0, "a": 3.0, "n0000": 5.0})
    full = clf.predict_preprocessed(inputs, guide, "attend")[0]
    assert full.gains == ((4, 2.0), (5, 1.5), ("a", 3.0), ("c", 2.0))
    cut = clf.predict_preprocessed(inputs, guide, "cutout+attend")[0]
    assert cut.gains == ((4, 2.0), (5, 1.5), ("c", 2.0))  # node "a" is not in the cutout of {4, 5}
    assert sorted(p.class_id for p in cut.predictions) == [4, 5]


@pytest.mark.parametrize("mode", ["attend", "cutout", "cutout+attend"])
@pytest.mark.parametrize(
    "guide, reason",
    [
        (None, "no guide given"),
        (Guide.abstain(["abstained"]), "the guide is not confident"),
        (Guide.for_classes([500, 900]), "none of the guide's classes is a class of this model"),
    ],
)
def test_fallback_to_unguided_says_why(clf, inputs, mode, guide, reason):
    result = clf.predict_preprocessed(inputs, guide, mode, top_k=7)
    plain = clf.predict_preprocessed(inputs, None, "unguided", top_k=7)
    assert [(r.mode, r.requested_mode, r.fallback) for r in result] == [("unguided", mode, reason)] * 3
    assert torch.equal(probs_by_class(result), probs_by_class(plain))
    assert result[0].cost.macs == clf.full_cost.macs and result[0].gains == ()


def test_attend_without_known_gain_keys_reports_it(clf, inputs):
    guide = Guide((4,), {"unknown-node": 2.0})
    assert clf.predict_preprocessed(inputs, guide, "attend")[0].fallback == "no gain key of the guide is known to this model"
    result = clf.predict_preprocessed(inputs, guide, "cutout+attend")[0]
    assert (result.mode, result.gains) == ("cutout", ())


def test_calibrated_level_gains_replace_the_guides_gains(inputs):
    model = tiny_model(image_size=SIZE)
    model.config = model.config.replace(calibration={"level_gains": [None, 3.0, 1.25]})
    clf = GuidedClassifier(model)
    guide = Guide((4, 5, 0), {0: 2.0, 4: 2.0, 5: 2.0, "a": 1.5, "c": 1.5})
    # tree: level 0 = a, b, leaf 6; level 1 = leaves 0..3 and node c; level 2 = leaves 4, 5
    result = clf.predict_preprocessed(inputs, guide, "attend")[0]
    assert result.gains == ((0, 3.0), (4, 1.25), (5, 1.25), ("a", 1.5), ("c", 3.0))
    override = clf.predict_preprocessed(inputs, guide, "attend", level_gains=[2.0, None, None])[0]
    assert override.gains == ((0, 2.0), (4, 2.0), (5, 2.0), ("a", 2.0), ("c", 1.5))
    as_numpy = clf.predict_preprocessed(inputs, guide, "attend", level_gains=[np.float32(2.0), None, np.int64(1)])[0]
    assert as_numpy.gains == ((0, 2.0), (4, 1.0), (5, 1.0), ("a", 2.0), ("c", 1.5))
    with pytest.raises(ValueError, match="one value .* per tree level: 3 levels"):
        GuidedClassifier(model, level_gains=[2.0])
    for bad in (True, -1.0, float("nan"), "2"):
        with pytest.raises(ValueError, match="level_gains must be finite numbers >= 0 or None"):
            GuidedClassifier(model, level_gains=[bad, None, None])


def test_bad_arguments_raise(clf, inputs):
    with pytest.raises(ValueError, match="mode must be one of"):
        clf.predict_preprocessed(inputs, None, "full")
    with pytest.raises(ValueError, match="top_k must be a positive integer"):
        clf.predict_preprocessed(inputs, None, "unguided", top_k=0)
    with pytest.raises(ValueError, match="guide must be a crossmodal.Guide"):
        clf.predict_preprocessed(inputs, {"classes": [4]}, "attend")
    with pytest.raises(ValueError, match=r"\(B, 3, 64, 64\)"):
        clf.predict_preprocessed(inputs[:, :, :32], None, "unguided")
    with pytest.raises(ValueError, match="use predict_batch"):
        clf.predict(np.zeros((2, 8, 8, 3), np.uint8))


def test_cutout_cache_is_a_bounded_lru():
    model = tiny_model(image_size=SIZE)
    cache = CutoutCache(model, max_size=2)
    first, cached = cache.get((4, 5))
    assert not cached and first.classes == (4, 5) and first.build_seconds > 0
    again, cached = cache.get((4, 5))
    assert cached and again is first
    cache.get((0, 1))
    cache.get((4, 5))  # refresh: (0, 1) becomes the oldest
    cache.get((2,))  # evicts (0, 1)
    assert cache.get((4, 5))[1] and not cache.get((0, 1))[1]
    stats = cache.stats()
    assert (stats.hits, stats.misses, stats.size, len(stats.build_seconds)) == (3, 4, 2, 4)
    assert first.model.trunk is model.trunk and first.model.shares_trunk  # cutouts share the trunk, as a view
    with pytest.raises(ValueError, match="not classes of this model"):
        cache.get((77,))
    assert cache.stats().size == 2  # a failed build leaves no entry behind


def test_concurrent_requests_build_a_cutout_once():
    cache = CutoutCache(tiny_model(image_size=SIZE))
    barrier = threading.Barrier(4)

    def get(_):
        barrier.wait()
        return cache.get((1, 2, 3))[0]

    with ThreadPoolExecutor(4) as pool:
        entries = list(pool.map(get, range(4)))
    assert all(e is entries[0] for e in entries)
    assert (cache.stats().misses, cache.stats().hits) == (1, 3)


def test_threads_with_different_guides_match_serial_results(clf, inputs):
    guides = [None, Guide.for_classes([0, 1], 2.0), Guide.for_classes([4, 5], 1.5), Guide.for_classes([6], 3.0)]
    modes = ["unguided", "attend", "cutout", "cutout+attend"]
    jobs = [(g, m) for g in guides for m in modes] * 2
    serial = [probs_by_class(clf.predict_preprocessed(inputs, g, m, top_k=7)) for g, m in jobs]
    with ThreadPoolExecutor(4) as pool:
        parallel = list(pool.map(lambda job: probs_by_class(clf.predict_preprocessed(inputs, job[0], job[1], top_k=7)),
                                 jobs))
    assert all(torch.allclose(a, b, atol=1e-6) for a, b in zip(serial, parallel))


def test_result_to_dict_is_json_ready(clf):
    import json

    result = clf.predict(np.full((30, 30, 3), 128, np.uint8), Guide.for_classes([4, 5], 2.0), top_k=2)
    data = json.loads(json.dumps(result.to_dict()))
    assert set(data) == {"predictions", "mode", "requested_mode", "fallback", "cost", "guide", "gains", "timings",
                         "cutout_cached", "cue_agreement"}
    assert [p["class_id"] for p in data["predictions"]] == [p.class_id for p in result.predictions]
    assert data["guide"]["classes"] == [4, 5] and data["gains"] == {"4": 2.0, "5": 2.0}
    assert data["predictions"][0]["name"] == clf.class_names[result.top1.class_id]


def test_trunk_features_serve_every_mode(clf, inputs):
    features = clf.trunk_features(inputs)
    guide = Guide.for_classes([0, 4, 5], 2.0)
    for mode in ("unguided", "attend", "cutout", "cutout+attend"):
        direct = clf.predict_preprocessed(inputs, guide, mode, top_k=7)
        shared = clf.predict_features(features, guide, mode, top_k=7, timings=(1.0, 2.0))
        assert torch.equal(probs_by_class(direct), probs_by_class(shared))
        assert (shared[0].timings.preprocess_ms, shared[0].timings.trunk_ms) == (1.0, 2.0)


def test_cached_cutouts_follow_the_model_to_another_dtype(inputs):
    """clf.model.half() / .to(...): cached cutouts are rebuilt from the model, never left behind."""
    model = tiny_model(image_size=SIZE)
    clf = GuidedClassifier(model)
    guide = Guide.for_classes([4, 5], 2.0)
    before = clf.predict_preprocessed(inputs, guide, "cutout+attend", top_k=2)[0]
    first = clf.cutouts.get((4, 5))[0]
    model.to(torch.float64)
    cached = clf.cutouts.get((4, 5))[0]
    assert cached is not first and next(cached.model.levels.parameters()).dtype == torch.float64
    assert clf.cutouts.get((4, 5))[0] is cached  # rebuilt once, then cached again
    model.to(torch.float32)
    after = clf.predict_preprocessed(inputs, guide, "cutout+attend", top_k=2)[0]
    assert [(p.class_id, p.prob) for p in after.predictions] == [(p.class_id, p.prob) for p in before.predictions]


def test_each_classifier_owns_its_cue_models_unless_given_shared_ones(monkeypatch):
    """No process-wide mapper: each classifier builds its own on first use; pass one to share it."""
    from crossmodal.cues import CueGuides
    from mappings import CueMapper

    built = []
    monkeypatch.setattr(CueMapper, "default", classmethod(lambda cls: built.append(object()) or built[-1]))
    first, second = GuidedClassifier(tiny_model()), GuidedClassifier(tiny_model())
    assert first.cues.mapper is not second.cues.mapper and len(built) == 2
    assert first.cues.mapper is built[0]  # built once per classifier
    model = tiny_model()
    shared = GuidedClassifier(model, cues=CueGuides(model, mapper=built[0]))
    assert shared.cues.mapper is first.cues.mapper and len(built) == 2


def test_cue_agreement_policy_falls_back_below_the_threshold(clf, inputs):
    guide = Guide.for_classes([4, 5], 2.0)
    plain = clf.predict_preprocessed(inputs, guide, "cutout")
    agreements = [r.cue_agreement for r in plain]
    threshold = sorted(agreements)[1]  # one image below, two at or above
    results = clf.predict_preprocessed(inputs, guide, "cutout", min_agreement=threshold)
    unguided = clf.predict_preprocessed(inputs, None, "unguided")
    for r, p, u, a in zip(results, plain, unguided, agreements):
        assert r.cue_agreement == a
        if a < threshold:
            assert r.mode == "unguided" and r.fallback.startswith("the image does not support the cue (agreement")
            assert r.predictions == u.predictions and r.cost.macs > clf.full_cost.macs  # the cutout ran first
        else:
            assert r.mode == "cutout" and r.predictions == p.predictions
    masked = clf.predict_preprocessed(inputs, guide, "mask", min_agreement=1.0)  # full logits reused: no extra cost
    assert all(r.mode == "unguided" and r.cost.macs == clf.full_cost.macs for r in masked)
    assert clf.predict_preprocessed(inputs, None, "unguided")[0].cue_agreement is None
    with pytest.raises(ValueError, match="min_agreement must be a probability"):
        clf.predict_preprocessed(inputs, guide, "cutout", min_agreement=1.5)


def test_calibrated_temperatures_and_agreement_are_used(inputs):
    model = tiny_model(image_size=SIZE)
    model.config = model.config.replace(calibration={"temperatures": {"unguided": 2.0, "cutout": 0.5},
                                                     "agreement": (0.5, -1.0)})
    clf = GuidedClassifier(model)
    with torch.no_grad():
        logits = model(inputs)
    unguided = probs_by_class(clf.predict_preprocessed(inputs, None, "unguided", top_k=7))
    assert torch.allclose(unguided, torch.softmax(logits / 2.0, 1), atol=1e-6)
    cut = clf.predict_preprocessed(inputs, Guide.for_classes([4, 5]), "cutout", top_k=2)
    agreement = torch.sigmoid(0.5 * logits[:, [4, 5]].max(1).values - 1.0)
    assert torch.allclose(torch.tensor([r.cue_agreement for r in cut]), agreement, atol=1e-6)
    assert torch.allclose(probs_by_class(cut), agreement[:, None] * torch.softmax(logits[:, [4, 5]] / 0.5, 1), atol=1e-5)


def test_half_precision_models_run_every_mode(inputs):
    model = tiny_model(image_size=SIZE)
    clf = GuidedClassifier(model)
    reference = {m: clf.predict_preprocessed(inputs, Guide.for_classes([4, 5], 2.0), m, top_k=2) for m in MODES}
    for dtype in (torch.bfloat16, torch.float16):
        model.to(dtype)
        for mode in MODES:
            results = clf.predict_preprocessed(inputs, Guide.for_classes([4, 5], 2.0), mode, top_k=2)
            assert [r.top1.class_id for r in results] == [r.top1.class_id for r in reference[mode]], (dtype, mode)
            assert all(0 <= p.prob <= 1 for r in results for p in r.predictions)
    model.to(torch.float32)


def test_a_model_with_nan_weights_is_an_error_not_a_nan_probability(inputs):
    from crossmodal.classifier import NonFiniteOutputError

    model = tiny_model(image_size=SIZE)
    with torch.no_grad():
        model.levels[0].head.bias.fill_(float("nan"))
    clf = GuidedClassifier(model)
    for mode in ("unguided", "cutout"):
        with pytest.raises(NonFiniteOutputError, match="NaN or infinite scores"):
            clf.predict_preprocessed(inputs, Guide.for_classes([6]), mode)


def test_numpy_integers_are_accepted_where_ints_are(clf, inputs):
    assert len(clf.predict_preprocessed(inputs, None, "unguided", top_k=np.int64(3))[0].predictions) == 3
    assert GuidedClassifier(tiny_model(image_size=SIZE), cache_size=np.int32(4)).cutouts.max_size == 4


def test_the_cutout_cache_is_bounded_by_bytes():
    model = tiny_model(image_size=SIZE)
    one = CutoutCache(model).get((0, 1, 2, 3))[0].nbytes
    cache = CutoutCache(model, max_size=32, max_bytes=int(2.5 * one))
    for classes in [(0, 1, 2, 3), (1, 2, 3, 4), (2, 3, 4, 5), (0, 2, 4, 6)]:
        cache.get(classes)
    stats = cache.stats()
    assert stats.size == 2 and stats.nbytes <= cache.max_bytes  # by bytes, long before 32 entries
    assert cache.get((0, 2, 4, 6))[1] and not cache.get((0, 1, 2, 3))[1]  # the oldest went first
    huge = CutoutCache(model, max_bytes=1)
    assert huge.get((0, 1))[0] is not None and huge.stats().size == 1  # the newest always stays
