"""A small forecasting API. Its settings come from config.yml, per environment."""

from fastapi import FastAPI

from conveyor import config

app = FastAPI(title="Forecast API")

BASELINE = {"north": 120.0, "south": 95.5, "east": 80.25, "west": 101.0}


@app.get("/health")
def health() -> dict[str, str]:
    return {"status": "ok", "environment": config.active_name()}


@app.get("/forecast")
def forecast(region: str = "north") -> dict[str, object]:
    horizon = config.get("horizon_days")
    base = BASELINE.get(region, 100.0)
    return {
        "region": region,
        "model": config.get("model_name"),
        "horizon_days": horizon,
        "values": [round(base * (1 + 0.01 * day), 2) for day in range(horizon)],
    }
