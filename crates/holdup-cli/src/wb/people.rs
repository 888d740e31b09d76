//! `holdup wb whoami|users|incidents|incident`: users, tokens, incidents,
//! their notes, artifacts and diagnoses.

use super::client::{server_error, Client, Method};
use super::runs::runs_table;
use super::show::{at, out, out_bytes, print_json, short, table, text};
use anyhow::{Context, Result};
use holdup_wb_api::{
    CreatedUser, Diagnosis, Incident, IncidentInput, NewUser, NoteInput, RotatedToken, Run, User,
    UserChange,
};
use serde::Serialize;
use std::path::PathBuf;

pub(crate) fn whoami(c: &Client, json: bool) -> Result<()> {
    let u: User = c.get("/api/whoami")?;
    if json {
        return print_json(&u);
    }
    out(&format!(
        "{} (role {}, user id {})\n",
        u.name,
        u.role.as_str(),
        u.id
    ))
}

pub(crate) fn users(c: &Client, json: bool) -> Result<()> {
    let users: Vec<User> = c.get("/api/users")?;
    if json {
        return print_json(&users);
    }
    let rows: Vec<Vec<String>> = users
        .into_iter()
        .map(|u| {
            let state = if u.disabled { "disabled" } else { "" };
            vec![
                u.id.to_string(),
                u.name,
                u.role.as_str().into(),
                state.into(),
            ]
        })
        .collect();
    out(&table(&["ID", "NAME", "ROLE", "STATE"], &rows))
}

pub(crate) fn update_user(c: &Client, json: bool, name: &str, change: UserChange) -> Result<()> {
    let u: User = c.put(&format!("/api/users/{name}"), &change)?;
    if json {
        return print_json(&u);
    }
    out(&format!(
        "{}: role {}, {}\n",
        u.name,
        u.role.as_str(),
        if u.disabled { "disabled" } else { "enabled" }
    ))
}

/// Disables (`true`) or enables a user.
pub(crate) fn set_disabled(c: &Client, json: bool, name: &str, disabled: bool) -> Result<()> {
    let change = UserChange {
        role: None,
        disabled: Some(disabled),
    };
    update_user(c, json, name, change)
}

pub(crate) fn create_user(c: &Client, json: bool, name: &str, role: &str) -> Result<()> {
    let body = NewUser {
        name: name.into(),
        role: role.into(),
    };
    let v: CreatedUser = c.post("/api/users", &body)?;
    if json {
        return print_json(&v);
    }
    out(&format!(
        "created user {} (role {}); its API token, shown only now:\n{}\n",
        v.user.name,
        v.user.role.as_str(),
        v.token
    ))
}

pub(crate) fn rotate_token(c: &Client, json: bool, name: &str) -> Result<()> {
    let v: RotatedToken = c.post_empty(&format!("/api/users/{name}/token"))?;
    if json {
        return print_json(&v);
    }
    out(&format!(
        "new API token for {name} (the old one no longer works; shown only now):\n{}\n",
        v.token
    ))
}

pub(crate) fn incidents(c: &Client, json: bool) -> Result<()> {
    let list: Vec<Incident> = c.get("/api/incidents")?;
    if json {
        return print_json(&list);
    }
    let rows: Vec<Vec<String>> = list
        .into_iter()
        .map(|i| {
            vec![
                i.id.to_string(),
                at(Some(i.created)),
                text(&i.created_by),
                text(&i.input.service),
                text(&i.input.host),
                i.artifacts.len().to_string(),
                short(&text(&i.input.title), 60),
            ]
        })
        .collect();
    out(&table(
        &[
            "ID",
            "CREATED (UTC)",
            "BY",
            "SERVICE",
            "HOST",
            "ARTIFACTS",
            "TITLE",
        ],
        &rows,
    ))
}

pub(crate) fn create_incident(
    c: &Client,
    json: bool,
    title: &str,
    service: &str,
    host: &str,
    notes: &str,
) -> Result<()> {
    let body = IncidentInput {
        title: title.into(),
        service: service.into(),
        host: host.into(),
        start_time: None,
        end_time: None,
        notes: notes.into(),
    };
    let inc: Incident = c.post("/api/incidents", &body)?;
    if json {
        return print_json(&inc);
    }
    out(&format!(
        "incident {} created: {}\n",
        inc.id,
        text(&inc.input.title)
    ))
}

/// New values for title, service, host and notes; `None` keeps the old one.
pub(crate) fn update_incident(
    c: &Client,
    json: bool,
    id: i64,
    [title, service, host, notes]: [Option<String>; 4],
) -> Result<()> {
    let inc: Incident = c.get(&format!("/api/incidents/{id}"))?;
    let mut input = inc.input;
    for (field, value) in [
        (&mut input.title, title),
        (&mut input.service, service),
        (&mut input.host, host),
        (&mut input.notes, notes),
    ] {
        if let Some(v) = value {
            *field = v;
        }
    }
    let inc: Incident = c.put(&format!("/api/incidents/{id}"), &input)?;
    if json {
        return print_json(&inc);
    }
    out(&format!(
        "incident {id} updated: {}\n",
        text(&inc.input.title)
    ))
}

/// `incident show --json`: the incident and its runs.
#[derive(Serialize)]
struct IncidentWithRuns {
    incident: Incident,
    runs: Vec<Run>,
}

pub(crate) fn show_incident(c: &Client, json: bool, id: i64) -> Result<()> {
    let inc: Incident = c.get(&format!("/api/incidents/{id}"))?;
    let runs: Vec<Run> = c.get(&format!("/api/runs?incident={id}&limit=1000"))?;
    if json {
        return print_json(&IncidentWithRuns {
            incident: inc,
            runs,
        });
    }
    let i = &inc.input;
    let mut s = format!("incident {}: {}\n", inc.id, text(&i.title));
    for (label, value) in [
        ("service", &i.service),
        ("host", &i.host),
        ("created by", &inc.created_by),
    ] {
        s += &format!("  {label:<11} {}\n", text(value));
    }
    s += &format!("  {:<11} {}\n", "created", at(Some(inc.created)));
    for (label, t) in [("start", i.start_time), ("end", i.end_time)] {
        if t.is_some() {
            s += &format!("  {label:<11} {}\n", at(t));
        }
    }
    if !i.notes.is_empty() {
        s += &format!("  notes:\n    {}\n", i.notes.replace('\n', "\n    "));
    }
    if !inc.timeline.is_empty() {
        s += "\ntimeline:\n";
        for n in &inc.timeline {
            s += &format!(
                "  {} {}: {}\n",
                at(Some(n.created)),
                text(&n.author),
                text(&n.text).replace('\n', "\n    ")
            );
        }
    }
    s += &format!("\nartifacts ({}):\n", inc.artifacts.len());
    for a in &inc.artifacts {
        s += &format!("  {a}\n");
    }
    s += &format!("\nruns ({}):\n", runs.len());
    if !runs.is_empty() {
        s += &runs_table(runs);
    }
    out(&s)
}

pub(crate) fn artifact(c: &Client, id: i64, name: &str, output: Option<PathBuf>) -> Result<()> {
    let path = format!("/api/incidents/{id}/artifacts/{name}");
    let (status, data) = c.raw(Method::Get, &path, None)?;
    if !(200..300).contains(&status) {
        return Err(server_error(status, &data));
    }
    match output {
        Some(p) => {
            std::fs::write(&p, &data).with_context(|| format!("writing {}", p.display()))?;
            eprintln!("wrote {} bytes to {}", data.len(), p.display());
            Ok(())
        }
        None => out_bytes(&data),
    }
}

pub(crate) fn add_note(c: &Client, json: bool, id: i64, note: String) -> Result<()> {
    let inc: Incident = c.post(
        &format!("/api/incidents/{id}/notes"),
        &NoteInput { text: note },
    )?;
    if json {
        return print_json(&inc);
    }
    out(&format!(
        "incident {id}: {} notes on the timeline\n",
        inc.timeline.len()
    ))
}

pub(crate) fn diagnose(c: &Client, json: bool, id: i64, name: &str) -> Result<()> {
    let d: Diagnosis = c.post_empty(&format!("/api/incidents/{id}/artifacts/{name}/diagnose"))?;
    if json {
        return print_json(&d);
    }
    out(&format!(
        "{}\n(attached to incident {id} as {})\n",
        d.text.trim_end(),
        d.artifact
    ))
}
