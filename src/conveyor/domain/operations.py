"""Operations: long-running server tasks with a log that clients follow."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class OperationKind(StrEnum):
    DEPLOY = "deploy"
    PROMOTE = "promote"
    ROLLBACK = "rollback"
    REPAIR = "repair"
    BUILD = "build"


class OperationState(StrEnum):
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    INTERRUPTED = "interrupted"


@dataclass(frozen=True)
class Operation:
    id: int
    kind: OperationKind
    app: str
    environment: str
    state: OperationState
    started_by: str
    started_at: str
    finished_at: str | None = None
    result: str = ""
