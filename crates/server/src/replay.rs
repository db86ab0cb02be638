//! The DLQ replayer: what a replay sends, where, and that one record is sent by one request at a
//! time. The endpoints that drive it (`/v1/dlq/…/replay`) are in `api::dlq`.
//!
//! **Invariants:**
//! - A replay sends the original event exactly as it was kept (body byte for byte, its content
//!   type when that is a media type), to the consumer's configured `replay_url`.
//! - A record's replay slot is taken before the record is read and held until the replay is
//!   audited ([`Replayer::claim`]): one record is never replayed by two requests at once.

use std::collections::{BTreeMap, HashSet};
use std::sync::Mutex;
use std::time::Duration;

use base64::Engine as _;
use causeway_store::{DlqRow, ReplayOutcome};
use serde_json::{Map, Value, json};

/// A consumer of the estate, from `[consumers.NAME]` in the server configuration.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Consumer {
    /// Where a replay of its dead letters is POSTed.
    pub replay_url: Option<String>,
}

/// Sends replays; knows the consumers and which records are being replayed right now.
pub struct Replayer {
    consumers: BTreeMap<String, Consumer>,
    client: reqwest::Client,
    in_flight: Mutex<HashSet<i64>>,
}

/// How long a replay target may take to answer.
const REPLAY_TIMEOUT: Duration = Duration::from_secs(10);
/// Longest accepted reported content type, in bytes.
pub(crate) const MAX_CONTENT_TYPE_BYTES: usize = 255;

impl Replayer {
    pub fn new(consumers: BTreeMap<String, Consumer>) -> Replayer {
        let client = reqwest::Client::builder().timeout(REPLAY_TIMEOUT).build().expect("an HTTP client without TLS builds");
        Replayer { consumers, client, in_flight: Mutex::new(HashSet::new()) }
    }

    /// Where `consumer`'s dead letters are replayed to, if configured.
    pub(crate) fn target(&self, consumer: &str) -> Option<&str> {
        self.consumers.get(consumer)?.replay_url.as_deref()
    }

    /// The replay slot of record `id`, held until dropped; `None` while another request holds it.
    pub(crate) fn claim(&self, id: i64) -> Option<InFlight<'_>> {
        let claimed = self.in_flight.lock().expect("in-flight lock").insert(id);
        // Built only once claimed: dropping a guard frees the slot, even one another request holds.
        claimed.then(|| InFlight(self, id))
    }

    /// POSTs the original event to the target, as it was kept.
    pub(crate) async fn send(&self, target: &str, replay: ReplayRequest) -> ReplayOutcome {
        let mut request = self.client.post(target);
        for (name, value) in &replay.headers {
            request = request.header(*name, value);
        }
        match request.body(replay.body).send().await {
            Ok(response) if response.status().is_success() => ReplayOutcome::Sent { http_status: response.status().as_u16() },
            Ok(response) => {
                let code = response.status().as_u16();
                let text = response.text().await.unwrap_or_default();
                let text: String = text.chars().take(300).collect();
                ReplayOutcome::Failed { http_status: Some(code), error: format!("the target answered HTTP {code}: {}", text.trim()) }
            }
            Err(e) => ReplayOutcome::Failed { http_status: None, error: format!("the target could not be reached: {e}") },
        }
    }
}

impl Default for Replayer {
    fn default() -> Self {
        Replayer::new(BTreeMap::new())
    }
}

/// Holds a record's replay slot until dropped.
pub(crate) struct InFlight<'r>(&'r Replayer, i64);

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.in_flight.lock().expect("in-flight lock").remove(&self.1);
    }
}

/// The request a replay of `row` sends: one definition for the send and for the dry run's
/// description of it.
pub(crate) struct ReplayRequest {
    content_type: String,
    headers: Vec<(&'static str, String)>,
    body: Vec<u8>,
}

impl ReplayRequest {
    pub(crate) fn of(row: &DlqRow) -> ReplayRequest {
        // Reports are checked to carry a media type; a record kept before that check may not.
        let content_type = row.content_type.clone().filter(|ct| is_media_type(ct)).unwrap_or_else(|| "application/json".into());
        ReplayRequest {
            headers: vec![("content-type", content_type.clone()), ("x-causeway-dlq-id", row.id.to_string())],
            content_type,
            body: row.original().unwrap_or_default().to_vec(),
        }
    }

    /// The request as a dry run answers it: the body as the exact text sent, with `body_json`
    /// beside it when it is JSON (to print it readably); a body that is not UTF-8 as base64.
    pub(crate) fn describe(&self, target: &str) -> Value {
        let headers: Map<String, Value> = self.headers.iter().map(|(k, v)| (k.to_string(), json!(v))).collect();
        let mut v = json!({
            "method": "POST", "url": target, "content_type": self.content_type, "headers": headers,
            "body_bytes": self.body.len(),
        });
        match std::str::from_utf8(&self.body) {
            Ok(text) => {
                v["body"] = json!(text);
                v["body_encoding"] = json!("utf-8");
                if let Ok(parsed) = serde_json::from_str::<Value>(text) {
                    v["body_json"] = parsed;
                }
            }
            Err(_) => {
                v["body"] = json!(base64::engine::general_purpose::STANDARD.encode(&self.body));
                v["body_encoding"] = json!("base64");
                v["note"] = json!("the body is not UTF-8 text: shown as base64; the replay sends the decoded bytes");
            }
        }
        v
    }
}

/// A media type as HTTP writes one: `type/subtype`, then `; name=value` parameters (a value a
/// token or a quoted string), printable ASCII, at most [`MAX_CONTENT_TYPE_BYTES`] bytes.
pub(crate) fn is_media_type(text: &str) -> bool {
    fn token(c: u8) -> bool {
        c.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&c)
    }
    fn text_char(c: u8) -> bool {
        c == b'\t' || (0x20..0x7f).contains(&c)
    }
    let b = text.as_bytes();
    if b.is_empty() || b.len() > MAX_CONTENT_TYPE_BYTES {
        return false;
    }
    let take = |i: &mut usize| {
        let start = *i;
        while *i < b.len() && token(b[*i]) {
            *i += 1;
        }
        *i > start
    };
    let skip_space = |i: &mut usize| {
        while *i < b.len() && (b[*i] == b' ' || b[*i] == b'\t') {
            *i += 1;
        }
    };
    let mut i = 0;
    if !take(&mut i) || b.get(i) != Some(&b'/') {
        return false;
    }
    i += 1;
    if !take(&mut i) {
        return false;
    }
    loop {
        skip_space(&mut i);
        if i == b.len() {
            return true;
        }
        if b[i] != b';' {
            return false;
        }
        i += 1;
        skip_space(&mut i);
        if !take(&mut i) || b.get(i) != Some(&b'=') {
            return false;
        }
        i += 1;
        if b.get(i) == Some(&b'"') {
            i += 1;
            loop {
                match b.get(i) {
                    Some(b'"') => {
                        i += 1;
                        break;
                    }
                    Some(b'\\') if b.get(i + 1).is_some_and(|c| text_char(*c)) => i += 2,
                    Some(c) if text_char(*c) && *c != b'\\' => i += 1,
                    _ => return false,
                }
            }
        } else if !take(&mut i) {
            return false;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A body that is not UTF-8 is described as base64, with a note; text as it is.
    #[test]
    fn a_dry_run_describes_a_body_that_is_not_text_as_base64() {
        let binary = ReplayRequest { content_type: "application/octet-stream".into(), headers: vec![], body: vec![0xff, 0x00, 0x61] };
        let v = binary.describe("http://t/replay");
        assert_eq!((v["body"].as_str(), v["body_encoding"].as_str(), v["body_bytes"].as_u64()), (Some("/wBh"), Some("base64"), Some(3)));
        assert!(v["note"].as_str().unwrap().contains("not UTF-8"), "{v}");
        assert!(v.get("body_json").is_none());
        let text = ReplayRequest { content_type: "text/plain".into(), headers: vec![], body: b"not json".to_vec() };
        let v = text.describe("http://t/replay");
        assert_eq!((v["body"].as_str(), v["body_encoding"].as_str()), (Some("not json"), Some("utf-8")));
        assert!(v.get("body_json").is_none() && v.get("note").is_none(), "{v}");
    }
}
