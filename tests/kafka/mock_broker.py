#!/usr/bin/env python3
"""A Kafka-protocol test broker in its own process: librdkafka's mock cluster.

The `confluent-kafka` wheel bundles librdkafka 2.x, whose mock cluster speaks the Kafka wire
protocol on real loopback TCP sockets (Produce, Fetch, ListOffsets, Metadata, consumer groups with
OffsetCommit/OffsetFetch, ...). The Python binding does not expose the mock API, so this script
calls the bundled library's exported C functions through ctypes:

    rd_kafka_new -> rd_kafka_mock_cluster_new -> rd_kafka_mock_topic_create

and prints the listeners as one line on stdout:

    BOOTSTRAP 127.0.0.1:40123[,127.0.0.1:40125...]

then serves until stdin closes (EOF; unless --ignore-stdin), SIGTERM or SIGINT.

    python tests/kafka/mock_broker.py --brokers 1 --topic orders:3 --topic __consumer_offsets:1

Topics named with --topic are created up front with their own partition count (NAME:N) or
--partitions. Any other topic is auto-created by the mock on first Produce/Metadata with 4
partitions: librdkafka hard-codes that default (mcluster->defaults.partition_cnt = 4) and has no
setting or API to change it, so --partitions applies only to the --topic list.
"""

import argparse
import ctypes
import ctypes.util
import glob
import os
import signal
import sys
import threading

RD_KAFKA_PRODUCER = 0


def load_librdkafka():
    """The librdkafka that confluent-kafka bundles (falls back to a system librdkafka)."""
    candidates = []
    try:
        import confluent_kafka

        site = os.path.dirname(os.path.dirname(os.path.abspath(confluent_kafka.__file__)))
        candidates += sorted(glob.glob(os.path.join(site, "confluent_kafka.libs", "librdkafka*.so*")))
    except ImportError:
        pass
    system = ctypes.util.find_library("rdkafka")
    if system:
        candidates.append(system)
    for path in candidates:
        lib = ctypes.CDLL(path)
        if hasattr(lib, "rd_kafka_mock_cluster_new"):
            return lib, path
    sys.exit("mock_broker: no librdkafka with the mock cluster API (pip install confluent-kafka)")


class MockCluster:
    def __init__(self, brokers=1, log_level=3):
        lib, self.library_path = load_librdkafka()
        self.lib = lib
        lib.rd_kafka_version_str.restype = ctypes.c_char_p
        lib.rd_kafka_conf_new.restype = ctypes.c_void_p
        lib.rd_kafka_conf_set.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_char_p,
                                          ctypes.c_char_p, ctypes.c_size_t]
        lib.rd_kafka_conf_set.restype = ctypes.c_int
        lib.rd_kafka_new.argtypes = [ctypes.c_int, ctypes.c_void_p, ctypes.c_char_p, ctypes.c_size_t]
        lib.rd_kafka_new.restype = ctypes.c_void_p
        lib.rd_kafka_destroy.argtypes = [ctypes.c_void_p]
        lib.rd_kafka_mock_cluster_new.argtypes = [ctypes.c_void_p, ctypes.c_int]
        lib.rd_kafka_mock_cluster_new.restype = ctypes.c_void_p
        lib.rd_kafka_mock_cluster_destroy.argtypes = [ctypes.c_void_p]
        lib.rd_kafka_mock_cluster_bootstraps.argtypes = [ctypes.c_void_p]
        lib.rd_kafka_mock_cluster_bootstraps.restype = ctypes.c_char_p
        lib.rd_kafka_mock_topic_create.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_int,
                                                   ctypes.c_int]
        lib.rd_kafka_mock_topic_create.restype = ctypes.c_int
        lib.rd_kafka_err2str.argtypes = [ctypes.c_int]
        lib.rd_kafka_err2str.restype = ctypes.c_char_p

        self.version = lib.rd_kafka_version_str().decode()
        self.brokers = brokers
        errstr = ctypes.create_string_buffer(512)
        conf = lib.rd_kafka_conf_new()
        for key, value in (("client.id", "causeway-mock-broker"), ("log_level", str(log_level))):
            if lib.rd_kafka_conf_set(conf, key.encode(), value.encode(), errstr, len(errstr)) != 0:
                sys.exit(f"mock_broker: {key}: {errstr.value.decode()}")
        # The handle only hosts the cluster's book keeping; it never connects anywhere.
        self.rk = lib.rd_kafka_new(RD_KAFKA_PRODUCER, conf, errstr, len(errstr))
        if not self.rk:
            sys.exit(f"mock_broker: rd_kafka_new: {errstr.value.decode()}")
        self.mc = lib.rd_kafka_mock_cluster_new(self.rk, brokers)
        if not self.mc:
            sys.exit("mock_broker: rd_kafka_mock_cluster_new failed")
        self.bootstrap = lib.rd_kafka_mock_cluster_bootstraps(self.mc).decode()

    def create_topic(self, name, partitions, replication_factor=None):
        rf = replication_factor or min(3, self.brokers)
        err = self.lib.rd_kafka_mock_topic_create(self.mc, name.encode(), partitions, rf)
        if err != 0:
            raise RuntimeError(f"create topic {name}: {self.lib.rd_kafka_err2str(err).decode()}")

    def close(self):
        if self.mc:
            self.lib.rd_kafka_mock_cluster_destroy(self.mc)
            self.mc = None
        if self.rk:
            self.lib.rd_kafka_destroy(self.rk)
            self.rk = None


def parse_topic(spec, default_partitions):
    name, _, count = spec.partition(":")
    if not name:
        raise argparse.ArgumentTypeError(f"bad topic {spec!r}")
    return name, int(count) if count else default_partitions


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--brokers", type=int, default=1, help="number of mock brokers (default 1)")
    parser.add_argument("--partitions", type=int, default=4,
                        help="partitions of each --topic given without :N (default 4; topics "
                             "auto-created by the mock always get 4)")
    parser.add_argument("--topic", action="append", default=[], metavar="NAME[:PARTITIONS]",
                        help="create this topic up front (repeatable)")
    parser.add_argument("--ignore-stdin", action="store_true",
                        help="do not stop at stdin EOF (for `&` in scripts, where stdin is /dev/null)")
    parser.add_argument("--log-level", type=int, default=3,
                        help="librdkafka syslog level on stderr (7 = debug)")
    args = parser.parse_args()

    cluster = MockCluster(args.brokers, args.log_level)
    for spec in args.topic:
        name, partitions = parse_topic(spec, args.partitions)
        cluster.create_topic(name, partitions)
    print(f"mock_broker: librdkafka {cluster.version} from {cluster.library_path}", file=sys.stderr)

    done = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: done.set())
    signal.signal(signal.SIGINT, lambda *_: done.set())

    def watch_stdin():
        try:
            while sys.stdin.buffer.read(4096):
                pass
        except (OSError, ValueError):
            pass
        done.set()

    if not args.ignore_stdin:
        threading.Thread(target=watch_stdin, daemon=True).start()
    print(f"BOOTSTRAP {cluster.bootstrap}", flush=True)
    while not done.wait(0.5):
        pass
    cluster.close()


if __name__ == "__main__":
    main()
