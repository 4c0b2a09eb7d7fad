"""Streamlit: the port given explicitly (Streamlit silently moves to another port otherwise) and
its base URL path set to the app's name."""

from conveyor.runtime.adapters.base import Launch, LaunchContext, ServerAdapter


def _launch(context: LaunchContext) -> Launch:
    return Launch(
        argv=[
            context.python,
            "-m",
            "streamlit",
            "run",
            context.entrypoint,
            "--server.port",
            str(context.port),
            "--server.address",
            "127.0.0.1",
            "--server.baseUrlPath",
            context.app,
            "--server.headless",
            "true",
            "--server.fileWatcherType",
            "none",
            "--browser.gatherUsageStats",
            "false",
        ],
        strip_prefix=False,
        health_path=f"{context.prefix}/_stcore/health",
    )


ADAPTER = ServerAdapter(_launch)
