"""Plumbing every command shares: flags and logging (cli), the device mesh (mesh), the compilation
cache."""
