"""The online scorer and the sales-ops pages (FastAPI): `create_app` in `leadml.serve.app`.

Imported lazily by the CLI (`leadml serve`); nothing here runs at import.
"""
