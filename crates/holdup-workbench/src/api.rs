//! The HTTP API (axum). Every route needs `Authorization: Bearer <token>`;
//! every refusal is JSON `{"error": "..."}` saying why.

use crate::{ApiError, ApiResult, IncidentInput, RequestInput, Role, User, Workbench};
use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, JsonRejection};
use axum::extract::{DefaultBodyLimit, Path, Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{json, Value};
use std::sync::Arc;

type St = State<Arc<Workbench>>;

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.status, Json(json!({"error": self.message}))).into_response()
    }
}

fn body_error(status: StatusCode, text: String, limit: usize, key: &str) -> ApiError {
    if status == StatusCode::PAYLOAD_TOO_LARGE {
        ApiError::new(
            status,
            format!("request body is larger than {limit} bytes (policy {key}); send less or raise the limit"),
        )
    } else {
        ApiError::new(status, format!("bad request body: {text}"))
    }
}

impl Workbench {
    fn json_body<T>(&self, body: Result<Json<T>, JsonRejection>) -> ApiResult<T> {
        body.map(|Json(v)| v).map_err(|e| {
            body_error(
                e.status(),
                e.body_text(),
                self.policy().max_body_bytes,
                "max_body_bytes",
            )
        })
    }
}

fn bearer(headers: &HeaderMap) -> Option<&str> {
    let v = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    v.strip_prefix("Bearer ")
        .map(str::trim)
        .filter(|t| !t.is_empty())
}

fn auth(wb: &Workbench, headers: &HeaderMap, need: Role) -> ApiResult<User> {
    wb.authenticate(bearer(headers), need)
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
        .merge(crate::ui::routes())
        .fallback(|| async {
            ApiError::not_found("no such endpoint; see docs/WORKBENCH.md for the API")
        })
        .layer(DefaultBodyLimit::max(limit))
        .with_state(wb)
}

/// Opens the store, prints the admin token on first start, and serves the
/// API on `addr` until Ctrl-C / SIGTERM. The entry point for
/// `holdup workbench serve` (the CLI wiring is not done yet).
pub fn serve_blocking(
    db_path: &std::path::Path,
    policy_path: Option<&std::path::Path>,
    addr: std::net::SocketAddr,
) -> anyhow::Result<()> {
    let policy = match policy_path {
        Some(p) => crate::policy::Policy::load(p)?,
        None => crate::policy::Policy::default(),
    };
    let (wb, admin_token) = Workbench::open(db_path, policy)?;
    if let Some(t) = admin_token {
        println!("first start: created user admin; its API token (shown only now, keep it):\n{t}");
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    rt.block_on(async {
        let listener = tokio::net::TcpListener::bind(addr).await?;
        eprintln!(
            "holdup workbench: serving http://{} (store {}); open it in a browser and log in with a token, or use `holdup wb`",
            listener.local_addr()?,
            db_path.display()
        );
        serve(Arc::new(wb), listener).await
    })
}

/// Serves the API on `listener` until Ctrl-C / SIGTERM.
pub async fn serve(wb: Arc<Workbench>, listener: tokio::net::TcpListener) -> anyhow::Result<()> {
    axum::serve(listener, router(wb))
        .with_graceful_shutdown(async {
            let ctrl_c = tokio::signal::ctrl_c();
            #[cfg(unix)]
            {
                let mut term =
                    match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
                    {
                        Ok(t) => t,
                        Err(_) => {
                            let _ = ctrl_c.await;
                            return;
                        }
                    };
                tokio::select! {
                    _ = ctrl_c => {},
                    _ = term.recv() => {},
                }
            }
            #[cfg(not(unix))]
            {
                let _ = ctrl_c.await;
            }
        })
        .await?;
    Ok(())
}

async fn whoami(State(wb): St, h: HeaderMap) -> ApiResult<Json<User>> {
    Ok(Json(auth(&wb, &h, Role::Viewer)?))
}

async fn policy(State(wb): St, h: HeaderMap) -> ApiResult<Json<Value>> {
    auth(&wb, &h, Role::Viewer)?;
    Ok(Json(serde_json::to_value(wb.policy()).unwrap_or_default()))
}

#[derive(Deserialize)]
struct NewUser {
    name: String,
    role: String,
}

async fn create_user(
    State(wb): St,
    h: HeaderMap,
    body: Result<Json<NewUser>, JsonRejection>,
) -> ApiResult<(StatusCode, Json<Value>)> {
    let actor = auth(&wb, &h, Role::Admin)?;
    let b = wb.json_body(body)?;
    let role = Role::parse(&b.role).ok_or_else(|| {
        ApiError::bad_request("role must be one of viewer, requester, approver, admin")
    })?;
    let (user, token) = wb.create_user(&actor, &b.name, role)?;
    Ok((
        StatusCode::CREATED,
        Json(json!({"user": user, "token": token, "note": "the token is shown only once"})),
    ))
}

#[derive(Deserialize)]
struct UserChange {
    role: Option<String>,
    disabled: Option<bool>,
}

async fn update_user(
    State(wb): St,
    h: HeaderMap,
    Path(name): Path<String>,
    body: Result<Json<UserChange>, JsonRejection>,
) -> ApiResult<Json<Value>> {
    let actor = auth(&wb, &h, Role::Admin)?;
    let b = wb.json_body(body)?;
    let role = match b.role.as_deref() {
        Some(r) => Some(Role::parse(r).ok_or_else(|| {
            ApiError::bad_request("role must be one of viewer, requester, approver, admin")
        })?),
        None => None,
    };
    Ok(Json(
        json!(wb.update_user(&actor, &name, role, b.disabled)?),
    ))
}

async fn rotate_token(
    State(wb): St,
    h: HeaderMap,
    Path(name): Path<String>,
) -> ApiResult<Json<Value>> {
    let actor = auth(&wb, &h, Role::Viewer)?;
    let token = wb.rotate_token(&actor, &name)?;
    Ok(Json(
        json!({"name": name, "token": token, "note": "the old token no longer works; this one is shown only once"}),
    ))
}

async fn list_users(State(wb): St, h: HeaderMap) -> ApiResult<Json<Value>> {
    auth(&wb, &h, Role::Admin)?;
    Ok(Json(json!(wb.list_users()?)))
}

async fn create_incident(
    State(wb): St,
    h: HeaderMap,
    body: Result<Json<IncidentInput>, JsonRejection>,
) -> ApiResult<(StatusCode, Json<Value>)> {
    let actor = auth(&wb, &h, Role::Requester)?;
    let b = wb.json_body(body)?;
    Ok((
        StatusCode::CREATED,
        Json(json!(wb.create_incident(&actor, b)?)),
    ))
}

async fn list_incidents(State(wb): St, h: HeaderMap) -> ApiResult<Json<Value>> {
    auth(&wb, &h, Role::Viewer)?;
    Ok(Json(json!(wb.list_incidents()?)))
}

async fn get_incident(State(wb): St, h: HeaderMap, Path(id): Path<i64>) -> ApiResult<Json<Value>> {
    auth(&wb, &h, Role::Viewer)?;
    Ok(Json(json!(wb.get_incident(id)?)))
}

async fn update_incident(
    State(wb): St,
    h: HeaderMap,
    Path(id): Path<i64>,
    body: Result<Json<IncidentInput>, JsonRejection>,
) -> ApiResult<Json<Value>> {
    let actor = auth(&wb, &h, Role::Requester)?;
    let b = wb.json_body(body)?;
    Ok(Json(json!(wb.update_incident(&actor, id, b)?)))
}

async fn delete_incident(
    State(wb): St,
    h: HeaderMap,
    Path(id): Path<i64>,
) -> ApiResult<StatusCode> {
    let actor = auth(&wb, &h, Role::Admin)?;
    wb.delete_incident(&actor, id)?;
    Ok(StatusCode::NO_CONTENT)
}

async fn put_artifact(
    State(wb): St,
    h: HeaderMap,
    Path((id, name)): Path<(i64, String)>,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult<(StatusCode, Json<Value>)> {
    let actor = auth(&wb, &h, Role::Requester)?;
    crate::validate_name(&name)?;
    let data = body.map_err(|e| {
        body_error(
            e.status(),
            e.body_text(),
            wb.policy().max_upload_bytes,
            "max_upload_bytes",
        )
    })?;
    let sha = wb.put_artifact(&actor, id, &name, &data)?;
    Ok((
        StatusCode::CREATED,
        Json(json!({"incident": id, "name": name, "sha256": sha, "bytes": data.len()})),
    ))
}

async fn get_artifact(
    State(wb): St,
    h: HeaderMap,
    Path((id, name)): Path<(i64, String)>,
) -> ApiResult<Vec<u8>> {
    auth(&wb, &h, Role::Viewer)?;
    wb.get_artifact(id, &name)
}

#[derive(Deserialize)]
struct NoteBody {
    text: String,
}

async fn add_note(
    State(wb): St,
    h: HeaderMap,
    Path(id): Path<i64>,
    body: Result<Json<NoteBody>, JsonRejection>,
) -> ApiResult<(StatusCode, Json<Value>)> {
    let actor = auth(&wb, &h, Role::Requester)?;
    let b = wb.json_body(body)?;
    Ok((
        StatusCode::CREATED,
        Json(json!(wb.add_note(&actor, id, &b.text)?)),
    ))
}

async fn diagnose_artifact(
    State(wb): St,
    h: HeaderMap,
    Path((id, name)): Path<(i64, String)>,
) -> ApiResult<(StatusCode, Json<Value>)> {
    let actor = auth(&wb, &h, Role::Requester)?;
    // The analysis is CPU work: keep it off the async workers.
    let v = tokio::task::spawn_blocking(move || wb.diagnose_artifact(&actor, id, &name))
        .await
        .map_err(|e| {
            ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("diagnosis failed: {e}"),
            )
        })??;
    Ok((StatusCode::CREATED, Json(v)))
}

async fn catalog(State(wb): St, h: HeaderMap) -> ApiResult<Json<Value>> {
    auth(&wb, &h, Role::Viewer)?;
    Ok(Json(wb.catalog()?))
}

#[derive(Deserialize)]
struct NewScript {
    name: String,
    body: String,
}

#[derive(Deserialize)]
struct ScriptBody {
    body: String,
}

fn script_response(s: crate::Script, created: bool) -> (StatusCode, Json<Value>) {
    let status = if s.status != "accepted" {
        StatusCode::UNPROCESSABLE_ENTITY
    } else if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    let mut v = json!(s);
    if status == StatusCode::UNPROCESSABLE_ENTITY {
        v["error"] = json!(format!(
            "script refused by static checks: {}",
            s.report["problems"]
        ));
    }
    (status, Json(v))
}

async fn submit_script(
    State(wb): St,
    h: HeaderMap,
    body: Result<Json<NewScript>, JsonRejection>,
) -> ApiResult<(StatusCode, Json<Value>)> {
    let actor = auth(&wb, &h, Role::Requester)?;
    let b = wb.json_body(body)?;
    let wb2 = wb.clone();
    let s = tokio::task::spawn_blocking(move || wb2.submit_script(&actor, &b.name, &b.body))
        .await
        .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))??;
    Ok(script_response(s, true))
}

async fn update_script(
    State(wb): St,
    h: HeaderMap,
    Path(id): Path<i64>,
    body: Result<Json<ScriptBody>, JsonRejection>,
) -> ApiResult<(StatusCode, Json<Value>)> {
    let actor = auth(&wb, &h, Role::Requester)?;
    let b = wb.json_body(body)?;
    let wb2 = wb.clone();
    let s = tokio::task::spawn_blocking(move || wb2.update_script(&actor, id, &b.body))
        .await
        .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))??;
    Ok(script_response(s, false))
}

async fn get_script(State(wb): St, h: HeaderMap, Path(id): Path<i64>) -> ApiResult<Json<Value>> {
    auth(&wb, &h, Role::Viewer)?;
    Ok(Json(json!(wb.get_script(id)?)))
}

async fn create_request(
    State(wb): St,
    h: HeaderMap,
    body: Result<Json<RequestInput>, JsonRejection>,
) -> ApiResult<(StatusCode, Json<Value>)> {
    let actor = auth(&wb, &h, Role::Requester)?;
    let b = wb.json_body(body)?;
    Ok((
        StatusCode::CREATED,
        Json(json!(wb.create_request(&actor, b)?)),
    ))
}

async fn list_requests(State(wb): St, h: HeaderMap) -> ApiResult<Json<Value>> {
    auth(&wb, &h, Role::Viewer)?;
    Ok(Json(json!(wb.list_requests()?)))
}

async fn get_request(State(wb): St, h: HeaderMap, Path(id): Path<i64>) -> ApiResult<Json<Value>> {
    auth(&wb, &h, Role::Viewer)?;
    Ok(Json(json!(wb.get_request(id)?)))
}

#[derive(Deserialize, Default)]
struct Decision {
    #[serde(default)]
    comment: String,
}

async fn approve(
    State(wb): St,
    h: HeaderMap,
    Path(id): Path<i64>,
    body: Result<Json<Decision>, JsonRejection>,
) -> ApiResult<Json<Value>> {
    let actor = auth(&wb, &h, Role::Approver)?;
    let b = wb.json_body(body)?;
    Ok(Json(json!(wb.decide(&actor, id, true, &b.comment)?)))
}

async fn reject(
    State(wb): St,
    h: HeaderMap,
    Path(id): Path<i64>,
    body: Result<Json<Decision>, JsonRejection>,
) -> ApiResult<Json<Value>> {
    let actor = auth(&wb, &h, Role::Approver)?;
    let b = wb.json_body(body)?;
    Ok(Json(json!(wb.decide(&actor, id, false, &b.comment)?)))
}

async fn authorize(State(wb): St, h: HeaderMap, Path(id): Path<i64>) -> ApiResult<Json<Value>> {
    let actor = auth(&wb, &h, Role::Requester)?;
    Ok(Json(wb.authorize_run(&actor, id)?))
}

async fn start_run(
    State(wb): St,
    h: HeaderMap,
    Path(id): Path<i64>,
) -> ApiResult<(StatusCode, Json<Value>)> {
    let actor = auth(&wb, &h, Role::Requester)?;
    Ok((
        StatusCode::CREATED,
        Json(json!(wb.start_run(&actor, id).await?)),
    ))
}

async fn list_runs(State(wb): St, h: HeaderMap, Path(id): Path<i64>) -> ApiResult<Json<Value>> {
    auth(&wb, &h, Role::Viewer)?;
    Ok(Json(json!(wb.list_runs(id)?)))
}

async fn get_run(State(wb): St, h: HeaderMap, Path(id): Path<i64>) -> ApiResult<Json<Value>> {
    auth(&wb, &h, Role::Viewer)?;
    Ok(Json(json!(wb.get_run(id)?)))
}

#[derive(Deserialize)]
struct RunsQuery {
    incident: Option<i64>,
    #[serde(default = "default_limit")]
    limit: i64,
}

async fn recent_runs(
    State(wb): St,
    h: HeaderMap,
    q: Result<Query<RunsQuery>, axum::extract::rejection::QueryRejection>,
) -> ApiResult<Json<Value>> {
    auth(&wb, &h, Role::Viewer)?;
    let Query(q) = q.map_err(|e| ApiError::bad_request(e.body_text()))?;
    Ok(Json(json!(wb.recent_runs(q.incident, q.limit)?)))
}

/// Plots of output bytes: a holdup recording's two plots, or charts of
/// bpftrace's JSON output.
fn plots_of(what: &str, bytes: &[u8]) -> ApiResult<Json<Value>> {
    if bytes.starts_with(&holdup_record::MAGIC) {
        let p = crate::plot::recording_plots(bytes).map_err(|e| {
            ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                format!("{what} is a damaged holdup recording: {e}"),
            )
        })?;
        return Ok(Json(json!({"kind": "recording", "plots": p})));
    }
    let charts = crate::plot::bpftrace_charts(bytes);
    Ok(Json(json!({"kind": "bpftrace", "charts": charts})))
}

async fn artifact_plots(
    State(wb): St,
    h: HeaderMap,
    Path((id, name)): Path<(i64, String)>,
) -> ApiResult<Json<Value>> {
    auth(&wb, &h, Role::Viewer)?;
    let data = wb.get_artifact(id, &name)?;
    plots_of(&format!("artifact {name}"), &data)
}

async fn run_plots(State(wb): St, h: HeaderMap, Path(id): Path<i64>) -> ApiResult<Json<Value>> {
    auth(&wb, &h, Role::Viewer)?;
    plots_of(&format!("the output of run {id}"), &wb.run_output(id)?)
}

async fn run_output(State(wb): St, h: HeaderMap, Path(id): Path<i64>) -> ApiResult<Response> {
    auth(&wb, &h, Role::Viewer)?;
    let data = wb.run_output(id)?;
    Ok((
        [
            (header::CONTENT_TYPE, "application/octet-stream".to_string()),
            (
                header::CONTENT_DISPOSITION,
                format!("attachment; filename=\"run-{id}.out\""),
            ),
        ],
        data,
    )
        .into_response())
}

async fn stop_run(State(wb): St, h: HeaderMap, Path(id): Path<i64>) -> ApiResult<Json<Value>> {
    let actor = auth(&wb, &h, Role::Requester)?;
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
    h: HeaderMap,
    q: Result<Query<AuditQuery>, axum::extract::rejection::QueryRejection>,
) -> ApiResult<Json<Value>> {
    auth(&wb, &h, Role::Approver)?;
    let Query(q) = q.map_err(|e| ApiError::bad_request(e.body_text()))?;
    Ok(Json(json!(wb.audit_entries(q.after, q.limit)?)))
}

async fn audit_verify(State(wb): St, h: HeaderMap) -> ApiResult<Json<Value>> {
    auth(&wb, &h, Role::Approver)?;
    Ok(Json(json!(wb.verify_audit()?)))
}
