"""Ahead-of-time compilation for TPUs on any host: each phase's real jitted programs (shardings
and donation included) over abstract parameters, compiled by libtpu for a topology's compile-only
devices; memory per device, FLOPs, a roofline bound and compile time (`python -m hdb_jax.aot`)."""
