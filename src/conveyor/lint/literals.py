"""What a string literal points at, judged from the string alone: a URL, a database connection
string, a host name, an absolute path. Where the string is used (the AST around it) is decided
in `rules`; this module only reads text.

A string counts only when it *is* the location, whole: ``"https://api.example.com/v1"`` is a
URL, ``"see https://example.com for help"`` is a sentence. Placeholders (``{host}``, ``%s``,
``$HOST``) stand for values that come from elsewhere, so ``"http://{host}:8000"`` hard-codes no
host."""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass

from conveyor.lint.findings import Kind

#: Schemes of locations reached over a network or in an object store.
URL_SCHEMES = frozenset(
    {
        "http",
        "https",
        "ftp",
        "ftps",
        "sftp",
        "ssh",
        "ws",
        "wss",
        "grpc",
        "grpcs",
        "smb",
        "file",
        "s3",
        "s3a",
        "s3n",
        "gs",
        "gcs",
        "az",
        "abfs",
        "abfss",
        "adl",
        "wasb",
        "wasbs",
        "hdfs",
        "webhdfs",
        "dbfs",
    }
)
#: Schemes of databases, queues and caches (SQLAlchemy's ``dialect+driver`` included: the part
#: before ``+`` is looked up).
DATABASE_SCHEMES = frozenset(
    {
        "postgresql",
        "postgres",
        "pgsql",
        "cockroachdb",
        "redshift",
        "mysql",
        "mariadb",
        "mssql",
        "sqlserver",
        "oracle",
        "db2",
        "ibm_db_sa",
        "teradatasql",
        "snowflake",
        "bigquery",
        "databricks",
        "trino",
        "presto",
        "hive",
        "impala",
        "clickhouse",
        "mongodb",
        "couchbase",
        "couchdb",
        "cassandra",
        "neo4j",
        "bolt",
        "redis",
        "rediss",
        "memcached",
        "amqp",
        "amqps",
        "kafka",
        "nats",
        "sqlite",
        "duckdb",
    }
)
#: Databases in a file: only an absolute file is environment-specific (``sqlite:///local.db``
#: is relative to the app, ``sqlite://`` is in memory).
FILE_DATABASES = frozenset({"sqlite", "duckdb"})
#: URLs that name a vocabulary, not a place (XML namespaces, schemas): the same everywhere.
IDENTIFIER_HOSTS = frozenset(
    {
        "www.w3.org",
        "w3.org",
        "schemas.xmlsoap.org",
        "schemas.openxmlformats.org",
        "schemas.microsoft.com",
        "purl.org",
        "json-schema.org",
        "xmlns.com",
        "ns.adobe.com",
        "www.opengis.net",
    }
)
#: Last labels of host names besides two-letter country codes. A dotted word ending otherwise
#: (``auth.login``, a Flask endpoint) is not taken for a host.
HOST_SUFFIXES = frozenset(
    {
        "com",
        "org",
        "net",
        "edu",
        "gov",
        "mil",
        "int",
        "io",
        "ai",
        "app",
        "dev",
        "cloud",
        "tech",
        "info",
        "biz",
        "xyz",
        "site",
        "online",
        "local",
        "localdomain",
        "internal",
        "intranet",
        "intra",
        "corp",
        "lan",
        "home",
        "test",
        "example",
        "invalid",
        "localhost",
        "consul",
    }
)
#: Endings of file names, which look like host names (``index.html``, ``model.py``).
FILE_EXTENSIONS = frozenset(
    (
        "html htm css js ts jsx tsx json jsonl ndjson csv tsv txt md rst py pyc pyi ipynb r rmd qmd"
        " sh bash ps1 bat yml yaml toml ini cfg conf env log xml svg png jpg jpeg gif webp ico pdf"
        " doc docx xls xlsx xlsm ppt pptx parquet feather arrow orc avro pkl pickle joblib h5 hdf5"
        " nc npy npz db sqlite sqlite3 duckdb sql zip gz tgz bz2 xz zst tar whl so dll exe bin dat"
        " lock pem crt key jl go rs rb java c h cpp hpp kt scala swift onnx pt pth ckpt model"
    ).split()
)
#: Top-level directories of file systems: ``/data/x`` is a file, ``/health`` a route.
FILESYSTEM_ROOTS = frozenset(
    (
        "home Users mnt media data srv opt var tmp etc usr root scratch shared nfs efs dbfs"
        " workspace Volumes run exports projects lustre gpfs"
    ).split()
)
#: Addresses that mean "every interface": a server's bind address, never a place.
WILDCARD_HOSTS = frozenset({"0.0.0.0", "::", "*", ""})

_PLACEHOLDER = re.compile(r"\{[^{}]*\}|%[-#0 +]*\d*(?:\.\d+)?[sdifrx]|%\([^)]*\)[sdifrx]|\$\{?\w+")
_URL = re.compile(r"^(?:jdbc:)?(?P<scheme>[A-Za-z][A-Za-z0-9+.\-]*)://(?P<rest>\S*)$")
_LABEL = r"[A-Za-z0-9_](?:[A-Za-z0-9_\-]{0,61}[A-Za-z0-9_])?"
_HOSTNAME = re.compile(rf"^{_LABEL}(?:\.{_LABEL})*\.?$")
_PORT = re.compile(r"^\d{1,5}$")
_SECRET_NAME = re.compile(r"(?i)pass|pwd|secret|token|key|sig|credential|auth")
_KEY_VALUE = re.compile(r"(?P<key>[A-Za-z_][\w ]*?)\s*=\s*(?P<value>'[^']*'|\{[^}]*\}|[^;\s]*)")
_DRIVE = re.compile(r"^[A-Za-z]:[\\/]")
_HOME = re.compile(r"^~[\w.-]*(?:[\\/]|$)")
_UNC = re.compile(r"^\\\\[A-Za-z0-9_.$-]+\\[^\\]")


@dataclass(frozen=True)
class Target:
    """A location a string names."""

    kind: Kind
    shown: str  # the string with passwords masked
    scheme: str = ""
    host: str = ""  # without port; "" when there is none (a file database)
    path: str = ""  # the URL's path, or a file database's file
    database: str = ""  # the database (or bucket) a connection string names
    has_password: bool = False


def has_placeholder(text: str) -> bool:
    return _PLACEHOLDER.search(text) is not None


def classify(text: str) -> Target | None:
    """The URL or connection string ``text`` is, whole; None when it is neither."""
    stripped = text.strip()
    match = _URL.match(stripped)
    if match is not None:
        return _url(stripped, match.group("scheme").lower(), match.group("rest"))
    return _key_value_connection(stripped)


def as_host(text: str) -> Target | None:
    """``text`` as a host name, address or list of them (``db.example.com``, ``10.0.0.5:5432``,
    ``localhost``, ``a.example.com:9092,b.example.com:9092``), for strings given to a name like
    ``host`` or ``server``. Single words other than localhost, wildcard bind addresses and
    dotted names that are not host names (``index.html``, ``auth.login``) are not hosts."""
    stripped = text.strip()
    if not stripped or any(c.isspace() for c in stripped) or has_placeholder(stripped):
        return None
    parts = stripped.split(",")
    hosts = []
    for part in parts:
        host, _, path = part.partition("/") if not part.startswith("[") else (part, "", "")
        if path and len(parts) > 1:
            return None
        name = _host_of(host)
        if name is None or not _is_host(name):
            return None
        hosts.append(name)
    return Target(Kind.HOST, stripped, host=hosts[0])


def is_absolute_path(text: str) -> bool:
    """``/data/out``, ``~/out``, ``~ana/out``, ``C:\\out``, ``\\\\server\\share``; not ``/`` alone
    and not a device (``/dev/null``)."""
    stripped = text.strip()
    if _HOME.match(stripped):
        return True
    if _UNC.match(stripped):
        return True
    if _DRIVE.match(stripped):
        return True
    if stripped.startswith("/"):
        return len(stripped.strip("/")) > 0 and not stripped.startswith("/dev/")
    return False


def looks_like_file(text: str) -> bool:
    """An absolute path that is plainly a file system's, not a URL route like ``/health`` or
    ``/v1/forecast``: in a home directory, on a drive or share, under a well-known top-level
    directory, or two or more levels deep ending in a file name with an extension."""
    stripped = text.strip()
    if not is_absolute_path(stripped):
        return False
    if _HOME.match(stripped) or _DRIVE.match(stripped) or _UNC.match(stripped):
        return True
    parts = [p for p in re.split(r"[\\/]+", stripped) if p]
    if parts and parts[0] in FILESYSTEM_ROOTS:
        return True
    last = parts[-1] if parts else ""
    return len(parts) >= 2 and "." in last and last.rsplit(".", 1)[1].lower() in FILE_EXTENSIONS


def file_name(text: str) -> str:
    """The last part of a path: ``/data/out/scores.csv`` -> ``scores.csv``."""
    parts = [p for p in re.split(r"[\\/]+", text.strip()) if p and p != "~"]
    return parts[-1] if parts else ""


def mask(text: str) -> str:
    """``text`` with passwords and secret-looking query values replaced by ``***``."""
    match = _URL.match(text.strip())
    if match is None:
        return _mask_key_values(text)
    prefix = text.strip()[: match.start("rest")]
    base = match.group("scheme").lower().split("+", 1)[0]
    authority, rest = _split_authority(match.group("rest"), base)
    userinfo, at, hostport = authority.rpartition("@")
    if at:
        user, colon, password = userinfo.partition(":")
        if colon and password:
            userinfo = f"{user}:***"
        elif not colon and len(user) >= 20:
            userinfo = "***"  # a token given as the user name
        authority = f"{userinfo}@{hostport}"
    path, question, query = rest.partition("?")
    if question:
        pairs = []
        for pair in query.split("&"):
            name, equals, value = pair.partition("=")
            pairs.append(f"{name}=***" if equals and value and _SECRET_NAME.search(name) else pair)
        rest = f"{path}?{'&'.join(pairs)}"
    return prefix + authority + rest


def _url(text: str, scheme: str, rest: str) -> Target | None:
    base = scheme.split("+", 1)[0]
    if base not in URL_SCHEMES and base not in DATABASE_SCHEMES:
        return None
    authority, after = _split_authority(rest, base)
    userinfo, at, hostport = authority.rpartition("@")
    has_password = bool(at) and ":" in userinfo and not has_placeholder(userinfo.split(":", 1)[1])
    path = after.split("?", 1)[0].split("#", 1)[0]
    if base in FILE_DATABASES:
        file = path[1:] if path.startswith("/") else path
        if hostport or not is_absolute_path(file):
            return None
        return Target(Kind.CONNECTION, mask(text), base, path=file, database=file_name(file))
    if hostport.startswith("{") or hostport.startswith(("%", "$")):
        return None  # the host comes from elsewhere
    host = _host_of(hostport) if hostport else ""
    if host is None or (host and not _is_url_host(host)):
        return None
    if base == "file":
        if host or not is_absolute_path(path):
            return None
    elif not host and not (base in DATABASE_SCHEMES and path.strip("/")):
        return None  # "https://" alone, or a scheme prefix being tested
    if host.lower() in IDENTIFIER_HOSTS:
        return None
    if base in DATABASE_SCHEMES:
        database = path.strip("/").split("/")[0]
        return Target(
            Kind.CONNECTION, mask(text), base, host, path, database, has_password=has_password
        )
    bucket = host if base not in ("http", "https", "ws", "wss", "ftp", "ftps", "sftp") else ""
    return Target(Kind.URL, mask(text), base, host, path, bucket, has_password=has_password)


def _key_value_connection(text: str) -> Target | None:
    """libpq (``host=db.example.com dbname=sales user=ana``) and ODBC
    (``Driver={...};Server=tcp:db.example.com,1433;Database=sales``) connection strings."""
    if "=" not in text:
        return None
    odbc = ";" in text
    pairs: dict[str, str] = {}
    for chunk in text.split(";") if odbc else text.split():
        if not chunk.strip():
            continue
        key, equals, value = chunk.partition("=")
        if not equals or not re.fullmatch(r"[A-Za-z_][\w ]*", key.strip()):
            return None
        pairs[key.strip().lower()] = value.strip().strip("'")
    host = next(
        (
            pairs[k]
            for k in ("host", "hostaddr", "server", "data source", "address", "addr")
            if k in pairs
        ),
        None,
    )
    others = {
        "dbname",
        "database",
        "initial catalog",
        "user",
        "uid",
        "user id",
        "port",
        "password",
        "pwd",
        "driver",
        "sslmode",
    }
    if host is None or not others & set(pairs) or has_placeholder(host):
        return None
    if odbc:
        host = re.sub(r"^(tcp|np|lpc):", "", host, flags=re.I).split(",")[0].split("\\")[0]
    name = _host_of(host)
    if name is None or not _is_host(name):
        return None
    database = pairs.get("dbname") or pairs.get("database") or pairs.get("initial catalog") or ""
    has_password = bool(pairs.get("password") or pairs.get("pwd"))
    return Target(
        Kind.CONNECTION,
        _mask_key_values(text),
        "odbc" if odbc else "postgresql",
        name,
        database=database,
        has_password=has_password,
    )


def _mask_key_values(text: str) -> str:
    def hide(match: re.Match[str]) -> str:
        key = match.group("key")
        if key.strip().lower() in ("password", "pwd") and match.group("value"):
            return f"{key}=***"
        return match.group(0)

    return _KEY_VALUE.sub(hide, text)


def _split_authority(rest: str, scheme: str) -> tuple[str, str]:
    """``user:pw@host:5432/db?x`` -> (``user:pw@host:5432``, ``/db?x``). The authority ends at
    the first ``/``, ``?`` or ``#``; but a database URL's password is often written unencoded
    and may hold them (and ``@``), so there it ends at the first of them after the last ``@``."""
    if scheme in DATABASE_SCHEMES and "@" in rest:
        end = _first_of(rest, "/?#", rest.rfind("@") + 1)
    else:
        end = _first_of(rest, "/?#", 0)
    return rest[:end], rest[end:]


def _first_of(text: str, characters: str, start: int) -> int:
    found = [i for c in characters if (i := text.find(c, start)) != -1]
    return min(found) if found else len(text)


def _host_of(hostport: str) -> str | None:
    """The host of ``host``, ``host:port``, ``[v6]:port``; None when the port is not one."""
    if hostport.startswith("["):
        inside, closing, after = hostport[1:].partition("]")
        if not closing or (after and not (after.startswith(":") and _PORT.match(after[1:]))):
            return None
        return inside
    if hostport.count(":") > 1:
        return hostport  # a bare IPv6 address
    host, colon, port = hostport.partition(":")
    if colon and not _PORT.match(port):
        return None
    return host


def is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def _is_url_host(host: str) -> bool:
    """Any syntactically valid host: in a URL the scheme already says it is one."""
    return is_ip(host) or _HOSTNAME.match(host) is not None


def _is_host(host: str) -> bool:
    """A host name out of context: localhost, an IP address, or a dotted name ending like one."""
    if host in WILDCARD_HOSTS:
        return False
    lowered = host.lower().rstrip(".")
    if lowered in ("localhost", "localhost.localdomain"):
        return True
    if is_ip(host):
        return True
    if not _HOSTNAME.match(host) or "." not in lowered:
        return False
    last = lowered.rsplit(".", 1)[1]
    if not last.isalpha() or last in FILE_EXTENSIONS:
        return False
    return len(last) == 2 or last in HOST_SUFFIXES
