"""The bounds of everything the API accepts: ids, offsets, counts, names and texts. A value out
of bounds is refused (422, ``invalid_input``) before any handler or database sees it, so a huge
or negative number or an endless string never becomes a server error. The OpenAPI document
shows each bound (``maximum``, ``maxLength``, ...)."""

from __future__ import annotations

from typing import Annotated

from fastapi import Path, Query

#: The largest id either database's integer columns hold (PostgreSQL's ``integer``).
MAX_ID = 2**31 - 1
#: The largest byte offset into a log.
MAX_OFFSET = 2**53
#: The most items a list answer holds (``limit``).
MAX_LIMIT = 10_000
#: Names of apps, environments, users, groups, variables and roles (``ENV:ROLE``); each kind's
#: own rule (e.g. app names: 63 characters) is checked after this.
NAME_LENGTH = 200
#: A bundle id (64 hex digits) or a prefix of one, or an alias.
BUNDLE_LENGTH = 128
#: A comment, an access rule, a cron expression, a time zone, a source file's name.
TEXT_LENGTH = 10_000
#: A variable's value (a certificate or a small JSON document fits).
VALUE_LENGTH = 1_000_000
#: Approvals a policy may ask for.
MAX_APPROVALS = 100
#: Items of a list in a body: roles, groups, email addresses, environments.
LIST_LENGTH = 1_000

Id = Annotated[int, Path(ge=1, le=MAX_ID, description=f"an id, from 1 to {MAX_ID}")]
LineId = Annotated[
    int, Query(ge=0, le=MAX_ID, description="the last log line id already seen (0: none)")
]
Offset = Annotated[int, Query(ge=0, le=MAX_OFFSET, description="the byte offset already read")]
Limit = Annotated[int, Query(ge=1, le=MAX_LIMIT, description="the most items to answer")]
PathName = Annotated[str, Path(max_length=NAME_LENGTH)]
QueryName = Annotated[str, Query(min_length=1, max_length=NAME_LENGTH)]
OptionalName = Annotated[str | None, Query(min_length=1, max_length=NAME_LENGTH)]
