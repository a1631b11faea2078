"""python -m hdb_jax.demo: every phase end to end on the tiny offline model (run), then a report
(page)."""
