"""The app's own tests. Conveyor runs them against the new release before it takes traffic,
with CONVEYOR_APP_URL pointing at that release; without it they test the app in process."""

import os

import httpx
import pytest

URL = os.environ.get("CONVEYOR_APP_URL")


@pytest.fixture
def client():
    if URL:
        with httpx.Client(base_url=URL, timeout=10) as http:
            yield http
    else:
        from app import app
        from fastapi.testclient import TestClient

        with TestClient(app) as http:
            yield http


def test_health(client):
    assert client.get("/health").json()["status"] == "ok"


def test_forecast_has_one_value_per_day(client):
    body = client.get("/forecast", params={"region": "south"}).json()
    assert body["region"] == "south"
    assert len(body["values"]) == body["horizon_days"]
