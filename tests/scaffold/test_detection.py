"""The app's type, entrypoint and health path, detected from small real projects."""

from __future__ import annotations

import textwrap

import pytest

from conveyor.domain.apps import AppType
from conveyor.errors import InvalidInput
from conveyor.scaffold.detection import detect

NOTEBOOK = '{"cells": [], "metadata": {}, "nbformat": 4, "nbformat_minor": 5}\n'

FASTAPI_APP = """
    from fastapi import FastAPI

    app = FastAPI()


    @app.get("/")
    def root():
        return {"hello": "world"}
    """


@pytest.mark.parametrize(
    ("files", "app_type", "entrypoint"),
    [
        pytest.param({"app.py": FASTAPI_APP}, AppType.FASTAPI, "app:app", id="fastapi"),
        pytest.param(
            {"main.py": "import fastapi\napi: fastapi.FastAPI = fastapi.FastAPI()\n"},
            AppType.FASTAPI,
            "main:api",
            id="fastapi-annotated-in-main",
        ),
        pytest.param(
            {
                "service/__init__.py": "",
                "service/api.py": "from fastapi import FastAPI\nservice = FastAPI()\n",
                "service/routes.py": "from fastapi import APIRouter\nrouter = APIRouter()\n",
            },
            AppType.FASTAPI,
            "service.api:service",
            id="fastapi-in-a-package",
        ),
        pytest.param(
            {"app.py": "from flask import Flask\napp = Flask(__name__)\n"},
            AppType.FLASK,
            "app:app",
            id="flask",
        ),
        pytest.param(
            {
                "factory.py": """
                    from flask import Flask

                    def create_app():
                        return Flask(__name__)
                    """
            },
            AppType.FLASK,
            "factory:create_app()",
            id="flask-factory",
        ),
        pytest.param(
            {
                "app.py": """
                    import flask
                    from dash import Dash, html

                    app = Dash(__name__)
                    server = app.server
                    app.layout = html.Div("hi")
                    """
            },
            AppType.DASH,
            "app:server",
            id="dash-importing-flask-too",
        ),
        pytest.param(
            {
                "app.py": """
                    from shiny import App, ui

                    app = App(ui.page_fluid(ui.h2("hi")), None)
                    """
            },
            AppType.SHINY,
            "app.py",
            id="shiny",
        ),
        pytest.param(
            {"dashboard.py": "from shiny.express import ui\n\nui.h2('hi')\n"},
            AppType.SHINY,
            "dashboard.py",
            id="shiny-express",
        ),
        pytest.param(
            {
                "streamlit_app.py": "import streamlit as st\n\nst.title('hi')\n",
                "pages/1_More.py": "import streamlit as st\n\nst.write('more')\n",
            },
            AppType.STREAMLIT,
            "streamlit_app.py",
            id="streamlit-multipage",
        ),
        pytest.param(
            {"analysis.ipynb": NOTEBOOK}, AppType.NOTEBOOK, "analysis.ipynb", id="notebook"
        ),
        pytest.param(
            {"report.ipynb": NOTEBOOK, "scratch.ipynb": NOTEBOOK},
            AppType.NOTEBOOK,
            "report.ipynb",
            id="notebook-usual-name",
        ),
        pytest.param(
            {"sales.qmd": "---\ntitle: Sales\n---\n\nHello\n"},
            AppType.QUARTO,
            "sales.qmd",
            id="quarto-document",
        ),
        pytest.param(
            {
                "_quarto.yml": "project:\n  type: website\n",
                "index.qmd": "# Hi\n",
                "a.ipynb": NOTEBOOK,
            },
            AppType.QUARTO,
            ".",
            id="quarto-project-with-a-notebook",
        ),
        pytest.param({"index.html": "<h1>hi</h1>\n"}, AppType.STATIC, ".", id="static"),
        pytest.param(
            {"public/index.html": "<h1>hi</h1>\n", "build.py": "print('build')\n"},
            AppType.STATIC,
            "public",
            id="static-in-public",
        ),
    ],
)
def test_the_type_and_entrypoint_come_from_the_code(project, files, app_type, entrypoint):
    found = detect(project(files))
    assert (found.type, found.entrypoint) == (app_type, entrypoint)


def test_evidence_names_the_file_and_the_import(project):
    found = detect(project({"app.py": FASTAPI_APP}))
    assert found.evidence == "app.py imports fastapi"


def test_an_api_health_route_becomes_the_health_path(project):
    code = (
        textwrap.dedent(FASTAPI_APP) + '\n@app.get("/healthz")\ndef healthz():\n    return "ok"\n'
    )
    assert detect(project({"app.py": code})).health == "/healthz"
    assert detect(project({"app.py": FASTAPI_APP}, where="plain")).health == "/"


def test_text_that_only_mentions_a_framework_does_not_count(project):
    root = project(
        {
            "README.md": "A streamlit app, one day.\n",
            "notes.py": '# import fastapi\nTEXT = "import flask"\n',
        }
    )
    with pytest.raises(InvalidInput, match="cannot tell what kind of app"):
        detect(root)


def test_imports_in_tests_say_nothing_about_the_app(project):
    root = project(
        {
            "app.py": "from flask import Flask\napp = Flask(__name__)\n",
            "tests/test_api.py": "from fastapi.testclient import TestClient\n",
            "test_more.py": "import streamlit\n",
            ".venv/lib/site.py": "import dash\n",
        }
    )
    found = detect(root)
    assert found.type is AppType.FLASK and found.notes == ()


def test_two_frameworks_without_a_terminal_is_an_error_listing_both(project):
    root = project(
        {
            "api.py": "from fastapi import FastAPI\napp = FastAPI()\n",
            "ui.py": "import streamlit as st\nst.title('hi')\n",
        }
    )
    with pytest.raises(InvalidInput) as caught:
        detect(root)
    message = str(caught.value)
    assert "cannot tell what kind of app" in message
    assert "streamlit  ui.py imports streamlit" in message
    assert "fastapi    api.py imports fastapi" in message
    assert "--type streamlit or --type fastapi" in message


def test_two_frameworks_at_a_terminal_are_asked(project):
    root = project(
        {
            "api.py": "from fastapi import FastAPI\napp = FastAPI()\n",
            "ui.py": "import streamlit as st\nst.title('hi')\n",
        }
    )
    asked: list[tuple[str, list[str]]] = []

    def ask(question, choices):
        asked.append((question, list(choices)))
        return "fastapi"

    found = detect(root, ask=ask)
    assert (found.type, found.entrypoint) == (AppType.FASTAPI, "api:app")
    assert asked[0][1] == ["streamlit", "fastapi"]


def test_nothing_recognisable_says_what_was_looked_for(project):
    root = project({"README.md": "hi\n", "broken.py": "def (:\n"})
    with pytest.raises(InvalidInput) as caught:
        detect(root)
    message = str(caught.value)
    assert "no Python file imports shiny, streamlit, dash, fastapi or flask" in message
    assert "broken.py could not be read as Python" in message
    assert "Pass --type, one of: fastapi, flask" in message


def test_a_web_app_beside_notebooks_is_the_app_with_a_note(project):
    found = detect(project({"app.py": "import streamlit as st\n", "explore.ipynb": NOTEBOOK}))
    assert found.type is AppType.STREAMLIT
    assert found.notes == (
        "also found: notebooks: explore.ipynb; pass --type notebook to deploy that instead",
    )


def test_the_type_given_wins_and_its_entrypoint_is_still_found(project):
    root = project({"app.py": "import streamlit as st\n", "explore.ipynb": NOTEBOOK})
    found = detect(root, app_type=AppType.NOTEBOOK)
    assert (found.type, found.entrypoint, found.evidence) == (
        AppType.NOTEBOOK,
        "explore.ipynb",
        "given with --type",
    )


def test_two_equally_likely_entrypoints_are_an_error_or_a_question(project):
    root = project(
        {
            "alpha.py": "from fastapi import FastAPI\napp = FastAPI()\n",
            "beta.py": "from fastapi import FastAPI\napp = FastAPI()\n",
        }
    )
    with pytest.raises(InvalidInput, match="alpha:app, beta:app. Pass --entrypoint"):
        detect(root)
    assert detect(root, ask=lambda question, choices: choices[1]).entrypoint == "beta:app"
    assert detect(root, entrypoint="beta:app").entrypoint == "beta:app"


def test_two_notebooks_with_no_usual_name_are_unclear(project):
    root = project({"a.ipynb": NOTEBOOK, "b.ipynb": NOTEBOOK})
    with pytest.raises(InvalidInput, match="a.ipynb, b.ipynb"):
        detect(root)


def test_a_dash_app_without_a_server_variable_gets_a_note(project):
    found = detect(project({"board.py": "from dash import Dash\nboard = Dash(__name__)\n"}))
    assert (found.type, found.entrypoint) == (AppType.DASH, "board:server")
    assert "add `server = board.server` to board.py" in found.notes[0]


def test_an_app_object_that_is_not_found_falls_back_to_the_default_with_a_note(project):
    found = detect(project({"app.py": "import fastapi\n\ndef make():\n    return None\n"}))
    assert found.entrypoint == "app:app"
    assert found.notes[0].startswith("found no module-level `FastAPI()`; the entrypoint is")
    assert "check `entrypoint:` in conveyor.yml" in found.notes[0]


def test_a_command_app_needs_its_command(project):
    root = project({"serve.py": "print('hi')\n"})
    with pytest.raises(InvalidInput, match="a command app needs --entrypoint"):
        detect(root, app_type=AppType.COMMAND)
    found = detect(root, app_type=AppType.COMMAND, entrypoint="python serve.py")
    assert found.entrypoint == "python serve.py"
