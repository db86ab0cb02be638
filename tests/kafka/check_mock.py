#!/usr/bin/env python3
"""Probe what librdkafka's mock cluster (mock_broker.py) supports, with confluent-kafka clients.

    python tests/kafka/check_mock.py            # starts its own mock_broker.py
    python tests/kafka/check_mock.py --bootstrap 127.0.0.1:40123

Prints one line per feature, `ok` or `FAIL` with the error, and exits non-zero when something the
README lists as supported fails.
"""

import argparse
import os
import subprocess
import sys
import time
import uuid

from confluent_kafka import Consumer, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic, OffsetSpec

HERE = os.path.dirname(os.path.abspath(__file__))
results = []


def check(name, fn, expected=True):
    try:
        detail = fn()
        results.append((name, True, expected))
        print(f"ok    {name}: {detail}")
    except Exception as exc:  # noqa: BLE001 - a probe records every failure
        results.append((name, False, expected))
        tag = "FAIL" if expected else "no   "
        print(f"{tag}  {name}: {type(exc).__name__}: {exc}")


def start_broker(args):
    proc = subprocess.Popen(
        [sys.executable, os.path.join(HERE, "mock_broker.py"), "--brokers", str(args.brokers),
         "--topic", "orders:3"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    line = proc.stdout.readline().strip()
    assert line.startswith("BOOTSTRAP "), line
    return proc, line.split(" ", 1)[1]


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--bootstrap")
    parser.add_argument("--brokers", type=int, default=1)
    args = parser.parse_args()
    proc = None
    if args.bootstrap:
        bootstrap = args.bootstrap
    else:
        proc, bootstrap = start_broker(args)
    print(f"bootstrap {bootstrap}")
    common = {"bootstrap.servers": bootstrap}
    group = f"causeway-probe-{uuid.uuid4().hex[:6]}"
    admin = AdminClient(common)
    t0_ms = int(time.time() * 1000)

    def metadata():
        md = admin.list_topics(timeout=5)
        return {"brokers": sorted(str(b) for b in md.brokers.values()),
                "topics": {t: len(m.partitions) for t, m in md.topics.items()}}

    check("metadata (list_topics)", metadata)

    def produce():
        p = Producer({**common, "linger.ms": 5})
        delivered = []
        for i in range(30):
            for topic in ("orders", "payments"):  # orders pre-created (3), payments auto-created
                p.produce(topic, key=f"k{i}", value=f"v{i}".encode(),
                          headers=[("ce_type", b"com.example.order"), ("seq", str(i).encode())],
                          on_delivery=lambda err, msg: delivered.append(err))
        left = p.flush(10)
        errors = [e for e in delivered if e is not None]
        assert left == 0 and not errors and len(delivered) == 60, (left, errors[:3], len(delivered))
        return f"{len(delivered)} messages with headers to orders, payments"

    check("produce with headers, 2 topics", produce)
    check("topic partitions after produce", lambda: {
        t: len(m.partitions) for t, m in admin.list_topics(timeout=5).topics.items()})

    consumed = {}

    def consume_and_commit():
        c = Consumer({**common, "group.id": group, "auto.offset.reset": "earliest",
                      "enable.auto.commit": False, "session.timeout.ms": 6000})
        c.subscribe(["orders", "payments"])
        deadline = time.time() + 20
        headers_seen = None
        while sum(consumed.values()) < 50 and time.time() < deadline:
            m = c.poll(0.5)
            if m is None or m.error():
                continue
            consumed[m.topic()] = consumed.get(m.topic(), 0) + 1
            headers_seen = headers_seen or m.headers()
        # Commit what was consumed (50 of the 60 messages), synchronously.
        c.commit(asynchronous=False)
        committed = c.committed([TopicPartition(t, p) for t, n in (("orders", 3), ("payments", 4))
                                 for p in range(n)], timeout=10)
        c.close()
        assert sum(consumed.values()) >= 50, consumed
        return {"consumed": consumed, "headers": headers_seen,
                "committed": {f"{tp.topic}[{tp.partition}]": tp.offset for tp in committed}}

    check("consumer group subscribe/poll/commit/committed", consume_and_commit)

    def committed_from_other_consumer():
        c = Consumer({**common, "group.id": group})
        tps = c.committed([TopicPartition("orders", p) for p in range(3)], timeout=10)
        c.close()
        return {tp.partition: tp.offset for tp in tps}

    check("Consumer.committed without joining", committed_from_other_consumer)

    def watermarks():
        c = Consumer({**common, "group.id": group + "-wm"})
        out = {f"{t}[{p}]": c.get_watermark_offsets(TopicPartition(t, p), timeout=5)
               for t, n in (("orders", 3), ("payments", 4)) for p in range(n)}
        c.close()
        assert sum(hi for _, hi in out.values()) == 60, out
        return out

    check("get_watermark_offsets", watermarks)

    def for_times():
        c = Consumer({**common, "group.id": group + "-ts"})
        tps = c.offsets_for_times([TopicPartition("orders", p, t0_ms) for p in range(3)]
                                  + [TopicPartition("orders", 0, t0_ms + 3600_000)], timeout=5)
        c.close()
        offsets = [tp.offset for tp in tps]
        # A real broker answers 0 (first message at/after t0) for the first three.
        assert offsets[:3] == [0, 0, 0], f"offsets {offsets}: the mock answers -1 to any timestamp"
        return offsets

    check("offsets_for_times", for_times, expected=False)

    def admin_list_offsets():
        fut = admin.list_offsets({TopicPartition("orders", 0): OffsetSpec.latest(),
                                  TopicPartition("orders", 1): OffsetSpec.earliest()},
                                 request_timeout=5)
        return {f"{tp.topic}[{tp.partition}]": f.result().offset for tp, f in fut.items()}

    check("AdminClient.list_offsets", admin_list_offsets)

    def list_groups():
        res = admin.list_consumer_groups(request_timeout=5).result()
        assert not res.errors, [str(e) for e in res.errors]
        return [g.group_id for g in res.valid]

    check("AdminClient.list_consumer_groups", list_groups, expected=False)

    def describe_groups():
        res = admin.describe_consumer_groups([group], request_timeout=5)
        d = res[group].result()
        return {"state": str(d.state), "members": len(d.members)}

    check("AdminClient.describe_consumer_groups", describe_groups, expected=False)

    def group_offsets(partitions):
        from confluent_kafka import ConsumerGroupTopicPartitions
        res = admin.list_consumer_group_offsets([ConsumerGroupTopicPartitions(group, partitions)],
                                                request_timeout=5)
        r = res[group].result()
        out = {f"{tp.topic}[{tp.partition}]": tp.offset for tp in r.topic_partitions}
        assert out, "empty answer"
        return out

    check("AdminClient.list_consumer_group_offsets (named partitions)",
          lambda: group_offsets([TopicPartition("orders", p) for p in range(3)]))
    check("AdminClient.list_consumer_group_offsets (all partitions)",
          lambda: group_offsets(None), expected=False)

    def commit_without_membership():
        # assign() + commit(offsets=...): a "simple" consumer group, no JoinGroup. This is how a
        # test sets a group's committed offsets to exact values.
        simple = group + "-simple"
        c = Consumer({**common, "group.id": simple, "enable.auto.commit": False})
        c.assign([TopicPartition("orders", 0)])
        c.commit(offsets=[TopicPartition("orders", 0, 4), TopicPartition("orders", 1, 6)],
                 asynchronous=False)
        got = c.committed([TopicPartition("orders", 0), TopicPartition("orders", 1)], timeout=5)
        c.close()
        assert [tp.offset for tp in got] == [4, 6], got
        return {tp.partition: tp.offset for tp in got}

    check("commit exact offsets without joining (assign + commit)", commit_without_membership)

    def create_topics():
        fut = admin.create_topics([NewTopic("created-by-admin", 2, 1)], request_timeout=5)
        fut["created-by-admin"].result()
        return "created"

    check("AdminClient.create_topics", create_topics, expected=False)

    def describe_cluster():
        d = admin.describe_cluster(request_timeout=5).result()
        return {"cluster_id": d.cluster_id, "nodes": len(d.nodes)}

    check("AdminClient.describe_cluster", describe_cluster, expected=False)

    if proc:
        proc.stdin.close()
        proc.wait(10)
    unexpected = [n for n, ok, exp in results if exp and not ok]
    print(f"{sum(ok for _, ok, _ in results)} supported, {sum(not ok for _, ok, _ in results)} not")
    return 1 if unexpected else 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KafkaException as exc:
        sys.exit(f"kafka error: {exc}")
