//! The README's five-minute tour, run as written against a seeded demo: every command of it that
//! talks to the demo runs, each output the README shows must be what the command prints (times,
//! ports and keyed hashes aside, which differ from run to run), and the ids the README uses must be
//! the ones the demo prints for its seed. When the README and the program drift apart, this fails.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};

use regex::Regex;

const BIN: &str = env!("CARGO_BIN_EXE_causeway");

/// The verbs of the tour that talk to the running demo; the others need files of the reader's.
const DEMO_VERBS: [&str; 6] = ["chain", "journey", "findings", "dlq", "state", "sql"];

/// A command of the README and the output it shows under it (empty when it shows none).
#[derive(Debug)]
struct Example {
    command: String,
    output: Vec<String>,
}

/// The `causeway …` commands of the tour's `sh` blocks on the demo (steps 1 to 5), each with the
/// lines printed under it.
fn readme_examples() -> Vec<Example> {
    let readme = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../../README.md")).unwrap();
    let tour = readme.split("## A five-minute tour").nth(1).expect("README has the tour").split("**6. ").next().unwrap();
    let mut examples: Vec<Example> = Vec::new();
    let mut in_block = false;
    for line in tour.lines() {
        if line.starts_with("```") {
            in_block = line == "```sh";
            continue;
        }
        if !in_block {
            continue;
        }
        if let Some(rest) = line.strip_prefix("causeway ") {
            // A comment after a command is the README's, not the command's.
            let command = rest.split("  #").next().unwrap().trim_end();
            examples.push(Example { command: command.to_string(), output: Vec::new() });
        } else if let Some(last) = examples.last_mut() {
            last.output.push(line.to_string());
        }
    }
    examples
}

/// What differs between two runs of the same seed: times, ages, ports, keyed PII hashes.
fn normalize(text: &str) -> String {
    let rules = [
        (r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z", "<time>"),
        (r"\d+ s ago", "<n> s ago"),
        (r"127\.0\.0\.1:\d+", "127.0.0.1:<port>"),
        (r"hmac-sha256:[0-9a-f]{64}", "hmac-sha256:<hash>"),
    ];
    let mut text = text.trim_end().to_string();
    for (pattern, replacement) in rules {
        text = Regex::new(pattern).unwrap().replace_all(&text, replacement).into_owned();
    }
    text
}

struct Demo {
    child: Child,
}

impl Drop for Demo {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn the_readme_tour_is_what_a_seeded_demo_prints() {
    let examples = readme_examples();
    assert!(examples.len() >= 8, "the tour's commands were not found in the README: {examples:?}");
    let data = tempfile::tempdir().unwrap();
    let mut demo = Demo {
        child: Command::new(BIN)
            .args(["demo", "--listen", "127.0.0.1:0", "--seed", "1", "--data"])
            .arg(data.path())
            // `causeway` on PATH is this binary, so the demo prints commands as the README does.
            .env("PATH", format!("{}:{}", Path::new(BIN).parent().unwrap().display(), std::env::var("PATH").unwrap_or_default()))
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap(),
    };
    let mut lines = BufReader::new(demo.child.stdout.take().unwrap()).lines().map(Result::unwrap);
    let mut server = None;
    let mut printed_tour = Vec::new();
    // The demo prints its tour once the chosen order's missing notification is an open finding
    // (about 30 s in); reading its output line by line is the synchronisation.
    for line in lines.by_ref() {
        if let Some(web) = line.strip_prefix("  web:  ") {
            server = Some(web.trim_end_matches('/').to_string());
        }
        if line.contains("lost its customer notification") {
            for command in lines.by_ref().take(6) {
                printed_tour.push(command.trim().to_string());
            }
            break;
        }
    }
    let server = server.expect("the demo prints its web address");
    std::thread::spawn(move || for _ in lines {});
    assert_eq!(printed_tour.len(), 6, "the demo printed no tour: {printed_tour:?}");

    // The README's ids are the seed's: every command the demo offers is in the README verbatim.
    let readme_commands: Vec<&str> = examples.iter().map(|e| e.command.as_str()).collect();
    for printed in &printed_tour {
        let command = printed.strip_prefix("causeway ").unwrap_or_else(|| panic!("not a causeway command: {printed}"));
        let command = command.strip_suffix(&format!(" --server {server}")).unwrap_or(command);
        assert!(
            readme_commands.contains(&command),
            "the demo suggests `causeway {command}`, which the README's tour lacks; it has:\n{readme_commands:#?}"
        );
    }

    let mut ran = 0;
    for example in &examples {
        let verb = example.command.split_whitespace().next().unwrap();
        if !DEMO_VERBS.contains(&verb) || example.command.contains('…') {
            continue;
        }
        let output =
            Command::new("sh").arg("-c").arg(format!("\"$0\" {} --server \"$1\"", example.command)).args([BIN, server.as_str()]).output().unwrap();
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert!(output.status.success(), "`causeway {}` failed: {}{}", example.command, stdout, String::from_utf8_lossy(&output.stderr));
        ran += 1;
        if example.output.is_empty() {
            continue;
        }
        let shown = normalize(&example.output.join("\n"));
        let printed = normalize(&stdout);
        assert_eq!(printed, shown, "`causeway {}` prints something else than the README shows", example.command);
    }
    assert!(ran >= 8, "only {ran} of the tour's commands ran");

    // SIGTERM ends the demo cleanly.
    // SAFETY: kill(2) on our own child, which has not been waited for yet.
    unsafe { libc::kill(demo.child.id() as i32, libc::SIGTERM) };
    assert!(demo.child.wait().unwrap().success());
}
