"""The web app (python -m hdb_jax.app, configs/app.py): gradio, imported only here (the `[app]`
extra). `files` (each session's files, swept after a time limit), `ui` (the page and its
handlers), `server` (the warm service behind the page, launched safely)."""
