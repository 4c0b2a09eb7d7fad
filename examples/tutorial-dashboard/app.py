"""A dashboard of the forecast for one region, read from the team's forecast API.

Its settings come from config.yml, so each environment reads its own environment's API."""

import httpx
from flask import Flask, abort, request

from conveyor import config

app = Flask(__name__)

REGIONS = ["north", "south", "east", "west"]


def summary() -> dict:
    """The forecast for ?region= (default north), as the page shows it."""
    region = request.args.get("region", "north")
    if region not in REGIONS:
        abort(404)
    api_key = config.get("api_key")
    response = httpx.get(
        config.get("forecast_url"),
        params={"region": region},
        headers={"Authorization": f"Bearer {api_key}"} if api_key else {},
        timeout=10,
    )
    response.raise_for_status()
    forecast = response.json()
    days = [{"day": day, "value": value} for day, value in enumerate(forecast["values"])]
    return {"region": region, "horizon_days": forecast["horizon_days"], "days": days}


@app.get("/health")
def health():
    return {"status": "ok"}


@app.get("/api/summary")
def api_summary():
    return summary()


@app.get("/")
def dashboard():
    data = summary()
    links = " | ".join(f'<a href="?region={r}">{r}</a>' for r in REGIONS)
    rows = "".join(
        f"<tr><td>Day {d['day']}</td><td>{d['value']}</td><td>{'▇' * round(d['value'] / 10)}"
        for d in data["days"]
    )
    return (
        f"<title>Forecast dashboard</title><h2>Forecast for {data['region']}</h2><p>{links}</p>"
        f"<table>{rows}</table><p><small>data: {config.get('forecast_url')}</small></p>"
    )
