"""The console's data: view-models of the audit log and the store for the heavier pages.

Pure functions of plain values — a read-only SQLite connection (run them in a worker thread,
never on the node's event loop), the officer's :class:`~gateway.console.roles.Role`, the query —
returning frozen dataclasses. No HTTP, no templates, no logging: the web layer renders these and
writes the ``console.access`` records. The SQL they need lives in :mod:`gateway.audit.search`
(the audit log's indexes) and the node's store.

- :mod:`.subject`: a typed BSN to this organisation's pseudonym (never kept).
- :mod:`.records`: search (by message, case, trace, subject, partner, purpose, operation, legal
  basis, status, time), paginated, with what each role may see; CSV export.
- :mod:`.timeline`: a case's messages in time order, one lane per partner.
- :mod:`.overview`: 30-day figures per purpose and per partner, as tables and SVG charts.
- :mod:`.alerts`: alerts computed from the log, and their acknowledgement records.
"""
