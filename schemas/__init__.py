"""The contract: pydantic models of everything that crosses an organisation's boundary.

Frozen, strict, ``extra="forbid"`` models for message claims, message bodies, receipts, the
federation directory and the purpose catalogue. ``schemas/json/`` holds the JSON Schema files
generated from them (``zvg schemas export``) for partners that do not use Python.
"""
