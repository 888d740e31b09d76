//! The HTTP side of dispatch: admins manage agent identities under
//! `/api/agents`; agents, with their own tokens, pull and report runs
//! under `/agent/` (routes registered in [`crate::api::router`]).

use crate::api::{bearer, blocking, json_body, no_store, Admin, Caller};
use crate::{Error, ErrorKind, WbResult, Workbench};
use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, JsonRejection};
use axum::extract::{FromRequestParts, Path, Query, State};
use axum::http::request::Parts;
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Json;
use holdup_wb_api::{
    Agent, AgentToken, DispatchedRun, Heartbeat, HeartbeatAnswer, NewAgent, Run, RunEnd,
};
use serde::Deserialize;
use std::sync::Arc;
use std::time::Duration;

type St = State<Arc<Workbench>>;

/// The longest `GET /agent/runs/next` waits for a run.
pub const MAX_POLL_WAIT: Duration = Duration::from_secs(30);
/// How often a waiting poll looks for a run.
const POLL_EVERY: Duration = Duration::from_millis(250);

fn token_answer((agent, token): (Agent, String)) -> AgentToken {
    AgentToken {
        agent,
        token,
        note: "the agent token is shown only once; give it to `holdup wb agent --token-file`"
            .into(),
    }
}

pub(crate) async fn create_agent(
    State(wb): St,
    Caller(actor, _): Caller<Admin>,
    body: Result<Json<NewAgent>, JsonRejection>,
) -> WbResult<(StatusCode, Json<AgentToken>)> {
    let b = json_body(&wb, body)?;
    let made = blocking(move || wb.create_agent(&actor, &b.host)).await?;
    Ok((StatusCode::CREATED, Json(token_answer(made))))
}

pub(crate) async fn list_agents(State(wb): St, _: Caller<Admin>) -> WbResult<Json<Vec<Agent>>> {
    Ok(Json(blocking(move || wb.list_agents()).await?))
}

pub(crate) async fn rotate_agent(
    State(wb): St,
    Caller(actor, _): Caller<Admin>,
    Path(host): Path<String>,
) -> WbResult<Json<AgentToken>> {
    let made = blocking(move || wb.rotate_agent_token(&actor, &host)).await?;
    Ok(Json(token_answer(made)))
}

pub(crate) async fn revoke_agent(
    State(wb): St,
    Caller(actor, _): Caller<Admin>,
    Path(host): Path<String>,
) -> WbResult<Json<Agent>> {
    Ok(Json(
        blocking(move || wb.revoke_agent(&actor, &host)).await?,
    ))
}

/// Authenticates every `/agent/` request by its agent token before its
/// handler (and its body) and leaves the [`Agent`] for [`AgentCaller`].
pub(crate) async fn authenticate_agent(
    State(wb): St,
    mut req: axum::extract::Request,
    next: Next,
) -> Response {
    let token = bearer(req.headers()).map(str::to_owned);
    match blocking(move || wb.authenticate_agent(token.as_deref())).await {
        Ok(agent) => {
            req.extensions_mut().insert(agent);
            no_store(next.run(req).await)
        }
        Err(e) => no_store(e.into_response()),
    }
}

/// The authenticated agent of an `/agent/` route.
pub struct AgentCaller(pub Agent);

impl<S: Send + Sync> FromRequestParts<S> for AgentCaller {
    type Rejection = Error;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Error> {
        parts
            .extensions
            .get::<Agent>()
            .cloned()
            .map(AgentCaller)
            .ok_or_else(|| Error::new(ErrorKind::Unauthenticated, "no agent token"))
    }
}

#[derive(Deserialize)]
pub(crate) struct PollQuery {
    /// Seconds to wait for a run (long poll), at most [`MAX_POLL_WAIT`].
    #[serde(default)]
    wait: u64,
}

/// The next run for the caller's host, waiting up to `wait` seconds for
/// one: 200 with the run, or 204.
pub(crate) async fn next_run(
    State(wb): St,
    AgentCaller(agent): AgentCaller,
    q: Result<Query<PollQuery>, axum::extract::rejection::QueryRejection>,
) -> WbResult<Response> {
    let Query(q) = q.map_err(|e| Error::bad_request(e.body_text()))?;
    let until = tokio::time::Instant::now() + Duration::from_secs(q.wait).min(MAX_POLL_WAIT);
    loop {
        let (wb2, a) = (wb.clone(), agent.clone());
        let run: Option<DispatchedRun> = blocking(move || wb2.claim_run(&a)).await?;
        if let Some(run) = run {
            return Ok(Json(run).into_response());
        }
        if tokio::time::Instant::now() + POLL_EVERY > until {
            return Ok(StatusCode::NO_CONTENT.into_response());
        }
        tokio::time::sleep(POLL_EVERY).await;
    }
}

pub(crate) async fn heartbeat(
    State(wb): St,
    AgentCaller(agent): AgentCaller,
    Path(id): Path<i64>,
    body: Result<Json<Heartbeat>, JsonRejection>,
) -> WbResult<Json<HeartbeatAnswer>> {
    let hb = json_body(&wb, body)?;
    Ok(Json(
        blocking(move || wb.agent_heartbeat(&agent, id, &hb)).await?,
    ))
}

pub(crate) async fn put_output(
    State(wb): St,
    AgentCaller(agent): AgentCaller,
    Path(id): Path<i64>,
    body: Result<Bytes, BytesRejection>,
) -> WbResult<StatusCode> {
    let data = body.map_err(|e| {
        Error::new(
            ErrorKind::TooLarge,
            format!("the output could not be read: {}", e.body_text()),
        )
    })?;
    blocking(move || wb.agent_output(&agent, id, &data)).await?;
    Ok(StatusCode::NO_CONTENT)
}

pub(crate) async fn end_run(
    State(wb): St,
    AgentCaller(agent): AgentCaller,
    Path(id): Path<i64>,
    body: Result<Json<RunEnd>, JsonRejection>,
) -> WbResult<Json<Run>> {
    let end = json_body(&wb, body)?;
    Ok(Json(
        blocking(move || wb.agent_end(&agent, id, &end)).await?,
    ))
}

/// Marks runs of silent agents interrupted, every second, for as long as
/// the server runs.
pub(crate) async fn sweep_forever(wb: Arc<Workbench>) {
    let mut every = tokio::time::interval(Duration::from_secs(1));
    loop {
        every.tick().await;
        let wb = wb.clone();
        if let Err(e) = blocking(move || wb.sweep_agent_runs()).await {
            eprintln!("holdup workbench: checking agents' heartbeats failed: {e}");
        }
    }
}
