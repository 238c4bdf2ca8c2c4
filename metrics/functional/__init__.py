
from metrics.functional.emotion import emotion_accuracy  # noqa: F401

# LPIPS and Inception-FID: these modules import torch only when called.
from metrics.functional.fid import frechet_inception_distance, inception_features  # noqa: F401
from metrics.functional.identity import csim  # noqa: F401
from metrics.functional.landmarks import landmark_distance  # noqa: F401
from metrics.functional.lpips import load_lpips, lpips, lpips_per_pair  # noqa: F401
from metrics.functional.pose import pose_error  # noqa: F401
