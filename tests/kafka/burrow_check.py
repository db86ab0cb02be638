#!/usr/bin/env python3
"""End to end: Debian's Burrow 1.2.1 watching consumer groups on the librdkafka mock cluster.

Starts, each on a free loopback port and torn down at the end:
  * ZooKeeper (Debian `zookeeper` package; Burrow 1.2.1 will not start without one),
  * tests/kafka/mock_broker.py with one topic per scenario plus __consumer_offsets,
  * Burrow (`/usr/bin/Burrow`, Debian `burrow` package) with a generated burrow.toml,
then writes commit histories into __consumer_offsets with burrow_mirror.CommitWriter and checks
the status Burrow's HTTP API reports for each group:

  OK      offsets advance and the last commit catches up (lag 0 inside the window)
  WARN    offsets advance but lag never decreases (the topic grows faster)
  STALL   the same offset committed again and again while lag > 0
  STOP    commits stopped: now - last commit > last - first commit in the window
  REWIND  the committed offset went backwards
  mirror  a real consumer group's commits (assign + commit on the mock) copied by the mirror

    python tests/kafka/burrow_check.py [--keep DIR]     # needs: apt-get install burrow zookeeper

Prints one line per scenario and closes with "N passed, N failed".
"""

import argparse
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

from burrow_mirror import CommitWriter, mirror  # noqa: E402

INTERVALS = 5  # Burrow's window: the last 5 stored commits per partition
ZK_CLASSPATH = "/etc/zookeeper/conf:/usr/share/java/zookeeper.jar"

BURROW_TOML = """\
[general]
pidfile="{dir}/burrow.pid"

[logging]
level="{log_level}"

[zookeeper]
servers=["127.0.0.1:{zk_port}"]
timeout=6
root-path="/burrow"

[client-profile.mock]
client-id="burrow-mock"
kafka-version="{kafka_version}"

[cluster.mock]
class-name="kafka"
servers=[{servers}]
client-profile="mock"
topic-refresh=2
offset-refresh=1

[consumer.mock]
class-name="kafka"
cluster="mock"
servers=[{servers}]
client-profile="mock"
offsets-topic="__consumer_offsets"
start-latest=false

[httpserver.default]
address="127.0.0.1:{http_port}"

[storage.default]
class-name="inmemory"
workers=4
intervals={intervals}
expire-group=604800
min-distance=1

[evaluator.default]
class-name="caching"
expire-cache=1
"""


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Fatal(Exception):
    """Raised inside a wait_for condition to give up at once."""


def wait_for(what, fn, timeout=30, interval=0.3):
    deadline = time.time() + timeout
    last = None
    while time.time() < deadline:
        try:
            last = fn()
            if last:
                return last
        except Fatal:
            raise
        except Exception as exc:  # noqa: BLE001 - retried until the deadline
            last = exc
        time.sleep(interval)
    raise TimeoutError(f"{what}: gave up after {timeout}s (last: {last!r})")


class Stack:
    """ZooKeeper + mock broker + Burrow, as child processes of this one."""

    def __init__(self, workdir, topics, log_level="info", kafka_version="2.0.0", brokers=1):
        self.dir = workdir
        self.procs = []
        try:
            self._start(topics, log_level, kafka_version, brokers)
        except BaseException:
            self.close()
            raise

    def _start(self, topics, log_level, kafka_version, brokers):
        workdir = self.dir
        zk_port = free_port()
        os.makedirs(f"{workdir}/zk", exist_ok=True)
        with open(f"{workdir}/zoo.cfg", "w") as f:
            f.write(f"tickTime=2000\ndataDir={workdir}/zk\nclientPort={zk_port}\n"
                    "clientPortAddress=127.0.0.1\nadmin.enableServer=false\n"
                    "4lw.commands.whitelist=ruok,srvr\n")
        self.spawn("zookeeper", ["java", "-Xmx128m", "-cp", ZK_CLASSPATH,
                                 "org.apache.zookeeper.server.ZooKeeperServerMain",
                                 f"{workdir}/zoo.cfg"])
        wait_for("zookeeper", lambda: self.serving(zk_port))

        broker = self.spawn("broker", [sys.executable, f"{HERE}/mock_broker.py",
                                       "--brokers", str(brokers), "--topic", "__consumer_offsets:1"]
                            + [f"--topic={t}:1" for t in topics],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        line = broker.stdout.readline().decode().strip()
        assert line.startswith("BOOTSTRAP "), line
        self.bootstrap = line.split(" ", 1)[1]
        servers = ", ".join(f'"{b}"' for b in self.bootstrap.split(","))

        self.http = f"http://127.0.0.1:{free_port()}"
        with open(f"{workdir}/burrow.toml", "w") as f:
            f.write(BURROW_TOML.format(dir=workdir, zk_port=zk_port, servers=servers,
                                       http_port=self.http.rsplit(":", 1)[1],
                                       intervals=INTERVALS, log_level=log_level,
                                       kafka_version=kafka_version))
        burrow = self.spawn("burrow", ["Burrow", "-config-dir", workdir])

        def burrow_up():
            if burrow.poll() is not None:
                with open(f"{workdir}/burrow.log", errors="replace") as f:
                    panics = [line for line in f if '"panic"' in line or "panic:" in line]
                raise Fatal(f"Burrow exited ({burrow.returncode}): {''.join(panics[:2]).strip()}")
            return self.get("/v3/kafka")["clusters"] == ["mock"]

        wait_for("burrow http", burrow_up)

    def spawn(self, name, argv, **kw):
        log = open(f"{self.dir}/{name}.log", "wb")
        kw.setdefault("stdout", log)
        proc = subprocess.Popen(argv, stderr=log, **kw)
        self.procs.append(proc)
        return proc

    @staticmethod
    def serving(port):
        # `ruok` answers imok before the server takes sessions (Burrow then fails with
        # "Authentication failed: EOF"); `srvr` reports a Mode only once it serves requests.
        with socket.create_connection(("127.0.0.1", port), timeout=1) as s:
            s.sendall(b"srvr")
            answer = b""
            while chunk := s.recv(4096):
                answer += chunk
        return b"Mode: " in answer

    def get(self, path):
        try:
            with urllib.request.urlopen(self.http + path, timeout=5) as r:
                return json.load(r)
        except urllib.error.HTTPError as exc:
            return json.load(exc)

    def topic_offsets(self, topic):
        return self.get(f"/v3/kafka/mock/topic/{topic}").get("offsets")

    def close(self):
        for proc in reversed(self.procs):
            proc.terminate()
        for proc in reversed(self.procs):
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()


def produce(bootstrap, topic, count):
    from confluent_kafka import Producer

    p = Producer({"bootstrap.servers": bootstrap})
    for i in range(count):
        p.produce(topic, value=b"m%d" % i, partition=0)
    assert p.flush(10) == 0


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--keep", help="work in DIR and keep the logs and burrow.toml there")
    parser.add_argument("--log-level", default="info", help="Burrow's log level (debug shows "
                                                            "every decoded commit)")
    parser.add_argument("--kafka-version", default="2.0.0",
                        help="the protocol version Burrow's sarama client speaks")
    parser.add_argument("--brokers", type=int, default=1, help="mock brokers (default 1)")
    args = parser.parse_args()
    for tool in ("Burrow", "java"):
        if not shutil.which(tool):
            sys.exit(f"{tool} not found: apt-get install -y burrow zookeeper")
    workdir = args.keep or tempfile.mkdtemp(prefix="burrow-mock-")
    os.makedirs(workdir, exist_ok=True)
    scenarios = ["ok", "warn", "stall", "stop", "rewind", "mirror"]
    t0 = time.time()
    stack = Stack(workdir, [f"t-{s}" for s in scenarios], args.log_level, args.kafka_version,
                  args.brokers)
    print(f"stack up in {time.time() - t0:.1f}s: bootstrap {stack.bootstrap}, burrow {stack.http}, "
          f"logs in {workdir}")
    results = []
    try:
        bs = stack.bootstrap
        for s in ("ok", "stall", "stop", "rewind", "mirror"):
            produce(bs, f"t-{s}", 100)
        produce(bs, "t-warn", 10)
        wait_for("burrow sees the high watermarks", lambda: all(
            stack.topic_offsets(f"t-{s}") == [10 if s == "warn" else 100] for s in scenarios))

        now = int(time.time() * 1000)
        step = 10_000  # 10 s between commits, > min-distance
        with CommitWriter(bs) as w:
            # OK: catching up to the end (lag 0 at the last commit).
            for i, off in enumerate((60, 70, 80, 90, 100)):
                w.commit("g-ok", "t-ok", 0, off, now - (4 - i) * step)
            # STALL: offset 50 again and again, commits still coming (last one now).
            for i in range(INTERVALS):
                w.commit("g-stall", "t-stall", 0, 50, now - (4 - i) * step)
            # STOP: advancing commits that ended long ago (last 200 s ago, window spans 40 s).
            for i, off in enumerate((10, 20, 30, 40, 50)):
                w.commit("g-stop", "t-stop", 0, off, now - 200_000 - (4 - i) * step)
        # REWIND, with value version 3 records (what Kafka >= 2.1 writes).
        with CommitWriter(bs, value_version=3) as w:
            for i, off in enumerate((40, 50, 60, 30, 45)):
                w.commit("g-rewind", "t-rewind", 0, off, now - (4 - i) * step)

        # WARN: the topic grows by 20 between commits that advance by 10, so lag grows. Lag is
        # computed against the high watermark Burrow last read, so wait for it every step.
        with CommitWriter(bs) as w:
            hwm = 10
            for i in range(INTERVALS):
                produce(bs, "t-warn", 20)
                hwm += 20
                wait_for("t-warn watermark", lambda: stack.topic_offsets("t-warn") == [hwm])
                w.commit("g-warn", "t-warn", 0, 5 + 10 * i, now - (4 - i) * step)
                w.flush()

        # mirror: a real consumer group commits 70 on the mock; the mirror copies it to Burrow.
        from confluent_kafka import Consumer, TopicPartition

        c = Consumer({"bootstrap.servers": bs, "group.id": "g-mirror", "enable.auto.commit": False})
        c.assign([TopicPartition("t-mirror", 0, 0)])
        c.commit(offsets=[TopicPartition("t-mirror", 0, 70)], asynchronous=False)
        c.close()
        stop = threading.Event()
        th = threading.Thread(target=mirror, args=(bs, ["g-mirror"], ["t-mirror"], 0.5, False, stop,
                                                   lambda s: None), daemon=True)
        th.start()

        expected = {"g-ok": "OK", "g-warn": "WARN", "g-stall": "STALL", "g-stop": "STOP",
                    "g-rewind": "REWIND"}

        def partition_status(group):
            st = stack.get(f"/v3/kafka/mock/consumer/{group}/status").get("status") or {}
            mx = st.get("maxlag") or {}
            return st.get("status"), mx.get("status"), mx.get("current_lag")

        for group, want in expected.items():
            try:
                got = wait_for(f"{group} {want}", lambda: (
                    lambda s: s if s[1] == want else None)(partition_status(group)), timeout=15)
                results.append((group, True, f"group {got[0]}, partition {got[1]}, lag {got[2]}"))
            except TimeoutError:
                results.append((group, False, f"got {partition_status(group)}, want {want}"))
        try:
            lag = wait_for("g-mirror lag", lambda: (lambda st: st if st and st.get("partitions")
                                                     else None)(stack.get(
                "/v3/kafka/mock/consumer/g-mirror/lag").get("status")), timeout=15)
            p = lag["partitions"][0]
            ok = p["end"]["offset"] == 70 and p["current_lag"] == 30
            results.append(("g-mirror", ok, f"offset {p['end']['offset']}, lag {p['current_lag']}, "
                                            f"status {p['status']}"))
        except TimeoutError as exc:
            results.append(("g-mirror", False, str(exc)))
        stop.set()
        th.join(5)
    finally:
        stack.close()
        if not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)

    for name, ok, detail in results:
        print(f"{'ok  ' if ok else 'FAIL'}  {name}: {detail}")
    passed = sum(ok for _, ok, _ in results)
    print(f"total {time.time() - t0:.1f}s")
    print(f"{passed} passed, {len(results) - passed} failed")
    return 0 if passed == len(results) else 1


if __name__ == "__main__":
    sys.exit(main())
