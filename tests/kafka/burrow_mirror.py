#!/usr/bin/env python3
"""Feed Burrow commit records through `__consumer_offsets` on the librdkafka mock cluster.

A real Kafka broker records every OffsetCommit as a record in its internal `__consumer_offsets`
topic, and that topic is what Burrow's `kafka` consumer module reads. librdkafka's mock cluster
keeps commits in memory only and writes no such records, so Burrow sees no consumer group on it.
This module writes the records a broker would write, in the same binary layout (Kafka's
GroupMetadataManager; Burrow's core/internal/consumer/kafka_client.go decodes them):

    key   (version 1):    int16 1, string group, string topic, int32 partition
    value (version 1):    int16 1, int64 offset, string metadata, int64 commit_timestamp_ms,
                          int64 expire_timestamp_ms
    value (version 3):    int16 3, int64 offset, int32 leader_epoch, string metadata,
                          int64 commit_timestamp_ms

(string = int16 length + UTF-8 bytes, all big-endian.) Burrow 1.2.1 decodes key versions 0/1 and
value versions 0, 1 and 3.

Two ways to use it:

* Directly from a test, with exact offsets and commit timestamps (deterministic; backdated
  timestamps give STOP/STALL histories without waiting):

      from burrow_mirror import CommitWriter
      with CommitWriter(bootstrap) as w:
          w.commit("my-group", "orders", 0, offset=10, timestamp_ms=now_ms - 60_000)

* As a mirror process that copies what real consumer groups commit to the mock (read back with
  OffsetFetch, since the mock has no ListGroups the groups and topics must be named):

      python tests/kafka/burrow_mirror.py --bootstrap 127.0.0.1:40123 \\
          --group my-group --topic orders [--interval 1] [--repeat]

  A record is written when a committed offset changes; with --repeat every committed offset is
  re-written each interval, as a consumer that keeps committing the same offset would.
"""

import argparse
import signal
import struct
import sys
import threading
import time

OFFSETS_TOPIC = "__consumer_offsets"


def _string(s):
    if s is None:
        return struct.pack(">h", -1)
    data = s.encode()
    return struct.pack(">h", len(data)) + data


def offset_commit_key(group, topic, partition, version=1):
    """Key of an offset-commit record (versions 0 and 1 share one layout)."""
    assert version in (0, 1)
    return struct.pack(">h", version) + _string(group) + _string(topic) + struct.pack(">i", partition)


def offset_commit_value(offset, timestamp_ms, metadata="", version=1, expire_timestamp_ms=-1,
                        leader_epoch=-1):
    """Value of an offset-commit record, version 0, 1 or 3."""
    if version == 0:
        return struct.pack(">hq", 0, offset) + _string(metadata) + struct.pack(">q", timestamp_ms)
    if version == 1:
        return (struct.pack(">hq", 1, offset) + _string(metadata)
                + struct.pack(">qq", timestamp_ms, expire_timestamp_ms))
    if version == 3:
        return (struct.pack(">hqi", 3, offset, leader_epoch) + _string(metadata)
                + struct.pack(">q", timestamp_ms))
    raise ValueError(f"unsupported value version {version}")


def decode_offset_commit(key, value):
    """(group, topic, partition, offset, timestamp_ms) from a record; for tests of the encoder."""
    def string(buf, at):
        (n,) = struct.unpack_from(">h", buf, at)
        return ("" if n < 0 else buf[at + 2:at + 2 + n].decode()), at + 2 + max(n, 0)

    (kver,) = struct.unpack_from(">h", key, 0)
    assert kver in (0, 1), kver
    group, at = string(key, 2)
    topic, at = string(key, at)
    (partition,) = struct.unpack_from(">i", key, at)
    (vver, offset) = struct.unpack_from(">hq", value, 0)
    at = 10
    if vver == 3:
        at += 4
    _, at = string(value, at)
    (ts,) = struct.unpack_from(">q", value, at)
    return group, topic, partition, offset, ts


def java_string_hash(s):
    """Java's String.hashCode (over UTF-16 code units), as a signed 32-bit int."""
    data = s.encode("utf-16-be")
    h = 0
    for i in range(0, len(data), 2):
        h = (31 * h + int.from_bytes(data[i:i + 2], "big")) & 0xFFFFFFFF
    return h - (1 << 32) if h >= (1 << 31) else h


def offsets_partition(group, partitions):
    """The __consumer_offsets partition Kafka picks for a group: Utils.abs(hashCode) % count."""
    h = java_string_hash(group)
    return (0 if h == -(1 << 31) else abs(h)) % partitions


class CommitWriter:
    """Writes offset-commit records to __consumer_offsets (which must exist: create it on the mock
    with `mock_broker.py --topic __consumer_offsets:1`)."""

    def __init__(self, bootstrap, value_version=1):
        from confluent_kafka import Producer
        from confluent_kafka.admin import AdminClient

        self.value_version = value_version
        self.producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 0,
                                  "allow.auto.create.topics": False})
        md = AdminClient({"bootstrap.servers": bootstrap}).list_topics(OFFSETS_TOPIC, timeout=10)
        topic = md.topics.get(OFFSETS_TOPIC)
        if topic is None or topic.error is not None or not topic.partitions:
            raise RuntimeError(f"{OFFSETS_TOPIC} missing on {bootstrap}: start mock_broker.py "
                               f"with --topic {OFFSETS_TOPIC}:1")
        self.partitions = len(topic.partitions)

    def commit(self, group, topic, partition, offset, timestamp_ms=None, metadata=""):
        ts = int(time.time() * 1000) if timestamp_ms is None else int(timestamp_ms)
        self.producer.produce(
            OFFSETS_TOPIC, key=offset_commit_key(group, topic, partition),
            value=offset_commit_value(offset, ts, metadata, version=self.value_version),
            partition=offsets_partition(group, self.partitions))
        self.producer.poll(0)

    def flush(self, timeout=10):
        left = self.producer.flush(timeout)
        if left:
            raise RuntimeError(f"{left} commit records not delivered")

    def __enter__(self):
        return self

    def close(self):
        """Flush and let go of the producer (librdkafka then closes its connections)."""
        if self.producer is not None:
            self.flush()
            self.producer = None

    def __exit__(self, *exc):
        self.close()


def mirror(bootstrap, groups, topics, interval=1.0, repeat=False, stop=None, log=print):
    """Copy the named groups' committed offsets (OffsetFetch) to __consumer_offsets until stop."""
    from confluent_kafka import Consumer, TopicPartition
    from confluent_kafka.admin import AdminClient

    stop = stop or threading.Event()
    writer = CommitWriter(bootstrap)
    admin = AdminClient({"bootstrap.servers": bootstrap})
    readers = {g: Consumer({"bootstrap.servers": bootstrap, "group.id": g,
                            "enable.auto.commit": False}) for g in groups}
    last = {}
    try:
        while not stop.is_set():
            md = admin.list_topics(timeout=5)
            tps = [TopicPartition(t, p) for t in topics if t in md.topics
                   for p in md.topics[t].partitions]
            for group, reader in readers.items():
                if not tps:
                    continue
                for tp in reader.committed(tps, timeout=5):
                    if tp.error or tp.offset < 0:
                        continue
                    k = (group, tp.topic, tp.partition)
                    if repeat or last.get(k) != tp.offset:
                        writer.commit(group, tp.topic, tp.partition, tp.offset)
                        if last.get(k) != tp.offset:
                            log(f"commit {group} {tp.topic}[{tp.partition}] = {tp.offset}")
                        last[k] = tp.offset
            writer.flush()
            stop.wait(interval)
    finally:
        for reader in readers.values():
            reader.close()
        writer.close()


def main():
    parser = argparse.ArgumentParser(description="Mirror consumer-group commits on the librdkafka "
                                                 "mock into __consumer_offsets for Burrow.")
    parser.add_argument("--bootstrap", required=True)
    parser.add_argument("--group", action="append", required=True)
    parser.add_argument("--topic", action="append", required=True)
    parser.add_argument("--interval", type=float, default=1.0)
    parser.add_argument("--repeat", action="store_true",
                        help="re-write unchanged committed offsets every interval")
    args = parser.parse_args()
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    mirror(args.bootstrap, args.group, args.topic, args.interval, args.repeat, stop,
           log=lambda s: print(s, flush=True))


if __name__ == "__main__":
    sys.exit(main())
