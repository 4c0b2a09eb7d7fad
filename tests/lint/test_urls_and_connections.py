"""URLs and database connection strings: flagged wherever they are, whole, in the code."""

from __future__ import annotations

import pytest

from conveyor.lint import Kind

from .conftest import findings, only


@pytest.mark.parametrize(
    ("code", "literal", "key"),
    [
        ('FORECAST_URL = "https://forecast.example.com/api"', None, "forecast_url"),
        ('url = "http://localhost:8000/forecast"', None, "forecast_url"),
        ('httpx.get("https://forecast-test.example.com/v1")', None, "forecast_url"),
        ('requests.get("http://127.0.0.1:8701/forecast-api/forecast")', None, "forecast_url"),
        ('client = Client(base_url="https://api.github.com")', None, "github_url"),
        ('warehouse = "https://warehouse.example.com"', None, "warehouse_url"),
        ('forecastEndpoint = "https://f.example.com/x"', None, "forecast_endpoint"),
        ('BUCKET = "s3://analytics-prod/scores/"', None, "bucket_url"),
        ('df = pd.read_parquet("gs://lake-prod/sales.parquet")', None, "lake_url"),
        ('def fetch(endpoint="https://hooks.example.com/x"): ...', None, "hooks_url"),
        ('r = get(f"https://forecast.example.com/{region}")', None, "forecast_url"),
        (
            'u = "ftp://ana:hunter2@files.example.com/in"',
            "ftp://ana:***@files.example.com/in",
            "files_url",
        ),
        (
            'u = "https://api.example.com/v1?region=x&api_key=abc123"',
            "https://api.example.com/v1?region=x&api_key=***",
            "example_url",
        ),
    ],
)
def test_urls_are_flagged_with_a_key_named_by_context_or_host(code, literal, key):
    finding = only(code)
    assert finding.kind is Kind.URL
    if literal is not None:
        assert finding.literal == literal
    assert finding.key == key
    assert finding.fix == f'config.get("{key}")'
    assert f"add {key} to config.yml" in finding.suggestion


def test_f_string_fields_show_by_name_and_the_position_is_the_literal_s():
    finding = only('data = fetch(f"https://forecast.example.com/{region}/{day.isoformat()}")\n')
    assert finding.literal == "https://forecast.example.com/{region}/{}"
    assert (finding.line, finding.column) == (1, 14)


def test_a_url_whose_host_comes_from_elsewhere_is_not_hard_coded():
    assert not findings(
        """
        a = f"http://{host}:8000/forecast"
        b = "http://{}/api".format(host)
        c = "http://%s:%d/" % (host, port)
        d = "postgresql://{user}:{password}@{host}/sales"
        e = "https://" + host + "/api"
        f = f"https://{settings.host}/v1"
        """
    )


@pytest.mark.parametrize(
    ("literal", "shown", "connection", "key"),
    [
        (
            "postgresql+psycopg://ana:s3cret@warehouse.example.com:5432/analytics",
            "postgresql+psycopg://ana:***@warehouse.example.com:5432/analytics",
            "warehouse",
            "warehouse_url",
        ),
        (
            "postgresql://localhost/sales",
            "postgresql://localhost/sales",
            "sales",
            "sales_url",
        ),
        (
            "mysql://root:p@ss/w?rd@db.prod.example.com/orders",
            "mysql://root:***@db.prod.example.com/orders",
            "orders",
            "orders_url",
        ),
        (
            "mongodb+srv://app:pw@events-prod.example.net/tracking",
            "mongodb+srv://app:***@events-prod.example.net/tracking",
            "events",
            "events_url",
        ),
        ("redis://cache.internal:6379/0", "redis://cache.internal:6379/0", "cache", "cache_url"),
        ("sqlite:////srv/app/metrics.db", "sqlite:////srv/app/metrics.db", "metrics", None),
        (
            "jdbc:postgresql://pg.example.com:5432/sales",
            "jdbc:postgresql://pg.example.com:5432/sales",
            "sales",
            "sales_url",
        ),
        (
            "host=db.example.com port=5432 dbname=sales user=ana password=hunter2",
            "host=db.example.com port=5432 dbname=sales user=ana password=***",
            "sales",
            "sales_dsn",
        ),
        (
            "Driver={ODBC Driver 18 for SQL Server};Server=tcp:sql.example.com,1433;"
            "Database=finance;Uid=app;Pwd=xyz;",
            "Driver={ODBC Driver 18 for SQL Server};Server=tcp:sql.example.com,1433;"
            "Database=finance;Uid=app;Pwd=***;",
            "finance",
            "finance_dsn",
        ),
    ],
)
def test_connection_strings_are_masked_and_point_at_a_data_connection(
    literal, shown, connection, key
):
    finding = only(f"engine = create_engine({literal!r})\n")
    assert finding.kind is Kind.CONNECTION
    assert finding.literal == shown
    assert finding.fix == f'conveyor.data.connect("{connection}")'
    if key is not None:
        assert finding.key == key
    assert "hunter2" not in finding.suggestion + finding.message


def test_a_password_in_a_connection_string_is_said_and_its_fix_is_env():
    finding = only('DB = "postgresql://ana:s3cret@warehouse.example.com/analytics"\n')
    assert "with its password" in finding.message
    assert "!env" in finding.suggestion
    assert "s3cret" not in repr(finding)


def test_a_named_connection_keeps_its_name():
    finding = only('WAREHOUSE_DSN = "postgresql://warehouse.example.com/analytics"\n')
    assert finding.key == "warehouse_dsn"
    assert finding.fix == 'conveyor.data.connect("warehouse")'


def test_file_databases_count_only_at_absolute_paths():
    assert not findings(
        """
        a = create_engine("sqlite:///local.db")
        b = create_engine("sqlite://")
        c = create_engine("sqlite:///:memory:")
        d = sqlite3.connect("local.db")
        e = sqlite3.connect(":memory:")
        """
    )
    opened = only('con = sqlite3.connect("/data/warehouse.db")\n')
    assert opened.kind is Kind.CONNECTION
    assert opened.fix == 'conveyor.data.connect("warehouse")'
    assert "absolute path" in opened.message


def test_a_config_get_default_is_flagged_as_a_fallback_named_by_its_key():
    finding = only(
        'from conveyor import config\nurl = config.get("forecast_url", default="http://localhost:8000")\n'
    )
    assert finding.key == "forecast_url"
    assert "default of config.get('forecast_url')" in finding.message
    assert "default: section" in finding.suggestion


def test_the_second_argument_of_config_get_is_a_section_not_a_default():
    # config.get(value, config): "prod" names a section; nothing here is a location.
    assert not findings('from conveyor import config\nx = config.get("forecast_url", "prod")\n')


def test_an_environment_variable_fallback_is_flagged_for_that_variable():
    finding = only('import os\nAPI = os.environ.get("FORECAST_API", "https://f.example.com")\n')
    assert finding.key == "forecast_api_url"
    assert "fallback for FORECAST_API" in finding.message
    getenv = only('import os\nAPI = os.getenv("FORECAST_URL", "https://f.example.com")\n')
    assert getenv.key == "forecast_url"


def test_the_fallback_of_a_variable_conveyor_sets_is_for_laptops_only():
    assert not findings(
        'import os\nURL = os.environ.get("CONVEYOR_APP_URL", "http://127.0.0.1:5000")\n'
    )
