//! The inspector's pages (`/ui/`): one HTML shell per page, a script and a style sheet, all
//! compiled into the binary. The pages fetch everything they show from the JSON routes
//! (`/v1/…`, see [`super::inspect`]), so the page and the API never disagree; the script builds
//! the page from text nodes only (titles and model output are shown, never interpreted).
//!
//! A user page whose id the API rejects is answered with the API's status and error code,
//! rendered as a page. With an API key, the pages themselves are open (they hold no data) and
//! the script asks for the key before it calls the API.

use std::sync::{Arc, LazyLock};

use axum::extract::rejection::PathRejection;
use axum::extract::{Path, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;
use axum::Router;

use super::api::check_id;
use super::{ApiError, AppState};

const SHELL: &str = include_str!("ui/page.html");
const SCRIPT: &str = include_str!("ui/app.js");
const STYLE: &str = include_str!("ui/style.css");

static TEMPLATES: LazyLock<minijinja::Environment<'static>> = LazyLock::new(|| {
    let mut env = minijinja::Environment::new();
    // a `.html` name turns on HTML escaping of every value
    env.add_template("page.html", SHELL)
        .expect("the page template parses");
    env
});

/// The inspector's routes.
pub fn routes() -> Router<Arc<AppState>> {
    Router::new()
        .route("/ui", get(|| async { Redirect::permanent("/ui/") }))
        .route("/ui/", get(home))
        .route("/ui/eval", get(eval))
        .route("/ui/users/{user_id}", get(user))
        .route(
            "/ui/app.js",
            get(|| asset("text/javascript; charset=utf-8", SCRIPT)),
        )
        .route(
            "/ui/style.css",
            get(|| asset("text/css; charset=utf-8", STYLE)),
        )
        .route("/ui/{*rest}", get(missing))
}

/// Whether `path` is one of the pages or their assets (open when the API needs a key).
pub fn is_page(path: &str) -> bool {
    path == "/ui" || path.starts_with("/ui/")
}

async fn asset(content_type: &'static str, body: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        body,
    )
        .into_response()
}

/// The shell of `page` (`home`, `user`, `eval`, `error`).
fn page(status: StatusCode, page: &str, title: &str, error: Option<&ApiError>) -> Response {
    let html = TEMPLATES
        .get_template("page.html")
        .and_then(|t| {
            t.render(minijinja::context! {
                page => page,
                title => title,
                error_code => error.map(|e| e.code),
                error_message => error.map(|e| e.message.as_str()),
                status => status.as_u16(),
            })
        })
        .expect("the page renders");
    (
        status,
        [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
        html,
    )
        .into_response()
}

fn error_page(e: &ApiError) -> Response {
    page(e.status, "error", e.code, Some(e))
}

async fn home() -> Response {
    page(StatusCode::OK, "home", "recgpt", None)
}

async fn eval() -> Response {
    page(StatusCode::OK, "eval", "evaluation", None)
}

async fn missing() -> Response {
    error_page(&ApiError::not_found("not_found", "no such page"))
}

/// A user's page; an id the API would reject gets the API's answer as a page.
async fn user(
    State(state): State<Arc<AppState>>,
    user: Result<Path<String>, PathRejection>,
) -> Response {
    let Ok(Path(user)) = user else {
        return error_page(&ApiError::bad_request("invalid_id", "user_id is not valid"));
    };
    if let Err(e) = check_id("user_id", &user) {
        return error_page(&e);
    }
    // without a key, the same lookup the API makes; with one, the page asks the API itself
    if state.api_key.is_none() {
        if let Err(e) = state.user_result(user.clone()).await {
            return error_page(&e);
        }
    }
    page(StatusCode::OK, "user", &format!("user {user}"), None)
}
