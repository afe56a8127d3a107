"""Downstream: the paper's few-shot protocol — linear evaluation and full fine-tuning.

Three parts, each usable alone: `training` fits a linear head on frozen features (and the whole
network for the full fine-tune), `protocol` runs the subject-wise folds and picks each fold's
spectrogram setting and head on the validation subjects, and `results` evaluates the encoders a
config names and writes what it found to disk. `config` holds the protocol's defaults and the
checks a config passes before any data is read.
"""
