"""Interop: Python clients generated from the tutorial's proto, as the
tutorial generates them (grpcio-tools), against the Rust recommendations
binary. Run by .ci/run: `pytest interop/`.

The binary path comes from RECOMMENDATIONS_BIN (default: the release build).
"""

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import grpc
import pytest
from grpc_tools import protoc

ROOT = Path(__file__).resolve().parent.parent
PROTOS = ROOT / "protobufs"
BINARY = Path(os.environ.get("RECOMMENDATIONS_BIN", ROOT / "target" / "release" / "recommendations"))


@pytest.fixture(scope="module")
def stubs(tmp_path_factory):
    """Generates Python code exactly as the tutorial does."""
    out = tmp_path_factory.mktemp("generated")
    for proto in ["recommendations.proto", "bookstore/recommendations/v1/recommendations.proto"]:
        code = protoc.main(
            ["grpc_tools.protoc", f"-I{PROTOS}", f"--python_out={out}", f"--grpc_python_out={out}", str(PROTOS / proto)]
        )
        assert code == 0, f"protoc failed on {proto}"
    sys.path.insert(0, str(out))
    yield
    sys.path.remove(str(out))


@pytest.fixture(scope="module")
def server():
    """The real binary on a free port; stopped with SIGTERM, which must exit 0."""
    process = subprocess.Popen(
        [str(BINARY), "--listen=127.0.0.1:0", "--admin-listen=127.0.0.1:0", "--log-format=json"],
        stdout=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        address = None
        for line in process.stdout:
            event = json.loads(line)
            if event.get("message") == "serving":
                address = event["grpc"]
                break
        assert address, "the server exited before serving"
        yield address
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=30) == 0
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


def test_the_tutorials_client_gets_three_mystery_books(stubs, server):
    from recommendations_pb2 import BookCategory, RecommendationRequest
    from recommendations_pb2_grpc import RecommendationsStub

    with grpc.insecure_channel(server) as channel:
        client = RecommendationsStub(channel)
        request = RecommendationRequest(user_id=1, category=BookCategory.MYSTERY, max_results=3)
        response = client.Recommend(request)

    ids = {book.id for book in response.recommendations}
    assert len(ids) == 3
    assert all(book.title for book in response.recommendations)


def test_the_tutorials_client_sees_not_found_for_an_unknown_category(stubs, server):
    from recommendations_pb2 import RecommendationRequest
    from recommendations_pb2_grpc import RecommendationsStub

    with grpc.insecure_channel(server) as channel:
        client = RecommendationsStub(channel)
        with pytest.raises(grpc.RpcError) as error:
            client.Recommend(RecommendationRequest(user_id=1, category=9, max_results=3))

    assert error.value.code() == grpc.StatusCode.NOT_FOUND
    assert error.value.details() == "Category not found"


def test_a_python_v1_client_recommends_and_lists(stubs, server):
    from bookstore.recommendations.v1 import recommendations_pb2 as v1
    from bookstore.recommendations.v1 import recommendations_pb2_grpc as v1_grpc

    with grpc.insecure_channel(server) as channel:
        client = v1_grpc.RecommendationsServiceStub(channel)
        books = client.Recommend(v1.RecommendRequest(category=v1.CATEGORY_SCIENCE_FICTION)).books
        listed = [b for batch in client.ListBooks(v1.ListBooksRequest(category=v1.CATEGORY_SELF_HELP)) for b in batch.books]
        with pytest.raises(grpc.RpcError) as error:
            client.Recommend(v1.RecommendRequest(category=v1.CATEGORY_UNSPECIFIED))

    assert len(books) == 3 and all(b.category == v1.CATEGORY_SCIENCE_FICTION for b in books)
    assert len(listed) >= 20 and all(b.category == v1.CATEGORY_SELF_HELP for b in listed)
    assert error.value.code() == grpc.StatusCode.INVALID_ARGUMENT


def grpcurl(server, *args, data=None):
    """Runs grpcurl against the server with no proto files (reflection only)."""
    flags = ["-d", data] if data else []
    result = subprocess.run(["grpcurl", "-plaintext", *flags, server, *args], capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_grpcurl_lists_both_contracts_and_health_by_reflection(server):
    services = grpcurl(server, "list").split()

    for name in ["Recommendations", "bookstore.recommendations.v1.RecommendationsService", "grpc.health.v1.Health"]:
        assert name in services


def test_grpcurl_describes_the_legacy_service(server):
    description = grpcurl(server, "describe", "Recommendations")

    assert "rpc Recommend ( .RecommendationRequest ) returns ( .RecommendationResponse );" in description


def test_grpcurl_gets_three_distinct_mystery_books_on_both_contracts(server):
    legacy = json.loads(grpcurl(server, "Recommendations/Recommend", data='{"user_id": 1, "category": "MYSTERY", "max_results": 3}'))
    v1 = json.loads(
        grpcurl(
            server,
            "bookstore.recommendations.v1.RecommendationsService/Recommend",
            data='{"user_id": 1, "category": "CATEGORY_MYSTERY", "max_results": 3}',
        )
    )

    assert len({book["id"] for book in legacy["recommendations"]}) == 3
    assert len({book["id"] for book in v1["books"]}) == 3
    assert all(book["category"] == "CATEGORY_MYSTERY" for book in v1["books"])


def test_grpcurl_sees_serving_on_health(server):
    assert json.loads(grpcurl(server, "grpc.health.v1.Health/Check")) == {"status": "SERVING"}
