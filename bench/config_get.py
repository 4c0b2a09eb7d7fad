"""Benchmark: a cached `config.get("key")` against parsing the same config file.

Both are measured in this run, on this machine, on a generated config.yml of realistic size
(a default section plus dev/test/prod with `inherits:` and `!env`). Prints time per call and
the ratios. Run with `make bench`.
"""

from __future__ import annotations

import os
import tempfile
import timeit
from pathlib import Path

from conveyor import config
from conveyor.config.parse import parse
from conveyor.config.resolve import materialize, resolved_tree


def make_config(directory: Path) -> Path:
    lines = ["default:"]
    for group in range(20):
        lines.append(f"  group_{group}:")
        for key in range(8):
            lines.append(f"    key_{key}: value-{group}-{key}")
    lines += [
        "  forecast_url: http://localhost:8000/forecast",
        "  password: !env [BENCH_PASSWORD, local]",
        "dev:",
        "  debug: true",
        "test:",
        "  inherits: dev",
        "  forecast_url: https://test.example.com",
        "prod:",
        "  forecast_url: https://example.com",
    ]
    for group in range(0, 20, 2):
        lines += [f"  group_{group}:", "    key_0: prod-value"]
    path = directory / "config.yml"
    path.write_text("\n".join(lines) + "\n")
    return path


def per_call(statement: object, number: int) -> float:
    """Best of 5 runs, in seconds per call."""
    timer = timeit.Timer(statement)  # type: ignore[arg-type]
    return min(timer.repeat(repeat=5, number=number)) / number


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = make_config(Path(tmp))
        text = path.read_text()
        os.environ["CONVEYOR_ENV"] = "prod"
        os.environ["BENCH_PASSWORD"] = "s3cret"
        assert config.get("forecast_url", file=path) == "https://example.com"

        def uncached() -> object:
            # What get() would do on every call without the cache: read, parse, resolve.
            parsed = parse(path.read_text(), str(path))
            tree = resolved_tree(parsed, "prod")
            return materialize(parsed, tree, "prod", os.environ).values["forecast_url"]

        cached = per_call(lambda: config.get("forecast_url", file=path), 2000)
        parse_only = per_call(lambda: parse(text, str(path)), 50)
        full = per_call(uncached, 50)

    lines = text.count("\n")
    print(f"config.yml: {lines} lines, {len(text)} bytes; active section: prod (uses !env)")
    print(f"{'cached config.get(key)':34} {cached * 1e6:10.1f} us/call")
    print(f"{'parse the file text':34} {parse_only * 1e6:10.1f} us/call")
    print(f"{'read + parse + resolve (no cache)':34} {full * 1e6:10.1f} us/call")
    print(f"ratio: parse / cached get = {parse_only / cached:.0f}x")
    print(f"ratio: uncached get / cached get = {full / cached:.0f}x")


if __name__ == "__main__":
    main()
