"""Disentanglement metrics: does each output factor follow its own driver, and only its own?

EDTalk drives a source face with three separate clips, one per factor (mouth, head pose, expression).
These functions score that separation from *measured* factors, i.e. arrays that some factor reader
(a pose estimator, a landmark-based mouth reader, an emotion classifier, a face-recognition
embedder) extracted from generated frames, against the drivers' ground truth (the synthetic world's
`ground_truth(clip)`). They take arrays only, so they run without any network:

* `transfer_errors`: per factor, MAE and Pearson r between the output's measured factor and its
  driver's ground truth; `emotion_accuracy` for clip-level emotion logits.
* `leakage_matrix`: swap one driver at a time and measure how much every output factor moves,
  normalised so that 0 = unaffected and 1 = moves as much as if it followed the swapped driver.
* `identity_preservation` / `identity_across_outputs`: cosine between source and output embeddings.
* `bank_geometry` / `bank_geometry_of`: orthonormality of the latent bases and principal angles
  between the factor subspaces.
* `evaluate_disentanglement`: the whole procedure over a synthetic world, a model and readers.

This package sits in the bottom layer: it imports nothing from benchmarks/ or edtalk/; the world, the
model and the readers are duck-typed. The scores live one concept per module (arrays, transfer,
leakage, identity, geometry, procedure); this package exports them all.
"""
from metrics.disentanglement.arrays import FACTORS
from metrics.disentanglement.geometry import BankGeometry, bank_geometry, bank_geometry_of
from metrics.disentanglement.identity import IdentityResult, identity_across_outputs, identity_preservation
from metrics.disentanglement.leakage import LeakageResult, leakage_matrix
from metrics.disentanglement.procedure import evaluate_disentanglement
from metrics.disentanglement.transfer import FactorTransfer, emotion_accuracy, transfer_errors

__all__ = [
    "FACTORS",
    "FactorTransfer",
    "LeakageResult",
    "IdentityResult",
    "BankGeometry",
    "transfer_errors",
    "emotion_accuracy",
    "leakage_matrix",
    "identity_preservation",
    "identity_across_outputs",
    "bank_geometry",
    "bank_geometry_of",
    "evaluate_disentanglement",
]
