"""Configs: shared pieces (pieces) and each phase's whole config (phases); configs/*.py return
them."""
