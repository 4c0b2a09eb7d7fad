"""The control API: REST under /api/v1 (FastAPI), one JSON error shape, bearer tokens."""
