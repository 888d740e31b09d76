//! What the workbench API tests share: a scratch store, the router, and
//! requests through it in-process.
#![allow(dead_code)] // each test file uses its own subset

use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use holdup_workbench::{api, policy::Policy, Workbench};
use serde_json::{json, Value};
use std::path::PathBuf;
use std::sync::Arc;
use tower::ServiceExt;

/// A scratch directory holding one workbench store; removed on drop.
pub use holdup_testkit::TempDir as Tmp;

/// Where a scratch directory keeps its store.
pub trait StoreDir {
    fn db(&self) -> PathBuf;
}

impl StoreDir for Tmp {
    fn db(&self) -> PathBuf {
        self.0.join("wb.sqlite")
    }
}

/// A workbench router and its admin's token.
pub struct Wb {
    pub app: axum::Router,
    pub admin: String,
}

/// Opens the store (first start) under `policy`.
pub fn start_with(tmp: &Tmp, policy: Policy) -> Wb {
    let (wb, admin) = Workbench::open(&tmp.db(), policy).unwrap();
    Wb {
        app: api::router(Arc::new(wb)),
        admin: admin.expect("first start returns the admin token"),
    }
}

/// One request; the status and the raw body.
pub async fn call_raw(
    app: &axum::Router,
    method: Method,
    uri: &str,
    token: Option<&str>,
    body: Body,
) -> (StatusCode, Vec<u8>) {
    let mut b = Request::builder()
        .method(method)
        .uri(uri)
        .header("content-type", "application/json");
    if let Some(t) = token {
        b = b.header("authorization", format!("Bearer {t}"));
    }
    let resp = app.clone().oneshot(b.body(body).unwrap()).await.unwrap();
    let status = resp.status();
    let bytes = axum::body::to_bytes(resp.into_body(), usize::MAX)
        .await
        .unwrap();
    (status, bytes.to_vec())
}

pub async fn call(
    app: &axum::Router,
    method: Method,
    uri: &str,
    token: Option<&str>,
    body: Option<Value>,
) -> (StatusCode, Value) {
    let body = body
        .map(|v| Body::from(v.to_string()))
        .unwrap_or_else(Body::empty);
    let (s, b) = call_raw(app, method, uri, token, body).await;
    let v = serde_json::from_slice(&b).unwrap_or(Value::Null);
    (s, v)
}

/// One request as the holder of `token`.
pub async fn call_as(
    app: &axum::Router,
    method: Method,
    uri: &str,
    token: &str,
    body: Option<Value>,
) -> (StatusCode, Value) {
    call(app, method, uri, Some(token), body).await
}

/// Creates a user with `role` as the admin; its token.
pub async fn user(wb: &Wb, name: &str, role: &str) -> String {
    let (s, v) = call(
        &wb.app,
        Method::POST,
        "/api/users",
        Some(&wb.admin),
        Some(json!({"name": name, "role": role})),
    )
    .await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    v["token"].as_str().unwrap().to_string()
}
