"""The metadata tables. Changes after a release go through a new migration (migrations.py);
a test checks that a migrated database matches these definitions."""

from __future__ import annotations

from sqlalchemy import (
    Boolean,
    Column,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
    text,
)

metadata = MetaData()

NAME = String(64)
ID = String(64)  # sha256 hex
STAMP = String(32)  # ISO 8601, UTC

schema_migrations = Table(
    "schema_migrations",
    metadata,
    Column("version", Integer, primary_key=True, autoincrement=False),
    Column("description", Text, nullable=False),
    Column("applied_at", STAMP, nullable=False),
)

environments = Table(
    "environments",
    metadata,
    Column("name", NAME, primary_key=True),
    Column("position", Integer, nullable=False, unique=True),
    Column("port", Integer, nullable=False),
    Column("config_name", NAME, nullable=False),
    Column("direct_deploys", Boolean, nullable=False),
    Column("promotes_from", NAME, nullable=True),
    Column("approvals", Integer, nullable=False, server_default=text("0")),
    Column("approver_not_deployer", Boolean, nullable=False, server_default=text("false")),
    Column("data", Text, nullable=False, server_default="[]"),  # JSON: data connections
    Column("outputs", Text, nullable=True),
    Column("variables", Text, nullable=False, server_default="[]"),  # JSON: [[name, value]]
    Column("secrets", Text, nullable=False, server_default="[]"),  # JSON: [[name, reference]]
    Column("default_roles", Text, nullable=False, server_default="[]"),  # JSON: role names
    # "required": no release starts unsandboxed; "preferred": sandboxed where the machine can.
    Column("isolation", String(16), nullable=False, server_default="preferred"),
    # Host-based routing: apps answer at <app>.<domain> too (their own origin).
    Column("domain", String(253), nullable=True),
    # Who may view the environment's apps unless an app says otherwise (JSON, see access.py).
    Column("access", Text, nullable=False, server_default='"public"'),
    # "active" or "paused": whether reports and jobs run on their schedules here; "" for the
    # environment's default (paused in dev).
    Column("schedules", String(8), nullable=False, server_default=""),
    # How long an idle app sleeps after ("15m", "off"); "" when the environments file is silent.
    Column("sleep_after", String(16), nullable=False, server_default=""),
)

# Server-wide settings, e.g. which file manages the environments.
settings = Table(
    "settings",
    metadata,
    Column("key", String(64), primary_key=True),
    Column("value", Text, nullable=False),
)

apps = Table(
    "apps",
    metadata,
    Column("name", NAME, primary_key=True),
    Column("created_at", STAMP, nullable=False),
)

bundles = Table(
    "bundles",
    metadata,
    Column("id", ID, primary_key=True),
    Column("app", NAME, ForeignKey("apps.name"), nullable=False, index=True),
    Column("blob", ID, nullable=False),
    Column("size", Integer, nullable=False),
    Column("manifest", Text, nullable=False),  # canonical JSON
    Column("provenance", Text, nullable=False),  # JSON: git commit, branch, dirty, author, time
    Column("uploaded_by", NAME, nullable=False),
    Column("created_at", STAMP, nullable=False),
    # When `conveyor gc` removed the bundle's blob (no kept release used it); the row stays
    # for history. Uploading the same bundle again stores the blob and clears this.
    Column("removed_at", STAMP, nullable=True),
)

releases = Table(
    "releases",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("app", NAME, ForeignKey("apps.name"), nullable=False),
    Column("environment", NAME, ForeignKey("environments.name"), nullable=False),
    Column("bundle", ID, ForeignKey("bundles.id"), nullable=False),
    Column("kind", String(16), nullable=False),
    Column("state", String(16), nullable=False),
    Column("reason", Text, nullable=False, server_default=""),
    Column("verified", Boolean, nullable=False, server_default=text("false")),
    # JSON list of [step, seconds]: how long starting, checks, the switch and the drain took.
    Column("steps", Text, nullable=False, server_default="[]"),
    Column("created_by", NAME, nullable=False),
    Column("created_at", STAMP, nullable=False),
    Column("updated_at", STAMP, nullable=False),
    Index("releases_by_app_environment", "app", "environment", "id"),
    Index("releases_by_bundle", "bundle", "environment"),
)

# Exactly one live release per (app, environment): the primary key says so, and the pointer
# changes only in the transaction that records a switch.
live_releases = Table(
    "live_releases",
    metadata,
    Column("app", NAME, ForeignKey("apps.name"), primary_key=True),
    Column("environment", NAME, ForeignKey("environments.name"), primary_key=True),
    Column("release", Integer, ForeignKey("releases.id"), nullable=False, unique=True),
    Column("since", STAMP, nullable=False),
)

checks = Table(
    "checks",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("release", Integer, ForeignKey("releases.id"), nullable=False, index=True),
    Column("kind", String(16), nullable=False),
    Column("passed", Boolean, nullable=False),
    Column("output", Text, nullable=False, server_default=""),
    Column("created_at", STAMP, nullable=False),
)

approvals = Table(
    "approvals",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("app", NAME, ForeignKey("apps.name"), nullable=False),
    Column("environment", NAME, ForeignKey("environments.name"), nullable=False),
    Column("bundle", ID, ForeignKey("bundles.id"), nullable=False),
    Column("by", NAME, nullable=False),
    Column("comment", Text, nullable=False, server_default=""),
    Column("created_at", STAMP, nullable=False),
    UniqueConstraint("bundle", "environment", "by", name="one_approval_per_person"),
)

operations = Table(
    "operations",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("kind", String(16), nullable=False),
    Column("app", NAME, nullable=False),
    Column("environment", NAME, nullable=False),
    Column("state", String(16), nullable=False),
    Column("started_by", NAME, nullable=False),
    Column("started_at", STAMP, nullable=False),
    Column("finished_at", STAMP, nullable=True),
    Column("result", Text, nullable=False, server_default=""),
    # One running operation per (app, environment), enforced by the database itself, so two
    # servers sharing one PostgreSQL cannot both run one.
    Index(
        "one_running_operation",
        "app",
        "environment",
        unique=True,
        sqlite_where=text("state = 'running'"),
        postgresql_where=text("state = 'running'"),
    ),
)

operation_log = Table(
    "operation_log",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("operation", Integer, ForeignKey("operations.id"), nullable=False, index=True),
    Column("at", STAMP, nullable=False),
    Column("line", Text, nullable=False),
)

audit_events = Table(
    "audit_events",
    metadata,
    Column("seq", Integer, primary_key=True, autoincrement=False),
    Column("at", STAMP, nullable=False),
    Column("actor", NAME, nullable=False),
    Column("action", String(64), nullable=False),
    Column("subject", Text, nullable=False),
    Column("details", Text, nullable=False),  # canonical JSON
    Column("prev_hash", ID, nullable=False),
    Column("hash", ID, nullable=False),
)

# The newest event's (seq, hash); its row lock orders writers, and it reveals removed events.
audit_head = Table(
    "audit_head",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=False),
    Column("seq", Integer, nullable=False),
    Column("hash", ID, nullable=False),
)

# Per (app, environment) variables. Secret values are never returned by the API or printed.
variables = Table(
    "variables",
    metadata,
    Column("app", NAME, ForeignKey("apps.name"), primary_key=True),
    Column("environment", NAME, ForeignKey("environments.name"), primary_key=True),
    Column("name", String(128), primary_key=True),
    Column("value", Text, nullable=False),
    Column("secret", Boolean, nullable=False),
    Column("updated_by", NAME, nullable=False),
    Column("updated_at", STAMP, nullable=False),
)

# The unprivileged user each app runs as in each environment (a root server's sandbox).
app_users = Table(
    "app_users",
    metadata,
    Column("app", NAME, ForeignKey("apps.name"), primary_key=True),
    Column("environment", NAME, ForeignKey("environments.name"), primary_key=True),
    Column("uid", Integer, nullable=False, unique=True),
)

# People and CI jobs. Disabled users keep their history; their tokens stop working.
users = Table(
    "users",
    metadata,
    Column("name", NAME, primary_key=True),
    Column("admin", Boolean, nullable=False, server_default=text("false")),
    Column("disabled", Boolean, nullable=False, server_default=text("false")),
    Column("created_by", NAME, nullable=False),
    Column("created_at", STAMP, nullable=False),
    # argon2 hash for signing in to the console; None: no password (tokens or OIDC only).
    Column("password_hash", Text, nullable=True),
    Column("groups", Text, nullable=False, server_default="[]"),  # JSON: group names
    # "<issuer> <subject>" of the provider account this user signs in with (linked at its
    # first single sign-on), or None.
    Column("oidc_subject", Text, nullable=True),
    # HMAC over name, password hash and provider account under the keys file's token key: a
    # hash or account written into the database by hand does not sign anyone in.
    Column("credentials_mac", ID, nullable=True),
)

# Roles per environment: (bob, prod, approver).
grants = Table(
    "grants",
    metadata,
    Column("user", NAME, ForeignKey("users.name"), primary_key=True),
    Column("environment", NAME, ForeignKey("environments.name"), primary_key=True),
    Column("role", String(16), primary_key=True),
    Column("granted_by", NAME, nullable=False),
    Column("granted_at", STAMP, nullable=False),
)

# API tokens: only the sha256 of each token is kept. ``owner`` is the user it acts as.
api_tokens = Table(
    "api_tokens",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("digest", ID, nullable=False, unique=True),
    Column("owner", NAME, nullable=False),
    Column("created_at", STAMP, nullable=False),
    Column("created_by", NAME, nullable=False, server_default=""),
    Column("expires_at", STAMP, nullable=True),
    Column("last_used_at", STAMP, nullable=True),
    Column("revoked_at", STAMP, nullable=True),
    # HMAC over digest, owner, expiry and revocation under the keys file's token key.
    Column("mac", ID, nullable=True),
)

# Console sessions: only an HMAC of the cookie's value is kept, as for tokens.
sessions = Table(
    "sessions",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("digest", ID, nullable=False, unique=True),
    Column("user", NAME, ForeignKey("users.name"), nullable=False),
    Column("csrf", ID, nullable=False),
    Column("created_at", STAMP, nullable=False),
    Column("expires_at", STAMP, nullable=False),
    Column("via", String(16), nullable=False),  # password or oidc
    # HMAC over digest, user, CSRF token and expiry: a row changed by hand stops matching.
    Column("mac", ID, nullable=False),
)

# Failed sign-ins per username and per address, for rate limiting.
sign_in_failures = Table(
    "sign_in_failures",
    metadata,
    Column("key", String(200), primary_key=True),
    Column("failures", Integer, nullable=False),
    Column("since", STAMP, nullable=False),
)

# Who may view an app in an environment: public, signed-in, or named users and groups.
app_access = Table(
    "app_access",
    metadata,
    Column("app", NAME, ForeignKey("apps.name"), primary_key=True),
    Column("environment", NAME, ForeignKey("environments.name"), primary_key=True),
    Column("access", Text, nullable=False),  # JSON, see domain/viewers.py
    Column("updated_by", NAME, nullable=False),
    Column("updated_at", STAMP, nullable=False),
)

# Usage counted by the proxy: page views per hour, and the distinct viewers and sessions seen.
usage = Table(
    "usage",
    metadata,
    Column("app", NAME, primary_key=True),
    Column("environment", NAME, primary_key=True),
    Column("hour", STAMP, primary_key=True),
    Column("visits", Integer, nullable=False),
)

usage_seen = Table(
    "usage_seen",
    metadata,
    Column("app", NAME, primary_key=True),
    Column("environment", NAME, primary_key=True),
    Column("hour", STAMP, primary_key=True),
    Column("kind", String(8), primary_key=True),  # viewer or session
    Column("key", ID, primary_key=True),  # an HMAC: no user name or cookie is kept as such
)

# A schedule set for an app in an environment (`conveyor schedule set`); it wins over the
# bundle's `schedule:`. ``last_slot``: the latest due time already handled, so a slot fires once.
schedules = Table(
    "schedules",
    metadata,
    Column("app", NAME, ForeignKey("apps.name"), primary_key=True),
    Column("environment", NAME, ForeignKey("environments.name"), primary_key=True),
    Column("cron", String(200), nullable=True),  # NULL: no schedule set here (the bundle's)
    Column("timezone", String(64), nullable=True),
    Column("updated_by", NAME, nullable=False),
    Column("updated_at", STAMP, nullable=False),
    Column("last_slot", STAMP, nullable=True),
)

# Each run of a report or job: when, by what, how it ended. Its log is in run_log; its output
# in the server's home (reports/<environment>/<app>/<id>/).
runs = Table(
    "runs",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("app", NAME, ForeignKey("apps.name"), nullable=False),
    Column("environment", NAME, ForeignKey("environments.name"), nullable=False),
    Column("release_id", Integer, ForeignKey("releases.id"), nullable=False),
    Column("trigger", String(16), nullable=False),
    Column("actor", NAME, nullable=False),
    Column("state", String(16), nullable=False),
    Column("detail", Text, nullable=False, server_default=""),
    Column("started_at", STAMP, nullable=False),
    Column("ended_at", STAMP, nullable=True),
    Index("runs_by_app_environment", "app", "environment", "id"),
    # One running run per (app, environment), enforced by the database: a run still going when
    # the next is due is not started twice, even by two servers sharing one PostgreSQL.
    Index(
        "one_running_run",
        "app",
        "environment",
        unique=True,
        sqlite_where=text("state = 'running'"),
        postgresql_where=text("state = 'running'"),
    ),
)

run_log = Table(
    "run_log",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("run", Integer, ForeignKey("runs.id"), nullable=False, index=True),
    Column("at", STAMP, nullable=False),
    Column("line", Text, nullable=False),
)

# Who is mailed how a run of an app in an environment ended (`conveyor email set`): a JSON list
# of {to, on}; it wins over the bundle's `email:`. An empty list: no one, not even the bundle's.
run_email = Table(
    "run_email",
    metadata,
    Column("app", NAME, ForeignKey("apps.name"), primary_key=True),
    Column("environment", NAME, ForeignKey("environments.name"), primary_key=True),
    Column("rules", Text, nullable=False),
    Column("updated_by", NAME, nullable=False),
    Column("updated_at", STAMP, nullable=False),
)


# Git-driven mode: what the server last did for each watched branch of each repository, so a
# restart neither releases a commit again nor misses one; ``error``: the last poll's failure.
git_watches = Table(
    "git_watches",
    metadata,
    Column("repository", Text, primary_key=True),
    Column("branch", String(255), primary_key=True),
    Column("commit_id", String(64), nullable=True),
    Column("app", NAME, nullable=True),
    Column("environment", NAME, nullable=True),
    Column("bundle", ID, nullable=True),
    Column("mapping", Text, nullable=False, server_default="[]"),  # JSON: [[branch, env]]
    Column("result", Text, nullable=False, server_default=""),
    Column("error", Text, nullable=True),
    Column("at", STAMP, nullable=False),
)
