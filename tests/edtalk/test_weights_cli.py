"""`edtalk weights list|verify|fetch` against file:// URLs: verified, atomic, one-line failures."""
from __future__ import annotations

import bz2
import dataclasses
import hashlib
import json
import zipfile

import pytest

from edtalk.cli import main
from metrics import weights


def _point(monkeypatch, key, url, **changes):
    monkeypatch.setitem(weights.MANIFEST, key, dataclasses.replace(weights.MANIFEST[key], url=url, **changes))


@pytest.fixture
def payload(tmp_path):
    src = tmp_path / "src" / "syncnet_v2.model"
    src.parent.mkdir()
    src.write_bytes(b"stand-in weights " * 1000)
    return src, hashlib.sha256(src.read_bytes()).hexdigest()


def test_fetch_verifies_and_renames(tmp_path, monkeypatch, payload, capsys):
    src, digest = payload
    _point(monkeypatch, "syncnet-v2", src.as_uri(), sha256=digest)
    dest = tmp_path / "w"
    assert main(["weights", "fetch", "syncnet-v2", "--dir", str(dest)]) == 0
    assert (dest / "syncnet_v2.model").read_bytes() == src.read_bytes()
    assert [p.name for p in dest.iterdir()] == ["syncnet_v2.model"]
    assert "fetched" in capsys.readouterr().out
    # a good file is not fetched again
    assert main(["weights", "fetch", "syncnet-v2", "--dir", str(dest)]) == 0
    assert "already" in capsys.readouterr().out
    assert main(["weights", "verify", "syncnet-v2", "--dir", str(dest)]) == 0


def test_corrupt_download_leaves_nothing(tmp_path, monkeypatch, payload, capsys):
    src, _ = payload
    _point(monkeypatch, "syncnet-v2", src.as_uri(), sha256="0" * 64)
    dest = tmp_path / "w"
    assert main(["weights", "fetch", "syncnet-v2", "--dir", str(dest)]) == 1
    err = capsys.readouterr().err.strip()
    assert "corrupt" in err and "\n" not in err
    assert list(dest.iterdir()) == []  # neither the file nor a .part left behind
    # a good file already there is not replaced by a corrupt download
    _point(monkeypatch, "syncnet-v2", src.as_uri(), sha256=None)
    assert main(["weights", "fetch", "syncnet-v2", "--dir", str(dest)]) == 0
    _point(monkeypatch, "syncnet-v2", src.as_uri(), sha256="0" * 64)
    assert main(["weights", "fetch", "syncnet-v2", "--dir", str(dest), "--force"]) == 1
    assert (dest / "syncnet_v2.model").read_bytes() == src.read_bytes()
    assert [p.name for p in dest.iterdir()] == ["syncnet_v2.model"]


def test_network_error_is_one_line(tmp_path, monkeypatch, capsys):
    _point(monkeypatch, "inception-fid", (tmp_path / "nowhere.pth").as_uri())
    dest = tmp_path / "w"
    assert main(["weights", "fetch", "inception-fid", "--dir", str(dest)]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("inception-fid: download failed") and "\n" not in err
    assert list(dest.iterdir()) == []


def test_bz2_and_zip_sources_are_unpacked(tmp_path, monkeypatch):
    data = b"dlib model bytes" * 100
    (tmp_path / "lm.dat.bz2").write_bytes(bz2.compress(data))
    digest = hashlib.sha256(data).hexdigest()
    _point(monkeypatch, "dlib-68", (tmp_path / "lm.dat.bz2").as_uri(), sha256=digest)
    with zipfile.ZipFile(tmp_path / "buffalo_l.zip", "w") as zf:
        zf.writestr("det_10g.onnx", b"detector")
        zf.writestr("w600k_r50.onnx", b"recognition")
    _point(monkeypatch, "arcface-r50", (tmp_path / "buffalo_l.zip").as_uri())
    dest = tmp_path / "w"
    assert main(["weights", "fetch", "dlib-68", "arcface-r50", "--dir", str(dest)]) == 0
    assert (dest / "shape_predictor_68_face_landmarks.dat").read_bytes() == data
    assert (dest / "w600k_r50.onnx").read_bytes() == b"recognition"


def test_not_fetchable_prints_where_to_get_it(tmp_path, capsys):
    assert main(["weights", "fetch", "hopenet", "--dir", str(tmp_path)]) == 1
    out = capsys.readouterr().out
    assert "by hand" in out and weights.MANIFEST["hopenet"].url in out and "hopenet_robust_alpha1.pkl" in out


def test_list_and_verify_statuses(tmp_path, capsys):
    (tmp_path / "syncnet_v2.model").write_bytes(b"x")              # no hash in the manifest: ok
    (tmp_path / "alexnet-owt-7be5be79.pth").write_bytes(b"not it")  # fails the hash prefix: corrupt
    assert main(["weights", "list", "--dir", str(tmp_path), "--json"]) == 0
    rows = {r["key"]: r for r in json.loads(capsys.readouterr().out)["files"]}
    assert set(rows) == set(weights.MANIFEST)
    assert rows["syncnet-v2"]["status"] == "ok" and rows["alexnet-lpips"]["status"] == "corrupt"
    assert rows["inception-fid"]["status"] == "missing"
    assert rows["alexnet-lpips"]["licence"] and rows["alexnet-lpips"]["url"].startswith("https://")
    assert main(["weights", "list", "--dir", str(tmp_path)]) == 0
    table = capsys.readouterr().out.splitlines()
    assert table[1].split()[:4] == ["KEY", "METRIC", "FILE", "STATUS"]
    assert len(table) == 2 + len(weights.MANIFEST)
    assert main(["weights", "verify", "syncnet-v2", "--dir", str(tmp_path)]) == 0
    capsys.readouterr()
    keys = ["syncnet-v2", "alexnet-lpips", "inception-fid"]
    assert main(["weights", "verify", *keys, "--dir", str(tmp_path)]) == 1
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 3 and lines[1].startswith("alexnet-lpips: corrupt") and lines[2].startswith(
        "inception-fid: missing")
    assert main(["weights", "verify", "no-such-key"]) == 2
