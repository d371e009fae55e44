"""Training LaMa with the official recipe in plain PyTorch (``python -m lama train``; see the README).

- :mod:`.losses` masked L1, adversarial (non-saturating + R1), feature matching; :mod:`.resnet_pl` the ResNetPL
  perceptual loss and its ADE20k encoder;
- :mod:`.data` training and validation datasets (the official augmentation, deterministic per sample);
- :mod:`.trainer` the loop (DDP, precision, checkpoints, resume, fine-tuning, validation);
  :mod:`.distributed` gradient averaging and synchronised BatchNorm; :mod:`.checkpoint` the run folder's files;
- :mod:`.config` the single-file YAML configs in ``configs/``; :mod:`.bench` and :mod:`.demo` the step-time
  benchmark and the 30-minute CPU run.
"""
