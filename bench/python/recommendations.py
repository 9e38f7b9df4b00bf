"""The tutorial's recommendations service, for the benchmark suite's
side-by-side run against the Rust services (not part of the product).

As "Python Microservices With gRPC" writes it: grpcio with a pool of ten
threads, books picked with random.sample. It serves our v1 contract from the
same catalog file as the Rust service, so that both marketplaces render the
same page. Run: python3 recommendations.py PORT CATALOG (the generated
`bookstore` stubs on PYTHONPATH).
"""

import csv
import random
import signal
import sys
from concurrent import futures

import grpc
from bookstore.recommendations.v1 import recommendations_pb2 as pb
from bookstore.recommendations.v1 import recommendations_pb2_grpc as pb_grpc

CATEGORIES = {
    "mystery": pb.CATEGORY_MYSTERY,
    "science_fiction": pb.CATEGORY_SCIENCE_FICTION,
    "self_help": pb.CATEGORY_SELF_HELP,
}


def load(path):
    books_by_category = {}
    with open(path, newline="", encoding="utf-8") as file:
        for row in csv.DictReader(file):
            category = CATEGORIES[row["category"]]
            book = pb.Book(
                id=int(row["id"]),
                title=row["title"],
                author=row["author"],
                category=category,
            )
            books_by_category.setdefault(category, []).append(book)
    return books_by_category


class RecommendationService(pb_grpc.RecommendationsServiceServicer):
    def __init__(self, books_by_category):
        self.books_by_category = books_by_category

    def Recommend(self, request, context):
        if request.category not in self.books_by_category:
            context.abort(grpc.StatusCode.NOT_FOUND, "Category not found")
        books_for_category = self.books_by_category[request.category]
        num_results = min(request.max_results, len(books_for_category))
        books_to_recommend = random.sample(books_for_category, num_results)
        return pb.RecommendResponse(books=books_to_recommend)


def serve(port, catalog):
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=10))
    pb_grpc.add_RecommendationsServiceServicer_to_server(
        RecommendationService(load(catalog)), server
    )
    server.add_insecure_port(f"127.0.0.1:{port}")
    server.start()
    # The suite stops its servers with SIGTERM and expects a clean exit.
    signal.signal(signal.SIGTERM, lambda *_: server.stop(0))
    server.wait_for_termination()


if __name__ == "__main__":
    serve(int(sys.argv[1]), sys.argv[2])
