"""An environment's listener over HTTPS (``conveyor serve --tls-cert/--tls-key``): the proxy's
event loop (uvloop) terminates TLS for plain HTTP, streamed bodies both ways and WebSockets,
and tells the app the scheme was https. Real sockets, a real certificate made here."""

from __future__ import annotations

import asyncio
import datetime
import hashlib
import io
import ipaddress
import socket
import ssl
import time
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from conveyor.runtime.proxy import Proxy
from tests.runtime.test_proxy import (
    echo_app,
    get_json,
    header,
    raw_upstream,
    serve,
    streaming_app,
)
from tests.runtime.test_proxy_backpressure import answering, small_send_buffers

in_thread = asyncio.to_thread

#: Streamed through TLS both ways: enough for many TLS records and flow-control pauses.
SIZE = 8 * 1024 * 1024


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 and its key, as files."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .sign(key, hashes.SHA256())
    )
    folder = tmp_path_factory.mktemp("tls")
    cert_file, key_file = folder / "cert.pem", folder / "key.pem"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_file, key_file


@pytest.fixture
def tls_proxy(certificate: tuple[Path, Path]) -> Iterator[tuple[Proxy, str, ssl.SSLContext]]:
    cert_file, key_file = certificate
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_context.load_cert_chain(cert_file, key_file)
    client_context = ssl.create_default_context(cafile=str(cert_file))
    proxy = Proxy()
    proxy.start()
    try:
        port = proxy.add_listener("dev", ssl_context=server_context)
        yield proxy, f"https://127.0.0.1:{port}", client_context
    finally:
        proxy.stop()


def test_https_requests_streams_and_websockets_pass_through_the_listener(tls_proxy):
    proxy, base, context = tls_proxy

    async def scenario() -> None:
        async with serve(echo_app("alpha")) as alpha, serve(streaming_app()) as files:
            await in_thread(proxy.set_route, "dev", "alpha", 1, [alpha], strip_prefix=True)
            await in_thread(proxy.set_route, "dev", "files", 2, [files])
            connector = aiohttp.TCPConnector(ssl=context)
            async with aiohttp.ClientSession(connector=connector) as client:
                echo = await get_json(client, f"{base}/alpha/x?q=1")
                assert (echo["upstream"], echo["path"]) == ("alpha", "/x?q=1")
                assert header(echo, "X-Forwarded-Proto") == ["https"]
                # A second request on the same TLS connection (keep-alive through TLS).
                again = await get_json(client, f"{base}/alpha/y")
                assert again["path"] == "/y"

                payload = bytes(range(256)) * (SIZE // 256)
                async with client.post(
                    f"{base}/files/upload", data=io.BytesIO(payload)
                ) as response:
                    assert response.status == 200
                    uploaded = await response.json()
                assert uploaded == {
                    "length": SIZE,
                    "sha1": hashlib.sha1(payload).hexdigest(),
                }

                digest, length = hashlib.sha1(), 0
                async with client.get(f"{base}/files/download") as response:
                    assert response.status == 200
                    async for block in response.content.iter_chunked(64 * 1024):
                        digest.update(block)
                        length += len(block)
                        if length >= SIZE:
                            break  # the whole 200 MiB is the plain-HTTP test's business
                assert length >= SIZE

                ws = await client.ws_connect(f"{base}/alpha/ws", protocols=("v1.conveyor",))
                assert ws.protocol == "v1.conveyor"
                await ws.send_str("over tls")
                assert await ws.receive_str() == "alpha:over tls"
                await ws.close()

    asyncio.run(scenario())


def test_a_client_speaking_plain_http_to_an_https_listener_is_refused(tls_proxy):
    """Clear text to the TLS port is a failed handshake, never forwarded to an app."""
    proxy, base, _ = tls_proxy
    port = int(base.rsplit(":", 1)[1])

    async def scenario() -> bytes:
        async with serve(echo_app("alpha")) as alpha:
            await in_thread(proxy.set_route, "dev", "alpha", 1, [alpha])
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(b"GET /alpha/ HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            await writer.drain()
            try:
                return await asyncio.wait_for(reader.read(), 10)
            except ConnectionError:
                return b""
            finally:
                writer.close()

    answer = asyncio.run(scenario())
    assert b"alpha" not in answer and b"upstream" not in answer


def test_a_client_taking_a_trickle_over_tls_is_not_cut_off(certificate):
    """Over TLS the proxy's own buffer hides the one under it, so progress is read from the
    kernel (the bytes the client acknowledged): a client taking 4 KiB every 0.25 s keeps its
    connection for three times the limit. (TLS reads the kernel a 16 KiB record at a time, so
    this client acknowledges something about once a second: the limit here is 2 s.)"""
    cert_file, key_file = certificate
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_context.load_cert_chain(cert_file, key_file)
    client_context = ssl.create_default_context(cafile=str(cert_file))
    app_side: list[str] = []
    stalling = Proxy(write_stall=2.0)
    stalling.start()
    try:
        port = stalling.add_listener("dev", ssl_context=server_context)

        def trickle() -> int:
            raw = socket.socket()
            raw.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            raw.connect(("127.0.0.1", port))
            with client_context.wrap_socket(raw, server_hostname="127.0.0.1") as client:
                client.settimeout(2)
                client.sendall(b"GET /files/ HTTP/1.1\r\nHost: h\r\n\r\n")
                received = 0
                for _ in range(24):  # 6 s: three times the limit
                    time.sleep(0.25)
                    data = client.recv(4096)
                    assert data, "the proxy closed the connection"
                    received += len(data)
                return received

        async def scenario() -> int:
            async with raw_upstream(answering(app_side)) as upstream:
                await in_thread(stalling.set_route, "dev", "files", 1, [upstream])
                small_send_buffers(stalling)
                received = await in_thread(trickle)
                assert not app_side
                return received

        assert asyncio.run(scenario()) > 16 * 1024
    finally:
        stalling.stop()
