"""Shiny for Python: `shiny run`; Shiny uses relative URLs, so it serves at `/`."""

from conveyor.runtime.adapters.base import Launch, LaunchContext, ServerAdapter


def _launch(context: LaunchContext) -> Launch:
    return Launch(
        argv=[
            context.python,
            "-m",
            "shiny",
            "run",
            context.entrypoint,
            "--host",
            "127.0.0.1",
            "--port",
            str(context.port),
        ],
        strip_prefix=True,
        health_path=context.health,
    )


ADAPTER = ServerAdapter(_launch)
