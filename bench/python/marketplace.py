"""The tutorial's marketplace, for the benchmark suite's side-by-side run
against the Rust services (not part of the product).

As "Python Microservices With gRPC" writes it: Flask, one gRPC channel per
process made at import, one Recommend call per page, a Jinja template. The
template gives the same page as the Rust marketplace's homepage. The suite
runs it under gunicorn with four workers:
`gunicorn -w 4 -b 127.0.0.1:PORT marketplace:app`.
"""

import os

import grpc
from bookstore.recommendations.v1.recommendations_pb2 import (
    CATEGORY_MYSTERY,
    RecommendRequest,
)
from bookstore.recommendations.v1.recommendations_pb2_grpc import (
    RecommendationsServiceStub,
)
from flask import Flask, render_template

app = Flask(__name__)

recommendations_host = os.getenv("RECOMMENDATIONS_HOST", "localhost")
recommendations_port = os.getenv("RECOMMENDATIONS_PORT", "50051")
recommendations_channel = grpc.insecure_channel(
    f"{recommendations_host}:{recommendations_port}"
)
recommendations_client = RecommendationsServiceStub(recommendations_channel)


@app.route("/")
def render_homepage():
    recommendations_request = RecommendRequest(
        user_id=1, category=CATEGORY_MYSTERY, max_results=3
    )
    recommendations_response = recommendations_client.Recommend(
        recommendations_request
    )
    return render_template("home.html", books=recommendations_response.books)
