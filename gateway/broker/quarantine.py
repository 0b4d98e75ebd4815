"""Stop a member from publishing, and let it again: ``zvg broker quarantine`` / ``release``.

Issue 14: a member that floods a partner must be stoppable at once, by ops, with one command,
and the act must be on record. What it guarantees:

- :func:`quarantine` sets the member's vhost permissions to write nothing (configure nothing, read
  its own two queues as before: its node keeps receiving) and its topic permission on the
  envelope exchange to write nothing, then closes every open connection of the member's broker
  user — a channel that is already open may keep using permissions it checked before, so only a
  new connection is sure to get the new ones. The node reconnects by itself and can consume, but
  every publish is refused (its outbox keeps the messages and retries).
- :func:`release` sets exactly what provisioning grants (the same
  :func:`~gateway.core.broker_topology.permissions_for` and
  :func:`~gateway.core.broker_topology.topic_permissions_for`).
- Both refuse a broker user that provisioning did not create (no ``zvg-member`` tag), as
  provisioning does, and never touch anything else. Re-running either is harmless.

Recording the act in the node's audit log is the CLI's job (``gateway.cli.broker``): it opens the
log before touching the broker and appends the record after.
"""

from __future__ import annotations

from gateway.broker.provision import Rabbitmqctl
from gateway.core import broker_topology as topology
from gateway.core.broker_topology import BrokerMember
from gateway.errors import LocalError

__all__ = ["quarantine", "release"]

CLOSE_REASON = "quarantined by zvg broker quarantine"
"""What the broker tells the closed connections (their client logs it)."""


def _check_member_user(ctl: Rabbitmqctl, user: str) -> None:
    tags = {str(row.get("user")): row.get("tags") or [] for row in ctl.json("list_users")}
    if user not in tags:
        raise LocalError(f"broker user {user!r} does not exist on this broker (provision it)")
    if topology.MEMBER_TAG not in tags[user]:
        raise LocalError(
            f"broker user {user!r} was not created by zvg provisioning; refusing to change it"
        )


def _grant(ctl: Rabbitmqctl, member: BrokerMember, vhost: str, *, quarantined: bool) -> None:
    perms = topology.permissions_for(member.org, quarantined=quarantined)
    topic = topology.topic_permissions_for(member.org, quarantined=quarantined)
    user = member.broker_user
    ctl.run("set_permissions", "-p", vhost, user, perms.configure, perms.write, perms.read)
    ctl.run("set_topic_permissions", "-p", vhost, user, topic.exchange, topic.write, topic.read)


def quarantine(member: BrokerMember, vhost: str, *, ctl: Rabbitmqctl) -> int:
    """Revoke ``member``'s right to publish in ``vhost`` and close its connections; returns how
    many connections were open. Raises :class:`LocalError` (user missing or not provisioned by
    us, rabbitmqctl failure) or :class:`~gateway.errors.TransientError` (broker unreachable)."""
    _check_member_user(ctl, member.broker_user)
    _grant(ctl, member, vhost, quarantined=True)
    open_connections = sum(
        1 for row in ctl.json("list_connections", "user") if row.get("user") == member.broker_user
    )
    ctl.run("close_all_user_connections", member.broker_user, CLOSE_REASON)
    return open_connections


def release(member: BrokerMember, vhost: str, *, ctl: Rabbitmqctl) -> None:
    """Restore exactly what provisioning grants ``member`` in ``vhost``. Raises as
    :func:`quarantine`."""
    _check_member_user(ctl, member.broker_user)
    _grant(ctl, member, vhost, quarantined=False)
