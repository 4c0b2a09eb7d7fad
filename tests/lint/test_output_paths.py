"""Absolute paths: flagged where something writes to them, or when a name says they are a
path and they plainly are a file system's."""

from __future__ import annotations

import pytest

from conveyor.lint import Kind

from .conftest import findings, only


@pytest.mark.parametrize(
    ("code", "literal", "name"),
    [
        ('df.to_csv("/data/out/scores.csv")', "/data/out/scores.csv", "scores.csv"),
        ('df.to_parquet("/mnt/lake/sales.parquet", index=False)', None, "sales.parquet"),
        ('df.to_excel(excel_writer="/srv/reports/q3.xlsx")', None, "q3.xlsx"),
        ('df.to_json(path_or_buf="/srv/out.json")', None, "out.json"),
        ('plt.savefig("/home/ana/plots/trend.png")', None, "trend.png"),
        ('fig.write_html("/var/www/chart.html")', None, "chart.html"),
        ('open("/var/log/app.log", "a").write(line)', None, "app.log"),
        ('open("/tmp/scores.csv", mode="w")', None, "scores.csv"),
        ('open("/data/new.csv", "x")', None, "new.csv"),
        ('with open(r"C:\\reports\\q3.txt", "w") as f: pass', "C:\\reports\\q3.txt", "q3.txt"),
        ('Path("/srv/reports/summary.txt").write_text("hi")', None, "summary.txt"),
        ('pathlib.Path("/srv/blob.bin").write_bytes(b"")', None, "blob.bin"),
        ('Path("~/out").expanduser().mkdir(parents=True)', "~/out", "out"),
        ('(Path("/data/out") / "x.csv").write_text("")', "/data/out", "out"),
        ('Path("/data/out/x.csv").parent.mkdir(exist_ok=True)', None, "x.csv"),
        ('Path("/data/out/x.csv").open("w")', None, "x.csv"),
        ('os.makedirs("/mnt/exports", exist_ok=True)', None, "exports"),
        ('os.makedirs(os.path.join("/mnt/exports", run_id))', "/mnt/exports", "exports"),
        ('shutil.copy(tmp, "/srv/share/latest.csv")', None, "latest.csv"),
        ('joblib.dump(model, "/models/churn.joblib")', None, "churn.joblib"),
        ('handler = logging.FileHandler("/var/log/app.log")', None, "app.log"),
        ('logging.basicConfig(filename="/var/log/app.log")', None, "app.log"),
        ('OUTPUT_DIR = "/data/outputs"', None, "outputs"),
        ('export_path = Path("/srv/exports/daily.csv")', None, "daily.csv"),
        ('train(output_dir="/mnt/models/run-1")', None, "run-1"),
        ('SAVE_FILE = "~/results.csv"', None, "results.csv"),
    ],
)
def test_absolute_paths_written_to_are_outputs(code, literal, name):
    finding = only(code)
    assert finding.kind is Kind.OUTPUT_PATH
    if literal is not None:
        assert finding.literal == literal
    assert finding.key == name
    assert finding.fix == f'conveyor.data.output_path("{name}")'
    assert "or read the location from config.yml (" in finding.suggestion


def test_an_absolute_input_path_in_a_path_name_becomes_a_config_key():
    finding = only('DATA_DIR = Path("/mnt/shared/data")\n')
    assert finding.kind is Kind.OUTPUT_PATH
    assert finding.key == "data_dir"
    assert finding.fix == 'config.get("data_dir")'
    assert "in DATA_DIR" in finding.message


def test_the_message_names_the_writing_call():
    assert "written by to_csv()" in only('df.to_csv("/data/x.csv")').message
    assert "written by write_text()" in only('Path("/data/x.csv").write_text("")').message


def test_relative_paths_reads_and_joined_paths_are_not_flagged():
    assert not findings(
        """
        df.to_csv("output/scores.csv")
        df.to_csv(out_dir + "/scores.csv")
        df.to_csv(f"{out_dir}/scores.csv")
        df.to_csv(os.path.join(out_dir, "scores.csv"))
        df.to_csv(Path(out_dir) / "scores.csv")
        open("/etc/hosts").read()
        open("/data/in.csv", "r")
        pd.read_csv("/data/in.csv")
        open("/dev/null", "w")
        Path("public").mkdir(exist_ok=True)
        os.makedirs("/", exist_ok=True)
        """
    )


def test_route_like_paths_in_path_names_are_not_flagged():
    assert not findings(
        """
        HEALTH_PATH = "/health"
        api = FastAPI(root_path="/api")
        url_path = "/v1/forecast"
        static_folder = "/static"
        """
    )
    # ... but a file-system root or a file name is.
    assert only('STATIC_DIR = "/srv/static"').kind is Kind.OUTPUT_PATH
    assert only('template_path = "/templates/report.html"').kind is Kind.OUTPUT_PATH
