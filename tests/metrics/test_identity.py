"""CSIM: insightface's own loader on an ONNX ArcFace stand-in equals a direct onnxruntime computation."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from metrics.errors import InputError, MissingWeightsError
from metrics.functional.identity import cosine_similarity, csim
from metrics.identity import ArcFaceEmbedder, IdentitySimilarity, align_faces


class _TinyArcFace(nn.Module):
    """ArcFace's interface (1x3x112x112 float -> 512), a few seeded layers."""

    def __init__(self):
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(3, 8, 3, 2, 1),
            nn.PReLU(8),
            nn.Conv2d(8, 16, 3, 2, 1),
            nn.BatchNorm2d(16),
            nn.AdaptiveAvgPool2d(4),
            nn.Flatten(),
            nn.Linear(256, 512),
        )

    def forward(self, x):
        return self.body(x)


def _export(path, dynamic: bool):
    torch.manual_seed(11)
    net = _TinyArcFace().eval()
    kwargs = {"dynamic_axes": {"input.1": {0: "None"}, "fc1": {0: "None"}}} if dynamic else {}
    torch.onnx.export(
        net,
        torch.zeros(1, 3, 112, 112),
        str(path),
        input_names=["input.1"],
        output_names=["fc1"],
        opset_version=13,
        dynamo=False,
        **kwargs,
    )
    return path


@pytest.fixture(scope="module", params=[False, True], ids=["batch1", "dynamic"])
def onnx_file(request, tmp_path_factory):
    return _export(tmp_path_factory.mktemp("arcface") / "w600k_r50.onnx", request.param)


@pytest.fixture
def faces():
    rng = np.random.default_rng(4)
    return (
        rng.integers(0, 256, (1, 112, 112, 3), dtype=np.uint8),
        rng.integers(0, 256, (3, 112, 112, 3), dtype=np.uint8),
    )


def _ort_embeddings(path, rgb):
    """Independent path: onnxruntime on (RGB - 127.5) / 127.5, NCHW, one face at a time."""
    import onnxruntime

    sess = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    x = ((rgb.astype(np.float32) - 127.5) / 127.5).transpose(0, 3, 1, 2)
    return np.concatenate([sess.run(None, {"input.1": x[i : i + 1]})[0] for i in range(len(x))])


def test_csim_equals_direct_onnxruntime(onnx_file, faces, monkeypatch):
    src, gen = faces
    monkeypatch.setenv("EDTALK_WEIGHTS", str(onnx_file.parent))
    emb = ArcFaceEmbedder(verify=False)  # found through locate("arcface-r50") in the weights dir
    assert type(emb.model).__name__ == "ArcFaceONNX" and emb.input_size == (112, 112)
    es, eg = _ort_embeddings(onnx_file, src), _ort_embeddings(onnx_file, gen)
    expected = np.mean([es[0] @ g / (np.linalg.norm(es[0]) * np.linalg.norm(g)) for g in eg])
    assert csim(src, gen, emb) == pytest.approx(expected, abs=1e-5)
    assert csim(src[0], gen, weights=onnx_file) == pytest.approx(
        expected, abs=1e-5
    )  # embedder built from path
    assert np.allclose(emb(gen), eg, atol=1e-4)
    m = IdentitySimilarity(embedder=emb)
    m.update(src, gen)
    m.update(src, gen[:1])
    second = es[0] @ eg[0] / (np.linalg.norm(es[0]) * np.linalg.norm(eg[0]))
    assert m.compute() == pytest.approx((expected + second) / 2, abs=1e-5) and m.higher_is_better is True


def test_keypoints_align_with_norm_crop(faces):
    from insightface.utils.face_align import arcface_dst

    _, gen = faces
    big = np.zeros((3, 224, 224, 3), np.uint8)
    big[:, 50:162, 30:142] = gen  # the 112x112 face placed at (x=30, y=50) in a larger frame
    kps = np.repeat((arcface_dst + [30, 50])[None], 3, 0)
    assert np.abs(align_faces(big, kps).astype(int) - gen).max() <= 1  # a pure translation back


def test_any_callable_embedder_and_precomputed(faces):
    from sklearn.metrics.pairwise import cosine_similarity as sk_cos

    src, gen = faces

    def embedder(x):  # mean colour per quadrant: a 12-d "embedding"
        return np.stack(
            [
                x[:, :56, :56].mean((1, 2)),
                x[:, :56, 56:].mean((1, 2)),
                x[:, 56:, :56].mean((1, 2)),
                x[:, 56:, 56:].mean((1, 2)),
            ],
            1,
        ).reshape(len(x), -1)

    es, eg = embedder(src), embedder(gen)
    assert csim(src, gen, embedder) == pytest.approx(sk_cos(es, eg).mean())
    assert csim(es, eg, "precomputed") == pytest.approx(sk_cos(es, eg).mean())
    # paired variant: one source per generated frame
    assert csim(eg[::-1], eg, "precomputed") == pytest.approx(np.diag(sk_cos(eg[::-1], eg)).mean())
    m = IdentitySimilarity()
    m.update_embeddings(torch.tensor(es), torch.tensor(eg))
    assert m.compute() == pytest.approx(sk_cos(es, eg).mean())


def test_bad_inputs_and_missing_weights(faces, onnx_file):
    src, gen = faces
    with pytest.raises(MissingWeightsError, match="w600k_r50.onnx") as err:
        IdentitySimilarity().update(src, gen)
    assert "\n" not in str(err.value)
    emb = ArcFaceEmbedder(onnx_file, verify=False)
    with pytest.raises(InputError, match="aligned 112x112"):
        emb(np.zeros((1, 128, 128, 3), np.uint8))
    with pytest.raises(InputError, match="2 source embeddings for 3"):
        csim(np.ones((2, 4)), np.ones((3, 4)), "precomputed")
    with pytest.raises(InputError, match="sizes differ"):
        cosine_similarity(np.ones(4), np.ones(5))
    with pytest.raises(InputError, match="all zeros"):
        cosine_similarity(np.zeros(4), np.ones(4))
    with pytest.raises(InputError, match="returned"):
        csim(src, gen, lambda x: np.ones(3))
