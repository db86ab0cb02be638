//! The web UI's pages through the router: replay and discard are offered to a loopback peer only,
//! errors are pages with the API's status and sentence, a live update gets `<main>` alone, and
//! whatever a producer sends is shown as text, never run as markup.

mod common;

use std::net::SocketAddr;

use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::{Request, StatusCode, header};
use common::Api;
use http_body_util::BodyExt;
use serde_json::json;
use tower::ServiceExt;

/// Status, content type and the body as text; `peer` as the accept loop would record it.
async fn page(api: &Api, path: &str, peer: Option<&str>, fragment: bool) -> (StatusCode, String, String) {
    let mut request = Request::get(path);
    if fragment {
        request = request.header("x-causeway-fragment", "main");
    }
    let mut request = request.body(Body::empty()).unwrap();
    if let Some(peer) = peer {
        request.extensions_mut().insert(ConnectInfo(peer.parse::<SocketAddr>().unwrap()));
    }
    let response = api.router.clone().oneshot(request).await.unwrap();
    let status = response.status();
    let media = response.headers().get(header::CONTENT_TYPE).map(|v| v.to_str().unwrap().to_string()).unwrap_or_default();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    (status, media, String::from_utf8(body.to_vec()).unwrap())
}

fn event(id: &str, event_type: &str) -> serde_json::Value {
    json!({"specversion": "1.0", "id": id, "source": "order-service", "type": event_type, "time": "2026-12-07T10:00:00Z", "correlationid": "c-1"})
}

#[tokio::test]
async fn replay_and_discard_are_offered_on_a_loopback_connection_only() {
    let api = Api::new();
    let report = json!({"event": event("e-1", "ShipmentCreated"), "consumer": "notification-service", "source_topic": "shipments",
        "error_type": "KeyError", "error_message": "'customerEmail'"});
    let (status, body) = api.send(Request::post("/v1/dlq").header("content-type", "application/json").body(report.to_string().into()).unwrap()).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let id = body["id"].as_i64().unwrap();

    for peer in ["127.0.0.1:50000", "[::1]:50000"] {
        let (status, _, html) = page(&api, &format!("/dlq/{id}"), Some(peer), false).await;
        assert_eq!(status, StatusCode::OK);
        for action in ["dry-run", "replay", "discard"] {
            assert!(html.contains(&format!(r#"data-action="{action}""#)), "{peer}: no {action}");
        }
        assert!(html.contains("data-confirm=\"Replay dead letter"), "a replay asks first");
    }
    let (status, _, html) = page(&api, &format!("/dlq/{id}"), Some("10.1.2.3:50000"), false).await;
    assert_eq!(status, StatusCode::OK);
    assert!(!html.contains("data-action="), "actions offered to a remote peer: {html}");
    assert!(html.contains("own machine"), "the page says why and what to do instead");
}

#[tokio::test]
async fn errors_are_pages_with_the_status_and_sentence_of_the_api() {
    let api = Api::new();
    let (status, media, html) = page(&api, "/events/nope", None, false).await;
    assert_eq!((status, media.as_str()), (StatusCode::NOT_FOUND, "text/html; charset=utf-8"));
    assert!(html.contains("no event with id &#39;nope&#39; is stored") || html.contains("no event with id 'nope' is stored"), "{html}");
    assert!(html.contains("<html"), "an error is a whole page, with the header and search");
    let (status, _, html) = page(&api, "/on-call?since=2w", None, false).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(html.contains("since must be one of 1h, 6h, 24h, 7d or all"), "{html}");
    let (status, _, html) = page(&api, "/canvas", None, false).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(html.contains("--model FILE"), "{html}");
}

#[tokio::test]
async fn a_live_update_gets_the_main_content_alone() {
    let api = Api::new();
    let (status, _, whole) = page(&api, "/dlq", None, false).await;
    assert_eq!(status, StatusCode::OK);
    assert!(whole.starts_with("<!DOCTYPE html>") && whole.contains(r#"<main id="main" data-live="5">"#), "{whole}");
    let (status, _, main) = page(&api, "/dlq", None, true).await;
    assert_eq!(status, StatusCode::OK);
    assert!(!main.contains("<html") && !main.contains("<header") && main.starts_with("<h1>"), "{main}");
    assert!(whole.contains(&main), "the fragment is the page's <main>");
}

#[tokio::test]
async fn what_producers_send_is_shown_as_text() {
    let api = Api::new();
    let hostile = r#"<img src=x onerror="alert(1)">"#;
    let mut e = event("e-<script>", hostile);
    e["data"] = json!({"note": "</pre><script>alert(2)</script>"});
    let (status, body) = api.send(Request::post("/v1/events").header("content-type", "application/json").body(e.to_string().into()).unwrap()).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, _, html) = page(&api, "/events/e-%3Cscript%3E", None, false).await;
    assert_eq!(status, StatusCode::OK, "{html}");
    for raw in ["<img src=x", "<script>alert", "</pre><script>"] {
        assert!(!html.contains(raw), "{raw} reached the page as markup");
    }
    assert!(html.contains("&lt;img src=x onerror=&quot;alert(1)&quot;&gt;"), "the type is shown, escaped");
    let (_, _, found) = page(&api, "/search?q=e-%3Cscript%3E", None, false).await;
    assert!(found.is_empty(), "a search that finds the event redirects: {found}");
}

#[tokio::test]
async fn the_assets_pages_ask_for_are_served() {
    let api = Api::new();
    for (path, media) in [
        (causeway_ui::STYLE_PATH, "text/css; charset=utf-8"),
        (causeway_ui::SCRIPT_PATH, "text/javascript; charset=utf-8"),
        (causeway_ui::ICON_PATH, "image/svg+xml"),
        ("/favicon.ico", "image/svg+xml"),
    ] {
        let (status, got, body) = page(&api, path, None, false).await;
        assert_eq!((status, got.as_str()), (StatusCode::OK, media), "{path}");
        assert!(!body.is_empty(), "{path}");
    }
    let (_, _, html) = page(&api, "/dlq", None, false).await;
    for path in [causeway_ui::STYLE_PATH, causeway_ui::SCRIPT_PATH, causeway_ui::ICON_PATH] {
        assert!(html.contains(&format!("\"{path}\"")), "the page asks for {path}");
    }
}
