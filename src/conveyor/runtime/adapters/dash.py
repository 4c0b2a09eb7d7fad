"""Dash: gunicorn serving the app's Flask server, with Dash's base path set to `/<app>/`."""

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
        # Dash reads its settings from DASH_* variables; routes and requests both live under
        # /<app>/, so the path reaches it whole.
        env={"DASH_URL_BASE_PATHNAME": f"{context.prefix}/"},
        strip_prefix=False,
        health_path=f"{context.prefix}{context.health}",
    )


ADAPTER = ServerAdapter(_launch)
