"""`edtalk animate`: drive a source image with audio or videos and write an H.264 mp4 with sound."""
from __future__ import annotations

import argparse


def register(sub) -> None:
    p = sub.add_parser("animate", help="animate a source image from audio or driving videos",
                       formatter_class=argparse.ArgumentDefaultsHelpFormatter,
                       description="Writes an H.264 mp4 (audio muxed in when --audio is given). Frames map "
                                   "from [-1, 1] to 0..255 by a fixed affine map.")
    w = p.add_mutually_exclusive_group(required=True)
    w.add_argument("--checkpoint-dir", help="directory with the release's EDTalk.pt (and Audio2Lip.pt, "
                                            "EDTalk_lip_pose.pt, predefined_exp_weights/)")
    w.add_argument("--checkpoint", help="a model.pt written by `edtalk train` (RUN_DIR/model.pt) or a run dir")
    p.add_argument("--lip-pose", action="store_true", help="use EDTalk_lip_pose.pt (no expression)")
    p.add_argument("--source", required=True, help="source photo: its face is cropped as the release's "
                                                   "crop_image2.py does (256 px), then fitted to the model's size")
    p.add_argument("--no-crop", action="store_true", help="use the source image as given (resized to the model's)")
    p.add_argument("--face", type=int, default=None, help="which face of a photo with several (0 = leftmost)")
    p.add_argument("--audio", help="speech (wav/mp4/...) driving the mouth; muxed into the output")
    p.add_argument("--mouth", help="video driving the mouth")
    p.add_argument("--pose", help="video driving the head pose")
    e = p.add_mutually_exclusive_group()
    e.add_argument("--expression", help="video driving the expression")
    e.add_argument("--emotion", help="predefined expression: angry, contempt, disgusted, fear, happy, neutral, "
                                     "sad, surprised")
    p.add_argument("--emotion-dir", help="directory of <emotion>.npy (default: CHECKPOINT_DIR/predefined_exp_weights)")
    p.add_argument("--out", required=True, help="output .mp4")
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--chunk", type=int, default=64, help="frames decoded and rendered per chunk (bounds memory)")
    p.add_argument("--no-smooth", action="store_true", help="skip the Gaussian smoothing of audio mouth coefficients")
    p.add_argument("--device", default=None, help="cpu, cuda, cuda:1 … (default: cuda if available)")
    try:
        from edtalk.model.audio2motion import add_animate_arguments
    except ImportError:  # audio-to-motion not installed in this build
        add_animate_arguments = None
    if add_animate_arguments is not None:
        add_animate_arguments(p)
    p.set_defaults(func=run)


def _load_model(args, device):
    from pathlib import Path

    from edtalk import official
    from edtalk.trained import load_trained_model

    if args.checkpoint_dir:
        d = Path(args.checkpoint_dir)
        if args.lip_pose:
            return official.load_lip_pose_generator(d / official.OFFICIAL_FILES["lip_pose"], device)
        return official.load_generator(d / official.OFFICIAL_FILES["generator"], device)
    return load_trained_model(args.checkpoint, device)[0]


def _audio_drivers(args, model, source, audio, n: int, device, frames) -> dict:
    """The drivers speech gives: mouth frames (--mouth) or coefficients from Audio2Lip (--checkpoint-dir)
    or Audio2Motion (--audio2motion), which also gives pose and expression unless frames are given."""
    from pathlib import Path

    import torch

    from edtalk import official
    from edtalk.animate import smooth_coefficients
    from edtalk.audio_features import mel_windows, melspectrogram
    from metrics.errors import UserError

    if args.mouth:
        return {"mouth": frames(args.mouth)}
    kw: dict = {}
    a2l_path = Path(args.checkpoint_dir or "") / official.OFFICIAL_FILES["audio2lip"]
    if args.checkpoint_dir and a2l_path.is_file():
        a2l = official.load_audio2lip(a2l_path, device)
        windows = torch.from_numpy(mel_windows(melspectrogram(audio), n))[:, None]
        with torch.no_grad():
            mouth = torch.cat([a2l(windows[i:i + 256].to(device)) for i in range(0, n, 256)])
        kw["mouth_coeffs"] = mouth if args.no_smooth else smooth_coefficients(mouth)
    elif getattr(args, "audio2motion", None):
        from edtalk.model.audio2motion import Audio2Motion, drive_from_audio

        a2m = Audio2Motion.load(args.audio2motion, map_location=device).to(device).eval()
        drive = drive_from_audio(model, source.to(device), audio, a2m=a2m,
                                 pose_sampling=args.pose_sampling,
                                 pose_frames=frames(args.pose) if args.pose else None,
                                 temperature=args.pose_temperature, seed=args.pose_seed)
        kw["mouth_coeffs"] = drive["mouth"] if args.no_smooth else smooth_coefficients(drive["mouth"])
        if drive.get("pose") is not None and not args.pose:
            kw["pose_coeffs"] = drive["pose"]
        if drive.get("expression") is not None and not (args.expression or args.emotion):
            kw["expression_coeffs"] = drive["expression"]
    else:
        raise UserError("--audio needs an audio-to-lip model: --checkpoint-dir with Audio2Lip.pt, or "
                        "--audio2motion RUN/audio/audio2motion.pt")
    return kw


def run(args) -> int:
    from pathlib import Path

    from tqdm import tqdm

    from benchmarks import media
    from edtalk import official
    from edtalk.animate import animate_chunks
    from edtalk.source_photo import load_source_image
    from metrics.errors import InputError, UserError
    from metrics.utils import resolve_device

    device = resolve_device(args.device)
    model = _load_model(args, device)
    size = model.cfg.size
    if not (args.audio or args.mouth or args.pose or args.expression or args.emotion):
        raise UserError("nothing drives the source: give --audio or --mouth (and optionally --pose, "
                        "--expression/--emotion)")
    source_image, _ = load_source_image(args.source, size, crop=not args.no_crop, face=args.face)
    source = media.frames_to_tensor(source_image[None])

    def frames(path):
        return media.frames_to_tensor(media.read_video(path, size=size).frames)

    kw: dict = {}
    audio = None
    if args.audio:
        audio = media.read_audio(args.audio, 16000)
        n = int(len(audio) // 640)
        if n < 1:
            raise InputError(f"{args.audio}: shorter than one 25 fps frame")
        audio = audio[: n * 640]
        kw.update(_audio_drivers(args, model, source, audio, n, device, frames))
    elif args.mouth:
        kw["mouth"] = frames(args.mouth)
    if args.pose and "pose_coeffs" not in kw:
        kw["pose"] = frames(args.pose)
    if args.expression:
        kw["expression"] = frames(args.expression)
    elif args.emotion:
        emo_dir = Path(args.emotion_dir or Path(args.checkpoint_dir or ".") / "predefined_exp_weights")
        table = official.load_emotion_weights(emo_dir)
        if args.emotion not in table:
            raise UserError(f"no predefined weights for emotion {args.emotion!r} in {emo_dir}; have {sorted(table)}")
        kw["expression_coeffs"] = table[args.emotion]

    lengths = [v.shape[0] for v in kw.values() if v.shape[0] > 1]
    n_frames = min(lengths) if lengths else 1
    kw = {k: (v[:n_frames] if v.shape[0] > 1 else v) for k, v in kw.items()}
    if audio is not None:
        audio = audio[: n_frames * 640]
    out = Path(args.out)
    with media.VideoWriter(out, fps=25, audio=audio) as writer, tqdm(total=n_frames, unit="frame",
                                                                      desc="animate") as bar:
        for batch in animate_chunks(model, source.to(device), batch_size=args.batch_size, **kw):
            writer.write(media.tensor_to_frames(batch))
            bar.update(batch.shape[0])
    print(out)
    return 0
