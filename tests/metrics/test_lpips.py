"""LPIPS equals the lpips package's own LPIPS(net='alex') fed the same AlexNet trunk through torchvision.

The stand-in trunk is a seeded torchvision AlexNet saved under the real file name. The reference path
is independent of our key mapping: the file goes into $TORCH_HOME/hub/checkpoints, where torchvision's
`alexnet(pretrained=True)` (called inside lpips) finds it instead of downloading.
"""
import contextlib
import io
import warnings

import pytest
import torch

from metrics.errors import InputError, MissingWeightsError
from metrics.functional.lpips import load_lpips, lpips, lpips_per_pair
from metrics.lpips import LearnedPerceptualImagePatchSimilarity

FILENAME = "alexnet-owt-7be5be79.pth"


@pytest.fixture(scope="module")
def trunk_home(tmp_path_factory):
    """A TORCH_HOME whose hub cache holds a seeded random torchvision AlexNet as the stand-in file."""
    import torchvision

    home = tmp_path_factory.mktemp("alex_home")
    torch.manual_seed(0)
    alex = torchvision.models.alexnet(weights=None)
    (home / "hub" / "checkpoints").mkdir(parents=True)
    torch.save(alex.state_dict(), home / "hub" / "checkpoints" / FILENAME)
    return home


@pytest.fixture(scope="module")
def weights(trunk_home):
    return trunk_home / "hub" / "checkpoints" / FILENAME


@pytest.fixture(scope="module")
def net(weights):
    return load_lpips(weights, device="cpu", verify=False)


@pytest.fixture(scope="module")
def reference(trunk_home):
    """lpips.LPIPS(net='alex') loading its trunk the way lpips itself does (torchvision, hub cache)."""
    import os

    import lpips as lpips_pkg

    old = os.environ.get("TORCH_HOME")
    os.environ["TORCH_HOME"] = str(trunk_home)
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
            warnings.simplefilter("ignore")
            return lpips_pkg.LPIPS(net="alex", version="0.1", verbose=False).eval()
    finally:
        if old is None:
            os.environ.pop("TORCH_HOME", None)
        else:
            os.environ["TORCH_HOME"] = old


@pytest.fixture
def pair():
    g = torch.Generator().manual_seed(3)
    a = torch.rand(4, 3, 64, 80, generator=g) * 2 - 1
    b = (a + 0.4 * torch.randn(a.shape, generator=g)).clamp(-1, 1)
    return a, b


def test_matches_lpips_package(net, reference, pair):
    a, b = pair
    with torch.no_grad():
        ref = reference(a, b).flatten().double()
    ours = lpips_per_pair(a, b, net=net)
    assert ref.abs().min() > 1e-3  # a random trunk still gives non-trivial distances
    assert torch.allclose(ours, ref, rtol=0, atol=1e-6)
    # the [0, 1] path equals lpips' own normalize=True
    with torch.no_grad():
        ref01 = reference((a + 1) / 2, (b + 1) / 2, normalize=True).flatten().double()
    assert torch.allclose(lpips_per_pair((a + 1) / 2, (b + 1) / 2, net=net, normalize=True), ref01, atol=1e-6)
    assert lpips_per_pair(a, a, net=net).abs().max() < 1e-6


def test_trunk_mapped_into_slices(net, weights):
    sd = torch.load(weights, weights_only=True)
    assert torch.equal(net.net.slice1[0].weight, sd["features.0.weight"])
    assert torch.equal(net.net.slice5._modules["10"].bias, sd["features.10.bias"])


def test_functional_and_streaming(net, weights, pair):
    a, b = pair
    per = lpips_per_pair(a, b, net=net)
    assert lpips(a, b, weights=weights, verify=False) == pytest.approx(float(per.mean()), abs=1e-9)
    m = LearnedPerceptualImagePatchSimilarity(net=net)
    m.update(a[:1], b[:1])
    m.update(a[1:], b[1:])
    assert m.compute() == pytest.approx(float(per.mean()), abs=1e-9)
    v = LearnedPerceptualImagePatchSimilarity(net=net, aggregation="videos")
    v.update(a[:1], b[:1])
    v.update(a[1:], b[1:])
    assert v.compute() == pytest.approx(float((per[0] + per[1:].mean()) / 2), abs=1e-9)
    assert LearnedPerceptualImagePatchSimilarity.higher_is_better is False


def test_rejects_zero_one_input(net, pair):
    a, b = pair
    a01, b01 = (a + 1) / 2, (b + 1) / 2
    with pytest.raises(InputError, match=r"look like \[0, 1\].*normalize=True"):
        lpips_per_pair(a01, b01, net=net)
    with pytest.raises(InputError, match="look like"):
        LearnedPerceptualImagePatchSimilarity(net=net).update(a01, b01)
    with pytest.raises(InputError, match=r"normalize=True takes images in \[0, 1\]"):
        lpips_per_pair(a, b, net=net, normalize=True)
    with pytest.raises(InputError, match="x / 127.5 - 1"):
        lpips_per_pair(a01 * 255, b01 * 255, net=net)
    with pytest.raises(InputError, match="float"):
        lpips_per_pair((a01 * 255).byte(), (b01 * 255).byte(), net=net)
    with pytest.raises(InputError, match="differ in shape"):
        lpips_per_pair(a, b[:2], net=net)
    # the escape hatch for genuinely dark-free [-1, 1] frames
    assert lpips_per_pair(a01, b01, net=net, check_range=False).shape == (4,)


def test_missing_weights_is_one_line(pair):
    a, b = pair
    with pytest.raises(MissingWeightsError) as info:
        lpips(a, b)
    msg = str(info.value)
    assert FILENAME in msg and "\n" not in msg and "edtalk weights fetch alexnet-lpips" in msg
    with pytest.raises(MissingWeightsError, match=FILENAME):
        LearnedPerceptualImagePatchSimilarity()
