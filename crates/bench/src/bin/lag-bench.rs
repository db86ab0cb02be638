//! `lag-bench`: the lag monitor watching many consumer groups (issue: 1,000 groups × 10
//! partitions judged within one polling interval), beside Burrow watching the same broker.
//!
//! A librdkafka mock cluster in this process holds one topic of `--partitions` partitions per
//! group, a message in each partition, and a `__consumer_offsets` topic with `--commits` commits per
//! group partition written as Kafka brokers write them. `causeway serve` (release build, fresh
//! store, `[lag] interval`) reads them; the bench waits until every commit is read and every
//! group is reported, then reads the time each later evaluation took (`evaluation_ms`: every
//! partition's offsets read from the broker, every group judged, the windows stored). With
//! `--burrow`, Debian's Burrow (and its ZooKeeper) watches the same broker: the bench times asking
//! it for every group's status, one request per group, as a dashboard does.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use causeway_lag::offsets_topic::encode_commit;
use clap::Parser;
use rdkafka::ClientConfig;
use rdkafka::mocking::MockCluster;
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};
use serde_json::Value;

#[derive(Debug, Parser)]
#[command(name = "lag-bench")]
struct Args {
    /// Consumer groups, each reading a topic of its own.
    #[arg(long, default_value_t = 1000)]
    groups: usize,
    /// Partitions per topic.
    #[arg(long, default_value_t = 10)]
    partitions: i32,
    /// Commits per group partition (a full window at Burrow's default `intervals`).
    #[arg(long, default_value_t = 10)]
    commits: usize,
    /// The lag monitor's polling interval, seconds.
    #[arg(long, default_value_t = 10)]
    interval: u64,
    /// Evaluations measured after the first complete one.
    #[arg(long, default_value_t = 5)]
    evaluations: usize,
    /// The causeway binary (a release build).
    #[arg(long, default_value = "target/release/causeway")]
    causeway: PathBuf,
    /// Also time Burrow (Debian's `burrow`, with ZooKeeper) answering every group's status.
    #[arg(long)]
    burrow: bool,
}

struct Process(Child);

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> anyhow::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

fn get(url: &str) -> Option<Value> {
    reqwest::blocking::Client::builder().timeout(Duration::from_secs(30)).build().ok()?.get(url).send().ok()?.json().ok()
}

fn wait_for<T>(what: &str, seconds: u64, mut attempt: impl FnMut() -> Option<T>) -> anyhow::Result<T> {
    let deadline = Instant::now() + Duration::from_secs(seconds);
    loop {
        if let Some(v) = attempt() {
            return Ok(v);
        }
        if Instant::now() > deadline {
            bail!("timed out waiting for {what}");
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status.lines().find_map(|l| l.strip_prefix("VmHWM:")).and_then(|v| v.trim().trim_end_matches(" kB").trim().parse().ok()).unwrap_or(0)
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let cluster = MockCluster::new(1)?;
    let brokers = cluster.bootstrap_servers();
    let topic = |g: usize| format!("bench-topic-{g:05}");
    let group = |g: usize| format!("bench-group-{g:05}");
    cluster.create_topic("__consumer_offsets", 10, 1)?;
    for g in 0..args.groups {
        cluster.create_topic(&topic(g), args.partitions, 1)?;
    }
    let producer: ThreadedProducer<DefaultProducerContext> =
        ClientConfig::new().set("bootstrap.servers", &brokers).set("linger.ms", "20").set("queue.buffering.max.messages", "1000000").create()?;
    // A message in every partition, so that the lag is not zero everywhere.
    for g in 0..args.groups {
        for p in 0..args.partitions {
            producer.send(BaseRecord::<(), _>::to(&topic(g)).payload("m").partition(p)).map_err(|(e, _)| e)?;
        }
    }
    // Commits a second apart, the last a second ago: each group's window is full and recent.
    let now = chrono::Utc::now().timestamp_millis();
    let started = Instant::now();
    let mut records = 0usize;
    for c in 0..args.commits {
        let at = now - ((args.commits - c) as i64) * 1000;
        for g in 0..args.groups {
            for p in 0..args.partitions {
                let (key, value) = encode_commit(&group(g), &topic(g), p, (c % 2) as i64, at);
                let target = (g % 10) as i32;
                loop {
                    match producer.send(BaseRecord::to("__consumer_offsets").key(&key).payload(&value).partition(target)) {
                        Ok(()) => break,
                        Err((e, _)) if e.to_string().contains("Queue full") => producer.poll(Duration::from_millis(10)),
                        Err((e, _)) => return Err(e.into()),
                    }
                }
                records += 1;
            }
        }
    }
    producer.flush(Duration::from_secs(120))?;
    eprintln!("lag-bench: {records} commits written in {:.1} s", started.elapsed().as_secs_f64());

    let dir = tempfile::tempdir()?;
    let config = dir.path().join("causeway.toml");
    std::fs::write(&config, format!("[kafka]\nbrokers = \"{brokers}\"\ntopics = [\"bench-unused\"]\n[lag]\ninterval = \"{}s\"\n", args.interval))?;
    let mut child = Command::new(&args.causeway)
        .args(["serve", "--listen", "127.0.0.1:0", "--data"])
        .arg(dir.path().join("data"))
        .arg("--config")
        .arg(&config)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .with_context(|| format!("cannot start {}", args.causeway.display()))?;
    let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
    let first = lines.next().context("causeway printed nothing")??;
    let url = first.strip_prefix("causeway listening on ").context("unexpected first line")?.to_string();
    std::thread::spawn(move || for _ in lines {});
    let pid = child.id();
    let _causeway = Process(child);

    let started = Instant::now();
    let complete = |report: &Value| {
        report["commits_read"].as_u64() == Some(records as u64)
            && report["groups"].as_array().is_some_and(|g| {
                g.len() == args.groups && g.iter().all(|g| g["partitions"].as_array().map(Vec::len) == Some(args.partitions as usize))
            })
    };
    let mut last = Value::Null;
    let first = wait_for("every commit read and every group reported", 600, || {
        let report = get(&format!("{url}/v1/lag"))?;
        if complete(&report) {
            return Some(report);
        }
        last = report;
        None
    })
    .with_context(|| {
        format!(
            "the lag monitor is {} with {} commits read, {} groups, last error {}",
            last["state"],
            last["commits_read"],
            last["groups"].as_array().map_or(0, Vec::len),
            last["last_error"]
        )
    })?;
    let caught_up = started.elapsed();
    let mut seen = first["as_of"].clone();
    let mut evaluations = Vec::new();
    while evaluations.len() < args.evaluations {
        let report = wait_for("the next evaluation", args.interval * 3 + 60, || get(&format!("{url}/v1/lag")).filter(|r| r["as_of"] != seen))?;
        seen = report["as_of"].clone();
        evaluations.push(report["evaluation_ms"].as_f64().unwrap_or(f64::NAN));
    }
    let statuses = {
        let mut by: std::collections::BTreeMap<String, usize> = Default::default();
        for g in first["groups"].as_array().into_iter().flatten() {
            *by.entry(g["status"].as_str().unwrap_or("?").to_string()).or_default() += 1;
        }
        by
    };
    let worst = evaluations.iter().cloned().fold(0.0, f64::max);
    let mean = evaluations.iter().sum::<f64>() / evaluations.len() as f64;

    let burrow = if args.burrow { Some(time_burrow(dir.path(), &brokers, &args, &group)?) } else { None };

    println!("## Lag monitor: {} groups × {} partitions", args.groups, args.partitions);
    println!();
    println!("| measure | value |");
    println!("|---|---|");
    println!("| commits in `__consumer_offsets` | {records} |");
    println!("| from start to every commit read and every group judged | {:.1} s |", caught_up.as_secs_f64());
    println!(
        "| one evaluation (offsets of {} partitions read, {} groups judged, windows stored), mean of {} | {mean:.0} ms |",
        args.groups * args.partitions as usize,
        args.groups,
        evaluations.len()
    );
    println!("| one evaluation, worst | {worst:.0} ms |");
    println!("| polling interval | {} s ({:.0}% of it used at worst) |", args.interval, worst / (args.interval as f64 * 10.0));
    println!("| group statuses | {statuses:?} |");
    println!("| causeway peak RSS | {} MiB |", rss_kib(pid) / 1024);
    if let Some((seconds, answered)) = burrow {
        println!("| Burrow: every group's status, one request each ({answered} answered) | {seconds:.1} s |");
    }
    Ok(())
}

/// Starts ZooKeeper and Burrow on the broker, waits until Burrow knows every group, and times
/// asking it for each group's status.
fn time_burrow(dir: &Path, brokers: &str, args: &Args, group: &dyn Fn(usize) -> String) -> anyhow::Result<(f64, usize)> {
    let zk_port = free_port()?;
    std::fs::create_dir_all(dir.join("zk"))?;
    std::fs::write(
        dir.join("zoo.cfg"),
        format!(
            "tickTime=2000\ndataDir={}\nclientPort={zk_port}\nclientPortAddress=127.0.0.1\nadmin.enableServer=false\n4lw.commands.whitelist=ruok,srvr\n",
            dir.join("zk").display()
        ),
    )?;
    let _zk = Process(
        Command::new("java")
            .args(["-cp", "/etc/zookeeper/conf:/usr/share/java/zookeeper.jar", "org.apache.zookeeper.server.ZooKeeperServerMain"])
            .arg(dir.join("zoo.cfg"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()?,
    );
    wait_for("ZooKeeper", 60, || {
        let mut s = TcpStream::connect(("127.0.0.1", zk_port)).ok()?;
        s.write_all(b"srvr").ok()?;
        let mut answer = String::new();
        s.read_to_string(&mut answer).ok()?;
        answer.contains("Mode:").then_some(())
    })?;
    let port = free_port()?;
    let burrow_dir = dir.join("burrow");
    std::fs::create_dir_all(&burrow_dir)?;
    std::fs::write(
        burrow_dir.join("burrow.toml"),
        format!(
            "[general]\npidfile=\"{d}/burrow.pid\"\n[logging]\nlevel=\"warn\"\n[zookeeper]\nservers=[\"127.0.0.1:{zk_port}\"]\ntimeout=6\nroot-path=\"/burrow\"\n\
             [client-profile.mock]\nclient-id=\"burrow-bench\"\nkafka-version=\"2.0.0\"\n[cluster.mock]\nclass-name=\"kafka\"\nservers=[\"{brokers}\"]\nclient-profile=\"mock\"\ntopic-refresh=60\noffset-refresh={i}\n\
             [consumer.mock]\nclass-name=\"kafka\"\ncluster=\"mock\"\nservers=[\"{brokers}\"]\nclient-profile=\"mock\"\noffsets-topic=\"__consumer_offsets\"\nstart-latest=false\n\
             [httpserver.default]\naddress=\"127.0.0.1:{port}\"\n[storage.default]\nclass-name=\"inmemory\"\nworkers=4\nintervals=10\nexpire-group=604800\nmin-distance=1\n\
             [evaluator.default]\nclass-name=\"caching\"\nexpire-cache=10\n",
            d = burrow_dir.display(),
            i = args.interval
        ),
    )?;
    let _burrow = Process(Command::new("/usr/bin/Burrow").arg("-config-dir").arg(&burrow_dir).stdout(Stdio::null()).stderr(Stdio::null()).spawn()?);
    let url = format!("http://127.0.0.1:{port}");
    wait_for("Burrow to know every group", 600, || {
        let list = get(&format!("{url}/v3/kafka/mock/consumer"))?;
        (list["consumers"].as_array()?.len() >= args.groups).then_some(())
    })?;
    let started = Instant::now();
    let mut answered = 0;
    for g in 0..args.groups {
        if get(&format!("{url}/v3/kafka/mock/consumer/{}/status", group(g))).is_some_and(|a| a["error"] == false) {
            answered += 1;
        }
    }
    Ok((started.elapsed().as_secs_f64(), answered))
}
