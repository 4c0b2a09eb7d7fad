"""One adapter per app type: how to start (or render) an app from its runtime so it answers at
`/<app>/` behind the proxy. Adding a type is adding one module here and one line in REGISTRY."""

from __future__ import annotations

from conveyor.domain.apps import AppType
from conveyor.runtime.adapters import (
    command,
    dash,
    fastapi,
    flask,
    job,
    notebook,
    quarto,
    shiny,
    static,
    streamlit,
)
from conveyor.runtime.adapters.base import Adapter, Launch, LaunchContext

REGISTRY: dict[AppType, Adapter] = {
    AppType.FASTAPI: fastapi.ADAPTER,
    AppType.FLASK: flask.ADAPTER,
    AppType.DASH: dash.ADAPTER,
    AppType.SHINY: shiny.ADAPTER,
    AppType.STREAMLIT: streamlit.ADAPTER,
    AppType.NOTEBOOK: notebook.ADAPTER,
    AppType.QUARTO: quarto.ADAPTER,
    AppType.STATIC: static.ADAPTER,
    AppType.COMMAND: command.ADAPTER,
    AppType.JOB: job.ADAPTER,
}


def adapter_for(app_type: AppType | str) -> Adapter:
    return REGISTRY[AppType(app_type)]


__all__ = ["REGISTRY", "Adapter", "Launch", "LaunchContext", "adapter_for"]
