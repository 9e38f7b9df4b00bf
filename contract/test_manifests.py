"""Contract test: kubernetes.yaml and docker-compose.yaml against the binaries.

Fails when the manifests disagree with what the binaries actually do: the
settings they read (asked from `--help`, never from a list kept here), the
ports they listen on, the probe paths their admin listeners serve (asked by
starting them), the drain timeout against the grace periods, and the images'
user against the securityContext. Run by .ci/run: `pytest contract/`, after
`cargo build --release -p recommendations -p marketplace`.
"""

import json
import os
import re
import signal
import subprocess
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
RELEASE = ROOT / "target" / "release"
SERVICES = ["recommendations", "marketplace"]
# Which setting holds which listener, per binary (names checked against --help below).
LISTEN = {"recommendations": "RECOMMENDATIONS_LISTEN", "marketplace": "MARKETPLACE_LISTEN"}
ADMIN = {"recommendations": "RECOMMENDATIONS_ADMIN_LISTEN", "marketplace": "MARKETPLACE_ADMIN_LISTEN"}
DRAIN = {"recommendations": "RECOMMENDATIONS_DRAIN_TIMEOUT", "marketplace": "MARKETPLACE_DRAIN_TIMEOUT"}


def binary(service):
    return RELEASE / service


def settings_of(service):
    """{env var: default or None}, as the binary's --help lists them."""
    help_text = subprocess.run(
        [binary(service), "--help"], capture_output=True, text=True, check=True, env={"PATH": os.environ["PATH"]}
    ).stdout
    settings, current = {}, None
    for line in help_text.splitlines():
        if re.match(r"^\s+(-\w, )?--[\w-]+", line):
            current = None
        if match := re.search(r"\[env: (\w+)=", line):
            current = match.group(1)
            settings[current] = None
        elif (match := re.search(r"\[default: (.+)\]", line)) and current:
            settings[current] = match.group(1)
    assert settings, f"no settings found in {service} --help"
    return settings


def seconds(duration):
    """'25s', '500ms', '1m' -> seconds."""
    match = re.fullmatch(r"(\d+)(ms|s|m)", str(duration).strip())
    assert match, f"unparsed duration {duration!r}"
    value, unit = int(match.group(1)), match.group(2)
    return {"ms": value / 1000, "s": value, "m": value * 60}[unit]


def port_of(address):
    return int(address.rsplit(":", 1)[1])


@pytest.fixture(scope="module")
def kubernetes():
    with open(ROOT / "kubernetes.yaml") as file:
        documents = [d for d in yaml.safe_load_all(file) if d]
    return {(d["kind"], d["metadata"]["name"]): d for d in documents}


@pytest.fixture(scope="module")
def compose():
    with open(ROOT / "docker-compose.yaml") as file:
        return yaml.safe_load(file)


def pod(kubernetes, service):
    return kubernetes[("Deployment", service)]["spec"]["template"]


def container(kubernetes, service):
    containers = pod(kubernetes, service)["spec"]["containers"]
    assert len(containers) == 1
    return containers[0]


def kubernetes_env(kubernetes, service):
    """Every variable the manifest sets for the service's container."""
    spec = container(kubernetes, service)
    env = {item["name"]: item.get("value") for item in spec.get("env", [])}
    for source in spec.get("envFrom", []):
        config_map = kubernetes[("ConfigMap", source["configMapRef"]["name"])]
        env.update(config_map.get("data", {}))
    return env


def effective(service, env):
    settings = settings_of(service)
    return {**settings, **env}


@pytest.mark.parametrize("service", SERVICES)
def test_every_variable_kubernetes_sets_is_read_by_the_binary(kubernetes, service):
    unknown = set(kubernetes_env(kubernetes, service)) - set(settings_of(service))
    assert not unknown, f"{service} does not read {sorted(unknown)}"


@pytest.mark.parametrize("service", SERVICES)
@pytest.mark.parametrize("file", ["docker-compose.yaml", "docker-compose.tls.yaml", "docker-compose.monitoring.yaml"])
def test_every_variable_compose_sets_is_read_by_the_binary(file, service):
    with open(ROOT / file) as handle:
        env = yaml.safe_load(handle)["services"][service].get("environment", {})
    unknown = set(env) - set(settings_of(service))
    assert not unknown, f"{file}: {service} does not read {sorted(unknown)}"


@pytest.mark.parametrize("service", SERVICES)
def test_container_ports_are_the_ports_the_binary_listens_on(kubernetes, service):
    settings = effective(service, kubernetes_env(kubernetes, service))
    ports = {p["name"]: p["containerPort"] for p in container(kubernetes, service)["ports"]}
    main = "grpc" if service == "recommendations" else "http"

    assert ports[main] == port_of(settings[LISTEN[service]])
    assert ports["admin"] == port_of(settings[ADMIN[service]])
    annotations = pod(kubernetes, service)["metadata"]["annotations"]
    assert int(annotations["prometheus.io/port"]) == ports["admin"]


@pytest.mark.parametrize("service", SERVICES)
def test_compose_publishes_the_ports_the_binary_listens_on(compose, service):
    settings = effective(service, compose["services"][service].get("environment", {}))
    published = [int(str(p).rsplit(":", 1)[1]) for p in compose["services"][service]["ports"]]

    assert published == [port_of(settings[LISTEN[service]])]


def test_services_point_at_named_container_ports(kubernetes):
    for service in SERVICES:
        names = {p["name"] for p in container(kubernetes, service)["ports"]}
        for port in kubernetes[("Service", service)]["spec"]["ports"]:
            assert port["targetPort"] in names, f"Service {service} targets {port['targetPort']}"
    headless = kubernetes[("Service", "recommendations")]["spec"]
    assert headless["clusterIP"] == "None"
    assert headless["ports"][0]["name"] == "grpc"


def test_marketplace_reaches_recommendations_through_its_service(kubernetes):
    env = kubernetes_env(kubernetes, "marketplace")
    host = env["RECOMMENDATIONS_HOST"].split(".")[0]
    settings = effective("recommendations", kubernetes_env(kubernetes, "recommendations"))

    assert ("Service", host) in kubernetes
    assert int(env["RECOMMENDATIONS_PORT"]) == port_of(settings["RECOMMENDATIONS_LISTEN"])


@pytest.mark.parametrize("service", SERVICES)
def test_grace_periods_outlast_the_drain(kubernetes, compose, service):
    drain = seconds(effective(service, kubernetes_env(kubernetes, service))[DRAIN[service]])
    spec = pod(kubernetes, service)["spec"]
    pause = container(kubernetes, service)["lifecycle"]["preStop"]["sleep"]["seconds"]

    assert spec["terminationGracePeriodSeconds"] > pause + drain
    compose_drain = seconds(effective(service, compose["services"][service].get("environment", {}))[DRAIN[service]])
    assert seconds(compose["services"][service]["stop_grace_period"]) > compose_drain


@pytest.mark.parametrize("service", SERVICES)
def test_the_pod_runs_as_the_images_user(kubernetes, service):
    dockerfile = (ROOT / f"Dockerfile.{service}").read_text()
    uid, gid = map(int, re.findall(r"^USER (\d+):(\d+)$", dockerfile, re.M)[-1])

    for context in [pod(kubernetes, service)["spec"]["securityContext"], container(kubernetes, service)["securityContext"]]:
        assert (context["runAsUser"], context["runAsGroup"]) == (uid, gid)
        assert context["runAsNonRoot"] is True


@pytest.mark.parametrize("service", SERVICES)
def test_kubernetes_and_compose_run_the_same_image(kubernetes, compose, service):
    assert container(kubernetes, service)["image"] == compose["services"][service]["image"]


class Running:
    """The binary on free loopback ports; stopped with SIGTERM."""

    def __init__(self, service, *args):
        self.process = subprocess.Popen(
            [binary(service), "--listen=127.0.0.1:0", "--admin-listen=127.0.0.1:0", "--log-format=json", *args],
            stdout=subprocess.PIPE,
            text=True,
            start_new_session=True,
        )
        for line in self.process.stdout:
            event = json.loads(line)
            if event.get("message") == "serving":
                self.serving = event
                return
        raise AssertionError(f"{service} exited before serving")

    def __enter__(self):
        return self

    def __exit__(self, *_):
        self.process.send_signal(signal.SIGTERM)
        try:
            assert self.process.wait(timeout=30) == 0
        finally:
            if self.process.poll() is None:
                os.killpg(self.process.pid, signal.SIGKILL)


def http_status(address, path):
    import urllib.error
    import urllib.request

    try:
        with urllib.request.urlopen(f"http://{address}{path}", timeout=10) as response:
            return response.status
    except urllib.error.HTTPError as error:
        return error.code


@pytest.mark.parametrize("service", SERVICES)
def test_http_probes_are_served_by_the_admin_listener(kubernetes, service):
    spec = container(kubernetes, service)
    ports = {p["name"]: p["containerPort"] for p in spec["ports"]}
    probes = [spec[kind] for kind in ("startupProbe", "readinessProbe", "livenessProbe")]
    admin_port = port_of(effective(service, kubernetes_env(kubernetes, service))[ADMIN[service]])

    with Running(service) as running:
        for probe in probes:
            if "httpGet" in probe:
                port = probe["httpGet"]["port"]
                assert ports.get(port, port) == admin_port
                assert http_status(running.serving["admin"], probe["httpGet"]["path"]) == 200
            else:
                listen_port = port_of(effective(service, kubernetes_env(kubernetes, service))[LISTEN[service]])
                assert probe["grpc"]["port"] == listen_port
                # The gRPC probe is grpc.health.v1 Check of "": the binary's own healthcheck does it.
                check = subprocess.run([binary(service), f"--listen={running.serving['grpc']}", "healthcheck"])
                assert check.returncode == 0


@pytest.mark.parametrize("service", SERVICES)
def test_compose_healthchecks_are_the_binaries_subcommand(compose, service):
    assert compose["services"][service]["healthcheck"]["test"] == ["CMD", f"/usr/local/bin/{service}", "healthcheck"]
    dockerfile = (ROOT / f"Dockerfile.{service}").read_text()
    assert f'COPY --from=builder /build/target/production/{service} /usr/local/bin/{service}' in dockerfile


@pytest.fixture(scope="module")
def pod_monitor():
    with open(ROOT / "monitoring" / "podmonitor.yaml") as file:
        return yaml.safe_load(file)


@pytest.mark.parametrize("service", SERVICES)
def test_the_pod_monitor_scrapes_every_pods_metrics(kubernetes, pod_monitor, service):
    assert pod_monitor["kind"] == "PodMonitor"
    assert pod_monitor["metadata"]["namespace"] == kubernetes[("Deployment", service)]["metadata"]["namespace"]
    labels = pod(kubernetes, service)["metadata"]["labels"]
    spec = pod_monitor["spec"]
    # It selects the service's pods, and names their job after the service,
    # as the alerting rules group by.
    assert spec["selector"]["matchLabels"].items() <= labels.items()
    assert labels[spec["jobLabel"]] == service
    ports = {p["name"]: p["containerPort"] for p in container(kubernetes, service)["ports"]}
    admin_port = port_of(effective(service, kubernetes_env(kubernetes, service))[ADMIN[service]])
    (endpoint,) = spec["podMetricsEndpoints"]
    assert ports[endpoint["port"]] == admin_port
    # And the binary serves its metrics there.
    with Running(service) as running:
        assert http_status(running.serving["admin"], endpoint["path"]) == 200


@pytest.fixture(scope="module")
def monitoring_override():
    with open(ROOT / "docker-compose.monitoring.yaml") as file:
        return yaml.safe_load(file)


def mounts(compose_service):
    """{path in the container: path in the repository} of its bind mounts."""
    pairs = (volume.split(":")[:2] for volume in compose_service.get("volumes", []))
    return {target: ROOT / source for source, target in pairs}


def test_the_monitoring_override_mounts_files_that_exist(monitoring_override):
    for name, spec in monitoring_override["services"].items():
        for target, source in mounts(spec).items():
            assert source.exists(), f"{name} mounts {source}, which does not exist"


@pytest.mark.parametrize("service", SERVICES)
def test_the_overrides_prometheus_scrapes_each_services_admin_port(compose, monitoring_override, service):
    (config_flag,) = [a for a in monitoring_override["services"]["prometheus"]["command"] if a.startswith("--config.file=")]
    config_path = config_flag.split("=", 1)[1]
    mounted = {t: s for t, s in mounts(monitoring_override["services"]["prometheus"]).items() if config_path.startswith(t)}
    ((target, source),) = mounted.items()
    config_file = source / Path(config_path).relative_to(target)
    assert config_file == ROOT / "monitoring" / "prometheus.yaml"
    config = yaml.safe_load(config_file.read_text())
    (job,) = [j for j in config["scrape_configs"] if j["job_name"] == service]
    admin_port = port_of(effective(service, compose["services"][service].get("environment", {}))[ADMIN[service]])
    # The compose service name and the port the binary's admin listener takes.
    assert job["static_configs"] == [{"targets": [f"{service}:{admin_port}"]}]
    # The rules it loads are the tested ones.
    assert config["rule_files"] == ["alerts.yaml"]


@pytest.mark.parametrize("service", SERVICES)
def test_the_services_send_their_spans_to_the_overrides_collector(monitoring_override, service):
    from urllib.parse import urlparse

    environment = monitoring_override["services"][service]["environment"]
    endpoint = urlparse(environment["OTEL_EXPORTER_OTLP_ENDPOINT"])
    assert endpoint.hostname in monitoring_override["services"], endpoint
    # The collector's port of the protocol the services are told to speak
    # (the specification's default, and theirs, is http/protobuf).
    protocol = environment.get("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf")
    assert endpoint.port == {"grpc": 4317, "http/protobuf": 4318}[protocol], (endpoint, protocol)


def test_grafana_provisions_the_dashboard_and_both_data_sources(monitoring_override):
    grafana = monitoring_override["services"]["grafana"]
    mounted = mounts(grafana)
    provisioning = mounted["/etc/grafana/provisioning"]
    (provider,) = yaml.safe_load((provisioning / "dashboards" / "bookstore.yaml").read_text())["providers"]
    dashboards = mounted[provider["options"]["path"]]
    assert (dashboards / "bookstore.json").is_file()
    home = grafana["environment"]["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"]
    assert Path(home).parent.as_posix() == provider["options"]["path"] and (dashboards / Path(home).name).is_file()
    sources = yaml.safe_load((provisioning / "datasources" / "bookstore.yaml").read_text())["datasources"]
    from urllib.parse import urlparse

    assert {s["type"] for s in sources} == {"prometheus", "jaeger"}
    for source in sources:
        assert urlparse(source["url"]).hostname in monitoring_override["services"], source


def test_every_alert_has_a_runbook_section():
    """Each alert's runbook annotation names a heading of docs/monitoring.md, as GitHub anchors it."""
    with open(ROOT / "monitoring" / "alerts.yaml") as file:
        rules = [r for g in yaml.safe_load(file)["groups"] for r in g["rules"] if "alert" in r]
    headings = re.findall(r"^#+ (.+)$", (ROOT / "docs" / "monitoring.md").read_text(), re.MULTILINE)
    anchors = {re.sub(r"[^\w\- ]", "", h).strip().lower().replace(" ", "-") for h in headings}
    for rule in rules:
        page, _, anchor = rule["annotations"]["runbook"].partition("#")
        assert page == "docs/monitoring.md", rule["alert"]
        assert anchor == rule["alert"].lower(), f"{rule['alert']} links #{anchor}"
        assert anchor in anchors, f"{rule['alert']}: docs/monitoring.md has no section #{anchor}"


def volume_mounts(kubernetes, service):
    """{mount path: volume} of the service's container."""
    volumes = {v["name"]: v for v in pod(kubernetes, service)["spec"].get("volumes", [])}
    return {m["mountPath"]: (m, volumes[m["name"]]) for m in container(kubernetes, service).get("volumeMounts", [])}


@pytest.mark.parametrize("service", SERVICES)
def test_certificates_and_the_catalog_are_mounted_so_that_updates_reach_the_pods(kubernetes, service):
    # The paths kubernetes.yaml's header tells to set, for TLS and the catalog.
    header = (ROOT / "kubernetes.yaml").read_text().split("\n---", 1)[0]
    wanted = {"/etc/bookstore/tls": "secret"}
    if service == "recommendations":
        wanted["/etc/bookstore/catalog"] = "configMap"
    mounted = volume_mounts(kubernetes, service)
    for path, kind in wanted.items():
        assert path + "/" in header, f"the header no longer names {path}"
        mount, volume = mounted[path]
        # A subPath mount is never updated by the kubelet.
        assert "subPath" not in mount and "subPathExpr" not in mount, mount
        assert mount.get("readOnly") is True, mount
        assert volume[kind].get("optional") is True, f"{path}: the pod must start without it"
    for mount, _ in mounted.values():
        assert "subPath" not in mount and "subPathExpr" not in mount, mount


def test_the_tls_override_mounts_the_certificates_directory():
    with open(ROOT / "docker-compose.tls.yaml") as file:
        override = yaml.safe_load(file)
    for service in SERVICES:
        environment = override["services"][service]["environment"]
        files = {value for name, value in environment.items() if name.endswith(("_CERT", "_KEY", "_CA"))}
        # SOURCE:TARGET[:MODE], the source perhaps `${VARIABLE:-default}`.
        targets = [re.fullmatch(r"(.+?):(/[^:]*)(:\w+)?", volume).group(2)
                   for volume in override["services"][service]["volumes"]]
        for file in files:
            # A directory, not each file: a file bind mount keeps the old inode
            # when the file is replaced by a rename.
            assert str(Path(file).parent) in targets, f"{service}: {file} is not under a mounted directory"
            assert file not in targets, f"{service} mounts {file} itself"
