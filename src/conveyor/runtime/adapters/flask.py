"""Flask (any WSGI app): gunicorn with SCRIPT_NAME, so url_for() builds `/<app>/...` links."""

from conveyor.runtime.adapters.base import Launch, LaunchContext, ServerAdapter


def _launch(context: LaunchContext) -> Launch:
    return Launch(
        argv=[
            context.python,
            "-m",
            "gunicorn",
            context.entrypoint,
            "--bind",
            f"127.0.0.1:{context.port}",
            "--workers",
            "1",
            "--threads",
            "4",
            "--forwarded-allow-ips",
            "127.0.0.1",
        ],
        # gunicorn moves SCRIPT_NAME from the path into the WSGI environ.
        env={"SCRIPT_NAME": context.prefix},
        strip_prefix=False,
        health_path=context.prefix + context.health,
    )


ADAPTER = ServerAdapter(_launch)
