"""EDTalk: model, training, inference and loaders for the official checkpoints."""
__version__ = "0.1.0"
