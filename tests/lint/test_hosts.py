"""Bare host names and addresses: flagged only where the code says they are hosts."""

from __future__ import annotations

import pytest

from conveyor.lint import Kind

from .conftest import findings, only


@pytest.mark.parametrize(
    ("code", "literal", "key"),
    [
        ('conn = psycopg.connect(host="db.prod.example.com", dbname="x")', None, "db_host"),
        ('DB_HOST = "warehouse.internal"', None, "db_host"),
        ('WAREHOUSE_SERVER = "10.0.0.5"', None, "warehouse_server"),
        ('settings = {"host": "warehouse.example.com", "port": 5432}', None, "warehouse_host"),
        ('DATABASES = {"default": {"HOST": "10.0.0.5"}}', None, "service_host"),
        ('os.environ["API_HOST"] = "api.example.org"', None, "api_host"),
        ('self.hostname = "localhost"', None, "service_host"),
        (
            'producer = Producer(bootstrap_servers="kafka1.example.com:9092,kafka2.example.com")',
            "kafka1.example.com:9092,kafka2.example.com",
            "kafka_host",
        ),
        ('client = Client(address="[2001:db8::1]:8786")', None, "service_host"),
        ('api_url = "api.example.com/v1"', None, "api_url"),
        ('r = redis.Redis("cache.internal", 6379)', None, "cache_host"),
        ('s = socket.create_connection(("db.example.com", 5432))', None, "db_host"),
        ('mail = smtplib.SMTP("smtp.example.com")', None, "smtp_host"),
    ],
)
def test_hosts_given_to_host_like_names_are_flagged(code, literal, key):
    finding = only(code)
    assert finding.kind is Kind.HOST
    if literal is not None:
        assert finding.literal == literal
    assert finding.key == key
    assert finding.fix == f'config.get("{key}")'


def test_the_message_says_where_the_host_was_given():
    assert "in host=" in only('connect(host="db.example.com")').message
    assert "in DB_HOST" in only('DB_HOST = "db.example.com"').message
    assert "in 'HOST':" in only('x = {"HOST": "db.example.com"}').message
    assert "the default of host" in only('def f(host="db.example.com"): ...').message


def test_hosts_elsewhere_are_not_flagged():
    # Without a name that says host, a dotted word is too often something else.
    assert not findings(
        """
        print("db.example.com")
        if server == "db.example.com":
            pass
        label = "warehouse.example.com"
        """
    )


def test_bind_addresses_of_servers_are_not_flagged():
    assert not findings(
        """
        app.run(host="127.0.0.1", port=8000)
        uvicorn.run("main:app", host="127.0.0.1")
        app.run_server(host="localhost")
        server = make_server("127.0.0.1", 8000, app)
        HOST = "0.0.0.0"
        LISTEN_ADDRESS = "::"
        ThreadingHTTPServer(("127.0.0.1", 8000), Handler).serve_forever()
        """
    )


def test_names_that_only_look_like_hosts_are_not_flagged():
    assert not findings(
        """
        ep = url_for(endpoint="auth.login")
        page = {"url": "index.html"}
        MODEL_URI = "models.pkl"
        server = "gunicorn"
        host = "db"
        url = "/health"
        uri = "{scheme}://{host}"
        endpoint = "users.list_all"
        address = "ana@example.com"
        """
    )
