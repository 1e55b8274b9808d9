//! HTTP handlers: the embedded page and the JSON API.
//!
//! Bad input is answered with 400 and `{"error": "…"}` carrying the message `sg2im run` prints
//! for the same graph, with `request body` in place of the file name.

use super::worker::{Generated, Rejected, Worker};
use super::{BODY_LIMIT, ModelInfo, ServeConfig};
use crate::Error;
use crate::scene_graph::{encode, parse_scene_graphs};
use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use base64::Engine;
use serde_json::{Value, json};
use std::sync::Arc;
use std::time::Duration;
use tower_http::timeout::TimeoutLayer;

/// Where errors say the input came from (`sg2im run` names the file there).
pub const SOURCE: &str = "request body";

/// Seconds a client is asked to wait after a 503.
const RETRY_AFTER_S: u32 = 1;

#[derive(Clone)]
pub struct AppState(Arc<Inner>);

struct Inner {
    worker: Worker,
    info: ModelInfo,
    max_objects: usize,
    request_timeout: Duration,
}

impl AppState {
    pub fn new(worker: Worker, info: ModelInfo, config: &ServeConfig) -> Self {
        Self(Arc::new(Inner {
            worker,
            info,
            max_objects: config.max_objects,
            request_timeout: config.request_timeout,
        }))
    }
}

/// The page, `/api/vocab` and `/api/generate`. No CORS layer: other origins cannot read the
/// answers, and `/api/generate` requires `application/json`, which a cross-origin page cannot
/// send without a preflight that this server does not answer.
pub fn router(state: AppState) -> Router {
    // Waiting in the queue is bounded by the handler's own limit (with a JSON answer); this one
    // also covers a client that sends its body too slowly.
    let outer_timeout = state.0.request_timeout + Duration::from_secs(5);
    Router::new()
        .route("/", get(index))
        .route("/app.js", get(app_js))
        .route("/style.css", get(style_css))
        .route("/api/vocab", get(vocab))
        .route("/api/generate", post(generate))
        // Read up to the limit, then refuse: answering 413 from Content-Length alone (what
        // tower-http's RequestBodyLimitLayer does) closes the socket while the client is still
        // writing, and clients then see a broken pipe instead of the 413.
        .layer(DefaultBodyLimit::max(BODY_LIMIT))
        .layer(axum::middleware::map_response(json_413))
        .layer(TimeoutLayer::with_status_code(
            StatusCode::REQUEST_TIMEOUT,
            outer_timeout,
        ))
        .with_state(state)
}

fn asset(content_type: &'static str, body: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        body,
    )
        .into_response()
}

async fn index() -> Response {
    asset(
        "text/html; charset=utf-8",
        include_str!("assets/index.html"),
    )
}

async fn app_js() -> Response {
    asset(
        "text/javascript; charset=utf-8",
        include_str!("assets/app.js"),
    )
}

async fn style_css() -> Response {
    asset("text/css; charset=utf-8", include_str!("assets/style.css"))
}

async fn vocab(State(state): State<AppState>) -> Response {
    let info = &state.0.info;
    axum::Json(json!({
        "objects": info.objects,
        "predicates": info.predicates,
        "image_size": [info.image_size.0, info.image_size.1],
        "has_masks": info.mask_size > 0,
        "mask_size": info.mask_size,
        "max_objects": state.0.max_objects,
    }))
    .into_response()
}

fn error(status: StatusCode, message: impl Into<String>) -> Response {
    (status, axum::Json(json!({ "error": message.into() }))).into_response()
}

fn busy(message: String) -> Response {
    let mut r = error(StatusCode::SERVICE_UNAVAILABLE, message);
    r.headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from(RETRY_AFTER_S));
    r
}

/// The body limit answers 413 (plain text) before the handler runs; say it in JSON like the
/// other errors.
async fn json_413(response: Response) -> Response {
    if response.status() == StatusCode::PAYLOAD_TOO_LARGE {
        return error(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("{SOURCE}: larger than the limit of {BODY_LIMIT} bytes (1 MiB)"),
        );
    }
    response
}

fn bad_request(e: Error) -> Response {
    error(StatusCode::BAD_REQUEST, e.to_string())
}

async fn generate(State(state): State<AppState>, headers: HeaderMap, body: Bytes) -> Response {
    let json_content = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.trim_start().starts_with("application/json"));
    if !json_content {
        return error(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "Content-Type must be application/json",
        );
    }
    let value: Value = match serde_json::from_slice(&body) {
        Ok(v) => v,
        Err(e) => return bad_request(Error::json(SOURCE, &e)),
    };
    if !value.is_object() {
        return bad_request(Error::invalid(format!(
            "{SOURCE}: expected one scene graph (a JSON object with \"objects\" and \"relationships\"); send the graphs of a file one at a time"
        )));
    }
    let seed = match value.get("seed") {
        None | Some(Value::Null) => 0,
        Some(v) => match v.as_u64() {
            Some(s) => s,
            None => {
                return bad_request(Error::invalid(format!(
                    "{SOURCE}: \"seed\" must be an integer in 0..=18446744073709551615, got {v}"
                )));
            }
        },
    };
    let graphs = match parse_scene_graphs(&value, SOURCE) {
        Ok(g) => g,
        Err(e) => return bad_request(e),
    };
    let n = graphs.first().map_or(0, |g| g.objects.len());
    if n > state.0.max_objects {
        return bad_request(Error::invalid(format!(
            "{SOURCE}: scene graph 0 has {n} objects, more than this server's --max_objects {}",
            state.0.max_objects
        )));
    }
    let encoded = match encode(&graphs, &state.0.info.vocab, SOURCE) {
        Ok(e) => e,
        Err(e) => return bad_request(e),
    };
    let rx = match state.0.worker.submit(encoded, seed) {
        Ok(rx) => rx,
        Err(Rejected::Busy) => {
            return busy("the generation queue is full; retry shortly".to_string());
        }
        Err(Rejected::Gone) => {
            return error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "the inference thread has stopped",
            );
        }
    };
    let limit = state.0.request_timeout;
    match tokio::time::timeout(limit, rx).await {
        Err(_) => busy(format!(
            "generation did not finish within the request time limit of {} s",
            limit.as_secs_f64()
        )),
        Ok(Err(_)) => error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "the inference thread dropped the request",
        ),
        Ok(Ok(Err(e @ Error::Io { .. }))) => {
            error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string())
        }
        Ok(Ok(Err(e))) => bad_request(e),
        Ok(Ok(Ok(g))) => generated(g, seed),
    }
}

fn generated(g: Generated, seed: u64) -> Response {
    axum::Json(json!({
        "image_png": base64::engine::general_purpose::STANDARD.encode(&g.png),
        "boxes": g.boxes,
        "masks": g.masks,
        "width": g.width,
        "height": g.height,
        "seed": seed,
    }))
    .into_response()
}
