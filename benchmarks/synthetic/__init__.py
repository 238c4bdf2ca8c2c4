"""The synthetic talking-head world: a deterministic generator with full ground truth.

Factors: identity (face shape, skin tone, hair, brows, iris colour, lip thickness, background, voice
pitch), speech (formant synthesis over random syllables; emotion changes pitch level and range,
loudness, tempo), mouth (jaw_open, lip_width, closure from the same phoneme timeline, coarticulated),
head pose (smooth yaw/pitch/roll within +-20/12/8 degrees, independent of the mouth), expression
(per emotion and level: brow raise/furrow, eye openness, mouth corners, cheek raise; blinks).
Rendering: a 68-landmark face (dlib index layout) deformed, rotated, projected and drawn with
antialiasing and shading. Clips are named as MEAD names them: `<identity>#<emotion>#level_<k>#<nnn>`.
See `benchmarks.synthetic.world.generate_clip` and `edtalk data synth`.
"""
from benchmarks.synthetic.world import Clip, generate_clip, make_identity

__all__ = ["Clip", "generate_clip", "make_identity"]
