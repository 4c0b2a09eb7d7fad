"""Any command that serves HTTP on $PORT (given in the environment, and substituted for `$PORT`
or `${PORT}` in the command). It serves at `/`; `/<app>` is in CONVEYOR_PREFIX for apps that
build links."""

import shlex

from conveyor.runtime.adapters.base import Launch, LaunchContext, ServerAdapter


def _launch(context: LaunchContext) -> Launch:
    # No shell runs the command, so `$PORT` / `${PORT}` in it are filled in here.
    port = str(context.port)
    argv = [
        part.replace("${PORT}", port).replace("$PORT", port)
        for part in shlex.split(context.entrypoint)
    ]
    return Launch(
        argv=argv,
        env={"CONVEYOR_PREFIX": context.prefix},
        strip_prefix=True,
        health_path=context.health,
    )


ADAPTER = ServerAdapter(_launch)
