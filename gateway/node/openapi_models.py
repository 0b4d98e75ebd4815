"""Models that exist only for the OpenAPI document (:mod:`gateway.node.openapi`): the send
request and the inbox item as discriminated unions on ``message_type`` (one schema per message
type, with its typed body), and the shapes of the directory view and the health answers."""

from __future__ import annotations

from typing import Annotated, Any, Literal, Union

from pydantic import BaseModel, Field, RootModel

from schemas import api
from schemas.claims import MessageClaims

__all__ = [
    "DirectoryView",
    "Health",
    "InboxItem",
    "InboxPage",
    "Readiness",
    "SendRequest",
]


class SendRequest(RootModel[Any]):
    """``POST /v1/messages``: one of the message types, told apart by ``message_type``."""

    root: Annotated[
        Union[tuple(api.TYPED_SEND_REQUESTS.values())],  # type: ignore[valid-type]  # noqa: UP007 - a union of a computed tuple
        Field(discriminator="message_type"),
    ]


class InboxItem(api.InboxItem):
    """A delivered message waiting for the adapter: the verified claims (one schema per message
    type, told apart by ``message_type``), body included."""

    claims: MessageClaims  # type: ignore[assignment]  # the dict the node serves, described


class InboxPage(api.InboxPage):
    """``GET /v1/inbox``: the oldest unacknowledged messages after the cursor."""

    items: tuple[InboxItem, ...]


class DirectoryParty(BaseModel):
    org: str
    name: str
    role: str


class DirectoryMember(BaseModel):
    org: str
    name: str
    roles: list[str]


class MaySend(BaseModel):
    """One policy rule under which this organisation may send."""

    rule: str
    description: str | None = None
    purpose: str
    as_role: list[str]
    to: list[DirectoryParty]
    message_types: list[str]
    data_categories: list[str]
    flags: list[str]


class DirectoryView(BaseModel):
    """``GET /v1/directory``: the federation's members and what this organisation may send."""

    federation: str
    name: str
    version: int
    expires: str
    this_org: DirectoryMember
    members: list[DirectoryMember]
    may_send: list[MaySend]


class Health(BaseModel):
    status: Literal["ok"]


class Readiness(BaseModel):
    ready: bool
    checks: dict[str, dict[str, Any]]
