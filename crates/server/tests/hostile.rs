//! Hostile and careless input: nothing a client sends is silently lost or altered, and no client
//! mistake is answered 5xx. Each test is a regression of an attack that once got through.

mod common;

use std::time::Instant;

use axum::body::Body;
use axum::http::{HeaderValue, Request, StatusCode};
use causeway_envelope::ParseOptions;
use causeway_server::{AppState, app};
use causeway_store::{DlqReport, SqlLimits, Store};
use common::Api;
use http_body_util::BodyExt;
use serde_json::{Value, json};
use tower::ServiceExt;

fn event(id: &str) -> Value {
    json!({"specversion": "1.0", "id": id, "source": "s", "type": "T", "time": "2026-11-23T10:00:00Z", "correlationid": "c", "data": {"k": 1}})
}

/// A raw answer: status, headers and the exact body bytes.
async fn raw(api: &Api, request: Request<Body>) -> (StatusCode, axum::http::HeaderMap, Vec<u8>) {
    let response = api.router.clone().oneshot(request).await.unwrap();
    let (parts, body) = response.into_parts();
    (parts.status, parts.headers, body.collect().await.unwrap().to_bytes().to_vec())
}

async fn original(api: &Api, id: &Value) -> (StatusCode, axum::http::HeaderMap, Vec<u8>) {
    raw(api, Request::get(format!("/v1/dlq/{id}/original")).body(Body::empty()).unwrap()).await
}

async fn report(api: &Api, extra: Value) -> (StatusCode, Value) {
    let mut body = json!({"event": event("r1"), "consumer": "notification-service", "error_type": "KeyError", "error_message": "'customerEmail'"});
    for (k, v) in extra.as_object().unwrap() {
        body[k] = v.clone();
    }
    api.post_json("/v1/dlq", body).await
}

/// Regression: NDJSON lines with invalid UTF-8 were rewritten (each bad byte replaced by U+FFFD):
/// ids `h-\xff` and `h-\xfe` both became `h-\u{fffd}`, so the second was answered "duplicate" and
/// dropped, and bad bytes in `data` were stored replaced. Such a line is refused as
/// `malformed_json` and its DLQ record keeps the original bytes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ndjson_lines_that_are_not_utf8_are_refused_and_kept_byte_for_byte() {
    let api = Api::new();
    let line = |id: &[u8]| {
        let mut l = br#"{"specversion":"1.0","id":"h-"#.to_vec();
        l.extend_from_slice(id);
        l.extend_from_slice(br#"","source":"s","type":"T","time":"2026-11-23T10:00:00Z","correlationid":"c"}"#);
        l
    };
    let mut bad_data = event("h-data").to_string().into_bytes();
    let at = bad_data.windows(3).position(|w| w == b"\"k\"").unwrap();
    bad_data.insert(at + 2, 0xff);
    let lines = [line(b"\xff"), line(b"\xfe"), bad_data, line(b"ok")];
    let body = lines.join(&b'\n');
    let (status, answer) = api.post("application/x-ndjson", body).await;
    assert_eq!(status, StatusCode::MULTI_STATUS, "{answer}");
    assert_eq!((answer["accepted"].as_u64(), answer["duplicates"].as_u64(), answer["rejected"].as_u64()), (Some(1), Some(0), Some(3)), "{answer}");
    for (i, sent) in lines.iter().take(3).enumerate() {
        let result = &answer["results"][i];
        assert_eq!(result["error_type"], "malformed_json", "{result}");
        assert!(result["reason"].as_str().unwrap().contains("not UTF-8"), "{result}");
        let (status, _, kept) = original(&api, &result["dlq_id"]).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(&kept, sent, "line {i} is kept byte for byte");
        let (_, record) = api.get(&format!("/v1/dlq/{}", result["dlq_id"])).await;
        assert_eq!(record["record"]["original_event_encoding"], "base64", "{record}");
    }
    let (status, _) = api.get("/v1/events/h-%EF%BF%BD").await;
    assert_eq!(status, StatusCode::NOT_FOUND, "no event was stored under a replaced id");

    // A whole body that is not UTF-8 is refused, and its record keeps it byte for byte too.
    let mut body = event("w1").to_string().into_bytes();
    body.insert(10, 0xc3);
    let (status, answer) = api.post("application/cloudevents+json", body.clone()).await;
    assert_eq!((status, answer["error"]["code"].as_str()), (StatusCode::BAD_REQUEST, Some("malformed_json")), "{answer}");
    assert_eq!(original(&api, &answer["dlq_id"]).await.2, body);
}

/// Regression: a key given twice was accepted with the last value winning, so an event whose id
/// is ambiguous was stored under one of them. It is refused as malformed and kept in the DLQ.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn duplicate_keys_are_refused_and_kept() {
    let api = Api::new();
    let twice = r#"{"specversion":"1.0","id":"d1","id":"d2","source":"s","type":"T","time":"2026-11-23T10:00:00Z","correlationid":"c"}"#;
    let (status, answer) = api.post("application/cloudevents+json", twice).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{answer}");
    assert_eq!(answer["error"]["code"], "malformed_json");
    assert!(answer["error"]["message"].as_str().unwrap().contains("the key 'id' appears twice"), "{answer}");
    assert_eq!(original(&api, &answer["dlq_id"]).await.2, twice.as_bytes());
    for id in ["d1", "d2"] {
        assert_eq!(api.get(&format!("/v1/events/{id}")).await.0, StatusCode::NOT_FOUND, "{id} was not stored");
    }
    let (status, answer) = api.post("application/x-ndjson", format!("{twice}\n{}", event("d3"))).await;
    assert_eq!(status, StatusCode::MULTI_STATUS, "{answer}");
    assert_eq!(answer["results"][0]["error_type"], "malformed_json");
    assert_eq!(original(&api, &answer["results"][0]["dlq_id"]).await.2, twice.as_bytes());
}

/// Regression: ids up to the 1 MiB event limit were accepted but could not be fetched (414).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn identifiers_longer_than_a_url_can_carry_are_refused() {
    let api = Api::new();
    let long = "é".repeat(256); // 256 characters, 512 bytes
    let (status, answer) = api.post("application/cloudevents+json", event(&long).to_string()).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    let encoded: String = long.bytes().map(|b| format!("%{b:02X}")).collect();
    let (status, stored) = api.get(&format!("/v1/events/{encoded}")).await;
    assert_eq!((status, stored["id"].as_str()), (StatusCode::OK, Some(long.as_str())));
    let mut e = event(&"x".repeat(1_000_000));
    let (status, answer) = api.post("application/cloudevents+json", e.to_string()).await;
    assert_eq!((status, answer["error"]["code"].as_str()), (StatusCode::BAD_REQUEST, Some("invalid_attribute")), "{answer}");
    let message = answer["error"]["message"].as_str().unwrap();
    assert!(message.contains("id is 1000000 characters") && message.contains("over the 256-character limit"), "{message}");
    assert!(answer["results"][0].get("id").is_none(), "an id over the cap is not echoed back");
    e = event("ok-id");
    e["source"] = json!("s".repeat(1025));
    e["correlationid"] = json!("c");
    let (_, answer) = api.post("application/cloudevents+json", e.to_string()).await;
    let message = answer["error"]["message"].as_str().unwrap();
    assert!(message.contains("source is 1025 characters") && message.contains("over the 1024-character limit"), "{message}");
}

/// Regression: raw UTF-8 in a ce-* header was dropped and the event answered "attribute 'type'
/// is missing": the answer now says the header is not ASCII and how to encode it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ce_header_that_is_not_ascii_is_named() {
    let api = Api::new();
    let request = Request::post("/v1/events")
        .header("content-type", "application/json")
        .header("ce-specversion", "1.0")
        .header("ce-id", "b1")
        .header("ce-source", "s")
        .header("ce-type", HeaderValue::from_bytes("Zahlung\u{e9}".as_bytes()).unwrap())
        .header("ce-time", "2026-11-23T10:00:00Z")
        .header("ce-correlationid", "c")
        .body(Body::from("{}"))
        .unwrap();
    let (status, answer) = api.send(request).await;
    assert_eq!((status, answer["error"]["code"].as_str()), (StatusCode::BAD_REQUEST, Some("invalid_attribute")), "{answer}");
    let message = answer["error"]["message"].as_str().unwrap();
    assert!(message.contains("ce-type") && message.contains("not ASCII") && message.contains("percent-encode"), "{message}");
}

/// Regression: `rate: 5e-324` panicked ("cannot convert float seconds to Duration") and a slow
/// rate slept its interval before every record, even those it then skipped.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bulk_replay_rates_are_bounded_and_skipped_records_wait_for_nothing() {
    let api = Api::new();
    for body in [json!({"rate": 5e-324}), json!({"rate": 0.001}), json!({"rate": 1001})] {
        let (status, answer) = api.post_json("/v1/dlq/replay", body.clone()).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}: {answer}");
        assert!(answer["error"]["message"].as_str().unwrap().contains("from 0.1"), "{answer}");
    }
    // Three records refused at ingest: never replayed (skipped), so a run at the slowest rate
    // answers at once instead of after 20 s.
    for id in ["s1", "s2", "s3"] {
        let mut e = event(id);
        e.as_object_mut().unwrap().remove("correlationid");
        api.post("application/cloudevents+json", e.to_string()).await;
    }
    let started = Instant::now();
    // `limit: 3.0` is the integer 3, as JSON Schema counts (it was refused as "out of range").
    let (status, done) = api.post_json("/v1/dlq/replay", json!({"rate": 0.1, "limit": 3.0})).await;
    assert_eq!(status, StatusCode::OK, "{done}");
    assert_eq!((done["skipped"].as_u64(), done["sent"].as_u64()), (Some(3), Some(0)), "{done}");
    assert!(started.elapsed().as_secs() < 5, "skipped records were paced: {:?}", started.elapsed());
}

/// Regression: `GET /v1/dlq?q=ab%00` was a 500 ("unterminated string" from the text index).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn text_search_takes_any_text() {
    let api = Api::new();
    let (status, _) = report(&api, json!({"error_message": "ab\u{0}cd and more"})).await;
    assert_eq!(status, StatusCode::CREATED);
    for q in ["ab%00", "%00", "ab%00cd", "%22%22%22", "*", "a%20OR%20b", "NEAR(a%20b)"] {
        let (status, answer) = api.get(&format!("/v1/dlq?q={q}")).await;
        assert_eq!(status, StatusCode::OK, "q={q}: {answer}");
    }
    let (_, found) = api.get("/v1/dlq?q=ab%00cd").await;
    assert_eq!(found["records"].as_array().unwrap().len(), 1, "{found}");
}

/// Regression: a stored `text/html` original (a consumer's report, or a body refused by
/// `/v1/events`) was served back as `text/html` on the server's own origin, and a reported
/// content type with a control character made `/original` a 500. Originals are downloads of
/// `application/octet-stream`; the reported type must be a media type and is kept as data.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn originals_are_served_as_downloads_never_as_their_claimed_type() {
    let api = Api::new();
    let (status, answer) = report(&api, json!({"content_type": "a\u{1}b"})).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{answer}");
    assert!(answer["error"]["message"].as_str().unwrap().contains("is not a media type"), "{answer}");
    for bad in ["", "text", "text/", "/html", "text/html; charset", "text/html;", "a b/c", "text/html\u{e9}"] {
        let (status, answer) = report(&api, json!({"content_type": bad})).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{bad:?}: {answer}");
    }
    let (status, reported) = report(&api, json!({"content_type": "text/html; charset=\"utf-8\""})).await;
    assert_eq!(status, StatusCode::CREATED, "{reported}");
    let (status, headers, body) = original(&api, &reported["id"]).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(headers["content-type"], "application/octet-stream");
    assert_eq!(headers["x-content-type-options"], "nosniff");
    assert!(headers["content-disposition"].to_str().unwrap().starts_with("attachment"), "{headers:?}");
    assert_eq!(headers["x-causeway-original-content-type"], "text/html; charset=\"utf-8\"");
    assert_eq!(body, event("r1").to_string().into_bytes());
    let (_, record) = api.get(&format!("/v1/dlq/{}", reported["id"])).await;
    assert_eq!(record["record"]["content_type"], "text/html; charset=\"utf-8\"");

    // A page refused at ingest is kept, and served the same way.
    let page = "<script>alert(document.cookie)</script>";
    let (status, refused) = api.post("text/html", page).await;
    assert_eq!(status, StatusCode::UNSUPPORTED_MEDIA_TYPE, "{refused}");
    let (_, headers, body) = original(&api, &refused["dlq_id"]).await;
    assert_eq!((headers["content-type"].to_str().unwrap(), body.as_slice()), ("application/octet-stream", page.as_bytes()));
    assert_eq!(headers["x-causeway-original-content-type"], "text/html");
}

/// A record kept before content types were checked: its original is still served, and a dry
/// run says what a replay would send instead of failing on the header.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_record_with_a_stored_content_type_that_is_no_header_is_still_served() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let consumers = [("c".to_string(), causeway_server::Consumer { replay_url: Some("http://127.0.0.1:9/replay".into()) })].into();
    let state = AppState::new(store.clone(), ParseOptions::default(), SqlLimits::default()).with_consumers(consumers);
    let api = Api { router: app(state), _dir: dir };
    let report = DlqReport {
        original: "{}".into(),
        content_type: Some("a\u{1}b".into()),
        consumer: "c".into(),
        error_type: "E".into(),
        error_message: "m".into(),
        ..Default::default()
    };
    let id = json!(store.report_failure(report).await.unwrap().id);
    let (status, headers, body) = original(&api, &id).await;
    assert_eq!((status, body.as_slice()), (StatusCode::OK, b"{}".as_slice()));
    assert!(headers.get("x-causeway-original-content-type").is_none());
    let (status, dry) = api.post_json(&format!("/v1/dlq/{id}/replay"), json!({"dry_run": true})).await;
    assert_eq!(status, StatusCode::OK, "{dry}");
    assert_eq!(dry["request"]["content_type"], "application/json");
}

/// Regression: `failed_at: "0001-01-01T00:00:00Z"` was accepted and the record showed as 63.9e9
/// seconds old.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reported_failure_time_must_be_plausible() {
    let api = Api::new();
    let soon = causeway_envelope::format_time(&(chrono::Utc::now() + chrono::TimeDelta::hours(2)));
    let later = causeway_envelope::format_time(&(chrono::Utc::now() + chrono::TimeDelta::days(2)));
    for bad in ["0001-01-01T00:00:00Z", "1999-12-31T23:59:59Z", later.as_str(), "9999-12-31T23:59:59Z"] {
        let (status, answer) = report(&api, json!({"failed_at": bad})).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{bad}: {answer}");
        assert!(answer["error"]["message"].as_str().unwrap().contains("outside the accepted window, from the year 2000"), "{answer}");
    }
    // The year as written counts (the document's pattern reads it so): this is 1999 in UTC.
    for good in ["2000-01-01T00:00:00Z", "2000-01-01T00:00:00.59+21:22", soon.as_str()] {
        let (status, answer) = report(&api, json!({"failed_at": good, "event": event(good)})).await;
        assert_eq!(status, StatusCode::CREATED, "{good}: {answer}");
    }
}
