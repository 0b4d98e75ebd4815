"""Ports the tests pick for the listeners they start lie below the kernel's ephemeral range.

Bug: a cluster member's AMQP port came from ``bind(0)``, i.e. from the ephemeral range; between
its first boot and its ``start_app`` after joining the cluster, one of the suite's outgoing
connections took it as its own end, and the fixture failed (``start_app`` exit 69, listener
``eaddrinuse``) in a fresh-clone ``.ci/run``.
"""

from __future__ import annotations

from tests.integration._private_node import _ephemeral_ports, _free_port


def test_a_picked_port_is_free_and_never_one_the_kernel_hands_out() -> None:
    low, high = _ephemeral_ports()
    assert 1024 <= low <= high
    picked = {_free_port() for _ in range(50)}
    assert all(1024 <= port < low for port in picked)
    assert len(picked) > 1  # random, not one fixed port every test would share
