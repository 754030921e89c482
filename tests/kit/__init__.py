"""The one client kit of fakebroker's own tests: raw packet builders, client wrappers, waiting.

Importable as ``kit`` from every test (``pythonpath = ["tests"]`` in pyproject.toml).
"""
