"""A Shiny dashboard: pick a region, see its weekly sales."""

from shiny import App, render, ui

from conveyor import config

SALES = {
    "north": [120, 132, 128, 141],
    "south": [95, 97, 104, 99],
    "east": [80, 86, 83, 90],
    "west": [101, 99, 108, 115],
}

app_ui = ui.page_fluid(
    ui.h2(config.get("title")),
    ui.input_select("region", "Region", list(config.get("regions"))),
    ui.output_text_verbatim("summary"),
)


def server(input, output, session):
    @render.text
    def summary():
        weeks = SALES[input.region()]
        return f"{input.region()}: {sum(weeks)} units over {len(weeks)} weeks"


app = App(app_ui, server)
