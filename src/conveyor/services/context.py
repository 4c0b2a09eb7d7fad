"""What every service works with: the store, the runtime, and who is asking."""

from __future__ import annotations

from dataclasses import dataclass

from conveyor.runtime.interface import Runtime
from conveyor.storage.store import Store


@dataclass(frozen=True)
class Services:
    store: Store
    runtime: Runtime
