"""HTTP/2 over TLS: the fetcher offers h2 by ALPN and speaks HTTP/2 when the server
picks it. The server here is a minimal one written with the ``h2`` library (which
httpx[http2] brings) behind a TLS socket on 127.0.0.1, with a certificate from a
throwaway CA trusted through SSL_CERT_FILE."""

from __future__ import annotations

import contextlib
import datetime
import ipaddress
import socket
import ssl
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import h2.config
import h2.connection
import h2.events
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from mirror.errors import FetchError
from mirror.fetch.http import HttpFetcher
from mirror.fetch.retry import RetryPolicy

BODY = b'{"signed": {"_type": "timestamp", "version": 3}}\n'


def _certificates(directory: Path) -> tuple[Path, Path, Path]:
    """A CA certificate, and a server certificate and key for 127.0.0.1 signed by it."""
    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "tuf-mirror test CA")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), False)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    leaf = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), False
        )
        .add_extension(x509.ExtendedKeyUsage([x509.OID_SERVER_AUTH]), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    ca_file, cert_file, key_file = (
        directory / "ca.pem",
        directory / "cert.pem",
        directory / "key.pem",
    )
    ca_file.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    cert_file.write_bytes(leaf.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return ca_file, cert_file, key_file


@dataclass
class H2Server:
    """What the server saw: the ALPN protocol of each connection, each request path."""

    url: str
    protocols: list[str | None] = field(default_factory=list)
    paths: list[str] = field(default_factory=list)


def _serve_connection(tls: ssl.SSLSocket, server: H2Server) -> None:
    server.protocols.append(tls.selected_alpn_protocol())
    if tls.selected_alpn_protocol() != "h2":
        return  # this test server speaks HTTP/2 only
    conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=False))
    conn.initiate_connection()
    tls.sendall(conn.data_to_send())
    while True:
        data = tls.recv(65536)
        if not data:
            return
        for event in conn.receive_data(data):
            if isinstance(event, h2.events.RequestReceived):
                headers = {bytes(k): bytes(v) for k, v in event.headers}
                server.paths.append(headers[b":path"].decode())
                conn.send_headers(
                    event.stream_id,
                    [
                        (":status", "200"),
                        ("content-length", str(len(BODY))),
                        ("etag", '"h2-etag"'),
                    ],
                )
                conn.send_data(event.stream_id, BODY, end_stream=True)
            elif isinstance(event, h2.events.ConnectionTerminated):
                tls.sendall(conn.data_to_send())
                return
        tls.sendall(conn.data_to_send())


@contextlib.contextmanager
def h2_server(cert: Path, key: Path) -> Iterator[H2Server]:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    context.set_alpn_protocols(["h2", "http/1.1"])
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(0.2)
    server = H2Server(url=f"https://127.0.0.1:{listener.getsockname()[1]}")
    stop = threading.Event()

    def run() -> None:
        while not stop.is_set():
            try:
                raw, _ = listener.accept()
            except TimeoutError:
                continue
            raw.settimeout(10)
            with contextlib.suppress(OSError), context.wrap_socket(raw, server_side=True) as tls:
                _serve_connection(tls, server)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        stop.set()
        thread.join(5)
        listener.close()


@pytest.fixture
def tls_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Path, Path]:
    """Certificates, with the CA trusted through SSL_CERT_FILE (as an operator would
    point the mirror at a private CA)."""
    ca, cert, key = _certificates(tmp_path)
    monkeypatch.setenv("SSL_CERT_FILE", str(ca))
    return cert, key


async def test_http2_is_negotiated_by_alpn(tls_files: tuple[Path, Path]) -> None:
    """Against a TLS server that prefers h2, ALPN selects h2 and the request and its
    answer travel over HTTP/2: body, validators and length checks as over HTTP/1.1."""
    with h2_server(*tls_files) as server:
        fetcher = HttpFetcher(server.url + "/metadata", server.url + "/targets")
        try:
            got = await fetcher.fetch_bytes("metadata", "timestamp.json", max_length=1000)
        finally:
            await fetcher.aclose()

    assert got is not None
    assert (got.data, got.etag) == (BODY, '"h2-etag"')
    assert server.protocols == ["h2"]
    assert server.paths == ["/metadata/timestamp.json"]


async def test_http2_off_offers_only_http1(tls_files: tuple[Path, Path]) -> None:
    """With http2=False the client offers http/1.1 only (this server then hangs up,
    so the fetch fails): the ALPN offer follows the setting."""
    with h2_server(*tls_files) as server:
        fetcher = HttpFetcher(
            server.url + "/metadata",
            server.url + "/targets",
            http2=False,
            retry=RetryPolicy(attempts=1),
        )
        try:
            with pytest.raises(FetchError):
                await fetcher.fetch_bytes("metadata", "timestamp.json", max_length=1000)
        finally:
            await fetcher.aclose()

    assert server.protocols == ["http/1.1"]


async def test_http1_over_tls(tls_files: tuple[Path, Path]) -> None:
    """With http2=False, HTTPS goes over HTTP/1.1 (the project's own client): the
    certificate is verified against SSL_CERT_FILE, ALPN offers http/1.1 only, and
    the answers arrive whole, also for a second request."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(*tls_files)
    context.set_alpn_protocols(["http/1.1"])
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(0.2)
    offered: list[str | None] = []
    requests: list[bytes] = []
    stop = threading.Event()

    def serve_one(conn: socket.socket) -> None:
        conn.settimeout(10)
        with contextlib.suppress(OSError), context.wrap_socket(conn, server_side=True) as tls:
            offered.append(tls.selected_alpn_protocol())
            pending = b""
            while data := tls.recv(65536):
                pending += data
                while b"\r\n\r\n" in pending:
                    head, pending = pending.split(b"\r\n\r\n", 1)
                    requests.append(head)
                    answer = b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % len(BODY)
                    tls.sendall(answer + BODY)

    def run() -> None:
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                continue
            threading.Thread(target=serve_one, args=(conn,), daemon=True).start()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    url = f"https://127.0.0.1:{listener.getsockname()[1]}"
    fetcher = HttpFetcher(url + "/metadata", url + "/targets", http2=False)
    try:
        first = await fetcher.fetch_bytes("metadata", "timestamp.json", max_length=1000)
        second = await fetcher.fetch_bytes("metadata", "timestamp.json", max_length=1000)
    finally:
        await fetcher.aclose()
        stop.set()
        thread.join(5)
        listener.close()
    assert first is not None
    assert second is not None
    assert first.data == second.data == BODY
    assert set(offered) == {"http/1.1"}
    assert len(requests) == 2
    assert requests[0].startswith(b"GET /metadata/timestamp.json HTTP/1.1\r\n")
    assert fetcher.stats.retries == 0
