"""segcore: the neutral, torch-free contract every part of the suite builds on (docs/architecture.md).

  prompt     mask -> Prompt (Gaussian rho + tight box + ids)     segmenter  the Segmenter protocol, PhaseTimer
  image      image checks and decoding                           metrics    IoU, boundary IoU, size classes
  datasets   lazy dataset adapters (COCO/LVIS, ObjaScale, HDF5)  hdf5       the one FLIP HDF5 layout
  records    the per-object record schema and its files          registry   one model registry (names + tags)
  hub        weight files: one cache, explicit downloads, sha256  config     one TOML/YAML config loader

Importing segcore never loads torch, a model or the harness.
"""
