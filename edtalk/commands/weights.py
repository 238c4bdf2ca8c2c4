"""`edtalk weights`: list, verify and fetch the pretrained weight files the metrics need.

    edtalk weights list                      # key, metric, file, status, licence, URL
    edtalk weights verify inception-fid      # exit 1 if a requested file is missing or corrupt
    edtalk weights fetch alexnet-lpips --dir /data/weights

The files and their hashes are `metrics.weights.MANIFEST`; the directory is --dir, else
$EDTALK_WEIGHTS, else torch hub's checkpoint directory. Nothing else in the suite downloads.
"""
from __future__ import annotations

import json
import os
import sys
from pathlib import Path


def register(subparsers) -> None:
    p = subparsers.add_parser("weights", description=__doc__.split("\n\n")[0],
                              help="list, verify or fetch the pretrained weight files of the metrics")
    sub = p.add_subparsers(dest="action", metavar="ACTION", required=True)
    for name, help_ in (("list", "table of every weight file and its status"),
                        ("verify", "check files against the manifest (exit 1 if any is missing or corrupt)"),
                        ("fetch", "download files into the weights directory, verified, atomically")):
        q = sub.add_parser(name, help=help_, description=help_)
        if name != "list":
            q.add_argument("keys", nargs="*", metavar="KEY", help="manifest keys (default: all)")
        q.add_argument("--dir", default=None, metavar="D",
                       help="weights directory (default: $EDTALK_WEIGHTS, else $TORCH_HOME/hub/checkpoints)")
        if name == "list":
            q.add_argument("--json", action="store_true", help="machine-readable output")
        if name == "fetch":
            q.add_argument("--force", action="store_true",
                           help="download again even if a good file is present")
            q.add_argument("--timeout", type=float, default=60.0,
                           help="network timeout in seconds (default 60)")
        q.set_defaults(func=run)


def run(args) -> int:
    from metrics.weights import MANIFEST, entry, weights_dir

    keys = list(getattr(args, "keys", None) or MANIFEST)
    for key in keys:
        entry(key)  # unknown keys fail before anything happens
    directory = weights_dir(args.dir)
    if args.action == "list":
        return _list(keys, directory, args.json)
    if args.action == "verify":
        return _verify(keys, directory)
    return _fetch(keys, directory, explicit=bool(args.keys), force=args.force, timeout=args.timeout)


def _list(keys: list[str], directory: Path, as_json: bool) -> int:
    from metrics.weights import check_file, entry, find

    rows = []
    for key in keys:
        w = entry(key)
        path = find(key, directory)
        status = check_file(key, path)
        status = "corrupt" if status.startswith("corrupt") else status
        if status == "ok" and path.parent != directory:
            status = f"ok ({w.package_file.split('/')[0]})"  # the copy a pip package ships
        rows.append({"key": key, "metric": w.metric, "file": w.filename, "status": status, "path": str(path),
                     "licence": w.licence, "url": w.url if w.fetchable else f"{w.url} (by hand)"})
    if as_json:
        print(json.dumps({"directory": str(directory), "files": rows}, indent=2))
        return 0
    print(f"weights directory: {directory}")
    cols = ("key", "metric", "file", "status", "licence", "url")  # path: --json only
    widths = {c: max(len(c), *(len(r[c]) for r in rows)) for c in cols[:-1]}
    print("  ".join(c.upper().ljust(widths.get(c, 0)) for c in cols).rstrip())
    for r in rows:
        print("  ".join(r[c].ljust(widths.get(c, 0)) for c in cols).rstrip())
    return 0


def _verify(keys: list[str], directory: Path) -> int:
    from metrics.weights import check_file, find

    bad = 0
    for key in keys:
        path = find(key, directory)
        status = check_file(key, path)
        bad += status != "ok"
        print(f"{key}: {status} ({path})")
    return 1 if bad else 0


def _fetch(keys: list[str], directory: Path, explicit: bool, force: bool, timeout: float) -> int:
    from metrics.weights import check_file, entry, installed_copy

    failed = 0
    for key in keys:
        w = entry(key)
        final = directory / w.filename
        if not force and check_file(key, final) == "ok":
            print(f"{key}: ok, already at {final}")
            continue
        shipped = installed_copy(key)
        if not force and shipped and check_file(key, shipped) == "ok":
            print(f"{key}: ok, shipped by an installed package at {shipped}")
            continue
        if not w.fetchable:
            print(f"{key}: cannot be downloaded automatically; get {w.filename} by hand from {w.url} "
                  f"and put it in {directory}")
            failed += explicit  # asked for by name: the file is still missing
            continue
        try:
            digest = _download(key, final, timeout)
        except _FetchError as e:
            print(f"{key}: {e}", file=sys.stderr)
            failed += 1
            continue
        note = "" if (w.sha256 or w.sha256_prefix) else f" (no published hash; sha256 {digest})"
        print(f"{key}: fetched {final}{note}")
    return 1 if failed else 0


class _FetchError(Exception):
    pass


def _download(key: str, final: Path, timeout: float) -> str:
    """Download `key` to a temporary file beside `final`, unpack .bz2/.zip, verify, rename; return sha256."""
    import tempfile
    import urllib.error
    import urllib.request

    from metrics.utils import sha256_file
    from metrics.weights import check_file, entry

    w = entry(key)
    try:
        final.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise _FetchError(f"cannot create {final.parent}: {e.strerror or e}") from None
    fd, tmp_name = tempfile.mkstemp(prefix=f".{final.name}.", suffix=".part", dir=final.parent)
    tmp = Path(tmp_name)
    try:
        try:
            with os.fdopen(fd, "wb") as out, urllib.request.urlopen(w.url, timeout=timeout) as resp:
                _unpack(resp, out, w.url, w.filename, final.parent)
                out.flush()
                os.fsync(out.fileno())
        except urllib.error.HTTPError as e:
            raise _FetchError(f"download failed: HTTP {e.code} {e.reason} from {w.url}") from None
        except urllib.error.URLError as e:
            raise _FetchError(f"download failed: {e.reason} ({w.url}); no network? download "
                              f"{w.filename} by hand into {final.parent}") from None
        except (OSError, EOFError, ValueError) as e:
            raise _FetchError(f"download failed: {type(e).__name__}: {e} ({w.url})") from None
        status = check_file(key, tmp)
        if status != "ok":
            raise _FetchError(f"downloaded file is {status}; nothing was written to {final}")
        digest = sha256_file(tmp)
        os.replace(tmp, final)
        return digest
    finally:
        tmp.unlink(missing_ok=True)


def _unpack(resp, out, url: str, filename: str, scratch: Path) -> None:
    """Copy the response into `out`; `.bz2` is decompressed, and from a `.zip` the member named `filename`
    is extracted (dlib ships bz2, insightface a zip of several models)."""
    import shutil

    path = url.split("?", 1)[0].lower()
    if path.endswith(".bz2") and not filename.lower().endswith(".bz2"):
        import bz2

        dec = bz2.BZ2Decompressor()
        while block := resp.read(1 << 20):
            out.write(dec.decompress(block))
        if not dec.eof:
            raise EOFError("truncated bz2 download")
        return
    if path.endswith(".zip") and not filename.lower().endswith(".zip"):
        import tempfile
        import zipfile

        with tempfile.TemporaryFile(dir=scratch) as archive:
            shutil.copyfileobj(resp, archive, 1 << 20)
            archive.seek(0)
            with zipfile.ZipFile(archive) as zf:
                names = [n for n in zf.namelist() if n.rsplit("/", 1)[-1] == filename]
                if not names:
                    raise ValueError(f"{filename} is not inside the archive")
                with zf.open(names[0]) as member:
                    shutil.copyfileobj(member, out, 1 << 20)
        return
    shutil.copyfileobj(resp, out, 1 << 20)
