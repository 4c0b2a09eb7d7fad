"""`conveyor bundle [PATH]` builds a bundle; `conveyor bundle inspect FILE` verifies one."""

from __future__ import annotations

from pathlib import Path

import click

from conveyor.bundles.archive import verify
from conveyor.bundles.build import build_bundle
from conveyor.cli import output
from conveyor.cli.exit_codes import ExitCode
from conveyor.domain.policy import bundle_alias


class _DefaultToBuild(click.Group):
    """`conveyor bundle PATH` means `conveyor bundle build PATH`."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        if not args or (args[0] not in self.commands and args[0] not in ("-h", "--help")):
            args = ["build", *args]
        return super().parse_args(ctx, args)


@click.group("bundle", cls=_DefaultToBuild)
def bundle_group() -> None:
    """Build an app's bundle (`conveyor bundle [PATH]`), or inspect one.

    A bundle is an immutable archive of the app's files plus manifest.json (type, entrypoint,
    python requirement, lock, sha256 of every file). Its id is the sha256 of that manifest: the
    same tree gives the same id on any branch, in any checkout, at any time.
    """


@bundle_group.command("build")
@click.argument("path", default=".", type=click.Path(file_okay=False, path_type=Path))
@click.option(
    "-o",
    "--output",
    "output_file",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Where to write the archive. Default: PATH/.conveyor/bundles/NAME-ALIAS.tar.gz",
)
@click.option("--json", "as_json", is_flag=True, help="Print JSON for machines.")
def build_command(path: Path, output_file: Path | None, as_json: bool) -> int:
    """Build the bundle of the app in PATH (default: this directory).

    Reads PATH/conveyor.yml, locks loose requirements with uv into conveyor.lock (commit it),
    selects files (honouring .gitignore and `exclude:`), and writes a canonical archive.
    """
    built = build_bundle(path, output_file, progress=output.progress, warn=output.warn)
    summary = {
        "id": built.id,
        "alias": built.alias,
        "app": built.spec.name,
        "type": built.spec.type.value,
        "files": built.file_count,
        "size": built.size,
        "locked_packages": built.lock.packages if built.lock else 0,
        "lock": built.lock.path if built.lock else None,
        "added_packages": list(built.lock.added),  # what Conveyor added for the app type
        "archive": str(built.archive),
        "provenance": built.provenance,
    }
    if as_json:
        output.as_json(summary)
        return ExitCode.OK
    if built.lock:
        output.info(f"lock: {built.lock.note}")
    output.info(f"bundle {built.alias}  ({built.spec.name}, {built.spec.type.value})")
    output.table(
        ["ID", "FILES", "SIZE", "LOCKED PACKAGES"],
        [[built.id, str(built.file_count), _size(built.size), str(summary["locked_packages"])]],
    )
    output.info(f"written to {built.archive}")
    return ExitCode.OK


@bundle_group.command("inspect")
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Print JSON for machines.")
def inspect_command(file: Path, as_json: bool) -> int:
    """Show a bundle's manifest and verify it: every file's sha256 is recomputed and the id
    checked against the manifest. Exits 1 if anything does not match."""
    opened = verify(file)
    manifest = opened.manifest
    if as_json:
        output.as_json({"id": opened.id, "verified": True, "manifest": manifest})
        return ExitCode.OK
    lock = manifest.get("lock") or {}
    output.info(f"bundle {bundle_alias(opened.id)}  {opened.id}")
    output.table(
        ["APP", "TYPE", "ENTRYPOINT", "PYTHON", "LOCK", "CHECKS"],
        [
            [
                manifest.get("app", "?"),
                manifest.get("type", "?"),
                manifest.get("entrypoint", "") or "-",
                manifest.get("python", "?"),
                f"{lock.get('path')} ({lock.get('packages')} packages)" if lock else "none",
                ", ".join(manifest.get("checks", [])),
            ]
        ],
    )
    output.info("")
    output.table(
        ["FILE", "SIZE", "MODE", "SHA256"],
        [
            [f["path"], _size(f["size"]), oct(f["mode"])[2:], f["sha256"][:16]]
            for f in manifest["files"]
        ],
    )
    output.info(f"\nverified: all {len(manifest['files'])} files match their sha256; id matches")
    return ExitCode.OK


def _size(size: int) -> str:
    value = float(size)
    for unit in ("B", "KB", "MB", "GB"):
        if value < 1024 or unit == "GB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{size} B"
