//! A handler that panics is answered `500 internal` in the API's error JSON, and the same service
//! goes on answering (`catch_panics`, which `app()` applies to every route).

use axum::Router;
use axum::body::Body;
use axum::http::{Request, StatusCode};
use axum::routing::get;
use http_body_util::BodyExt;
use serde_json::{Value, json};
use tower::{Service, ServiceExt};

async fn call(service: &mut Router, path: &str) -> (StatusCode, Value) {
    let request = Request::get(path).body(Body::empty()).unwrap();
    let response = ServiceExt::<Request<Body>>::ready(service).await.unwrap().call(request).await.unwrap();
    let status = response.status();
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    (status, serde_json::from_slice(&bytes).unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&bytes))))
}

#[tokio::test]
async fn a_panicking_handler_is_answered_500_and_the_service_goes_on() {
    async fn boom() -> &'static str {
        panic!("a bug in a handler")
    }
    async fn fine() -> axum::Json<Value> {
        axum::Json(json!({"status": "ok"}))
    }
    let mut service = causeway_server::catch_panics(Router::new().route("/boom", get(boom)).route("/fine", get(fine)));

    let (status, body) = call(&mut service, "/boom").await;
    assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR, "{body}");
    let error = body["error"].as_object().unwrap_or_else(|| panic!("no error object: {body}"));
    assert_eq!(body.as_object().unwrap().len(), 1, "only `error`: {body}");
    assert_eq!(error["code"], "internal");
    let message = error["message"].as_str().unwrap();
    assert!(message.contains("bug") && message.contains("stays up"), "{message}");
    assert!(!message.contains("a bug in a handler"), "the panic's own text stays in the log: {message}");

    // The same service, after the panic: it answers, and panics again are answered again.
    assert_eq!(call(&mut service, "/fine").await, (StatusCode::OK, json!({"status": "ok"})));
    assert_eq!(call(&mut service, "/boom").await.0, StatusCode::INTERNAL_SERVER_ERROR);
}
