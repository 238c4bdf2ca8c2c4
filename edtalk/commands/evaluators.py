"""`edtalk evaluators train`: train, validate and cache the synthetic world's evaluator nets.

    edtalk evaluators train --data worlds/smoke            # cache in worlds/smoke/evaluators/<key>/
"""
from __future__ import annotations


def register(sub) -> None:
    p = sub.add_parser("evaluators", help="synthetic-world evaluators: landmarks, pose, emotion, identity, SyncNet")
    ev = p.add_subparsers(dest="evaluators_command", required=True)
    t = ev.add_parser("train", help="train the evaluators on a world's train identities, validate on its test ones",
                      description=__doc__.split("\n\n")[0])
    t.add_argument("--data", required=True, help="synthetic world directory (from `edtalk data synth`)")
    t.add_argument("--out", default=None, help="cache root (default: DATA/evaluators); nets go to OUT/<key>/")
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--device", default=None, help="cpu, cuda, cuda:1 … (default: $EDTALK_DEVICE or auto)")
    t.add_argument("--preset", default="default", help="default | tiny (seconds; for tests)")
    t.add_argument("--force", action="store_true", help="retrain even if the cache is complete")
    t.add_argument("--threads", type=int, default=None,
                   help="torch CPU threads while training (default: torch's; 1 is fastest on a busy shared CPU)")
    t.set_defaults(func=run_train)


def run_train(args) -> int:
    import json

    from benchmarks.evaluators import train_evaluators

    out = train_evaluators(args.data, cache_dir=args.out, seed=args.seed, config=args.preset, device=args.device,
                           force=args.force, threads=args.threads)
    meta = json.loads((out / "meta.json").read_text())
    v = meta["validation"]
    times = ", ".join(f"{k} {s:.0f}s" for k, s in meta["train_seconds"].items())
    print(f"training: {times}; validation {v['seconds']:.0f}s")
    print(f"test identities {', '.join(v['identities'])} ({v['clips']} clips, {v['frames']} frames):")
    print(f"  landmarks  mean {v['landmarks']['mean_px']:.2f} px, mouth {v['landmarks']['mouth_px']:.2f} px "
          f"(at {v['size']} px)")
    mae, std = v["pose"]["mae_deg"], v["pose"]["gt_std_deg"]
    print("  pose MAE   " + ", ".join(f"{a} {mae[a]:.2f}° (GT std {std[a]:.2f}°)" for a in mae))
    print(f"  emotion    clip acc {v['emotion']['clip_accuracy']:.3f}, frame acc {v['emotion']['frame_accuracy']:.3f} "
          f"(chance 0.125)")
    i = v["identity"]
    print(f"  identity   verification acc {i['verification_accuracy']:.3f} (threshold {i['threshold']:.3f} "
          f"from held-out train ids, their acc {i['train_accuracy']:.3f})")
    s = v["sync"]
    print(f"  SyncNet    offset acc ±1 {s['offset_accuracy']:.3f} (GT crops {s['offset_accuracy_gt_crops']:.3f}, "
          f"chance {s['chance']:.3f}); delayed {s['shift_frames']} frames found {s['shifted_offset_accuracy']:.3f}")
    print("             LSE-C " + ", ".join(f"{k} {x:.2f}" for k, x in s["lse_c"].items())
          + "; LSE-D " + ", ".join(f"{k} {x:.2f}" for k, x in s["lse_d"].items()))
    print(json.dumps({"cache": str(out)}))
    return 0
