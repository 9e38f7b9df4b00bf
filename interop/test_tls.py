"""Interop under mutual TLS, against the release binary: the tutorial's
Python client with certificates made by the tutorial's own openssl steps
(docs/tls.md), and certificates renewed by scripts/gen-certs.sh taken by the
running server without a restart. Run by .ci/run: `pytest interop/`.
"""

import json
import os
import signal
import socket
import ssl
import subprocess
import sys
import time
from pathlib import Path

import grpc
import pytest
from grpc_tools import protoc

ROOT = Path(__file__).resolve().parent.parent
PROTOS = ROOT / "protobufs"
BINARY = Path(os.environ.get("RECOMMENDATIONS_BIN", ROOT / "target" / "release" / "recommendations"))


def sh(script, cwd):
    subprocess.run(["bash", "-euo", "pipefail", "-c", script], cwd=cwd, check=True, capture_output=True)


class Server:
    """The binary with `args`; stopped with SIGTERM, which must exit 0."""

    def __init__(self, *args):
        self.process = subprocess.Popen(
            [str(BINARY), "--listen=127.0.0.1:0", "--admin-listen=127.0.0.1:0", "--log-format=json", *args],
            stdout=subprocess.PIPE, text=True, start_new_session=True,
        )
        self.address = None
        for line in self.process.stdout:
            if json.loads(line).get("message") == "serving":
                self.address = json.loads(line)["grpc"]
                break
        assert self.address, "the server exited before serving"

    def __enter__(self):
        return self

    def __exit__(self, *_):
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                assert self.process.wait(timeout=30) == 0
            finally:
                if self.process.poll() is None:
                    os.killpg(self.process.pid, signal.SIGKILL)
                    self.process.wait()


@pytest.fixture(scope="module")
def stubs(tmp_path_factory):
    out = tmp_path_factory.mktemp("generated")
    code = protoc.main(["grpc_tools.protoc", f"-I{PROTOS}", f"--python_out={out}", f"--grpc_python_out={out}",
                        str(PROTOS / "recommendations.proto")])
    assert code == 0
    sys.path.insert(0, str(out))
    yield
    sys.path.remove(str(out))


def recommend(address, certs, ca="ca.pem", cert="client.pem", key="client.key"):
    """The tutorial's client over mutual TLS: the mystery books' ids."""
    from recommendations_pb2 import BookCategory, RecommendationRequest
    from recommendations_pb2_grpc import RecommendationsStub

    read = lambda name: (certs / name).read_bytes()  # noqa: E731
    credentials = grpc.ssl_channel_credentials(read(ca), read(key), read(cert))
    options = [("grpc.ssl_target_name_override", "localhost")]
    with grpc.secure_channel(address, credentials, options=options) as channel:
        request = RecommendationRequest(user_id=1, category=BookCategory.MYSTERY, max_results=3)
        response = RecommendationsStub(channel).Recommend(request, timeout=10)
    return {book.id for book in response.recommendations}


def test_the_tutorials_client_and_certificates_under_mutual_tls(stubs, tmp_path):
    # docs/tls.md: the tutorial's commands, with the one addition for the
    # client (a v3 extension) and the server's subjectAltName.
    sh("""
    openssl req -x509 -nodes -newkey rsa:2048 -keyout ca.key -out ca.pem -subj /O=me
    openssl req -nodes -newkey rsa:2048 -subj /CN=marketplace -keyout client.key -out client.csr
    openssl x509 -req -in client.csr -CA ca.pem -CAkey ca.key -set_serial 1 -out client.pem \
        -extfile <(printf 'subjectKeyIdentifier=hash')
    openssl req -nodes -newkey rsa:2048 -subj /CN=recommendations -keyout server.key -out server.csr
    openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -set_serial 2 -out server.pem \
        -extfile <(printf 'subjectAltName=DNS:recommendations,DNS:localhost')
    """, tmp_path)
    with Server(f"--tls-cert={tmp_path / 'server.pem'}", f"--tls-key={tmp_path / 'server.key'}",
                f"--tls-client-ca={tmp_path / 'ca.pem'}") as server:
        assert len(recommend(server.address, tmp_path)) == 3


def presented(address, certs):
    """The DER of the certificate the server presents to a new handshake."""
    context = ssl.create_default_context(cafile=str(certs / "ca.pem"))
    context.load_cert_chain(str(certs / "marketplace.pem"), str(certs / "marketplace.key"))
    context.set_alpn_protocols(["h2"])
    host, port = address.rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=10) as raw:
        with context.wrap_socket(raw, server_hostname="localhost") as tls:
            return tls.getpeercert(binary_form=True)


def der(pem_file):
    return ssl.PEM_cert_to_DER_cert(pem_file.read_text())


def test_certificates_renewed_by_gen_certs_reach_the_running_server(stubs, tmp_path):
    gen_certs = ROOT / "scripts" / "gen-certs.sh"
    certs = tmp_path / "certs"
    subprocess.run(["bash", str(gen_certs), str(certs)], check=True, capture_output=True)
    with Server(f"--tls-cert={certs / 'recommendations.pem'}", f"--tls-key={certs / 'recommendations.key'}",
                f"--tls-client-ca={certs / 'ca.pem'}", "--reload-interval=200ms") as server:
        before = der(certs / "recommendations.pem")
        assert presented(server.address, certs) == before

        subprocess.run(["bash", str(gen_certs), str(certs)], check=True, capture_output=True)
        after = der(certs / "recommendations.pem")
        assert after != before
        deadline = time.monotonic() + 10
        while presented(server.address, certs) != after:
            assert time.monotonic() < deadline, "the renewed certificate was never presented"
            time.sleep(0.1)

        assert len(recommend(server.address, certs, cert="marketplace.pem", key="marketplace.key")) == 3
        assert server.process.poll() is None
