"""What the server copies of a render or a build is readable by the app's own user, which
serves it, whatever the server's umask (`conveyor serve` runs with 077); and a page the app
left as a link is never followed by the server."""

from __future__ import annotations

import os
import stat
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from conveyor.errors import RuntimeFailure
from conveyor.runtime.adapters.base import LaunchContext
from conveyor.runtime.adapters.quarto import ADAPTER as QUARTO
from conveyor.runtime.adapters.static import ADAPTER as STATIC


@pytest.fixture
def server_umask() -> Iterator[None]:
    previous = os.umask(0o077)
    try:
        yield
    finally:
        os.umask(previous)


def context(tmp_path: Path, entrypoint: str, build: str | None = None) -> LaunchContext:
    app_dir = tmp_path / "app"
    app_dir.mkdir(exist_ok=True)
    return LaunchContext(
        app="site",
        entrypoint=entrypoint,
        app_dir=app_dir,
        runtime_bin=Path(sys.executable).parent,
        port=0,
        health="/",
        output_dir=tmp_path / "output",
        build=build,
    )


def mode(path: Path) -> int:
    return stat.S_IMODE(os.lstat(path).st_mode)


def test_a_built_site_is_served_from_copies_the_app_can_read(tmp_path, server_umask):
    site = context(tmp_path, "public", build=f"{sys.executable} build.py")
    (site.app_dir / "build.py").write_text(
        textwrap.dedent(
            """
            import os
            from pathlib import Path
            Path("public/js").mkdir(parents=True)
            Path("public/index.html").write_text("<h1>Docs</h1>")
            Path("public/js/tool.sh").write_text("#!/bin/sh")
            os.chmod("public/js/tool.sh", 0o700)
            os.symlink("index.html", "public/home.html")
            """
        )
    )
    site.output_dir.mkdir()
    STATIC.render(site, dict(os.environ), lambda line: None)
    assert mode(site.app_dir / "public" / "index.html") == 0o600  # as the build made it
    assert mode(site.output_dir / "index.html") == 0o644
    assert mode(site.output_dir / "js" / "tool.sh") == 0o755
    assert (site.output_dir / "index.html").read_text() == "<h1>Docs</h1>"
    assert os.readlink(site.output_dir / "home.html") == "index.html"  # a link stays a link


def stand_in_quarto(tmp_path: Path, script: str) -> dict[str, str]:
    """A `quarto` on PATH that does what ``script`` says with the --output-dir it is given."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    quarto = bin_dir / "quarto"
    quarto.write_text(f'#!/bin/sh\nset -e\nout="$4"\n{script}\n')
    quarto.chmod(0o755)
    return {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}"}


def test_a_single_quarto_page_becomes_an_index_the_app_can_read(tmp_path, server_umask):
    report = context(tmp_path, "report.qmd")
    env = stand_in_quarto(tmp_path, 'echo "<h1>Annual</h1>" > "$out/report.html"')
    QUARTO.render(report, env, lambda line: None)
    index = report.output_dir / "index.html"
    assert not index.is_symlink() and mode(index) == 0o644
    assert index.read_text() == "<h1>Annual</h1>\n"


def test_a_quarto_page_left_as_a_link_is_not_followed_by_the_server(tmp_path, server_umask):
    secret = tmp_path / "server-key"
    secret.write_text("the server's own secret")
    report = context(tmp_path, "report.qmd")
    env = stand_in_quarto(tmp_path, f'ln -s "{secret}" "$out/report.html"')
    QUARTO.render(report, env, lambda line: None)
    index = report.output_dir / "index.html"
    # index.html names the page; the app's own server resolves it inside its sandbox.
    assert os.readlink(index) == "report.html"
    assert not any(
        "secret" in path.read_bytes().decode(errors="replace")
        for path in report.output_dir.iterdir()
        if not path.is_symlink()
    )


def test_a_site_at_the_bundles_root_leaves_out_conveyors_files_there_only(tmp_path):
    site = context(tmp_path, ".")
    for name in ("conveyor.yml", "build.py", "index.html", "docs/demo.py", "docs/conveyor.yml"):
        (site.app_dir / name).parent.mkdir(exist_ok=True)
        (site.app_dir / name).write_text(name)
    site.output_dir.mkdir()
    STATIC.render(site, dict(os.environ), lambda line: None)
    served = sorted(str(p.relative_to(site.output_dir)) for p in site.output_dir.rglob("*.*"))
    assert served == ["docs/conveyor.yml", "docs/demo.py", "index.html"]


def test_a_build_that_leaves_a_loop_of_links_fails_with_the_reason(tmp_path):
    site = context(tmp_path, "public", build="ln -s public public")
    site.output_dir.mkdir()
    with pytest.raises(RuntimeFailure, match="'public' does not exist in the bundle after"):
        STATIC.render(site, dict(os.environ), lambda line: None)
