"""A Dash dashboard of weekly KPIs. Conveyor sets its base path, so it works under /<app>/."""

from dash import Dash, Input, Output, dcc, html

WEEKLY = {"orders": [120, 132, 128, 141], "returns": [4, 6, 3, 5]}

app = Dash(__name__, title="KPI dashboard")
server = app.server

app.layout = html.Div(
    [
        html.H2("KPI dashboard"),
        dcc.Dropdown(list(WEEKLY), "orders", id="metric"),
        html.Pre(id="values"),
    ]
)


@app.callback(Output("values", "children"), Input("metric", "value"))
def show(metric: str) -> str:
    return ", ".join(str(v) for v in WEEKLY[metric])
