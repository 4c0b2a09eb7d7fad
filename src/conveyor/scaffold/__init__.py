"""`conveyor init`: scaffolding for an existing project.

- ``sources``: what the project's files are, read with ``ast`` (imports, app objects, routes),
  plus its notebooks, Quarto files and HTML pages;
- ``detection``: the app's type, entrypoint and health path decided from those files, or the
  candidates when the files do not decide it;
- ``files``: the text of conveyor.yml, config.yml, the smoke test, and pytest in
  requirements.txt;
- ``ci``: the GitHub Actions workflow and the GitLab CI file;
- ``yaml_text``: YAML values written into those texts so that they read back unchanged;
- ``project``: the whole scaffold of one directory, written without overwriting.
"""
