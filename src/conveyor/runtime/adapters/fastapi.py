"""FastAPI (any ASGI app): uvicorn with the ASGI root path set to `/<app>`."""

from conveyor.runtime.adapters.base import Launch, LaunchContext, ServerAdapter


def _launch(context: LaunchContext) -> Launch:
    return Launch(
        argv=[
            context.python,
            "-m",
            "uvicorn",
            context.entrypoint,
            "--host",
            "127.0.0.1",
            "--port",
            str(context.port),
            "--root-path",
            context.prefix,
            "--proxy-headers",
            "--forwarded-allow-ips",
            "127.0.0.1",
            "--no-access-log",
        ],
        # uvicorn puts the root path in front of the path itself; the proxy strips it.
        strip_prefix=True,
        health_path=context.health,
    )


ADAPTER = ServerAdapter(_launch)
