#!/usr/bin/env bash
# The Kafka source's end-to-end tests against tansu, an Apache Kafka-compatible broker (crates.io,
# SQLite storage), instead of librdkafka's mock cluster: one fresh broker per test, the model's
# topics created by the test (tansu creates none on produce).
#
#   tests/kafka/tansu.sh            # builds tansu once (about 17 minutes on two cores), then runs
#
# The binary is kept in $CAUSEWAY_TOOLS (default ~/.cache/causeway-tools). Not part of
# scripts/test: the build alone would take half of its time; docs/operations.md says what each
# kind of Kafka test uses.
set -euo pipefail
cd "$(dirname "$0")/../.."

version=0.6.0
tools=${CAUSEWAY_TOOLS:-$HOME/.cache/causeway-tools}
tansu=$tools/tansu-$version/bin/tansu
if [ ! -x "$tansu" ]; then
    echo "tansu.sh: building tansu $version into $tools/tansu-$version" >&2
    cargo install tansu --version "$version" --locked --features libsql --root "$tools/tansu-$version"
fi

tests=(
    events_from_kafka_topics_are_stored_once_across_a_crash_and_a_poison_message_is_kept
    a_backlog_caught_up_from_partitions_raises_only_the_findings_that_happened_in_event_time
)
cargo build --quiet -p causeway --tests

failed=0
for name in "${tests[@]}"; do
    dir=$(mktemp -d)
    port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
    (cd "$dir" && exec "$tansu" broker --listener-url "tcp://127.0.0.1:$port" --advertised-listener-url "tcp://127.0.0.1:$port" \
        --storage-engine sqlite://tansu.db > broker.log 2>&1) &
    broker=$!
    for _ in $(seq 100); do
        (exec 3<> "/dev/tcp/127.0.0.1/$port") 2> /dev/null && break
        kill -0 "$broker" 2> /dev/null || { cat "$dir/broker.log" >&2; exit 1; }
        sleep 0.1
    done
    echo "tansu.sh: $name against tansu $version on 127.0.0.1:$port" >&2
    if ! CAUSEWAY_TEST_KAFKA=127.0.0.1:$port cargo test --quiet -p causeway --test kafka -- --exact "$name"; then
        failed=1
        echo "tansu.sh: $name failed; the broker's log: $dir/broker.log" >&2
    fi
    kill "$broker" 2> /dev/null || true
    wait "$broker" 2> /dev/null || true
    [ "$failed" = 1 ] || rm -rf "$dir"
done
exit "$failed"
