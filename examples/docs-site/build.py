"""Build the static site: turn src/*.txt into public/*.html with an index."""

import html
from pathlib import Path

source, public = Path("src"), Path("public")
public.mkdir(exist_ok=True)
links = []
for page in sorted(source.glob("*.txt")):
    title, _, body = page.read_text().partition("\n")
    target = public / f"{page.stem}.html"
    target.write_text(f"<h1>{html.escape(title)}</h1><p>{html.escape(body)}</p>")
    links.append(f'<li><a href="{target.name}">{html.escape(title)}</a></li>')
(public / "index.html").write_text("<h1>Team docs</h1><ul>" + "".join(links) + "</ul>")
