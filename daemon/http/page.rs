//! The dashboard page, its assets (compiled into the binary: no CDN, no
//! files to install, no network at run time), and logging in and out.
//! Every response carries a strict Content-Security-Policy: the page runs
//! only its own script and style, and no other site may frame it.

use std::sync::Arc;

use axum::{
    Router,
    extract::{Query, State},
    http::{HeaderMap, HeaderValue, StatusCode, header},
    response::{Html, IntoResponse, Redirect, Response},
    routing::{get, post},
};
use serde::Deserialize;

use super::{Front, access::Access};

const INDEX: &str = include_str!("assets/index.html");
const SCRIPT: &str = include_str!("assets/app.js");
const STYLE: &str = include_str!("assets/app.css");

/// The page shown to a browser that is not logged in, or whose login
/// link is spent.
const LOGIN_HELP: &str = r#"<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>outpost — log in</title><link rel="stylesheet" href="/assets/app.css"></head>
<body><main class="login-help"><h1>outpost</h1><p>{reason}</p>
<p>Run <code>outpostctl dashboard --open</code> on this machine: it opens a one-time link that logs this browser in.</p>
</main></body></html>
"#;

pub(super) fn routes() -> Router<Front> {
    Router::new()
        .route("/", get(index))
        .route("/assets/app.js", get(script))
        .route("/assets/app.css", get(style))
        .route("/login", get(login))
        .route("/logout", post(logout))
}

/// The headers every response carries.
pub(super) async fn hardened(mut response: Response) -> Response {
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'self'; img-src 'self' data:; frame-ancestors 'none'; base-uri 'none'; form-action 'self'",
        ),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    headers
        .entry(header::CACHE_CONTROL)
        .or_insert(HeaderValue::from_static("no-store"));
    response
}

async fn index(State(access): State<Arc<Access>>, headers: HeaderMap) -> Response {
    if access.credential(&headers).is_some() {
        Html(INDEX).into_response()
    } else {
        login_help(StatusCode::UNAUTHORIZED, "This browser is not logged in.")
    }
}

async fn script() -> Response {
    asset("text/javascript; charset=utf-8", SCRIPT)
}

async fn style() -> Response {
    asset("text/css; charset=utf-8", STYLE)
}

/// An asset: the browser may keep it but must ask whether it changed
/// (a new daemon may serve a new one under the same name).
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

/// `/login`'s query.
#[derive(Deserialize)]
struct LoginQuery {
    code: Option<String>,
}

/// Redeems a one-time code: sets the session cookie and sends the
/// browser on to the page, so that the URL left in its history holds
/// only a spent code.
async fn login(State(front): State<Front>, Query(query): Query<LoginQuery>) -> Response {
    let redeemed = match &query.code {
        Some(code) => front.logins.redeem(code).await,
        None => false,
    };
    if redeemed {
        (front.access.sessions.login(), Redirect::to("/")).into_response()
    } else {
        login_help(
            StatusCode::UNAUTHORIZED,
            "This login link was already used, has expired (links last 60 seconds), or was never issued by this daemon.",
        )
    }
}

async fn logout(State(access): State<Arc<Access>>) -> Response {
    (access.sessions.logout(), Redirect::to("/")).into_response()
}

fn login_help(status: StatusCode, reason: &str) -> Response {
    (status, Html(LOGIN_HELP.replace("{reason}", reason))).into_response()
}
