"""What to write instead of a hard-coded location: the config.yml key (named after the variable
or keyword it was given to, else after the host: ``https://forecast.example.com`` ->
``forecast_url``), the data connection for a database, the output name for a path."""

from __future__ import annotations

import re
from dataclasses import dataclass

from conveyor.lint.findings import Kind
from conveyor.lint.literals import Target, file_name, has_placeholder, is_ip
from conveyor.lint.rules import HOST_WORDS, Context, words

#: Words that name an environment or a role, not a service: ``forecast-test`` is forecast.
ENVIRONMENT_WORDS = frozenset(
    (
        "prod production prd live test testing tst staging stage stg dev develop development qa"
        " uat preprod sandbox demo local localhost internal int ext corp private public"
    ).split()
)
GENERIC_LABELS = ENVIRONMENT_WORDS | frozenset(
    (
        "www api apis app apps web svc service services srv server host cluster node primary"
        " replica master main default v1 v2 v3 v4 latest"
    ).split()
)
#: Words of a connection variable's name that are not the connection's name.
CONNECTION_WORDS = frozenset(
    (
        "url uri dsn conn connection string engine db database sql odbc jdbc pg postgres"
        " postgresql mysql mssql"
    ).split()
)
#: Words that say a path is written to (else it is read: a config key, not an output).
OUTPUT_WORDS = frozenset(
    {"out", "output", "outputs", "outdir", "outfile", "export", "exports", "save", "dest"}
    | {"destination"}
)
_URL_ENDINGS = frozenset({"url", "urls", "uri", "uris", "endpoint", "dsn", "address", "server"})


@dataclass(frozen=True)
class Suggestion:
    key: str  # the config.yml key; for an output path, the output's name
    fix: str  # the code to write instead
    text: str  # how, in one sentence


def suggest(kind: Kind, target: Target, context: Context) -> Suggestion:
    if kind is Kind.CONNECTION:
        return _connection(target, context)
    if kind is Kind.OUTPUT_PATH:
        return _output(target, context)
    suffix = "url" if kind is Kind.URL else "host"
    if context.config_default and context.fallback_of:
        key = context.fallback_of  # already a config.yml key
    else:
        # The app's own name for it says most; an API's keyword (url=, host=) less than the host.
        named = _named_key(context.name, suffix)
        service = service_word(target)
        if named and (context.chosen or not service):
            key = named
        else:
            key = f"{service or 'service'}_{suffix}"
    fix = f'config.get("{key}")'
    if context.config_default:
        text = (
            f"set {key} in config.yml's default: section (and in each environment that needs "
            f"another value), then drop the default: {fix}"
        )
    else:
        text = f"add {key} to config.yml, a value for each environment, and read it: {fix}"
    return Suggestion(key, fix, text)


def service_word(target: Target, generic: frozenset[str] = frozenset()) -> str:
    """The service a location names, as a key's first word: ``forecast`` for
    ``https://forecast-test.example.com``, ``github`` for ``api.github.com``, ``forecast`` for
    ``http://localhost:8000/forecast``, ``warehouse`` for ``/data/warehouse.db``; "" when
    nothing says. Words in ``generic`` are passed over too."""
    host = target.host.lower().rstrip(".")
    candidates: list[str] = []
    domain: list[str] = []
    if host and not is_ip(host) and host not in ("localhost", "localhost.localdomain"):
        labels = host.split(".")
        if len(labels) > 2:
            candidates, domain = labels[:-2], [labels[-2]]
        else:
            candidates = labels[:1]
    if target.database:
        candidates.append(target.database)
    candidates += domain
    if target.host:  # a URL's path; a file's directories say nothing
        candidates += [segment for segment in target.path.split("/") if segment]
    for candidate in candidates:
        word = _clean(candidate, generic)
        if word:
            return word
    return ""


def _connection(target: Target, context: Context) -> Suggestion:
    named = _key(_meaningful(words(context.name or ""), CONNECTION_WORDS))
    service = service_word(target, CONNECTION_WORDS)
    connection = (
        (named if context.chosen else service)
        or named
        or service
        or _key([target.scheme.split("+")[0]])
        or "database"
    )
    if "://" in target.shown:
        ending = "url"
    else:
        ending = "dsn" if "=" in target.shown else "path"
    if context.config_default and context.fallback_of:
        key = context.fallback_of
    elif named and context.chosen:
        key = _key(words(context.name or ""))
    else:
        key = f"{connection}_{ending}"
    fix = f'conveyor.data.connect("{connection}")'
    password = ", its password from the environment with !env" if target.has_password else ""
    text = (
        f'declare a "{connection}" data connection in each environment (`data:` in the '
        f"server's environments file) and open it with {fix}; or put the connection string in "
        f"config.yml as {key}{password}"
    )
    return Suggestion(key, fix, text)


def _output(target: Target, context: Context) -> Suggestion:
    name_words = words(context.name or "")
    if not context.writes and not OUTPUT_WORDS & set(name_words):
        key = _key(name_words) or "data_dir"
        fix = f'config.get("{key}")'
        return Suggestion(
            key, fix, f"add {key} to config.yml, a value for each environment, and read it: {fix}"
        )
    name = file_name(target.path)
    if not name or has_placeholder(name):
        name = _key(name_words) or "output"
    fix = f'conveyor.data.output_path("{name}")'
    directory = _key(name_words) if context.chosen and name_words else "output_dir"
    text = (
        f"write where the environment keeps its outputs: {fix}; or read the location from "
        f"config.yml ({directory})"
    )
    return Suggestion(name, fix, text)


def _named_key(name: str | None, suffix: str) -> str:
    """``FORECAST_URL`` -> ``forecast_url``; ``warehouse`` -> ``warehouse_url``; ``url`` or
    ``base_url`` -> "" (the host says more)."""
    found = words(name or "")
    if not _meaningful(found, HOST_WORDS):
        return ""
    endings = _URL_ENDINGS if suffix == "url" else HOST_WORDS
    return _key(found if found[-1] in endings else [*found, suffix])


def _meaningful(found: list[str], generic: frozenset[str]) -> list[str]:
    """The words that say something: not generic, two letters or more (``s`` and ``s3`` say
    nothing)."""
    return [
        w
        for w in found
        if len(w.rstrip("0123456789")) >= 2 and w.rstrip("0123456789") not in generic
    ]


def _clean(label: str, generic: frozenset[str] = frozenset()) -> str:
    stem = label.split(".")[0] if "." in label else label
    if has_placeholder(stem) or not re.fullmatch(r"[A-Za-z0-9_\-]+", stem):
        return ""
    parts = [p.lower() for p in re.split(r"[-_]+", stem) if p]
    # Instance numbers say nothing either: kafka1 is kafka.
    parts = [p.rstrip("0123456789") if len(p.rstrip("0123456789")) >= 2 else p for p in parts]
    kept = [p for p in parts if p not in GENERIC_LABELS | generic and not p.isdigit()]
    word = "_".join(kept)
    return word if word[:1].isalpha() else ""


def _key(parts: list[str]) -> str:
    return "_".join(re.sub(r"[^a-z0-9]+", "_", p.lower()).strip("_") for p in parts if p)
