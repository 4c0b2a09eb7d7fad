"""A small Flask API over an inventory; links are built with url_for, so they carry /<app>/."""

from flask import Flask, jsonify, url_for

app = Flask(__name__)

STOCK = {"widgets": 12, "gears": 40, "bolts": 310}


@app.get("/health")
def health():
    return {"status": "ok"}


@app.get("/items")
def items():
    return jsonify({name: url_for("item", name=name) for name in STOCK})


@app.get("/items/<name>")
def item(name: str):
    if name not in STOCK:
        return {"error": f"no item {name}"}, 404
    return {"name": name, "in_stock": STOCK[name]}
