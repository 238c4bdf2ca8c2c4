"""`edtalk data synth`: write the synthetic talking-head world; `edtalk data lists`: the official MEAD/HDTF splits."""
from __future__ import annotations


def register(sub) -> None:
    p = sub.add_parser("data", help="datasets: generate the synthetic world, show the official splits")
    ds = p.add_subparsers(dest="data_command", required=True)
    s = ds.add_parser("synth", help="generate the synthetic talking-head world (resumable)")
    s.add_argument("--preset", default="smoke", help="smoke (seconds) | study (about a minute)")
    s.add_argument("--size", type=int, default=None, help="64, 128 or 256 (default: the preset's)")
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--out", required=True)
    s.set_defaults(func=run_synth)
    c = ds.add_parser("crop", help="crop raw videos (MEAD layout or a folder of clips) as a reference pipeline "
                                   "does; 25 fps mp4s with their speech (resumable)")
    c.add_argument("raw_dir", metavar="RAW_DIR", help="folder of raw videos, e.g. MEAD's ROOT/<id>/video/front/...")
    c.add_argument("--out", required=True, help="output folder (same relative paths, .mp4)")
    c.add_argument("--style", default="edtalk-preprocess",
                   help="crop style of metrics.crops (default edtalk-preprocess: EDTalk's MEAD/HDTF crop, 256 px)")
    c.add_argument("--detector", default="auto", help="auto (S3FD if sfd_face.pth is found, else dlib HOG) | s3fd "
                                                      "| mtcnn | dlib-hog")
    c.add_argument("--camera", default="front", help="MEAD camera to crop (others are skipped); '' for all")
    c.add_argument("--weights", default=None, help="folder or file of sfd_face.pth (default: the weights cache)")
    c.add_argument("--device", default=None)
    c.add_argument("--no-progress", action="store_true", help="no progress bar")
    c.set_defaults(func=run_crop)
    lst = ds.add_parser("lists", help="the official MEAD/HDTF train/test lists: counts per speaker, or the names")
    lst.add_argument("--lists", metavar="DIR", help="folder with train.json/test.json overriding the bundled lists")
    lst.add_argument("--split", choices=("train", "test"), default="test")
    lst.add_argument("--dataset", choices=("mead", "hdtf"), default="mead")
    lst.add_argument("--names", action="store_true", help="print every clip name, one per line")
    lst.set_defaults(func=run_lists)


def run_synth(args) -> int:
    from benchmarks.synthetic.writer import synthesize_world

    print(synthesize_world(args.out, args.preset, args.seed, args.size))
    return 0


def run_lists(args) -> int:
    from collections import Counter

    from benchmarks.datasets.real import names_of, official_list

    names = names_of(args.dataset, official_list(args.split, args.lists))
    if args.names:
        print("\n".join(names))
        return 0
    per = Counter(n.split("#")[0] for n in names)
    source = args.lists or "bundled official lists"
    print(f"{args.dataset} {args.split}: {len(names)} clips from {len(per)} "
          f"{'speakers' if args.dataset == 'mead' else 'videos'} ({source})")
    for key, count in sorted(per.items())[:20]:
        print(f"  {key}: {count}")
    if len(per) > 20:
        print(f"  ... and {len(per) - 20} more")
    return 0


def run_crop(args) -> int:
    from benchmarks.datasets.rawcrop import SUMMARY_NAME, crop_tree

    summary = crop_tree(args.raw_dir, args.out, style=args.style, detector=args.detector,
                        camera=args.camera or None, weights=args.weights, device=args.device,
                        progress=not args.no_progress)
    no_face, unreadable = summary["no_face"], summary["unreadable"]
    line = f"{summary['clips']} clips: {summary['cropped']} cropped, {len(no_face)} without a face"
    if no_face:
        line += f" ({', '.join(no_face[:5])}{', ...' if len(no_face) > 5 else ''})"
    line += f", {len(unreadable)} unreadable"
    if unreadable:
        line += f" ({unreadable[0]['source']}: {unreadable[0]['error']}{'; ...' if len(unreadable) > 1 else ''})"
    print(f"{line}; summary in {summary['out_dir']}/{SUMMARY_NAME}")
    return 0
