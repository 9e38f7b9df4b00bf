"""The monitoring kit against a real Prometheus (Debian's binary) and the real
release binaries. Run by .ci/run: `pytest monitoring/`.

A recommendations replica, a marketplace in front of it (over mutual TLS, with
certificates from scripts/gen-certs.sh) and of a replica that refuses
connections, and a second marketplace whose only replica never answers are
scraped every second by Prometheus, loaded with monitoring/
prometheus.yaml (its targets pointed here) and alerts.yaml. A short load then
makes every kind of traffic the alerts are about: pages, degraded pages, 503s,
failing and ejected replicas, unimplemented and oversized calls. Then every
alert expression (without its threshold) and every dashboard query is
evaluated through Prometheus' HTTP API: each must return data, and every
metric it names must exist, so that none refers to a metric or a label value
that the binaries do not produce.

Binaries: RECOMMENDATIONS_BIN and MARKETPLACE_BIN (default: the release
builds); PROMETHEUS_BIN (default: prometheus on PATH).
"""

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import grpc
import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
MONITORING = ROOT / "monitoring"
RELEASE = ROOT / "target" / "release"
RECOMMENDATIONS = os.environ.get("RECOMMENDATIONS_BIN", str(RELEASE / "recommendations"))
MARKETPLACE = os.environ.get("MARKETPLACE_BIN", str(RELEASE / "marketplace"))
PROMETHEUS = os.environ.get("PROMETHEUS_BIN") or shutil.which("prometheus") or "prometheus"

# What the dashboard's Grafana variables stand for here.
GRAFANA_VARIABLES = {"$__rate_interval": "1m", "$__interval": "1s"}
# A metric name right before its label matchers or its range.
SELECTOR = re.compile(r"([a-zA-Z_:][a-zA-Z0-9_:]*)\s*[{\[]")
# An alert's condition: an expression, then a comparison with a number.
THRESHOLD = re.compile(r"^(?P<expr>.*?)\s*(?:>=|<=|==|!=|>|<)\s*[0-9.eE+-]+\s*$", re.DOTALL)


def free_port(host="127.0.0.1"):
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


class Process:
    """A binary in its own process group; stopped at exit, pass or fail."""

    def __init__(self, args, log):
        self.log = open(log, "w")
        self.drain = None
        self.process = subprocess.Popen(
            args, stdout=subprocess.PIPE, stderr=self.log, text=True, start_new_session=True
        )

    def serving(self):
        """The binary's "serving" log event (its listeners' addresses)."""
        for line in self.process.stdout:
            self.log.write(line)
            event = json.loads(line)
            if event.get("message") == "serving":
                # Keep draining stdout, so that the binary never blocks on it.
                self.drain = threading.Thread(target=shutil.copyfileobj, args=(self.process.stdout, self.log), daemon=True)
                self.drain.start()
                return event
        raise AssertionError(f"{self.process.args[0]} exited before serving (log: {self.log.name})")

    def stop(self):
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()
        if self.drain:
            self.drain.join()
        self.log.close()


def service(binary, log, *args):
    process = Process([binary, "--listen=127.0.0.1:0", "--admin-listen=127.0.0.1:0", "--log-format=json", *args], log)
    return process, process.serving()


# Straight to the processes here, whatever proxy the environment names.
OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def get(url, timeout=10):
    """(status, body) of a GET."""
    try:
        with OPENER.open(url, timeout=timeout) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()


class Prometheus:
    def __init__(self, url):
        self.url = url

    def api(self, path, **params):
        query = urllib.parse.urlencode(params)
        status, body = get(f"{self.url}/api/v1/{path}?{query}")
        answer = json.loads(body)
        assert status == 200 and answer["status"] == "success", f"{path} {params}: {body}"
        return answer["data"]

    def query(self, expr):
        return self.api("query", query=expr)["result"]


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    """The services, a blackhole replica, and Prometheus scraping them."""
    tmp = tmp_path_factory.mktemp("stack")
    started = []
    blackhole = socket.socket()
    certs = tmp / "certs"
    subprocess.run(["bash", str(ROOT / "scripts" / "gen-certs.sh"), str(certs)], check=True, stdout=subprocess.DEVNULL)
    try:
        recommendations, r = service(
            RECOMMENDATIONS, tmp / "recommendations.log",
            f"--tls-cert={certs / 'recommendations.pem'}", f"--tls-key={certs / 'recommendations.key'}",
            f"--tls-client-ca={certs / 'ca.pem'}",
        )
        started.append(recommendations)
        grpc_port = int(r["grpc"].rsplit(":", 1)[1])
        # Two replicas behind one name: the real one, and 127.0.0.2 on the
        # same port, where nothing listens.
        hosts = tmp / "hosts"
        hosts.write_text("127.0.0.1 recommendations\n127.0.0.2 recommendations\n")
        healthy, m = service(
            MARKETPLACE, tmp / "marketplace.log",
            f"--hosts-file={hosts}", "--recommendations-host=recommendations",
            f"--recommendations-port={grpc_port}", "--resolve-interval=1s",
            f"--recommendations-tls-ca={certs / 'ca.pem'}",
            f"--recommendations-tls-client-cert={certs / 'marketplace.pem'}",
            f"--recommendations-tls-client-key={certs / 'marketplace.key'}",
        )
        started.append(healthy)
        # A replica that accepts connections and never says a word.
        blackhole.bind(("127.0.0.1", 0))
        blackhole.listen(64)
        stuck, s = service(
            MARKETPLACE, tmp / "marketplace-stuck.log",
            "--recommendations-host=127.0.0.1", f"--recommendations-port={blackhole.getsockname()[1]}",
            "--rpc-timeout=300ms", "--http-max-requests-in-flight=1",
        )
        started.append(stuck)

        # monitoring/prometheus.yaml, its targets pointed at these processes.
        config = yaml.safe_load((MONITORING / "prometheus.yaml").read_text())
        targets = {"recommendations": [r["admin"]], "marketplace": [m["admin"], s["admin"]]}
        jobs = {job["job_name"] for job in config["scrape_configs"]}
        assert jobs == set(targets), f"prometheus.yaml scrapes {jobs}"
        for job in config["scrape_configs"]:
            job["static_configs"] = [{"targets": targets[job["job_name"]]}]
        config["global"] = {"scrape_interval": "1s", "evaluation_interval": "1s"}
        config["rule_files"] = [str(MONITORING / rules) for rules in config["rule_files"]]
        (tmp / "prometheus.yaml").write_text(yaml.safe_dump(config))
        port = free_port()
        prometheus = Process(
            [PROMETHEUS, f"--config.file={tmp / 'prometheus.yaml'}", f"--storage.tsdb.path={tmp / 'data'}",
             f"--web.listen-address=127.0.0.1:{port}"],
            tmp / "prometheus.log",
        )
        started.append(prometheus)
        yield {
            "prometheus": Prometheus(f"http://127.0.0.1:{port}"),
            "grpc": r["grpc"],
            "certs": certs,
            "pages": f"http://{m['http']}",
            "stuck": f"http://{s['http']}",
        }
    finally:
        for process in reversed(started):
            process.stop()
        blackhole.close()


def wait_for(what, condition, timeout=60):
    deadline = time.monotonic() + timeout
    while True:
        try:
            value = condition()
        except urllib.error.URLError:  # not listening yet
            value = None
        if value:
            return value
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.5)


def load(stack):
    """The traffic: pages for 8 s on 4 connections, and each kind of failure."""
    # Calls recommendations does not serve: an unimplemented method, and a
    # request message over --max-message-bytes; and a client without a
    # certificate, whose handshake is refused.
    certs = stack["certs"]
    read = lambda name: (certs / name).read_bytes()  # noqa: E731
    name = [("grpc.ssl_target_name_override", "recommendations")]
    anonymous = grpc.ssl_channel_credentials(read("ca.pem"))
    with grpc.secure_channel(stack["grpc"], anonymous, options=name) as channel:
        with pytest.raises(grpc.RpcError) as error:
            channel.unary_unary("/grpc.health.v1.Health/Check")(b"", timeout=10)
        assert error.value.code() == grpc.StatusCode.UNAVAILABLE
    identity = grpc.ssl_channel_credentials(read("ca.pem"), read("marketplace.key"), read("marketplace.pem"))
    with grpc.secure_channel(stack["grpc"], identity, options=name) as channel:
        codes = []
        for method, request in [
            ("/bookstore.recommendations.v1.RecommendationsService/Nope", b""),
            ("/bookstore.recommendations.v1.RecommendationsService/Recommend", b"\x0a" * 100_000),
        ]:
            with pytest.raises(grpc.RpcError) as error:
                channel.unary_unary(method)(request, timeout=10)
            codes.append(error.value.code())
    assert codes == [grpc.StatusCode.UNIMPLEMENTED, grpc.StatusCode.RESOURCE_EXHAUSTED]

    # Degraded pages (the call misses its deadline) and 503s (a second page
    # while the first holds the only request slot), on the stuck marketplace.
    def overlapping_pages():
        with ThreadPoolExecutor(2) as pool:
            first = pool.submit(get, f"{stack['stuck']}/")
            time.sleep(0.1)
            second = pool.submit(get, f"{stack['stuck']}/category/mystery")
            return first.result()[0], second.result()[0]

    statuses = set()
    for _ in range(20):
        statuses.update(overlapping_pages())
        if {200, 503} <= statuses:
            break
    assert {200, 503} <= statuses, f"the stuck marketplace answered only {statuses}"

    # Healthy pages, on every route, for long enough to be scraped a few times.
    paths = ["/", "/category/mystery", "/category/mystery/books", "/no/such/page"]
    stop = time.monotonic() + 8

    def pages(worker):
        seen = 0
        while time.monotonic() < stop:
            status, _ = get(stack["pages"] + paths[(worker + seen) % len(paths)])
            assert status in (200, 404), status
            seen += 1
        return seen

    with ThreadPoolExecutor(4) as pool:
        assert sum(pool.map(pages, range(4))) > 100


@pytest.fixture(scope="module")
def scraped(stack):
    prometheus = stack["prometheus"]
    wait_for("all three targets up", lambda: len(prometheus.query("up == 1")) == 3)
    load(stack)
    # Three more scrapes and rule evaluations after the load.
    time.sleep(3)
    return prometheus


def alert_rules():
    rules = yaml.safe_load((MONITORING / "alerts.yaml").read_text())
    return [rule for group in rules["groups"] for rule in group["rules"] if "alert" in rule]


def dashboard_queries():
    dashboard = json.loads((MONITORING / "grafana" / "bookstore.json").read_text())
    panels = [p for p in dashboard["panels"] if p["type"] != "row"]
    return [(panel["title"], target["expr"]) for panel in panels for target in panel["targets"]]


def assert_returns_data(prometheus, what, expr):
    names = set(SELECTOR.findall(expr))
    assert names, f"{what}: no metric selector in {expr}"
    for name in sorted(names):
        assert prometheus.query(f'count({{__name__="{name}"}})'), f"{what}: no series of {name}"
    result = prometheus.query(expr)
    assert result, f"{what}: no data for\n{expr}"


@pytest.mark.parametrize("rule", alert_rules(), ids=lambda rule: rule["alert"])
def test_every_alert_expression_returns_data(scraped, rule):
    condition = THRESHOLD.match(rule["expr"].strip())
    assert condition, f"{rule['alert']}: its expression does not end with a threshold"
    assert_returns_data(scraped, rule["alert"], condition["expr"])


@pytest.mark.parametrize("query", dashboard_queries(), ids=lambda query: query[0])
def test_every_dashboard_query_returns_data(scraped, query):
    title, expr = query
    for variable, value in GRAFANA_VARIABLES.items():
        expr = expr.replace(variable, value)
    assert "$" not in expr, f"{title}: a Grafana variable this test does not know: {expr}"
    assert_returns_data(scraped, title, expr)


def test_prometheus_loaded_and_evaluates_every_rule(scraped):
    groups = scraped.api("rules")["groups"]
    loaded = {rule["name"]: rule for group in groups for rule in group["rules"]}
    assert set(loaded) == {rule["alert"] for rule in alert_rules()}
    for name, rule in loaded.items():
        assert rule["health"] == "ok", f"{name}: {rule.get('lastError')}"


def test_the_dashboard_is_well_formed():
    dashboard = json.loads((MONITORING / "grafana" / "bookstore.json").read_text())
    ids = [panel["id"] for panel in dashboard["panels"]]
    assert len(ids) == len(set(ids)), "panel ids repeat"
    occupied = set()
    for panel in dashboard["panels"]:
        box = panel["gridPos"]
        assert box["x"] + box["w"] <= 24, f"{panel['title']} is wider than the grid"
        cells = {(x, y) for x in range(box["x"], box["x"] + box["w"]) for y in range(box["y"], box["y"] + box["h"])}
        assert not cells & occupied, f"{panel['title']} overlaps another panel"
        occupied |= cells
        if panel["type"] != "row":
            # Every query goes to the data source the user picks.
            assert panel["datasource"]["uid"] == "${datasource}", panel["title"]
            assert all(target["datasource"]["uid"] == "${datasource}" for target in panel["targets"])
    assert [v["name"] for v in dashboard["templating"]["list"]] == ["datasource"]
