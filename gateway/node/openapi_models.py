"""Models that exist only for the OpenAPI document (:mod:`gateway.node.openapi`): the send
request and the inbox item as discriminated unions on ``message_type`` (one schema per message
type, with its typed body), and the shapes of the directory view and the health answers."""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal, Union

from pydantic import BaseModel, Field, RootModel, create_model

from schemas import api
from schemas.bodies import BODY_TYPES
from schemas.claims import MessageClaims

__all__ = [
    "TYPED_SEND_REQUESTS",
    "DirectoryView",
    "Health",
    "InboxItem",
    "InboxPage",
    "Readiness",
    "SendRequest",
]


def _camel(message_type: str) -> str:
    return "".join(part.capitalize() for part in re.split(r"[._]", message_type))


#: Message type → the send request of that type (its ``body`` typed), named for generators.
TYPED_SEND_REQUESTS: dict[str, type[api.SendRequest]] = {
    message_type: create_model(
        f"SendRequest{_camel(message_type)}",
        __base__=api.SendRequest,
        __doc__=f"A {message_type} message to send (its body typed).",
        message_type=(Literal[message_type], ...),  # type: ignore[arg-type]  # a tag from the table
        body=(body_model, ...),
    )
    for message_type, body_model in BODY_TYPES.items()
}


class SendRequest(RootModel[Any]):
    """``POST /v1/messages``: one of the message types, told apart by ``message_type``."""

    root: Annotated[
        Union[tuple(TYPED_SEND_REQUESTS.values())],  # type: ignore[valid-type]  # noqa: UP007 - a union of a computed tuple
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
