//! Earlier incidents that look like this one: `GET
//! /api/incidents/{id}/matches`, for the incident page. Each incident's
//! first recorded artifact (`*.rec`) is diagnosed and fingerprinted
//! (`holdup-lab`, as `holdup match` does), and the other incidents are
//! ranked by similarity, each with its title (what it turned out to be),
//! date and notes.

use crate::api::{blocking, Caller, Viewer};
use crate::{Error, WbResult, Workbench};
use axum::extract::{Path, State};
use axum::routing::get;
use axum::{Json, Router};
use holdup_lab::matching::{self, IncidentInfo};
use serde_json::{json, Value};
use std::sync::Arc;

/// Most matches returned.
pub const MAX_MATCHES: usize = 10;

/// The route (added to the API router before its authentication layer).
pub fn routes() -> Router<Arc<Workbench>> {
    Router::new().route("/api/incidents/{id}/matches", get(matches))
}

async fn matches(
    State(wb): State<Arc<Workbench>>,
    _: Caller<Viewer>,
    Path(id): Path<i64>,
) -> WbResult<Json<Value>> {
    Ok(Json(blocking(move || wb.incident_matches(id)).await?))
}

impl Workbench {
    /// Earlier incidents ranked by how much their recordings look like
    /// incident `id`'s.
    pub fn incident_matches(&self, id: i64) -> WbResult<Value> {
        let all: Vec<IncidentInfo> = self
            .list_incidents()?
            .iter()
            .map(IncidentInfo::from_api)
            .collect();
        let Some(me) = all.iter().find(|i| i.id == id) else {
            return Err(Error::not_found(format!("no incident {id}")));
        };
        let fetch = |i: i64, name: &str| -> anyhow::Result<Vec<u8>> {
            self.get_artifact(i, name)
                .map_err(|e| anyhow::anyhow!("{}", e.message))
        };
        let (mine, mut notes) = matching::workbench_entries(std::slice::from_ref(me), fetch)
            .map_err(|e| Error::internal(format!("{e:#}")))?;
        let Some(mine) = mine.into_iter().next() else {
            return Ok(json!({
                "incident": id,
                "matches": [],
                "note": "this incident has no readable recording (*.rec) to compare: attach one (holdup record -o x.rec) or run a holdup probe",
            }));
        };
        let others: Vec<IncidentInfo> = all.into_iter().filter(|i| i.id != id).collect();
        let (library, w) = matching::workbench_entries(&others, fetch)
            .map_err(|e| Error::internal(format!("{e:#}")))?;
        notes.extend(w);
        let ranked: Vec<Value> = matching::rank(&mine.fingerprint, &library)
            .into_iter()
            .take(MAX_MATCHES)
            .map(|m| {
                json!({
                    "incident": m.entry.name,
                    "id": m.entry.name.trim_start_matches("incident ").parse::<i64>().ok(),
                    "similarity": (m.similarity.total * 100.0).round() / 100.0,
                    "verdict": m.entry.verdict_note,
                    "diagnosed": m.entry.diagnosed,
                    "date": holdup_format::utc_ms(m.entry.started_unix_ms as i64),
                    "notes": m.entry.notes,
                })
            })
            .collect();
        Ok(json!({
            "incident": id,
            "diagnosed": mine.diagnosed,
            "fingerprint": mine.fingerprint,
            "matches": ranked,
            "warnings": notes,
        }))
    }
}
