"""Which names a variable may have. Conveyor sets some for every release, and others change
which code the app's interpreter, loader or server runs: setting one of those in Prod would
change Prod's code without a promotion, so both kinds are refused, for apps' variables and for
an environment's, wherever they are set."""

from __future__ import annotations

import re

from conveyor.errors import InvalidInput

NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,127}")
#: Set by Conveyor for every release; an app cannot override them.
RESERVED = frozenset(
    {"PORT", "PATH", "HOME", "VIRTUAL_ENV", "PYTHONUNBUFFERED", "R_CONFIG_ACTIVE", "R_CONFIG_FILE"}
)
#: Prefixes of names read by the loader, by Python, by Conveyor itself, and by the servers and
#: renderers Conveyor starts apps with (uvicorn, gunicorn, Jupyter, Quarto, Streamlit, Shiny,
#: matplotlib's backend loader): each can point them at other code or another app directory.
CODE_PREFIXES = (
    "LD_",
    "DYLD_",
    "PYTHON",
    "CONVEYOR_",
    "UVICORN_",
    "GUNICORN_",
    "JUPYTER_",
    "IPYTHON",
    "QUARTO_",
    "STREAMLIT_SERVER_",
    "SHINY_",
    "MPL",
)
#: Start-up files and option variables of shells and other interpreters.
CODE_NAMES = frozenset(
    {
        "BASH_ENV",
        "ENV",
        "GCONV_PATH",
        "NODE_OPTIONS",
        "PERL5LIB",
        "PERL5OPT",
        "RUBYOPT",
        "JAVA_TOOL_OPTIONS",
        "R_PROFILE",
        "R_PROFILE_USER",
        "R_ENVIRON",
        "R_ENVIRON_USER",
        "R_LIBS",
        "R_LIBS_USER",
        "R_LIBS_SITE",
    }
)
#: PYTHON* variables an app may set: they change how Python behaves, not which code it runs.
PYTHON_ALLOWED = frozenset(
    {
        "PYTHONIOENCODING",
        "PYTHONUTF8",
        "PYTHONHASHSEED",
        "PYTHONDONTWRITEBYTECODE",
        "PYTHONFAULTHANDLER",
        "PYTHONTRACEMALLOC",
    }
)


def name_problem(name: str) -> str | None:
    """Why a variable may not be called ``name``, or None."""
    if not NAME.fullmatch(name):
        return (
            f"{name!r} is not a valid variable name: use letters, digits and _ (not first "
            "a digit), up to 128 characters"
        )
    if name in RESERVED or name.startswith("CONVEYOR_"):
        return (
            f"{name} is set by Conveyor for every release and cannot be changed; choose "
            "another name"
        )
    if name in PYTHON_ALLOWED:
        return None
    if name.startswith(CODE_PREFIXES) or name in CODE_NAMES:
        allowed = ", ".join(sorted(PYTHON_ALLOWED))
        return (
            f"{name} changes which code the app's interpreter, loader or server runs, so it "
            "would change the app without a promotion; Conveyor does not set it (PYTHON* "
            f"variables allowed: {allowed})"
        )
    return None


def check_name(name: str) -> None:
    """Refuse a name that is malformed, set by Conveyor, or changes which code runs."""
    problem = name_problem(name)
    if problem is not None:
        raise InvalidInput(problem)
