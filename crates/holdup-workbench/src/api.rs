//! The HTTP API (axum). Every `/api/` route needs `Authorization: Bearer
//! <token>`; every refusal is JSON `{"error": "..."}` saying why.
//!
//! Layers: the [`authenticate`] middleware checks the token before any
//! handler runs (so before any body is read) and audits refusals; the
//! [`Caller`] extractor checks the route's role; handlers run the domain
//! operations (SQLite, files, plots) off the async workers with
//! [`blocking`], and [`status_of`] maps domain errors to status codes.

use crate::agent_api;
use crate::runs::Output;
use crate::{Error, ErrorKind, IncidentInput, RequestInput, Role, User, WbResult, Workbench};
use axum::body::{Body, Bytes};
use axum::extract::rejection::{BytesRejection, JsonRejection};
use axum::extract::{DefaultBodyLimit, FromRequestParts, MatchedPath, Path, Query, State};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::{Json, Router};
use holdup_wb_api::{
    CreatedUser, Decision, NewScript, NewUser, NoteInput, RotatedToken, ScriptAnswer, ScriptBody,
    StoredArtifact, UserChange,
};
use serde::Deserialize;
use serde_json::{json, Value};
use std::marker::PhantomData;
use std::sync::Arc;

use crate::server::check_host;
pub use crate::server::{
    serve, serve_blocking, serve_blocking_tls, serve_with, tls_acceptor, HEADER_READ_TIMEOUT,
};

type St = State<Arc<Workbench>>;

/// The HTTP status of each kind of domain error.
pub fn status_of(kind: ErrorKind) -> StatusCode {
    match kind {
        ErrorKind::BadRequest => StatusCode::BAD_REQUEST,
        ErrorKind::Unauthenticated => StatusCode::UNAUTHORIZED,
        ErrorKind::Forbidden => StatusCode::FORBIDDEN,
        ErrorKind::NotFound => StatusCode::NOT_FOUND,
        ErrorKind::Conflict => StatusCode::CONFLICT,
        ErrorKind::Unprocessable => StatusCode::UNPROCESSABLE_ENTITY,
        ErrorKind::TooLarge => StatusCode::PAYLOAD_TOO_LARGE,
        ErrorKind::StoreFull => StatusCode::INSUFFICIENT_STORAGE,
        ErrorKind::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
        ErrorKind::Internal => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

/// A refusal's message, left on the response for [`authenticate`] to audit.
#[derive(Clone)]
struct Refusal(String);

impl IntoResponse for Error {
    fn into_response(self) -> Response {
        let mut r = (status_of(self.kind), Json(json!({"error": self.message}))).into_response();
        r.extensions_mut().insert(Refusal(self.message));
        r
    }
}

/// Runs blocking work (SQLite, files, process starts, plots) on tokio's
/// blocking pool, so one slow request never stalls the others.
pub async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> WbResult<T> + Send + 'static,
) -> WbResult<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| Error::internal(format!("the request's work failed: {e}")))?
}

fn body_error(status: StatusCode, text: String, limit: usize, key: &str) -> Error {
    if status == StatusCode::PAYLOAD_TOO_LARGE {
        Error::new(
            ErrorKind::TooLarge,
            format!("request body is larger than {limit} bytes (policy {key}); send less or raise the limit"),
        )
    } else if status == StatusCode::UNPROCESSABLE_ENTITY {
        Error::new(
            ErrorKind::Unprocessable,
            format!("bad request body: {text}"),
        )
    } else {
        Error::bad_request(format!("bad request body: {text}"))
    }
}

/// The JSON body, or why it is refused.
pub(crate) fn json_body<T>(wb: &Workbench, body: Result<Json<T>, JsonRejection>) -> WbResult<T> {
    body.map(|Json(v)| v).map_err(|e| {
        body_error(
            e.status(),
            e.body_text(),
            wb.policy().max_body_bytes,
            "max_body_bytes",
        )
    })
}

pub(crate) fn bearer(headers: &HeaderMap) -> Option<&str> {
    let v = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    v.strip_prefix("Bearer ")
        .map(str::trim)
        .filter(|t| !t.is_empty())
}

/// Authenticates every API request before its handler (and so before its
/// body is read: an unauthenticated upload costs no memory), leaves the
/// [`User`] for [`Caller`], audits 403 refusals with the real actor
/// (rate-limited, see [`Workbench::record_refusal`]), and marks responses
/// `Cache-Control: no-store` (they carry tokens and evidence).
async fn authenticate(State(wb): St, mut req: axum::extract::Request, next: Next) -> Response {
    let token = bearer(req.headers()).map(str::to_owned);
    let wb2 = wb.clone();
    let user = match blocking(move || wb2.authenticate(token.as_deref())).await {
        Ok(u) => u,
        Err(e) => return no_store(e.into_response()),
    };
    let route = format!(
        "{} {}",
        req.method(),
        req.extensions()
            .get::<MatchedPath>()
            .map_or(req.uri().path(), |m| m.as_str())
    );
    req.extensions_mut().insert(user.clone());
    let resp = next.run(req).await;
    if resp.status() == StatusCode::FORBIDDEN {
        if let Some(Refusal(why)) = resp.extensions().get::<Refusal>().cloned() {
            let _ = blocking(move || {
                wb.record_refusal(
                    &user.name,
                    "access.refused",
                    &format!("{route}: {why}"),
                    "refusals",
                )
            })
            .await;
        }
    }
    no_store(resp)
}

pub(crate) fn no_store(mut r: Response) -> Response {
    r.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

/// The least role a route needs, as a type: `Caller<Approver>`.
pub trait MinRole {
    /// The role.
    const ROLE: Role;
}

/// Any authenticated user.
pub struct Viewer;
/// Requesters and above.
pub struct Requester;
/// Approvers and above.
pub struct Approver;
/// Admins.
pub struct Admin;

impl MinRole for Viewer {
    const ROLE: Role = Role::Viewer;
}
impl MinRole for Requester {
    const ROLE: Role = Role::Requester;
}
impl MinRole for Approver {
    const ROLE: Role = Role::Approver;
}
impl MinRole for Admin {
    const ROLE: Role = Role::Admin;
}

/// The authenticated caller of a route that needs role `R` (403 below it).
pub struct Caller<R>(pub User, pub(crate) PhantomData<R>);

impl<S: Send + Sync, R: MinRole> FromRequestParts<S> for Caller<R> {
    type Rejection = Error;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Error> {
        let user = parts.extensions.get::<User>().cloned().ok_or_else(|| {
            Error::new(
                ErrorKind::Unauthenticated,
                "no API token: send `Authorization: Bearer <token>`",
            )
        })?;
        Workbench::require_role(&user, R::ROLE)?;
        Ok(Caller(user, PhantomData))
    }
}

/// The routes agents use, behind their own authentication (agent tokens,
/// not users').
fn agent_routes(wb: Arc<Workbench>) -> Router<Arc<Workbench>> {
    let output_limit = usize::try_from(wb.policy().max_output_bytes).unwrap_or(usize::MAX);
    Router::new()
        .route("/agent/runs/next", get(agent_api::next_run))
        .route("/agent/runs/{id}/heartbeat", post(agent_api::heartbeat))
        .route(
            "/agent/runs/{id}/output",
            put(agent_api::put_output).layer(DefaultBodyLimit::max(output_limit)),
        )
        .route("/agent/runs/{id}/end", post(agent_api::end_run))
        .route_layer(middleware::from_fn_with_state(
            wb,
            agent_api::authenticate_agent,
        ))
}

/// Builds the router over a shared workbench.
pub fn router(wb: Arc<Workbench>) -> Router {
    let limit = wb.policy().max_body_bytes;
    let upload_limit = wb.policy().max_upload_bytes;
    Router::new()
        .route("/api/whoami", get(whoami))
        .route("/api/policy", get(policy))
        .route("/api/users", get(list_users).post(create_user))
        .route("/api/users/{name}", put(update_user))
        .route("/api/users/{name}/token", post(rotate_token))
        .route("/api/incidents", get(list_incidents).post(create_incident))
        .route(
            "/api/incidents/{id}",
            get(get_incident)
                .put(update_incident)
                .delete(delete_incident),
        )
        .route(
            "/api/incidents/{id}/artifacts/{name}",
            put(put_artifact)
                .layer(DefaultBodyLimit::max(upload_limit))
                .get(get_artifact),
        )
        .route(
            "/api/incidents/{id}/artifacts/{name}/diagnose",
            post(diagnose_artifact),
        )
        .route("/api/incidents/{id}/notes", post(add_note))
        .route("/api/catalog", get(catalog))
        .route("/api/scripts", post(submit_script))
        .route("/api/scripts/{id}", get(get_script).put(update_script))
        .route("/api/requests", get(list_requests).post(create_request))
        .route("/api/requests/{id}", get(get_request))
        .route("/api/requests/{id}/approve", post(approve))
        .route("/api/requests/{id}/reject", post(reject))
        .route("/api/requests/{id}/authorize", post(authorize))
        .route("/api/requests/{id}/run", post(start_run))
        .route("/api/requests/{id}/runs", get(list_runs))
        .route("/api/runs", get(recent_runs))
        .route("/api/runs/{id}", get(get_run))
        .route("/api/runs/{id}/stop", post(stop_run))
        .route("/api/runs/{id}/plots", get(run_plots))
        .route("/api/runs/{id}/output", get(run_output))
        .route(
            "/api/incidents/{id}/artifacts/{name}/plots",
            get(artifact_plots),
        )
        .route("/api/audit", get(audit_list))
        .route("/api/audit/verify", get(audit_verify))
        .route(
            "/api/agents",
            get(agent_api::list_agents).post(agent_api::create_agent),
        )
        .route(
            "/api/agents/{host}",
            axum::routing::delete(agent_api::revoke_agent),
        )
        .route("/api/agents/{host}/token", post(agent_api::rotate_agent))
        .merge(crate::matches::routes())
        .route_layer(middleware::from_fn_with_state(wb.clone(), authenticate))
        .merge(agent_routes(wb.clone()))
        .merge(crate::ui::routes())
        .fallback(|| async {
            Error::not_found("no such endpoint; see docs/WORKBENCH.md for the API")
        })
        .layer(DefaultBodyLimit::max(limit))
        .layer(middleware::from_fn_with_state(wb.clone(), check_host))
        .with_state(wb)
}

async fn whoami(Caller(u, _): Caller<Viewer>) -> Json<User> {
    Json(u)
}

async fn policy(State(wb): St, _: Caller<Viewer>) -> Json<Value> {
    Json(serde_json::to_value(wb.policy()).unwrap_or_default())
}

fn parse_role(r: &str) -> WbResult<Role> {
    Role::parse(r)
        .ok_or_else(|| Error::bad_request("role must be one of viewer, requester, approver, admin"))
}

async fn create_user(
    State(wb): St,
    Caller(actor, _): Caller<Admin>,
    body: Result<Json<NewUser>, JsonRejection>,
) -> WbResult<(StatusCode, Json<CreatedUser>)> {
    let b = json_body(&wb, body)?;
    let role = parse_role(&b.role)?;
    let (user, token) = blocking(move || wb.create_user(&actor, &b.name, role)).await?;
    Ok((
        StatusCode::CREATED,
        Json(CreatedUser {
            user,
            token,
            note: "the token is shown only once".into(),
        }),
    ))
}

async fn update_user(
    State(wb): St,
    Caller(actor, _): Caller<Admin>,
    Path(name): Path<String>,
    body: Result<Json<UserChange>, JsonRejection>,
) -> WbResult<Json<User>> {
    let b = json_body(&wb, body)?;
    let role = b.role.as_deref().map(parse_role).transpose()?;
    let u = blocking(move || wb.update_user(&actor, &name, role, b.disabled)).await?;
    Ok(Json(u))
}

async fn rotate_token(
    State(wb): St,
    Caller(actor, _): Caller<Viewer>,
    Path(name): Path<String>,
) -> WbResult<Json<RotatedToken>> {
    let n = name.clone();
    let token = blocking(move || wb.rotate_token(&actor, &n)).await?;
    Ok(Json(RotatedToken {
        name,
        token,
        note: "the old token no longer works; this one is shown only once".into(),
    }))
}

async fn list_users(State(wb): St, _: Caller<Admin>) -> WbResult<Json<Value>> {
    Ok(Json(json!(blocking(move || wb.list_users()).await?)))
}

async fn create_incident(
    State(wb): St,
    Caller(actor, _): Caller<Requester>,
    body: Result<Json<IncidentInput>, JsonRejection>,
) -> WbResult<(StatusCode, Json<Value>)> {
    let b = json_body(&wb, body)?;
    let inc = blocking(move || wb.create_incident(&actor, b)).await?;
    Ok((StatusCode::CREATED, Json(json!(inc))))
}

async fn list_incidents(State(wb): St, _: Caller<Viewer>) -> WbResult<Json<Value>> {
    Ok(Json(json!(blocking(move || wb.list_incidents()).await?)))
}

async fn get_incident(
    State(wb): St,
    _: Caller<Viewer>,
    Path(id): Path<i64>,
) -> WbResult<Json<Value>> {
    Ok(Json(json!(blocking(move || wb.get_incident(id)).await?)))
}

async fn update_incident(
    State(wb): St,
    Caller(actor, _): Caller<Requester>,
    Path(id): Path<i64>,
    body: Result<Json<IncidentInput>, JsonRejection>,
) -> WbResult<Json<Value>> {
    let b = json_body(&wb, body)?;
    Ok(Json(json!(
        blocking(move || wb.update_incident(&actor, id, b)).await?
    )))
}

async fn delete_incident(
    State(wb): St,
    Caller(actor, _): Caller<Admin>,
    Path(id): Path<i64>,
) -> WbResult<StatusCode> {
    blocking(move || wb.delete_incident(&actor, id)).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn put_artifact(
    State(wb): St,
    Caller(actor, _): Caller<Requester>,
    Path((id, name)): Path<(i64, String)>,
    body: Result<Bytes, BytesRejection>,
) -> WbResult<(StatusCode, Json<StoredArtifact>)> {
    crate::validate_name(&name)?;
    let data = body.map_err(|e| {
        body_error(
            e.status(),
            e.body_text(),
            wb.policy().max_upload_bytes,
            "max_upload_bytes",
        )
    })?;
    let bytes = data.len() as u64;
    let n = name.clone();
    let sha = blocking(move || wb.put_artifact(&actor, id, &n, &data)).await?;
    Ok((
        StatusCode::CREATED,
        Json(StoredArtifact {
            incident: id,
            name,
            sha256: sha,
            bytes,
        }),
    ))
}

async fn get_artifact(
    State(wb): St,
    _: Caller<Viewer>,
    Path((id, name)): Path<(i64, String)>,
) -> WbResult<Vec<u8>> {
    blocking(move || wb.get_artifact(id, &name)).await
}

async fn add_note(
    State(wb): St,
    Caller(actor, _): Caller<Requester>,
    Path(id): Path<i64>,
    body: Result<Json<NoteInput>, JsonRejection>,
) -> WbResult<(StatusCode, Json<Value>)> {
    let b = json_body(&wb, body)?;
    let inc = blocking(move || wb.add_note(&actor, id, &b.text)).await?;
    Ok((StatusCode::CREATED, Json(json!(inc))))
}

async fn diagnose_artifact(
    State(wb): St,
    Caller(actor, _): Caller<Requester>,
    Path((id, name)): Path<(i64, String)>,
) -> WbResult<(StatusCode, Json<crate::Diagnosis>)> {
    let v = blocking(move || wb.diagnose_artifact(&actor, id, &name)).await?;
    Ok((StatusCode::CREATED, Json(v)))
}

async fn catalog(State(wb): St, _: Caller<Viewer>) -> WbResult<Json<crate::Catalog>> {
    Ok(Json(blocking(move || wb.catalog()).await?))
}

fn script_response(s: crate::Script, created: bool) -> (StatusCode, Json<ScriptAnswer>) {
    let status = if s.status != crate::ScriptStatus::Accepted {
        StatusCode::UNPROCESSABLE_ENTITY
    } else if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    let error = (status == StatusCode::UNPROCESSABLE_ENTITY).then(|| {
        format!(
            "script refused by static checks: {}",
            json!(s.report.problems)
        )
    });
    (status, Json(ScriptAnswer { script: s, error }))
}

async fn submit_script(
    State(wb): St,
    Caller(actor, _): Caller<Requester>,
    body: Result<Json<NewScript>, JsonRejection>,
) -> WbResult<(StatusCode, Json<ScriptAnswer>)> {
    let b = json_body(&wb, body)?;
    let s = blocking(move || wb.submit_script(&actor, &b.name, &b.body)).await?;
    Ok(script_response(s, true))
}

async fn update_script(
    State(wb): St,
    Caller(actor, _): Caller<Requester>,
    Path(id): Path<i64>,
    body: Result<Json<ScriptBody>, JsonRejection>,
) -> WbResult<(StatusCode, Json<ScriptAnswer>)> {
    let b = json_body(&wb, body)?;
    let s = blocking(move || wb.update_script(&actor, id, &b.body)).await?;
    Ok(script_response(s, false))
}

async fn get_script(
    State(wb): St,
    _: Caller<Viewer>,
    Path(id): Path<i64>,
) -> WbResult<Json<Value>> {
    Ok(Json(json!(blocking(move || wb.get_script(id)).await?)))
}

async fn create_request(
    State(wb): St,
    Caller(actor, _): Caller<Requester>,
    body: Result<Json<RequestInput>, JsonRejection>,
) -> WbResult<(StatusCode, Json<Value>)> {
    let b = json_body(&wb, body)?;
    let r = blocking(move || wb.create_request(&actor, b)).await?;
    Ok((StatusCode::CREATED, Json(json!(r))))
}

async fn list_requests(State(wb): St, _: Caller<Viewer>) -> WbResult<Json<Value>> {
    Ok(Json(json!(blocking(move || wb.list_requests()).await?)))
}

async fn get_request(
    State(wb): St,
    _: Caller<Viewer>,
    Path(id): Path<i64>,
) -> WbResult<Json<Value>> {
    Ok(Json(json!(blocking(move || wb.get_request(id)).await?)))
}

async fn decide(
    wb: Arc<Workbench>,
    actor: User,
    id: i64,
    approve: bool,
    body: Result<Json<Decision>, JsonRejection>,
) -> WbResult<Json<Value>> {
    let b = json_body(&wb, body)?;
    let r = blocking(move || wb.decide(&actor, id, approve, &b.comment, &b.grant)).await?;
    Ok(Json(json!(r)))
}

async fn approve(
    State(wb): St,
    Caller(actor, _): Caller<Approver>,
    Path(id): Path<i64>,
    body: Result<Json<Decision>, JsonRejection>,
) -> WbResult<Json<Value>> {
    decide(wb, actor, id, true, body).await
}

async fn reject(
    State(wb): St,
    Caller(actor, _): Caller<Approver>,
    Path(id): Path<i64>,
    body: Result<Json<Decision>, JsonRejection>,
) -> WbResult<Json<Value>> {
    decide(wb, actor, id, false, body).await
}

async fn authorize(
    State(wb): St,
    Caller(actor, _): Caller<Requester>,
    Path(id): Path<i64>,
) -> WbResult<Json<crate::Authorization>> {
    Ok(Json(blocking(move || wb.authorize_run(&actor, id)).await?))
}

async fn start_run(
    State(wb): St,
    Caller(actor, _): Caller<Requester>,
    Path(id): Path<i64>,
) -> WbResult<(StatusCode, Json<Value>)> {
    let run = blocking(move || wb.start_run(&actor, id)).await?;
    Ok((StatusCode::CREATED, Json(json!(run))))
}

async fn list_runs(State(wb): St, _: Caller<Viewer>, Path(id): Path<i64>) -> WbResult<Json<Value>> {
    Ok(Json(json!(blocking(move || wb.list_runs(id)).await?)))
}

async fn get_run(State(wb): St, _: Caller<Viewer>, Path(id): Path<i64>) -> WbResult<Json<Value>> {
    Ok(Json(json!(blocking(move || wb.get_run(id)).await?)))
}

#[derive(Deserialize)]
struct RunsQuery {
    incident: Option<i64>,
    #[serde(default = "default_limit")]
    limit: i64,
}

async fn recent_runs(
    State(wb): St,
    _: Caller<Viewer>,
    q: Result<Query<RunsQuery>, axum::extract::rejection::QueryRejection>,
) -> WbResult<Json<Value>> {
    let Query(q) = q.map_err(|e| Error::bad_request(e.body_text()))?;
    Ok(Json(json!(
        blocking(move || wb.recent_runs(q.incident, q.limit)).await?
    )))
}

/// At most this many plots are drawn at once: each holds a whole output
/// in memory and a CPU.
static PLOTS: tokio::sync::Semaphore = tokio::sync::Semaphore::const_new(2);

/// Plots of output bytes, drawn off the async workers: a holdup
/// recording's plots, or charts of bpftrace's JSON output.
async fn plots_of(what: String, output: Output) -> WbResult<Json<Value>> {
    let _permit = PLOTS
        .acquire()
        .await
        .map_err(|e| Error::internal(e.to_string()))?;
    let v = blocking(move || {
        let bytes = output.to_bytes();
        if bytes.starts_with(&holdup_record::MAGIC) {
            let p = crate::plot::recording_plots(&bytes).map_err(|e| {
                Error::new(
                    ErrorKind::Unprocessable,
                    format!("{what} is a damaged holdup recording: {e}"),
                )
            })?;
            return Ok(json!({"kind": "recording", "plots": p}));
        }
        let charts = crate::plot::bpftrace_charts(&bytes);
        Ok(json!({"kind": "bpftrace", "charts": charts}))
    })
    .await?;
    Ok(Json(v))
}

async fn artifact_plots(
    State(wb): St,
    _: Caller<Viewer>,
    Path((id, name)): Path<(i64, String)>,
) -> WbResult<Json<Value>> {
    let n = name.clone();
    let data = blocking(move || wb.get_artifact(id, &n)).await?;
    plots_of(
        format!("artifact {name}"),
        Output::Stored(Bytes::from(data)),
    )
    .await
}

async fn run_plots(State(wb): St, _: Caller<Viewer>, Path(id): Path<i64>) -> WbResult<Json<Value>> {
    let out = blocking(move || wb.run_output(id)).await?;
    plots_of(format!("the output of run {id}"), out).await
}

/// A streamed body of an output: chunks and stored bytes are shared, a
/// file is read as it is sent.
fn output_body(out: Output) -> Body {
    use futures_util::stream;
    match out {
        Output::Stored(b) => Body::from(b),
        Output::Chunks(c) => {
            Body::from_stream(stream::iter(c.into_iter().map(Ok::<_, std::io::Error>)))
        }
        Output::File(path, max) => {
            let s = stream::unfold(
                (None::<tokio::io::Take<tokio::fs::File>>, Some(path), max),
                |(file, path, max)| async move {
                    use tokio::io::AsyncReadExt;
                    let mut f = match (file, path) {
                        (Some(f), _) => f,
                        (None, Some(p)) => match tokio::fs::File::open(&p).await {
                            Ok(f) => f.take(max),
                            Err(e) => return Some((Err(e), (None, None, 0))),
                        },
                        (None, None) => return None,
                    };
                    let mut buf = vec![0u8; 64 * 1024];
                    match f.read(&mut buf).await {
                        Ok(0) => None,
                        Ok(n) => {
                            buf.truncate(n);
                            Some((Ok(Bytes::from(buf)), (Some(f), None, max)))
                        }
                        Err(e) => Some((Err(e), (None, None, 0))),
                    }
                },
            );
            Body::from_stream(s)
        }
    }
}

async fn run_output(State(wb): St, _: Caller<Viewer>, Path(id): Path<i64>) -> WbResult<Response> {
    let out = blocking(move || wb.run_output(id)).await?;
    Ok((
        [
            (header::CONTENT_TYPE, "application/octet-stream".to_string()),
            (
                header::CONTENT_DISPOSITION,
                format!("attachment; filename=\"run-{id}.out\""),
            ),
        ],
        output_body(out),
    )
        .into_response())
}

async fn stop_run(
    State(wb): St,
    Caller(actor, _): Caller<Requester>,
    Path(id): Path<i64>,
) -> WbResult<Json<Value>> {
    Ok(Json(json!(wb.stop_run(&actor, id).await?)))
}

#[derive(Deserialize)]
struct AuditQuery {
    #[serde(default)]
    after: i64,
    #[serde(default = "default_limit")]
    limit: i64,
}

fn default_limit() -> i64 {
    100
}

async fn audit_list(
    State(wb): St,
    _: Caller<Approver>,
    q: Result<Query<AuditQuery>, axum::extract::rejection::QueryRejection>,
) -> WbResult<Json<Value>> {
    let Query(q) = q.map_err(|e| Error::bad_request(e.body_text()))?;
    Ok(Json(json!(
        blocking(move || wb.audit_entries(q.after, q.limit)).await?
    )))
}

async fn audit_verify(State(wb): St, _: Caller<Approver>) -> WbResult<Json<Value>> {
    Ok(Json(json!(blocking(move || wb.verify_audit()).await?)))
}
