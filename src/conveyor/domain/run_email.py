"""Who hears how a run ended: lists of email addresses, each mailed when a run ends the way it
asks (``failure``, ``success`` or ``always``). An app's runs in an environment follow the rules
set there (`conveyor email set`), else the bundle's own `email:`, which applies only where
schedules are active: a developer's sandbox (dev) mails no one unless told to there."""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from conveyor.domain.schedules import RunState
from conveyor.errors import InvalidInput

#: Addresses one rule may list; a longer list belongs in a mailing list of its own.
MAX_RECIPIENTS = 50
#: The largest rendered output attached to a success mail; a larger one is linked only.
DEFAULT_ATTACHMENT_LIMIT = 10 * 2**20

# A plain address, local@domain: the local part a dot-atom (RFC 5322), the domain DNS labels
# with at least one dot. No display names, comments, quoted strings or non-ASCII: what is left
# cannot carry a header (no CR, LF or other control character passes).
_LOCAL = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(?:\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*"
_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
_ADDRESS = re.compile(rf"{_LOCAL}@{_LABEL}(?:\.{_LABEL})+")


class When(StrEnum):
    """When a rule's list hears of a run."""

    FAILURE = "failure"
    SUCCESS = "success"
    ALWAYS = "always"


@dataclass(frozen=True)
class EmailRule:
    to: tuple[str, ...]
    on: When = When.FAILURE

    def wants(self, state: RunState) -> bool:
        if state is RunState.SUCCEEDED:
            return self.on in (When.SUCCESS, When.ALWAYS)
        if state is RunState.FAILED:
            return self.on in (When.FAILURE, When.ALWAYS)
        return False  # running, or interrupted by a server stop: nothing to report yet

    def describe(self) -> str:
        return f"on {self.on}: {', '.join(self.to)}"


def parse_address(value: object) -> str:
    """A checked address (``ana@example.com``); InvalidInput naming what is wrong."""
    text = str(value).strip() if isinstance(value, str) else ""
    if any(ord(c) < 32 or ord(c) == 127 for c in str(value)):
        raise InvalidInput(
            f"{value!r} is not an email address: it holds a line break or another control character"
        )
    if "<" in text or " " in text:
        raise InvalidInput(
            f"{value!r} is not a plain email address; give only the address, e.g. "
            "ana@example.com (no name, no angle brackets)"
        )
    if len(text) > 254 or not _ADDRESS.fullmatch(text):
        raise InvalidInput(
            f"{value!r} is not an email address; write e.g. ana@example.com "
            "(ASCII, a domain with a dot)"
        )
    return text


def parse_recipients(value: str | Iterable[object]) -> tuple[str, ...]:
    """Addresses from ``a@x,b@y`` or a list; each checked, duplicates dropped, at least one."""
    items: list[object] = (
        [part for part in value.split(",") if part.strip()]
        if isinstance(value, str)
        else list(value)
    )
    found: list[str] = []
    for item in items:
        address = parse_address(item)
        if address.lower() not in (a.lower() for a in found):
            found.append(address)
    if not found:
        raise InvalidInput("no recipients: give at least one address, e.g. ana@example.com")
    if len(found) > MAX_RECIPIENTS:
        raise InvalidInput(
            f"{len(found)} recipients: at most {MAX_RECIPIENTS} per list; send to a mailing "
            "list's address instead"
        )
    return tuple(found)


def parse_when(value: object) -> When:
    try:
        return When(str(value))
    except ValueError:
        raise InvalidInput(
            f"{value!r} is not when to email; use one of {', '.join(w.value for w in When)}"
        ) from None


def parse_rules(declared: object) -> tuple[EmailRule, ...]:
    """Rules from `email:` (one ``{to, on}`` or a list of them) or their JSON; one rule per
    ``on``."""
    items = declared if isinstance(declared, list) else [declared]
    rules: list[EmailRule] = []
    for item in items:
        if not isinstance(item, dict):
            raise InvalidInput("an email rule is {to: [addresses], on: failure|success|always}")
        unknown = sorted(set(item) - {"to", "on"})
        if unknown:
            raise InvalidInput(f"unknown field {unknown[0]!r}; an email rule has `to` and `on`")
        if "to" not in item:
            raise InvalidInput("an email rule needs `to`: the addresses to mail")
        to = item["to"]
        if not isinstance(to, str | list):
            raise InvalidInput("`to` is a list of addresses (or one address)")
        rule = EmailRule(parse_recipients(to), parse_when(item.get("on", When.FAILURE.value)))
        rules = with_rule(rules, rule)
    return tuple(rules)


def with_rule(rules: Sequence[EmailRule], rule: EmailRule) -> list[EmailRule]:
    """``rules`` with ``rule`` in place of the one for the same ``on`` (or added)."""
    return [r for r in rules if r.on is not rule.on] + [rule]


def rules_json(rules: Iterable[EmailRule]) -> list[dict[str, Any]]:
    return [{"to": list(rule.to), "on": rule.on.value} for rule in rules]


def recipients_for(rules: Iterable[EmailRule], state: RunState) -> tuple[str, ...]:
    """Everyone to mail about a run that ended in ``state``, each once."""
    found: list[str] = []
    for rule in rules:
        if rule.wants(state):
            found.extend(a for a in rule.to if a.lower() not in (f.lower() for f in found))
    return tuple(found)
