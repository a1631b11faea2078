"""The HyperNetwork (Phase 1): one face image in, that face's LiDB weights out."""
