//! The lag monitor beside LinkedIn's Burrow (Debian's `burrow` 1.2.1, with the ZooKeeper it
//! needs), both watching the same Kafka-protocol broker (librdkafka's mock cluster, in this
//! process, reached over TCP) and the same consumer groups.
//!
//! Each group commits for real (OffsetCommit to the broker); as the mock keeps no
//! `__consumer_offsets` topic, each commit is also written there as a Kafka broker writes it —
//! the records Burrow and causeway both read. The commit times are chosen, so that each group is
//! scripted into one of Burrow's states: caught up (OK), lag growing (WARN), the same offset
//! committed with lag (STALL), no commit for longer than the window spans (STOP), the offset going
//! back (REWIND), and lag shrinking (OK). Causeway's statuses must equal Burrow's, its lag in
//! seconds must match when the messages were produced, and its windows must survive a SIGKILL.

mod common;

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use causeway_lag::offsets_topic::encode_commit;
use chrono::Utc;
use common::Server;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::mocking::MockCluster;
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};
use serde_json::Value;

const TOPIC: &str = "orders";

/// A child process killed when dropped.
struct Process(Child);

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

fn deadline_loop<T>(what: &str, seconds: u64, mut attempt: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + Duration::from_secs(seconds);
    loop {
        if let Some(v) = attempt() {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Debian's ZooKeeper, up once its `srvr` command reports a mode (`ruok` answers too early).
fn zookeeper(dir: &Path) -> (Process, u16) {
    let port = free_port();
    let config = dir.join("zoo.cfg");
    std::fs::create_dir_all(dir.join("zk")).unwrap();
    std::fs::write(
        &config,
        format!(
            "tickTime=2000\ndataDir={}\nclientPort={port}\nclientPortAddress=127.0.0.1\nadmin.enableServer=false\n4lw.commands.whitelist=ruok,srvr\n",
            dir.join("zk").display()
        ),
    )
    .unwrap();
    let child = Command::new("java")
        .args(["-cp", "/etc/zookeeper/conf:/usr/share/java/zookeeper.jar", "org.apache.zookeeper.server.ZooKeeperServerMain"])
        .arg(&config)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("java with Debian's zookeeper (scripts/test installs them)");
    let zk = Process(child);
    deadline_loop("ZooKeeper", 60, || {
        let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
        // A ZooKeeper still starting may take the connection and never answer it (seen: a test
        // blocked for minutes); the next attempt asks again.
        s.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
        s.write_all(b"srvr").ok()?;
        let mut answer = String::new();
        s.read_to_string(&mut answer).ok()?;
        answer.contains("Mode:").then_some(())
    });
    (zk, port)
}

/// Burrow on the broker, with the window and refresh causeway is given.
fn burrow(dir: &Path, zk_port: u16, brokers: &str) -> (Process, String) {
    let port = free_port();
    let config = format!(
        r#"[general]
pidfile="{dir}/burrow.pid"
[logging]
level="info"
[zookeeper]
servers=["127.0.0.1:{zk_port}"]
timeout=6
root-path="/burrow"
[client-profile.mock]
client-id="burrow-mock"
kafka-version="2.0.0"
[cluster.mock]
class-name="kafka"
servers=["{brokers}"]
client-profile="mock"
topic-refresh=2
offset-refresh=1
[consumer.mock]
class-name="kafka"
cluster="mock"
servers=["{brokers}"]
client-profile="mock"
offsets-topic="__consumer_offsets"
start-latest=false
[httpserver.default]
address="127.0.0.1:{port}"
[storage.default]
class-name="inmemory"
workers=4
intervals=3
expire-group=604800
min-distance=1
[evaluator.default]
class-name="caching"
expire-cache=1
"#,
        dir = dir.display()
    );
    std::fs::write(dir.join("burrow.toml"), config).unwrap();
    let child = Command::new("/usr/bin/Burrow")
        .arg("-config-dir")
        .arg(dir)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("Debian's burrow (scripts/test installs it)");
    let url = format!("http://127.0.0.1:{port}");
    let process = Process(child);
    deadline_loop("Burrow", 60, || reqwest::blocking::get(format!("{url}/burrow/admin")).ok().filter(|r| r.status().is_success()));
    (process, url)
}

fn get(url: &str) -> Option<Value> {
    reqwest::blocking::Client::builder().timeout(Duration::from_secs(10)).build().unwrap().get(url).send().ok()?.json().ok()
}

/// A group's commit: to the broker, as its consumer does, and to `__consumer_offsets`, as the
/// broker would, with the given commit time.
struct Committer {
    brokers: String,
    records: ThreadedProducer<DefaultProducerContext>,
}

impl Committer {
    fn commit(&self, group: &str, offset: i64, at_ms: i64) {
        let consumer: BaseConsumer = ClientConfig::new().set("bootstrap.servers", &self.brokers).set("group.id", group).create().unwrap();
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition_offset(TOPIC, 0, Offset::Offset(offset)).unwrap();
        consumer.assign(&tpl).unwrap();
        consumer.commit(&tpl, CommitMode::Sync).unwrap();
        let (key, value) = encode_commit(group, TOPIC, 0, offset, at_ms);
        self.records.send(BaseRecord::to("__consumer_offsets").key(&key).payload(&value).partition(0)).map_err(|(e, _)| e).unwrap();
        self.records.flush(Duration::from_secs(10)).unwrap();
    }
}

fn produce(producer: &ThreadedProducer<DefaultProducerContext>, n: usize) {
    for i in 0..n {
        producer.send(BaseRecord::<(), _>::to(TOPIC).payload(&format!("message {i}")).partition(0)).map_err(|(e, _)| e).unwrap();
    }
    producer.flush(Duration::from_secs(10)).unwrap();
}

/// causeway's group `name`, once the report holds it with `committed` as its last commit.
fn causeway_group(url: &str, name: &str, committed: i64) -> Value {
    deadline_loop(&format!("causeway to report {name} at {committed}"), 60, || {
        let report = get(&format!("{url}/v1/lag"))?;
        let group = report["groups"].as_array()?.iter().find(|g| g["group"] == name)?.clone();
        (group["partitions"][0]["committed_offset"] == committed).then_some(group)
    })
}

/// Burrow's status of group `name` with every partition (`/lag`; `/status` lists only the
/// partitions not OK), once it holds `committed` as its last commit.
fn burrow_group(url: &str, name: &str, committed: i64) -> Value {
    let mut last = Value::Null;
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Some(answer) = get(&format!("{url}/v3/kafka/mock/consumer/{name}/lag")) {
            if answer["status"]["partitions"][0]["end"]["offset"] == committed {
                return answer["status"].clone();
            }
            last = answer;
        }
        assert!(Instant::now() < deadline, "Burrow did not report {name} at {committed}; it says {last}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Both hold `committed` as the group's last commit and see the partition's high watermark at
/// `high`, in the group's current lag: Burrow's storage learns broker offsets apart from its topic
/// listing, so the lag is what shows the high watermark a new commit's lag will be computed
/// against. A commit's lag is fixed when a monitor reads it, against the high watermark it knows
/// then: a test that produces more before both have read the commit scripts a different lag.
fn both_see(causeway: &str, burrow: &str, group: &str, committed: i64, high: i64) {
    deadline_loop(&format!("causeway and Burrow to see commit {committed} and high watermark {high}"), 60, || {
        let report = get(&format!("{causeway}/v1/lag"))?;
        let ours = report["groups"].as_array()?.iter().find(|g| g["group"] == group)?.clone();
        let theirs = get(&format!("{burrow}/v3/kafka/mock/consumer/{group}/lag"))?;
        (ours["partitions"][0]["committed_offset"] == committed
            && ours["partitions"][0]["high_watermark"] == high
            && theirs["status"]["partitions"][0]["current_lag"] == high - committed)
            .then_some(())
    })
}

#[test]
fn consumer_group_statuses_equal_burrows_and_survive_a_restart() {
    let cluster = MockCluster::new(1).unwrap();
    cluster.create_topic(TOPIC, 1, 1).unwrap();
    cluster.create_topic("__consumer_offsets", 1, 1).unwrap();
    let brokers = cluster.bootstrap_servers();
    let dir = tempfile::tempdir().unwrap();
    let (_zk, zk_port) = zookeeper(dir.path());
    let (_burrow, burrow_url) = burrow(dir.path(), zk_port, &brokers);

    let config = dir.path().join("causeway.toml");
    std::fs::write(
        &config,
        format!("[kafka]\nbrokers = \"{brokers}\"\ntopics = [\"causeway-events\"]\n[lag]\ninterval = \"1s\"\nintervals = 3\nmin_distance = \"1s\"\n"),
    )
    .unwrap();
    let data = dir.path().join("data");
    let args = ["--config", config.to_str().unwrap()];
    let server = Server::start(&data, &args);

    let producer: ThreadedProducer<DefaultProducerContext> = ClientConfig::new().set("bootstrap.servers", &brokers).create().unwrap();
    let committer = Committer { brokers: brokers.clone(), records: ClientConfig::new().set("bootstrap.servers", &brokers).create().unwrap() };
    let t0 = Utc::now().timestamp_millis();
    let s = 1000;

    // 100 messages; WARN's lag grows across three commits as 50 more arrive between each.
    let before_first = Utc::now();
    produce(&producer, 100);
    deadline_loop("Burrow to see 100 messages", 60, || {
        (get(&format!("{burrow_url}/v3/kafka/mock/topic/{TOPIC}"))?["offsets"][0] == 100).then_some(())
    });
    committer.commit("g-warn", 10, t0 - 60 * s);
    both_see(&server.url, &burrow_url, "g-warn", 10, 100);
    produce(&producer, 50);
    both_see(&server.url, &burrow_url, "g-warn", 10, 150);
    committer.commit("g-warn", 20, t0 - 30 * s);
    both_see(&server.url, &burrow_url, "g-warn", 20, 150);
    let before_last = Utc::now();
    produce(&producer, 50);
    both_see(&server.url, &burrow_url, "g-warn", 20, 200);
    let seen_last = Utc::now();
    committer.commit("g-warn", 30, t0);
    // The other states, against 200 messages.
    let scripts: [(&str, [(i64, i64); 3]); 5] = [
        ("g-ok", [(150, -60), (180, -30), (200, 0)]),
        ("g-stall", [(50, -60), (50, -30), (50, 0)]),
        ("g-stop", [(50, -600), (60, -590), (70, -580)]),
        ("g-rewind", [(120, -60), (100, -30), (110, 0)]),
        ("g-behind", [(155, -60), (158, -30), (160, 0)]),
    ];
    for (group, commits) in scripts {
        for (offset, at) in commits {
            committer.commit(group, offset, t0 + at * s);
        }
    }

    let expected = [
        ("g-ok", 200, "OK", "OK"),
        ("g-warn", 30, "WARN", "WARN"),
        ("g-stall", 50, "ERR", "STALL"),
        ("g-stop", 70, "ERR", "STOP"),
        ("g-rewind", 110, "ERR", "REWIND"),
        ("g-behind", 160, "OK", "OK"),
    ];
    for (group, committed, group_status, partition_status) in expected {
        let ours = causeway_group(&server.url, group, committed);
        let theirs = burrow_group(&burrow_url, group, committed);
        assert_eq!(
            (&ours["status"], &ours["partitions"][0]["status"]),
            (&Value::from(group_status), &Value::from(partition_status)),
            "{group}: {ours}"
        );
        assert_eq!(
            (&ours["status"], &ours["partitions"][0]["status"]),
            (&theirs["status"], &theirs["partitions"][0]["status"]),
            "{group}: Burrow says {theirs}"
        );
        assert_eq!(ours["total_lag"], theirs["totallag"], "{group}: Burrow says {theirs}");
    }

    // Lag in seconds: g-behind's oldest unconsumed message (offset 160) came with the last 50, so
    // its age is the time since they were produced; g-stall's (offset 50) is older than the
    // monitor's first look at the partition, so its age is a lower bound, and says so.
    let report = get(&format!("{}/v1/lag", server.url)).unwrap();
    let as_of = causeway_envelope::parse_time(report["as_of"].as_str().unwrap()).unwrap();
    let group = |name: &str| report["groups"].as_array().unwrap().iter().find(|g| g["group"] == name).unwrap().clone();
    let behind = group("g-behind");
    let seconds = behind["partitions"][0]["lag_seconds"].as_f64().unwrap();
    let (low, high) = ((as_of - seen_last).as_seconds_f64() - 1.0, (as_of - before_last).as_seconds_f64() + 1.0);
    assert!((low..=high).contains(&seconds), "g-behind lag {seconds} s, not within [{low}, {high}]: {behind}");
    assert_eq!(behind["partitions"][0]["lag_seconds_at_least"], false, "{behind}");
    assert_eq!(behind["partitions"][0]["trend"], "shrinking", "{behind}");
    let stall = group("g-stall");
    let seconds = stall["partitions"][0]["lag_seconds"].as_f64().unwrap();
    assert!(seconds <= (as_of - before_first).as_seconds_f64() + 1.0, "{stall}");
    assert_eq!(stall["partitions"][0]["lag_seconds_at_least"], true, "{stall}");
    assert_eq!(stall["partitions"][0]["time_to_clear_seconds"], Value::Null, "a stalled group never clears: {stall}");
    assert_eq!(group("g-warn")["partitions"][0]["trend"], "growing");

    // The CLI: a row per group, its worst partition beside it; `≥` marks a lower bound.
    let out = Command::new(common::BIN).args(["lag", "--server", &server.url]).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    let row = |group: &str| text.lines().find(|l| l.contains(group)).unwrap_or_else(|| panic!("no row for {group}: {text}")).to_string();
    for (group, words) in [("g-stall", ["ERR", "STALL", "≥"]), ("g-warn", ["WARN", "growing", "170"]), ("g-behind", ["OK", "shrinking", "orders/0"])]
    {
        let line = row(group);
        assert!(words.iter().all(|w| line.contains(w)), "{group}: {line}");
    }
    assert!(text.contains("6 groups, evaluated "), "{text}");

    // Filters, and the metrics.
    let errors = get(&format!("{}/v1/lag?status=ERR", server.url)).unwrap();
    let names: Vec<&str> = errors["groups"].as_array().unwrap().iter().map(|g| g["group"].as_str().unwrap()).collect();
    assert_eq!(names, ["g-rewind", "g-stall", "g-stop"], "{errors}");
    let metrics = reqwest::blocking::get(format!("{}/metrics", server.url)).unwrap().text().unwrap();
    assert!(metrics.contains("causeway_consumer_group_status{group=\"g-stall\"} 3"), "{metrics}");
    assert!(metrics.contains("causeway_consumer_group_lag_messages{group=\"g-warn\"} 170"), "{metrics}");

    // The windows are stored: after a SIGKILL, the first evaluation has every group as before,
    // with nothing new committed.
    server.kill();
    let server = Server::start(&data, &args);
    for (group, committed, group_status, partition_status) in expected {
        let ours = causeway_group(&server.url, group, committed);
        assert_eq!(
            (&ours["status"], &ours["partitions"][0]["status"]),
            (&Value::from(group_status), &Value::from(partition_status)),
            "{group} after a restart: {ours}"
        );
    }
    let report = get(&format!("{}/v1/lag", server.url)).unwrap();
    assert_eq!(report["commits_read"], 0, "commits read again after the restart: {report}");
}
