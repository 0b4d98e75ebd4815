"""The demo federation "ZVH Veenstad" and its case (``docs/demo.md``).

Shared by ``keys_example/`` (generated once, committed), the tests, and ``zvg demo``, so they all
tell the same story.
"""
