"""Any command that serves HTTP on $PORT. It serves at `/`; `/<app>` is in CONVEYOR_PREFIX for
apps that build links."""

import shlex

from conveyor.runtime.adapters.base import Launch, LaunchContext, ServerAdapter


def _launch(context: LaunchContext) -> Launch:
    return Launch(
        argv=shlex.split(context.entrypoint),
        env={"CONVEYOR_PREFIX": context.prefix},
        strip_prefix=True,
        health_path=context.health,
    )


ADAPTER = ServerAdapter(_launch)
