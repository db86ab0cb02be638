//! `causeway store stats`: what a running server's store holds and where (`GET /v1/store`).

use std::process::ExitCode;

use clap::Subcommand;
use comfy_table::{CellAlignment, Table, presets::UTF8_FULL_CONDENSED};
use serde_json::Value;

use crate::client::{http, read_or_print, url};
use crate::{ClientArgs, count};

#[derive(Debug, Subcommand)]
pub enum StoreCommand {
    /// Events hot and sealed, the events' JSON as received beside the bytes on disk, the oldest
    /// event, and every sealed segment.
    Stats {
        #[command(flatten)]
        client: ClientArgs,
    },
}

pub fn run(command: StoreCommand) -> anyhow::Result<ExitCode> {
    match command {
        StoreCommand::Stats { client } => stats(&client),
    }
}

fn stats(args: &ClientArgs) -> anyhow::Result<ExitCode> {
    let Some(body) = read_or_print(args, http(args)?.get(url(args, "/v1/store")))? else {
        return Ok(ExitCode::SUCCESS);
    };
    print!("{}", render(&body));
    Ok(ExitCode::SUCCESS)
}

/// The retention line: what is configured, and what goes next.
fn retention(s: &Value) -> Option<String> {
    let age = s["retention_seconds"].as_u64();
    let max_disk = s["max_disk_bytes"].as_u64();
    if age.is_none() && max_disk.is_none() {
        return None;
    }
    let mut bounds = Vec::new();
    if let Some(a) = age {
        bounds.push(match a {
            a if a % 86_400 == 0 => count(a / 86_400, "day"),
            a if a % 3_600 == 0 => count(a / 3_600, "hour"),
            a => count(a, "second"),
        });
    }
    if let Some(m) = max_disk {
        bounds.push(format!("at most {} on disk", bytes(m)));
    }
    let next = &s["next_removal"];
    let next = match (next["reason"].as_str(), next["expires_at"].as_str()) {
        (Some("max_disk"), _) => format!(
            "next: {} ({}), over the disk bound now",
            next["file"].as_str().unwrap_or("?"),
            count(next["events"].as_u64().unwrap_or(0), "event")
        ),
        (Some(_), Some(at)) => {
            format!("next: {} ({}) at {at}", next["file"].as_str().unwrap_or("?"), count(next["events"].as_u64().unwrap_or(0), "event"))
        }
        _ => "nothing sealed to remove yet".to_string(),
    };
    Some(format!("retention: {}; {next}\n", bounds.join(", ")))
}

/// The answer of `GET /v1/store` as a person reads it: a summary, then a row per segment.
fn render(s: &Value) -> String {
    let n = |v: &Value| v.as_u64().unwrap_or(0);
    let per_segment = n(&s["segment_events"]);
    let segments = s["segments"].as_array().map(Vec::as_slice).unwrap_or_default();
    let mut out = String::new();
    let events = n(&s["events"]);
    let split = if per_segment == 0 {
        "all hot: sealing is off ([store] segment_events = 0)".to_string()
    } else {
        format!(
            "{} hot, {} sealed in {} of {}",
            n(&s["hot_events"]),
            n(&s["sealed_events"]),
            count(segments.len() as u64, "segment"),
            count(per_segment, "event")
        )
    };
    out.push_str(&format!("events:  {} ({split}; log end {})\n", count(events, "event"), n(&s["log_end"])));
    out.push_str(&format!(
        "size:    {} as received, {} on disk, ratio {} (database {}, segments {})\n",
        bytes(n(&s["raw_bytes"])),
        bytes(n(&s["disk_bytes"])),
        ratio(&s["disk_ratio"]),
        bytes(n(&s["database_bytes"])),
        bytes(n(&s["segment_bytes"])),
    ));
    let or_none = |v: &Value| v.as_str().unwrap_or("none").to_string();
    out.push_str(&format!("oldest:  event time {}, received {}\n", or_none(&s["oldest_time"]), or_none(&s["oldest_received_at"])));
    if let Some(line) = retention(s) {
        out.push_str(&line);
    }
    if segments.is_empty() {
        if per_segment > 0 {
            // The store keeps the newest half a segment's worth hot (`StoreSettings::segment_events`).
            out.push_str(&format!(
                "no segment sealed yet: events are sealed {per_segment} at a time, the newest {} always staying hot\n",
                per_segment / 2
            ));
        }
        return out;
    }
    let mut table = Table::new();
    table.load_preset(UTF8_FULL_CONDENSED);
    table.set_header(["file", "seqs", "events", "time range (UTC)", "raw", "on disk", "ratio"]);
    for g in segments {
        let (raw, file) = (n(&g["raw_bytes"]), n(&g["file_bytes"]));
        let seg_ratio = if raw > 0 { format!("{:.2}", file as f64 / raw as f64) } else { "-".into() };
        table.add_row([
            g["file"].as_str().unwrap_or("").to_string(),
            format!("{}–{}", n(&g["first_seq"]), n(&g["last_seq"])),
            n(&g["events"]).to_string(),
            time_range(g["min_time"].as_str().unwrap_or(""), g["max_time"].as_str().unwrap_or("")),
            bytes(raw),
            bytes(file),
            seg_ratio,
        ]);
    }
    for column in [2, 4, 5, 6] {
        if let Some(c) = table.column_mut(column) {
            c.set_cell_alignment(CellAlignment::Right);
        }
    }
    out.push_str(&format!("{table}\n"));
    out
}

/// Event times to the second, the date once when both fall on it: `2026-11-23 10:00:00 – 10:04:09`.
/// Text that is no RFC 3339 time is shown as it is.
fn time_range(min: &str, max: &str) -> String {
    let parse = |t: &str| chrono::DateTime::parse_from_rfc3339(t).ok().map(|t| t.with_timezone(&chrono::Utc));
    match (parse(min), parse(max)) {
        (Some(a), Some(b)) if a.date_naive() == b.date_naive() => format!("{} – {}", a.format("%Y-%m-%d %H:%M:%S"), b.format("%H:%M:%S")),
        (Some(a), Some(b)) => format!("{} – {}", a.format("%Y-%m-%d %H:%M:%S"), b.format("%Y-%m-%d %H:%M:%S")),
        _ => format!("{min} – {max}"),
    }
}

/// `disk_ratio`: on disk ÷ as received, two decimals; `-` when nothing is stored.
fn ratio(v: &Value) -> String {
    v.as_f64().map_or("-".to_string(), |r| format!("{r:.2}"))
}

/// A size in bytes as a person reads it: `812 B`, `1.5 KiB`, `23.4 MiB`, `1.2 GiB`.
fn bytes(n: u64) -> String {
    const UNITS: [&str; 4] = ["KiB", "MiB", "GiB", "TiB"];
    if n < 1024 {
        return format!("{n} B");
    }
    let mut value = n as f64 / 1024.0;
    let mut unit = 0;
    // Rounded to one decimal, a value just under 1024 would read 1024.0: the next unit then.
    while value >= 1023.95 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    format!("{value:.1} {}", UNITS[unit])
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn sizes_read_in_binary_units_with_one_decimal() {
        assert_eq!(bytes(0), "0 B");
        assert_eq!(bytes(1023), "1023 B");
        assert_eq!(bytes(1024), "1.0 KiB");
        assert_eq!(bytes(1536), "1.5 KiB");
        assert_eq!(bytes(1024 * 1024 - 1), "1.0 MiB");
        assert_eq!(bytes(10 * 1024 * 1024 + 300 * 1024), "10.3 MiB");
        assert_eq!(bytes(3 << 30), "3.0 GiB");
        assert_eq!(bytes(5 << 40), "5.0 TiB");
        assert_eq!(bytes(u64::MAX), "16777216.0 TiB");
    }

    #[test]
    fn time_ranges_name_the_date_once_when_they_can() {
        assert_eq!(time_range("2026-11-23T10:00:00.000000Z", "2026-11-23T10:04:09.300000Z"), "2026-11-23 10:00:00 – 10:04:09");
        assert_eq!(time_range("2026-11-23T23:59:59.900000Z", "2026-11-24T00:00:01Z"), "2026-11-23 23:59:59 – 2026-11-24 00:00:01");
        assert_eq!(time_range("2026-11-23T10:00:00+02:00", "2026-11-23T10:00:01+02:00"), "2026-11-23 08:00:00 – 08:00:01");
        assert_eq!(time_range("then", "now"), "then – now");
    }

    #[test]
    fn an_empty_store_and_one_that_never_seals_say_so() {
        let empty = json!({"events": 0, "log_end": 0, "hot_events": 0, "sealed_events": 0, "sealed_upto": 0, "segments": [],
                           "raw_bytes": 0, "database_bytes": 4096, "segment_bytes": 0, "disk_bytes": 4096, "disk_ratio": null,
                           "oldest_time": null, "oldest_received_at": null, "segment_events": 1000});
        let text = render(&empty);
        assert!(text.contains("events:  0 events (0 hot, 0 sealed in 0 segments of 1000 events; log end 0)"), "{text}");
        assert!(text.contains("0 B as received, 4.0 KiB on disk, ratio -"), "{text}");
        assert!(text.contains("oldest:  event time none, received none"), "{text}");
        assert!(text.contains("no segment sealed yet: events are sealed 1000 at a time, the newest 500 always staying hot"), "{text}");
        assert!(!text.contains("retention"), "{text}");
        let never = json!({"segment_events": 0, "events": 1, "segments": [], "disk_ratio": 12.5});
        let text = render(&never);
        assert!(text.contains("1 event (all hot: sealing is off ([store] segment_events = 0)"), "{text}");
        assert!(text.contains("ratio 12.50") && !text.contains("no segment sealed"), "{text}");
    }

    #[test]
    fn retention_says_its_bounds_and_what_goes_next() {
        let next = json!({"file": "a.cwseg", "first_seq": 1, "last_seq": 1000, "events": 1000, "file_bytes": 9, "expires_at": "2027-01-05T08:10:42.118734Z", "reason": "retention"});
        let s = json!({"segment_events": 1000, "segments": [], "retention_seconds": 2_592_000, "max_disk_bytes": null, "next_removal": next});
        assert!(render(&s).contains("retention: 30 days; next: a.cwseg (1000 events) at 2027-01-05T08:10:42.118734Z\n"), "{}", render(&s));
        let s = json!({"segment_events": 1000, "segments": [], "retention_seconds": 129_600, "max_disk_bytes": 53_687_091_200u64,
                       "next_removal": {"file": "b.cwseg", "events": 1, "reason": "max_disk", "expires_at": null}});
        assert!(
            render(&s).contains("retention: 36 hours, at most 50.0 GiB on disk; next: b.cwseg (1 event), over the disk bound now\n"),
            "{}",
            render(&s)
        );
        let s = json!({"segment_events": 1000, "segments": [], "retention_seconds": 90, "max_disk_bytes": null, "next_removal": null});
        assert!(render(&s).contains("retention: 90 seconds; nothing sealed to remove yet\n"), "{}", render(&s));
    }
}
