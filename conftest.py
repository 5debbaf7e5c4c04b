"""Repository-wide pytest set-up: nbval compares training outputs with the tolerances cells state."""
pytest_plugins = ["tools.nbval_tolerance"]
