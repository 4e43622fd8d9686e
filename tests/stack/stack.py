#!/usr/bin/env python3
"""The compose stack, natively, driven through nginx with the seal CLI (scripts/stack.sh runs
this after starting PostgreSQL, Garage and tansu).

From docker-compose.yml it takes every sealpost service (media, chat-1, chat-2, worker) with its
environment, and runs each as a `sealpost serve` process; the only changes are the ones a
machine without Docker needs: host names become 127.0.0.1 ports (postgres, minio → Garage,
kafka → tansu, each service's own), the S3 credentials are Garage's, nginx's fixed address is
127.0.0.1, and each node gets a data directory of its own. Readiness is the image's own health
check (`sealpost ready`). nginx runs deploy/nginx/sealpost.conf, Prometheus
deploy/prometheus/prometheus.yml (Docker DNS discovery becomes the same names as static
targets) with its alert rules.

Then the README's walkthrough, through nginx only: Ada and Ben register; Ben listens on one
chat gateway while Ada sends a photo through the other (least_conn puts the second connection
there; the gateways' metrics prove it); Ben saves it and answers delivered and read; a ranged
download of it is served from nginx's cache; /metrics is refused. Every node's /metrics passes
`promtool check metrics` and exports only metrics docs/operations.md lists; Prometheus scrapes
every node, loads the alerts, and runs every query of the Grafana dashboard, each of which
names only listed metrics. No node may log an error.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
NGINX_ADDRESS = "172.28.0.10"


class Failed(Exception):
    pass


def check(condition: bool, message: str) -> None:
    if not condition:
        raise Failed(message)


def say(message: str) -> None:
    print(f"stack: {message}", flush=True)


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def get(url: str, timeout: float = 10) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()
    except (urllib.error.URLError, ConnectionError, TimeoutError) as e:
        return 0, str(e)


def wait_until(what: str, probe, timeout: float = 60, every: float = 0.5):
    deadline = time.monotonic() + timeout
    while True:
        result = probe()
        if result:
            return result
        if time.monotonic() > deadline:
            raise Failed(f"timed out waiting for {what}")
        time.sleep(every)


class Stack:
    def __init__(self, args: argparse.Namespace):
        self.args = args
        self.work = Path(args.work)
        self.processes: list[tuple[str, subprocess.Popen]] = []
        self.compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
        self.nodes = {name: service for name, service in self.compose["services"].items()
                      if str(service.get("image", "")).startswith("sealpost:")
                      and "SEALPOST__ROLE" in service.get("environment", {})}
        check(set(self.nodes) == {"media", "chat-1", "chat-2", "worker"},
              f"compose's sealpost services changed: {sorted(self.nodes)}")
        self.ports = {name: free_port() for name in self.nodes}
        self.ports["nginx"] = free_port()
        self.hosts = {
            "postgres:5432": f"127.0.0.1:{args.pg_port}",
            "minio:9000": f"127.0.0.1:{args.s3_port}",
            "kafka:9092": args.kafka,
            **{f"{name}:8080": f"127.0.0.1:{port}" for name, port in self.ports.items()},
        }
        self.base = f"http://127.0.0.1:{self.ports['nginx']}"

    # -- processes --------------------------------------------------------------------------

    def spawn(self, name: str, command: list[str], env: dict[str, str] | None = None) -> None:
        log = open(self.work / f"{name}.log", "w")
        process = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT,
                                   stdin=subprocess.DEVNULL, start_new_session=True)
        self.processes.append((name, process))

    def stop(self) -> None:
        for name, process in reversed(self.processes):
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for name, process in self.processes:
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()

    def log(self, name: str) -> str:
        path = self.work / f"{name}.log"
        return path.read_text(errors="replace") if path.exists() else ""

    # -- the nodes ---------------------------------------------------------------------------

    def node_env(self, name: str) -> dict[str, str]:
        env = {k: str(v) for k, v in os.environ.items() if not k.startswith("SEALPOST__")}
        for key, value in self.nodes[name]["environment"].items():
            value = str(value)
            for host, local in self.hosts.items():
                value = value.replace(host, local)
            env[key] = value.replace(NGINX_ADDRESS, "127.0.0.1")
        # Garage's credentials instead of MinIO's.
        env["AWS_ACCESS_KEY_ID"] = os.environ["AWS_ACCESS_KEY_ID"]
        env["AWS_SECRET_ACCESS_KEY"] = os.environ["AWS_SECRET_ACCESS_KEY"]
        # What the image sets (Dockerfile ENV), with this node's own port and data directory.
        env["SEALPOST__LISTEN"] = f"127.0.0.1:{self.ports[name]}"
        env["SEALPOST__DATA_DIR"] = str(self.work / name)
        env["SEALPOST__LOG_FORMAT"] = "json"
        unmapped = [k for k, v in env.items()
                    if k.startswith("SEALPOST__") and re.search(r"//(postgres|minio|kafka)\b", v)]
        check(not unmapped, f"{name}: hosts left unmapped in {unmapped}")
        return env

    def start_nodes(self) -> None:
        for name in self.nodes:
            (self.work / name).mkdir()
            self.spawn(name, [self.args.sealpost, "serve"], self.node_env(name))
        for name in self.nodes:
            def ready(name=name):
                done = subprocess.run([self.args.sealpost, "ready"], env=self.node_env(name),
                                      capture_output=True, check=False)
                return done.returncode == 0
            wait_until(f"{name} to be ready (sealpost ready)", ready, timeout=90)
            say(f"{name} ({self.nodes[name]['environment']['SEALPOST__ROLE']}) ready on "
                f"127.0.0.1:{self.ports[name]}")

    def node_metrics(self, name: str) -> str:
        status, text = get(f"http://127.0.0.1:{self.ports[name]}/metrics")
        check(status == 200, f"{name}: /metrics answered {status}")
        return text

    def sample(self, name: str, metric: str, **labels: str) -> float:
        """The sum of a metric's samples on a node whose labels include `labels`."""
        total = 0.0
        for line in self.node_metrics(name).splitlines():
            if not line.startswith(metric):
                continue
            head, _, value = line.rpartition(" ")
            series, _, rest = head.partition("{")
            if series != metric:
                continue
            found = dict(re.findall(r'(\w+)="([^"]*)"', rest))
            if all(found.get(k) == v for k, v in labels.items()):
                total += float(value)
        return total

    # -- nginx and Prometheus ----------------------------------------------------------------

    def start_nginx(self) -> None:
        conf = (ROOT / "deploy/nginx/sealpost.conf").read_text()
        root = self.work / "nginx"
        root.mkdir()
        for old, new in [
            ("server media:8080;", f"server {self.hosts['media:8080']};"),
            ("server chat-1:8080;", f"server {self.hosts['chat-1:8080']};"),
            ("server chat-2:8080;", f"server {self.hosts['chat-2:8080']};"),
            ("/var/cache/nginx/sealpost", str(root / "cache")),
            ("/var/log/nginx/access.log", str(root / "access.log")),
            ("listen 8080;", f"listen 127.0.0.1:{self.ports['nginx']};"),
        ]:
            check(conf.count(old) == 1, f"deploy/nginx/sealpost.conf: the (host) line {old!r} changed")
            conf = conf.replace(old, new)
        (root / "site.conf").write_text(conf)
        user = "user root;\n" if os.geteuid() == 0 else ""
        temp = "\n".join(f"  {k}_temp_path {root / k};" for k in
                         ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"))
        (root / "nginx.conf").write_text(
            f"{user}worker_processes 2;\npid {root / 'nginx.pid'};\n"
            f"error_log {root / 'error.log'} warn;\nevents {{ worker_connections 1024; }}\n"
            f"http {{\n{temp}\n  include {root / 'site.conf'};\n}}\n")
        self.spawn("nginx", [self.args.nginx, "-p", str(root), "-e", str(root / "error.log"),
                             "-c", str(root / "nginx.conf"), "-g", "daemon off;"])
        wait_until("nginx", lambda: get(f"{self.base}/healthz", 2)[0] == 200, timeout=20)
        say(f"nginx (deploy/nginx/sealpost.conf) on {self.base}")

    def start_prometheus(self) -> None:
        config = yaml.safe_load((ROOT / "deploy/prometheus/prometheus.yml").read_text())
        check(config.get("rule_files") == ["/etc/prometheus/alerts.yml"],
              "prometheus.yml: rule_files changed")
        config["rule_files"] = [str(ROOT / "deploy/prometheus/alerts.yml")]
        for job in config["scrape_configs"]:
            # Fixed targets name compose services; Docker's DNS discovery becomes the same
            # names as fixed targets (its relabelling gave them the `service` label).
            static = job.pop("static_configs", [])
            for entry in static:
                entry["targets"] = [self.hosts[t] for t in entry["targets"]]
            for sd in job.pop("dns_sd_configs", []):
                for name in sd["names"]:
                    static.append({"targets": [self.hosts[f"{name}:{sd['port']}"]],
                                   "labels": {"service": name}})
            job.pop("relabel_configs", None)
            job["static_configs"] = static
        path = self.work / "prometheus.yml"
        path.write_text(yaml.safe_dump(config))
        subprocess.run(["promtool", "check", "config", str(path)], check=True)
        self.prometheus = f"http://127.0.0.1:{free_port()}"
        self.spawn("prometheus", [
            "prometheus", f"--config.file={path}", f"--storage.tsdb.path={self.work / 'tsdb'}",
            f"--web.listen-address={self.prometheus.removeprefix('http://')}"])
        wait_until("Prometheus", lambda: get(f"{self.prometheus}/-/ready", 2)[0] == 200)

    def query(self, expr: str) -> list:
        url = f"{self.prometheus}/api/v1/query?" + urllib.parse.urlencode({"query": expr})
        status, body = get(url)
        check(status == 200, f"Prometheus refused {expr!r}: {body[:300]}")
        return json.loads(body)["data"]["result"]

    # -- the seal CLI ------------------------------------------------------------------------

    def seal(self, user: str, *args: str, timeout: float = 120) -> str:
        env = dict(os.environ, SEAL_SERVER=self.base, SEAL_CONFIG_DIR=str(self.work / user))
        done = subprocess.run([self.args.seal, *args], env=env, capture_output=True, text=True,
                              timeout=timeout, stdin=subprocess.DEVNULL, check=False)
        check(done.returncode == 0, f"seal {' '.join(args)} ({user}) failed: {done.stderr}")
        return done.stdout

    def seal_background(self, user: str, *args: str) -> subprocess.Popen:
        env = dict(os.environ, SEAL_SERVER=self.base, SEAL_CONFIG_DIR=str(self.work / user))
        return subprocess.Popen([self.args.seal, *args], env=env, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True, stdin=subprocess.DEVNULL)

    # -- the scenario ------------------------------------------------------------------------

    def connections(self) -> dict[str, float]:
        return {name: self.sample(name, "sealpost_chat_connections") for name in ("chat-1", "chat-2")}

    def scenario(self) -> None:
        status, body = get(f"{self.base}/metrics")
        check(status == 404 and '"not-found"' in body, f"/metrics through nginx: {status} {body}")

        self.seal("ada", "register", "--phone", "+15551234567", "--name", "Ada")
        self.seal("ben", "register", "--phone", "+15557654321", "--name", "Ben")
        say("two users registered through nginx (keys published to the chat nodes)")

        photo = self.work / "beach.jpg"
        subprocess.run(["ffmpeg", "-v", "error", "-f", "lavfi", "-i",
                        "testsrc2=size=2400x1600", "-frames:v", "1", "-q:v", "2", str(photo)],
                       check=True)
        saved = self.work / "received"
        saved.mkdir()
        # The CLI's connection stays up; nothing else is connected yet.
        check(self.connections() == {"chat-1": 0, "chat-2": 0}, "gateways busy before the test")
        listener = self.seal_background("ben", "listen", "--json", "--count", "1",
                                        "--save-to", str(saved))
        ben_on = wait_until("Ben's chat connection", lambda: next(
            (n for n, c in self.connections().items() if c == 1), None), timeout=30)
        sends_before = {n: self.sample(n, "sealpost_chat_frames_received_total", type="send")
                        for n in ("chat-1", "chat-2")}
        self.seal("ada", "send", "--to", "+15557654321", "--file", str(photo),
                  "--caption", "the beach")
        sends = {n: self.sample(n, "sealpost_chat_frames_received_total", type="send")
                 - sends_before[n] for n in ("chat-1", "chat-2")}
        ada_on = next((n for n, c in sends.items() if c >= 1), None)
        check(ada_on is not None and ada_on != ben_on,
              f"the send went through {ada_on}, the recipient listens on {ben_on}")
        say(f"Ben listens on {ben_on}; Ada sent the photo through {ada_on}")

        out, err = listener.communicate(timeout=120)
        check(listener.returncode == 0, f"seal listen failed: {err}")
        lines = [json.loads(line) for line in out.splitlines() if line.strip()]
        message = next((m for m in lines if m.get("type") == "message"), None)
        check(message is not None, f"Ben got no message: {out}")
        copy = saved / "beach.jpg"
        check(copy.exists() and copy.read_bytes() == photo.read_bytes(),
              f"the saved photo differs from the sent one: {sorted(p.name for p in saved.iterdir())}")
        say("Ben saved the photo, byte for byte (downloaded through nginx)")
        latency = self.sample(ben_on, "sealpost_chat_delivery_latency_seconds_count")
        check(latency >= 1, f"{ben_on} measured no delivery latency")

        head = self.work / "head.bin"
        reference = saved / "beach.jpg.ref.json"
        self.seal("ben", "download", str(reference), "--range", "0-65535", "-o", str(head))
        check(head.read_bytes() == photo.read_bytes()[:65536], "the ranged download differs")

        def blob_lines():
            log = (self.work / "nginx" / "access.log").read_text()
            return [line for line in log.splitlines()
                    if re.search(r" /v1/blobs/[0-9a-f]{64} ", line)]
        # nginx writes a request's line once its last byte went out: it may come just after.
        wait_until("nginx's line of the ranged download",
                   lambda: len(blob_lines()) >= 2 and " 206 " in blob_lines()[-1], timeout=10)
        check("cache=HIT" in blob_lines()[-1],
              f"the ranged download was not a cache hit: {blob_lines()[-3:]}")
        access = (self.work / "nginx" / "access.log").read_text()
        check("token=" not in access and "sig=" not in access, "nginx logged a query string")
        say("a ranged download (seal download --range) came from nginx's cache")

        receipts = self.seal("ada", "listen", "--json", "--count", "2")
        statuses = sorted(json.loads(line).get("status", "") for line in receipts.splitlines())
        check(statuses == ["delivered", "read"], f"Ada's receipts: {receipts}")
        say("Ada heard delivered and read")

    def check_metrics(self) -> set[str]:
        """Every node's exposition passes promtool and names only documented metrics; returns
        the documented ones."""
        documented = set(re.findall(r"^\| `(sealpost_\w+)` \|",
                                    (ROOT / "docs/operations.md").read_text(), re.M))
        check(documented, "docs/operations.md lists no metrics")
        for name in self.nodes:
            text = self.node_metrics(name)
            path = self.work / f"{name}.metrics"
            path.write_text(text)
            done = subprocess.run(["promtool", "check", "metrics"], input=text, text=True,
                                  capture_output=True, check=False)
            check(done.returncode == 0,
                  f"promtool check metrics ({name}): {done.stdout}{done.stderr}")
            exported = set(re.findall(r"^# TYPE (\S+) ", text, re.M))
            check(exported <= documented,
                  f"{name} exports metrics docs/operations.md does not list: "
                  f"{sorted(exported - documented)}")
        media = self.sample("media", "sealpost_uploads_completed_total")
        check(media >= 2, f"media: {media} uploads completed (the photo and its thumbnail)")
        stored = self.sample("worker", "sealpost_chat_inbox_stored_total")
        check(stored >= 3, f"worker: {stored} inbox copies stored (message and receipts)")
        # Kafka reports a member's lag in its statistics, every 5 s once it has committed.
        wait_until("the worker's consumer lag of chat-delivery", lambda: [
            line for line in self.node_metrics("worker").splitlines()
            if line.startswith("sealpost_bus_consumer_lag{") and 'group="chat-delivery"' in line],
            timeout=30)
        sent = self.sample("media", "sealpost_download_sent_bytes_total")
        check(sent > 0, "media: no download bytes")
        say(f"promtool check metrics passes on all {len(self.nodes)} nodes, which export only "
            "documented metrics")
        return documented

    def check_prometheus(self, defined: set[str]) -> None:
        """Prometheus scrapes every node and loads the alerts; every dashboard query runs and
        names only documented metrics (`defined`)."""
        def every_target_up():
            up = self.query("up")
            services = {r["metric"].get("service"): r["value"][1] for r in up}
            return services if services == dict.fromkeys(self.nodes, "1") else None
        wait_until("Prometheus to scrape every node", every_target_up, timeout=60)
        say(f"Prometheus scrapes {', '.join(sorted(self.nodes))}: all up")
        status, body = get(f"{self.prometheus}/api/v1/rules")
        groups = json.loads(body)["data"]["groups"]
        rules = [r for g in groups for r in g["rules"]]
        check(rules and all(r.get("health") in ("ok", "unknown") for r in rules),
              f"alert rules unhealthy: {[(r['name'], r.get('lastError')) for r in rules]}")
        # Wait for a scrape after the scenario, then run the dashboard.
        wait_until("a scrape after the scenario",
                   lambda: self.query("sealpost_chat_inbox_stored_total > 0"), timeout=60)
        dashboard = json.loads((ROOT / "deploy/grafana/dashboards/sealpost.json").read_text())
        exprs = [t["expr"] for p in dashboard["panels"] for t in p.get("targets", [])]
        check(exprs, "the dashboard has no queries")
        suffixes = ("_total", "_bucket", "_sum", "_count", "_info")
        answered = 0
        for expr in exprs:
            for metric in set(re.findall(r"\bsealpost_\w+", expr)):
                base = next((metric[: -len(s)] for s in suffixes if metric.endswith(s)), metric)
                check(metric in defined or base in defined,
                      f"the dashboard names {metric}, which docs/operations.md does not list")
            if self.query(expr.replace("$__rate_interval", "1m")):
                answered += 1
        say(f"{len(exprs)} dashboard queries run ({answered} with data); "
            f"{len(rules)} alert rules loaded")

    def check_grafana(self) -> None:
        """Grafana cannot run here: its provisioning must at least fit compose and the
        dashboard (the data source it names, where compose mounts the dashboards)."""
        grafana = ROOT / "deploy/grafana"
        sources = yaml.safe_load((grafana / "provisioning/datasources/prometheus.yml").read_text())
        source = sources["datasources"][0]
        url = urllib.parse.urlparse(source["url"])
        check(url.hostname in self.compose["services"]
              and self.compose["services"][url.hostname]["image"].startswith("prom/prometheus:"),
              f"the Grafana data source points at {source['url']}, not compose's Prometheus")
        providers = yaml.safe_load((grafana / "provisioning/dashboards/sealpost.yml").read_text())
        path = providers["providers"][0]["options"]["path"]
        mounts = self.compose["services"]["grafana"]["volumes"]
        check(f"./deploy/grafana/dashboards:{path}:ro" in mounts,
              f"compose does not mount the dashboards where the provider reads them ({path})")
        dashboard = json.loads((grafana / "dashboards/sealpost.json").read_text())
        uids = {t["datasource"]["uid"] for p in dashboard["panels"] for t in p.get("targets", [])}
        check(uids == {source["uid"]}, f"dashboard data sources {uids}, provisioned {source['uid']}")
        say("Grafana's provisioning fits compose and the dashboard")

    def check_logs(self) -> None:
        for name in self.nodes:
            log = self.log(name)
            bad = [line for line in log.splitlines() if '"level":"ERROR"' in line or "panicked" in line]
            check(not bad, f"{name} logged errors: {bad[:5]}")
        access = [json.loads(line) for line in self.log("media").splitlines()
                  if '"sealpost::access"' in line]
        check(access, "media: no access log lines")
        fields = access[-1].get("fields", {})
        check({"method", "route", "status", "duration_ms", "bytes", "client"} <= set(fields),
              f"an access line lacks fields: {access[-1]}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--work", required=True)
    parser.add_argument("--pg-port", required=True)
    parser.add_argument("--s3-port", required=True)
    parser.add_argument("--kafka", required=True)
    parser.add_argument("--sealpost", required=True)
    parser.add_argument("--seal", required=True)
    parser.add_argument("--nginx", default=shutil.which("nginx") or "/usr/sbin/nginx")
    args = parser.parse_args()
    stack = Stack(args)
    try:
        stack.start_nodes()
        stack.start_nginx()
        stack.start_prometheus()
        stack.scenario()
        defined = stack.check_metrics()
        stack.check_prometheus(defined)
        stack.check_grafana()
        stack.check_logs()
    except (Failed, subprocess.CalledProcessError, subprocess.TimeoutExpired) as e:
        print(f"stack: FAILED: {e}", file=sys.stderr)
        for name, _ in stack.processes:
            print(f"--- last lines of {name}.log", file=sys.stderr)
            print("\n".join(stack.log(name).splitlines()[-15:]), file=sys.stderr)
        return 1
    finally:
        stack.stop()
    say("the stack works")
    return 0


if __name__ == "__main__":
    sys.exit(main())
