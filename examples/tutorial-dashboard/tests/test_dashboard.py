"""The dashboard's tests. Conveyor runs them against each new release before it takes
traffic, with CONVEYOR_APP_URL pointing at that release. Locally, start the app with
`flask run` and run `pytest`."""

import os

import httpx
import pytest

URL = os.environ.get("CONVEYOR_APP_URL", "http://127.0.0.1:5000")


@pytest.fixture
def client():
    with httpx.Client(base_url=URL, timeout=10) as http:
        yield http


def test_the_page_shows_the_forecast(client):
    page = client.get("/", params={"region": "south"})
    assert page.status_code == 200
    assert "Forecast for south" in page.text


def test_one_row_per_forecast_day(client):
    body = client.get("/api/summary", params={"region": "west"}).json()
    assert len(body["days"]) == body["horizon_days"]
