"""Acc_emo: Emotion-FAN loads the release's key layout and aggregates like EAT; accuracy equals sklearn's."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.metrics import accuracy_score, recall_score
from sklearn.metrics import confusion_matrix as sk_confusion

from metrics.emotion import (
    EMOTIONS,
    FAN_TO_EMOTIONS,
    EmotionAccuracy,
    EmotionFAN,
    EmotionFANClassifier,
    load_emotion_fan,
)
from metrics.errors import CheckpointMismatchError, InputError, MissingWeightsError
from metrics.functional.emotion import emotion_accuracy


def _release_keys() -> dict[str, tuple]:
    """Parameter names/shapes of evaluation_eat's resnet18_at, written out from networks.py."""
    keys: dict[str, tuple] = {}

    def bn(prefix, c):
        keys.update(
            {
                f"{prefix}.weight": (c,),
                f"{prefix}.bias": (c,),
                f"{prefix}.running_mean": (c,),
                f"{prefix}.running_var": (c,),
                f"{prefix}.num_batches_tracked": (),
            }
        )

    keys["conv1.weight"] = (64, 3, 7, 7)
    bn("bn1", 64)
    cin = 64
    for li, c in enumerate((64, 128, 256, 512), start=1):
        for b in range(2):
            keys[f"layer{li}.{b}.conv1.weight"] = (c, cin if b == 0 else c, 3, 3)
            bn(f"layer{li}.{b}.bn1", c)
            keys[f"layer{li}.{b}.conv2.weight"] = (c, c, 3, 3)
            bn(f"layer{li}.{b}.bn2", c)
        if li > 1:
            keys[f"layer{li}.0.downsample.0.weight"] = (c, cin, 1, 1)
            bn(f"layer{li}.0.downsample.1", c)
        cin = c
    keys.update(
        {
            "alpha.0.weight": (1, 512),
            "alpha.0.bias": (1,),
            "beta.0.weight": (1, 1024),
            "beta.0.bias": (1,),
            "pred_fc1.weight": (8, 512),
            "pred_fc1.bias": (8,),
            "pred_fc2.weight": (8, 1024),
            "pred_fc2.bias": (8,),
        }
    )
    return keys


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(3)
    m = EmotionFAN()
    with torch.no_grad():  # non-trivial BN statistics so eval mode matters
        for mod in m.modules():
            if isinstance(mod, torch.nn.BatchNorm2d):
                mod.running_mean.uniform_(-0.1, 0.1)
                mod.running_var.uniform_(0.5, 1.5)
    return m.eval()


def _release_file(model, path, drop_tracked=True):
    state = {
        f"module.{k}": v
        for k, v in model.state_dict().items()
        if not (drop_tracked and k.endswith("num_batches_tracked"))
    }
    state["module.fc.weight"] = torch.zeros(1000, 512)  # the ImageNet head the loader skips
    state["module.fc.bias"] = torch.zeros(1000)
    torch.save(
        {"epoch": 62, "state_dict": state, "accuracy": torch.tensor(84.3655), "name": "stand-in"}, path
    )
    return path


def test_state_dict_layout_is_the_release(model):
    assert {k: tuple(v.shape) for k, v in model.state_dict().items()} == _release_keys()


def test_release_checkpoint_loads_from_weights_cache(model, tmp_path, monkeypatch):
    monkeypatch.setenv("EDTALK_WEIGHTS", str(tmp_path))
    _release_file(model, tmp_path / "self_relation-attention_61_84.3655")
    loaded = load_emotion_fan(verify=False)
    x = torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        assert torch.allclose(loaded(x), model(x), atol=1e-6)
    torch.save({"state_dict": {"module.conv1.weight": torch.zeros(1)}}, tmp_path / "bad")
    with pytest.raises(CheckpointMismatchError, match="not an Emotion-FAN"):
        load_emotion_fan(tmp_path / "bad", verify=False)


def test_missing_weights_one_line():
    with pytest.raises(MissingWeightsError, match="self_relation-attention_61_84.3655") as err:
        EmotionAccuracy().update_video(np.zeros((2, 8, 8, 3), np.uint8), "angry")
    assert "\n" not in str(err.value)


def test_eval_path_matches_eats_index_matrix(model):
    """evaluation_eat `_acc_test.val` + `networks.py` second_level, batched over videos with index_matrix."""
    torch.manual_seed(0)
    lengths = [4, 2, 5]
    x = torch.rand(sum(lengths), 3, 32, 32)
    index = torch.cat([torch.full((n,), i) for i, n in enumerate(lengths)])
    with torch.no_grad():
        f, alphas = model.frame_features(x)
        index_matrix = torch.stack([index == i for i in range(len(lengths))]).float()
        vm = index_matrix.mm(f * alphas).div(index_matrix.mm(alphas))
        vs_cate = torch.cat([f, index_matrix.t().mm(vm)], dim=1)
        betas = model.beta(vs_cate)
        expected = model.pred_fc2(
            index_matrix.mm(vs_cate.mul(alphas)).div(index_matrix.mm(alphas.mul(betas)))
        )
        starts = np.cumsum([0] + lengths)
        ours = torch.stack([model(x[a:b]) for a, b in zip(starts[:-1], starts[1:], strict=True)])
    assert torch.allclose(ours, expected, atol=1e-5)


def test_label_order_mapping(model):
    from benchmarks.datasets.common import EMOTIONS as DATASET_EMOTIONS

    assert EMOTIONS == DATASET_EMOTIONS
    # Emotion-FAN's MEAD order: Happy 0, Angry 1, Disgust 2, Fear 3, Sad 4, Neutral 5, Surprised 6, Contempt 7
    assert list(FAN_TO_EMOTIONS) == [1, 7, 2, 3, 0, 5, 4, 6]
    frames = np.random.default_rng(1).integers(0, 256, (2, 112, 112, 3), dtype=np.uint8)
    clf = EmotionFANClassifier(model)
    x = clf.preprocess(frames)
    assert x.shape == (2, 3, 224, 224) and 0 <= float(x.min()) and float(x.max()) <= 1
    with torch.no_grad():
        fan = model(x).numpy()
    out = clf(frames)
    assert np.allclose(out, fan[[1, 7, 2, 3, 0, 5, 4, 6]], atol=1e-5)
    assert (
        EMOTIONS[int(out.argmax())]
        == ("happy", "angry", "disgusted", "fear", "sad", "neutral", "surprised", "contempt")[
            int(fan.argmax())
        ]
    )


def test_accuracy_confusion_per_class_match_sklearn():
    rng = np.random.default_rng(7)
    labels = rng.integers(0, 8, 200)
    labels[labels == 3] = 4  # one class without videos: its per-class accuracy is NaN
    logits = rng.normal(size=(200, 8))
    logits[np.arange(200), labels] += rng.normal(1.0, 1.0, 200)
    pred = logits.argmax(1)
    r = emotion_accuracy(logits, labels)
    assert r["accuracy"] == pytest.approx(accuracy_score(labels, pred))
    assert np.array_equal(r["confusion"], sk_confusion(labels, pred, labels=range(8)))
    recall = recall_score(labels, pred, labels=range(8), average=None, zero_division=np.nan)
    assert np.allclose(list(r["per_class"].values()), recall, equal_nan=True)
    assert np.isnan(r["per_class"]["fear"]) and r["videos"] == 200
    # streaming over two batches, names as labels, equals one call
    m = EmotionAccuracy()
    m.update(logits[:50], [EMOTIONS[i] for i in labels[:50]])
    m.update(pred[50:], labels[50:])
    assert m.compute()["accuracy"] == pytest.approx(r["accuracy"]) and m.higher_is_better is True


def test_update_video_with_plugged_classifier():
    calls = []

    def classifier(frames):  # frame logits that favour the class given by the first pixel
        calls.append(frames.shape)
        out = np.zeros((len(frames), 8))
        out[:, frames[0, 0, 0, 0] % 8] = 1.0
        return out

    m = EmotionAccuracy(classifier=classifier)
    for value, label in [(0, "angry"), (4, "happy"), (5, "sad")]:
        m.update_video(np.full((3, 16, 16, 3), value, np.uint8), label)
    r = m.compute()
    assert calls == [(3, 16, 16, 3)] * 3
    assert r["accuracy"] == pytest.approx(2 / 3) and r["confusion"][6][5] == 1


def test_bad_inputs():
    with pytest.raises(InputError, match="unknown emotion"):
        emotion_accuracy([0], ["joyful"])
    with pytest.raises(InputError, match=r"\(N, 8\)"):
        emotion_accuracy(np.zeros((2, 7)), [0, 1])
    with pytest.raises(InputError, match="2 predictions but 3 labels"):
        emotion_accuracy([0, 1], [0, 1, 2])
    with pytest.raises(InputError, match=r"\[0, 8\)"):
        emotion_accuracy([0], [9])
    with pytest.raises(InputError, match="returned"):
        EmotionAccuracy(classifier=lambda f: np.zeros(5)).update_video(np.zeros((1, 4, 4, 3), np.uint8), 0)
    with pytest.raises(InputError, match="before any update"):
        EmotionAccuracy().compute()
