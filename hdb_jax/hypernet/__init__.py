"""The hypernetwork (paper §4.2): one face image in, that face's LiDB weights out. slots: the
per-layer weight layout; decoder: the transformer weight decoder; network: encoder + decoder for one
base model; predictor: the interface Phase 2 uses."""
