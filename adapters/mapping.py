"""Mapping files: turn a partner's flat or nested record into a message (``SendRequest``).

Systems without a public API (police, OM, Veilig Thuis) export CSV rows or post their own JSON.
A mapping file (TOML) says how such a record becomes a message, so the adapter needs no code per
partner. Shape::

    [message]                  # constant parts of the message
    message_type = "case.referral"
    purpose = "ZVH.AANMELDING"
    recipients = [{ org = "00000001999000001000", role = "ZVH" }]
    data_categories = ["ID_PSEUDO", "CONTACT_PROF", "LEEFGEBIEDEN", "VRIJE_TEKST"]

    [message.body]             # constant body fields (e.g. the referrer's contact)
    urgency = "regular"

    [fields]                   # target path = source
    "case_ref" = "zaaknummer"                         # a column / a dotted JSON path
    "body.reason" = { source = "omschrijving" }
    "body.urgency" = { source = "urgentie", map = { hoog = "urgent", normaal = "regular" } }
    "body.betrokkene_informed" = { source = "geinformeerd", type = "bool" }
    "body.police_incidents.0.occurred_on" = { source = "datum", type = "date", format = "%d-%m-%Y" }
    "body.risk.kinds" = { source = "risico", type = "list", separator = "|" }

    [[subjects]]               # people, pseudonymised with the organisation's key
    source = "bsn"             # the record's identifier of the person (never sent as such)
    kind = "bsn"               # namespace of that identifier
    role = "betrokkene"
    minor = false              # or minor_source = "minderjarig" (a bool column)

Source values are strings in CSV; ``type`` converts them (``str`` default, ``int``, ``bool``
(ja/nee, yes/no, true/false, 1/0), ``date``, ``datetime`` (with ``format``, else ISO 8601),
``list``). An empty source value leaves the target out (so optional fields stay optional). A
``subjects`` entry adds ``{subject_ref, role, minor}`` and, with ``ref_target``, also writes the
pseudonym into a body field (e.g. a household member's ``subject_ref``).

What the mapping produces is validated by :class:`~schemas.api.SendRequest`; the node checks the
contract and the policy. Errors name the target path and the rule, never the value.
"""

from __future__ import annotations

import hashlib
import itertools
import re
from collections.abc import Mapping
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from adapters._runtime import Pseudonymiser, load_toml
from adapters.errors import ConfigError, MappingError
from schemas.api import SendRequest
from zvg_client.client import request_from_dict
from zvg_client.errors import InvalidMessage

__all__ = [
    "FieldSpec",
    "MappingSpec",
    "MessageMapping",
    "SubjectSpec",
    "build_request",
    "load_mapping",
]

_TRUE = frozenset({"1", "true", "yes", "ja", "j", "y", "waar"})
_FALSE = frozenset({"0", "false", "no", "nee", "n", "onwaar"})
_PATH = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.([A-Za-z_][A-Za-z0-9_]*|[0-9]{1,2}))*$")

#: Characters of one source value. The longest contract field is free text (2,000 characters);
#: a longer value is refused before it is converted or copied.
MAX_SOURCE_VALUE_CHARS = 4000


class _Closed(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class FieldSpec(_Closed):
    """Where one target field comes from: a ``source`` column/path, or a constant ``value``."""

    source: str = ""
    value: Any = None
    type: Literal["str", "int", "bool", "date", "datetime", "list"] = "str"
    format: str | None = None
    """``strptime`` format for ``date``/``datetime`` (ISO 8601 when absent)."""
    map: dict[str, Any] | None = None
    """Value translation (partner code → contract code); an unmapped value is an error."""
    separator: str = "|"
    item_keys: list[str] | None = None
    """For ``list``: split each item at ``item_separator`` into an object with these keys
    (``"2026-01-09:overlast"`` → ``{"occurred_on": "2026-01-09", "kind": "overlast"}``)."""
    item_separator: str = ":"
    item_maps: dict[str, dict[str, Any]] | None = None
    """For ``item_keys``: value translation per key."""
    required: bool = False
    """When true, an empty source value is an error instead of leaving the field out."""


class SubjectSpec(_Closed):
    source: str
    kind: str = Field(pattern=r"^[a-z][a-z0-9-]{0,31}$")
    role: Literal["betrokkene", "household_member", "victim", "other"] = "betrokkene"
    minor: bool = False
    minor_source: str | None = None
    ref_target: str | None = None
    """A body path that receives the pseudonym too (e.g. ``body.household.0.subject_ref``)."""
    many: bool = False
    """The source holds several people, split at ``separator`` (e.g. the children)."""
    separator: str = "|"
    household: dict[str, Any] | None = None
    """Also add each person to ``body.household`` with these fields (``relation``,
    ``lives_with_betrokkene``); ``subject_ref`` and ``minor`` are filled in."""


class MappingSpec(_Closed):
    message: dict[str, Any]
    fields: dict[str, str | FieldSpec] = {}
    subjects: list[SubjectSpec] = []
    csv: dict[str, Any] = {}
    """CSV dialect for the folder adapter: ``delimiter`` (default ``,``), ``encoding``."""


class MessageMapping:
    """A loaded mapping file: :meth:`build` turns one record into a ``SendRequest``."""

    def __init__(
        self, spec: MappingSpec, pseudonyms: Pseudonymiser | None, name: str = "mapping"
    ) -> None:
        self.spec = spec
        self.pseudonyms = pseudonyms
        self.name = name
        #: Changes when the mapping changes: part of idempotency keys derived from records, so a
        #: record re-sent under an edited mapping is a new message, not a conflicting retry.
        self.digest = hashlib.sha256(spec.model_dump_json().encode()).hexdigest()[:16]
        for target in spec.fields:
            if not _PATH.match(target):
                raise ConfigError(f"{name}: fields: '{target}' is not a dotted path")

    @property
    def delimiter(self) -> str:
        value = self.spec.csv.get("delimiter", ",")
        if not isinstance(value, str) or len(value) != 1:
            raise ConfigError(f"{self.name}: csv.delimiter must be one character")
        return value

    @property
    def encoding(self) -> str:
        value = self.spec.csv.get("encoding", "utf-8")
        if not isinstance(value, str):
            raise ConfigError(f"{self.name}: csv.encoding must be a string")
        return value

    def build(self, record: Mapping[str, Any]) -> SendRequest:
        """The message for ``record``. Raises :class:`MappingError` (path + rule)."""
        out: dict[str, Any] = _deep_copy(self.spec.message)
        out.setdefault("body", {})
        for target, raw_spec in self.spec.fields.items():
            spec = FieldSpec(source=raw_spec) if isinstance(raw_spec, str) else raw_spec
            if spec.value is not None:
                _assign(out, target, _deep_copy(spec.value))
                continue
            value = _convert(target, spec, _lookup(record, spec.source))
            if value is not None:
                _assign(out, target, value)
        subjects = list(out.get("subjects", []))
        for i, s in enumerate(self.spec.subjects):
            subjects.extend(self._subjects(i, s, record, out))
        if subjects:
            out["subjects"] = subjects
            if any(s["minor"] for s in subjects):
                out.setdefault("flags", {})["minors"] = True
        return build_request(out)

    def _subjects(
        self, i: int, s: SubjectSpec, record: Mapping[str, Any], out: dict[str, Any]
    ) -> list[dict[str, Any]]:
        ident = _lookup(record, s.source)
        if s.many and isinstance(ident, list):
            ident = s.separator.join(str(x) for x in ident)
        text = "" if ident is None else str(ident).strip()
        if not text:
            if s.many:
                return []
            raise MappingError(f"subjects.{i}", f"source '{s.source}' is empty")
        minor = s.minor
        if s.minor_source is not None:
            flag = _convert(
                f"subjects.{i}.minor",
                FieldSpec(source=s.minor_source, type="bool"),
                _lookup(record, s.minor_source),
            )
            minor = bool(flag)
        if self.pseudonyms is None:
            raise MappingError(f"subjects.{i}", "the mapping pseudonymises, but no key is set")
        found = []
        people = [p.strip() for p in text.split(s.separator)] if s.many else [text]
        for person in (p for p in people if p):
            ref = self.pseudonyms.subject_ref(s.kind, person)
            found.append({"subject_ref": ref, "role": s.role, "minor": minor})
            if s.ref_target:
                _assign(out, s.ref_target, ref)
            if s.household is not None:
                member = {"subject_ref": ref, "minor": minor, **s.household}
                out.setdefault("body", {}).setdefault("household", []).append(member)
        return found


def build_request(data: Mapping[str, Any]) -> SendRequest:
    """The message a partner record was mapped to (JSON-shaped ``data``, as
    :func:`~zvg_client.client.request_from_dict` takes it), for a mapping file or an adapter's own
    code. Raises :class:`MappingError` with the first invalid field's path and rule (never its
    value)."""
    try:
        return request_from_dict(data)
    except InvalidMessage as exc:
        first = exc.errors[0]
        raise MappingError(first.field, first.message) from None


def load_mapping(path: Path, pseudonyms: Pseudonymiser | None) -> MessageMapping:
    """Load and check a mapping file. Raises :class:`ConfigError`."""
    data = load_toml(path)
    try:
        spec = MappingSpec.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise ConfigError(f"{path}: {where}: {first['msg']}") from None
    return MessageMapping(spec, pseudonyms, name=str(path))


def _lookup(record: Mapping[str, Any], source: str) -> Any:
    if source in record:
        return record[source]
    current: Any = record
    for part in source.split("."):
        if isinstance(current, Mapping) and part in current:
            current = current[part]
        elif isinstance(current, list) and part.isdigit() and int(part) < len(current):
            current = current[int(part)]
        else:
            return None
    return current


def _convert(target: str, spec: FieldSpec, value: Any) -> Any:
    if value is None or (isinstance(value, str) and value.strip() == ""):
        if spec.required:
            raise MappingError(target, f"source '{spec.source}' is empty")
        return None
    if isinstance(value, str):
        if len(value) > MAX_SOURCE_VALUE_CHARS:
            raise MappingError(target, f"source value longer than {MAX_SOURCE_VALUE_CHARS}")
        value = value.strip()
    if spec.map is not None and spec.type != "list":
        key = str(value)
        if key not in spec.map:
            raise MappingError(target, f"value of '{spec.source}' is not in the map")
        return spec.map[key]
    try:
        match spec.type:
            case "str":
                return str(value) if not isinstance(value, dict | list) else value
            case "int":
                return value if isinstance(value, int) else int(str(value))
            case "bool":
                if isinstance(value, bool):
                    return value
                text = str(value).lower()
                if text in _TRUE:
                    return True
                if text in _FALSE:
                    return False
                raise MappingError(target, "not a yes/no value")
            case "date":
                if spec.format:
                    return datetime.strptime(str(value), spec.format).date().isoformat()  # noqa: DTZ007 - a date has no zone
                return date.fromisoformat(str(value)).isoformat()
            case "datetime":
                if spec.format:
                    parsed = datetime.strptime(str(value), spec.format)  # noqa: DTZ007 - zone added below
                else:
                    parsed = datetime.fromisoformat(str(value))
                if parsed.tzinfo is None:
                    raise MappingError(target, "datetime needs a time zone (e.g. +01:00 or Z)")
                return parsed.astimezone(UTC).isoformat().replace("+00:00", "Z")
            case "list":
                items = (
                    value
                    if isinstance(value, list)
                    else [p.strip() for p in str(value).split(spec.separator) if p.strip()]
                )
                if spec.item_keys:
                    return [_item(target, spec, x) for x in items]
                if spec.map is not None:
                    if any(str(x) not in spec.map for x in items):
                        raise MappingError(target, f"an item of '{spec.source}' is not in the map")
                    return [spec.map[str(x)] for x in items]
                return items
    except ValueError:
        raise MappingError(target, f"not a valid {spec.type}") from None
    raise MappingError(target, f"unknown type {spec.type}")  # pragma: no cover - Literal


def _item(target: str, spec: FieldSpec, value: Any) -> Any:
    keys = spec.item_keys or []
    parts = [p.strip() for p in str(value).split(spec.item_separator, len(keys) - 1)]
    if len(parts) != len(keys):
        raise MappingError(target, f"a list item needs {len(keys)} parts ({', '.join(keys)})")
    obj: dict[str, Any] = {}
    for key, part in zip(keys, parts, strict=True):
        table = (spec.item_maps or {}).get(key)
        if table is not None:
            if part not in table:
                raise MappingError(f"{target}.{key}", "value is not in the item map")
            obj[key] = table[part]
        elif part:
            obj[key] = part
    return obj


def _assign(out: dict[str, Any], path: str, value: Any) -> None:
    parts: list[str | int] = [int(p) if p.isdigit() else p for p in path.split(".")]
    current: Any = out
    for part, nxt in itertools.pairwise(parts):
        container: Any = [] if isinstance(nxt, int) else {}
        if isinstance(part, int):
            while len(current) <= part:
                current.append(None)
            if current[part] is None:
                current[part] = container
            current = current[part]
        else:
            current = current.setdefault(part, container)
    last = parts[-1]
    if isinstance(last, int):
        while len(current) <= last:
            current.append(None)
        current[last] = value
    else:
        current[last] = value


def _deep_copy(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _deep_copy(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_deep_copy(v) for v in value]
    return value
