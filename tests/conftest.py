"""Session-wide fixtures and hooks for every test folder."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from hypothesis import settings

from tests.integration._cluster import RabbitCluster, run_cluster
from tests.integration._private_node import TlsNode, run_private_node
from tests.pg import pg_url  # noqa: F401 - a session fixture: one PostgreSQL database per worker
from tests.rabbit import finish_removals

# Tests wait for events, not for time (decision 0100): Hypothesis's default deadline (200 ms per
# example) fails a property when a busy machine stalls one example. A property of the audit
# records failed once under three workers on a loaded machine and passed in 31 seeds alone and
# 4 runs under three workers; the deadline is the only timing in it. No deadline; the examples a
# property runs are set where it is defined.
settings.register_profile("zvg", deadline=None)
settings.load_profile("zvg")

SHARED_FIXTURES = ("tls_node", "rabbit_cluster", "prepared", "fhir_url", "zaken_url")
"""Session fixtures that boot something expensive (a private RabbitMQ node or cluster, the
compose state, the adapters' third-party servers)."""


def pytest_itemcollected(item: pytest.Item) -> None:
    """Under ``pytest -n`` (pytest-xdist, ``--dist loadgroup`` in ``scripts/test``), keep the tests
    that share an expensive fixture on one worker, so it is made once: the users of each fixture in
    :data:`SHARED_FIXTURES` form a group, and so do the tests of a module with a module-scoped
    fixture. Every other test goes to whichever worker is free.

    The mark is set as each test is collected: xdist turns the marks into groups in its own
    ``pytest_collection_modifyitems``, which runs before a conftest's."""
    info = getattr(item, "_fixtureinfo", None)
    if info is None:
        return
    names = info.names_closure
    group = next((n for n in SHARED_FIXTURES if n in names), None)
    if group is None and any(
        defs[-1].scope == "module" for defs in info.name2fixturedefs.values() if defs
    ):
        group = item.nodeid.split("::")[0]
    if group is not None:
        item.add_marker(pytest.mark.xdist_group(group))


@pytest.fixture(scope="session", autouse=True)
def _finish_removals() -> Iterator[None]:
    """Throwaway vhosts and users are provisioned and removed in batches (``tests/rabbit.py``);
    remove what is left and wait for every removal before the session ends, so no test object is
    left on the shared broker."""
    yield
    finish_removals()


@pytest.fixture(scope="session")
def tls_node() -> Iterator[TlsNode]:
    """A private RabbitMQ node with the example TLS config, shared by the tests that need it
    (broker integration tests and the e2e broker restart): booting one costs ~10 s of CPU."""
    yield from run_private_node()


@pytest.fixture(scope="session")
def rabbit_cluster() -> Iterator[RabbitCluster]:
    """A private three-member RabbitMQ cluster (``tests/integration/_cluster.py``, decision
    0093), booted once per session for the tests that need one and removed afterwards (15-25 s
    to boot here). A test that stops a member starts it again."""
    yield from run_cluster()
