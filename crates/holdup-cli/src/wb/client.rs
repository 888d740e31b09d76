//! The workbench API client: one request, its status and body, decoded
//! into `holdup-wb-api`'s types; refusals become errors carrying the
//! server's message.

use anyhow::{anyhow, Context, Result};
use holdup_wb_api::ErrorBody;
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::time::Duration;

/// The API client: base URL, token, agent.
pub(crate) struct Client {
    base: String,
    token: String,
    agent: ureq::Agent,
}

/// An HTTP method the API uses.
#[derive(Clone, Copy)]
pub(crate) enum Method {
    Get,
    Post,
    Put,
    Delete,
}

/// How to check an `https://` server's certificate.
#[derive(Debug, Clone, Default)]
pub struct TlsOptions {
    /// Trust the CA certificates in this PEM file (a private CA) instead
    /// of the built-in web roots.
    pub ca_file: Option<std::path::PathBuf>,
}

impl Client {
    /// A client of the workbench at `server` with API token `token`.
    pub(crate) fn new(server: &str, token: &str, tls: &TlsOptions) -> Result<Client> {
        // Script checks run bpftrace (30 s per call) before answering.
        Client::with_tls(server, token, tls, Duration::from_secs(300))
    }

    /// A client whose requests may take up to `timeout` each.
    pub(crate) fn with_tls(
        server: &str,
        token: &str,
        tls: &TlsOptions,
        timeout: Duration,
    ) -> Result<Client> {
        let mut tls_config =
            ureq::tls::TlsConfig::builder().provider(ureq::tls::TlsProvider::Rustls);
        if let Some(ca) = &tls.ca_file {
            let pem = std::fs::read(ca)
                .with_context(|| format!("cannot read the CA file {}", ca.display()))?;
            let certs: Vec<ureq::tls::Certificate<'static>> = ureq::tls::parse_pem(&pem)
                .filter_map(|item| match item {
                    Ok(ureq::tls::PemItem::Certificate(c)) => Some(Ok(c)),
                    Ok(_) => None,
                    Err(e) => Some(Err(e)),
                })
                .collect::<Result<_, _>>()
                .with_context(|| format!("the CA file {} is not PEM", ca.display()))?;
            if certs.is_empty() {
                anyhow::bail!(
                    "the CA file {} holds no certificate (expected PEM `BEGIN CERTIFICATE` blocks)",
                    ca.display()
                );
            }
            tls_config = tls_config.root_certs(ureq::tls::RootCerts::new_with_certs(&certs));
        }
        let config = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_connect(Some(Duration::from_secs(10)))
            .timeout_global(Some(timeout))
            .tls_config(tls_config.build())
            .build();
        Ok(Client {
            base: server.trim_end_matches('/').to_string(),
            token: token.trim().to_string(),
            agent: ureq::Agent::new_with_config(config),
        })
    }

    /// `PUT path` with raw bytes; a 2xx answer, or an error with the
    /// server's message.
    pub(crate) fn put_bytes(&self, path: &str, data: &[u8]) -> Result<()> {
        let url = format!("{}{path}", self.base);
        let mut resp = self
            .agent
            .put(&url)
            .header("Authorization", &format!("Bearer {}", self.token))
            .header("Content-Type", "application/octet-stream")
            .send(data)
            .map_err(|e| transport_error(&url, e))?;
        let status = resp.status().as_u16();
        if !(200..300).contains(&status) {
            let body = resp.body_mut().read_to_vec().unwrap_or_default();
            return Err(server_error(status, &body));
        }
        Ok(())
    }

    /// One request: the HTTP status and the raw body.
    pub(crate) fn raw(
        &self,
        method: Method,
        path: &str,
        body: Option<&serde_json::Value>,
    ) -> Result<(u16, Vec<u8>)> {
        let url = format!("{}{path}", self.base);
        let auth = format!("Bearer {}", self.token);
        let res = match method {
            Method::Get => self.agent.get(&url).header("Authorization", &auth).call(),
            Method::Delete => self
                .agent
                .delete(&url)
                .header("Authorization", &auth)
                .call(),
            Method::Post | Method::Put => {
                let b = match method {
                    Method::Post => self.agent.post(&url),
                    _ => self.agent.put(&url),
                }
                .header("Authorization", &auth);
                match body {
                    Some(v) => b.send_json(v),
                    None => b.send_empty(),
                }
            }
        };
        let mut resp = res.map_err(|e| transport_error(&url, e))?;
        let status = resp.status().as_u16();
        let data = resp
            .body_mut()
            .with_config()
            .limit(64 * 1024 * 1024)
            .read_to_vec()
            .with_context(|| format!("reading the answer of {url}"))?;
        Ok((status, data))
    }

    /// One request with an optional JSON body: the status and the body.
    pub(crate) fn call<B: Serialize>(
        &self,
        method: Method,
        path: &str,
        body: Option<&B>,
    ) -> Result<(u16, Vec<u8>)> {
        let body = body.map(serde_json::to_value).transpose()?;
        self.raw(method, path, body.as_ref())
    }

    /// A 2xx answer decoded as `T`, or an error with the server's message.
    fn ok<T: DeserializeOwned, B: Serialize>(
        &self,
        method: Method,
        path: &str,
        body: Option<&B>,
    ) -> Result<T> {
        let (status, data) = self.call(method, path, body)?;
        if !(200..300).contains(&status) {
            return Err(server_error(status, &data));
        }
        decode(&data)
    }

    /// `GET path`.
    pub(crate) fn get<T: DeserializeOwned>(&self, path: &str) -> Result<T> {
        self.ok::<T, ()>(Method::Get, path, None)
    }

    /// `POST path` with a JSON body.
    pub(crate) fn post<T: DeserializeOwned, B: Serialize>(
        &self,
        path: &str,
        body: &B,
    ) -> Result<T> {
        self.ok(Method::Post, path, Some(body))
    }

    /// `POST path` without a body.
    pub(crate) fn post_empty<T: DeserializeOwned>(&self, path: &str) -> Result<T> {
        self.ok::<T, ()>(Method::Post, path, None)
    }

    /// `PUT path` with a JSON body.
    pub(crate) fn put<T: DeserializeOwned, B: Serialize>(&self, path: &str, body: &B) -> Result<T> {
        self.ok(Method::Put, path, Some(body))
    }
}

fn transport_error(url: &str, e: ureq::Error) -> anyhow::Error {
    let refused = matches!(&e, ureq::Error::Io(io) if io.kind() == std::io::ErrorKind::ConnectionRefused)
        || matches!(e, ureq::Error::ConnectionFailed);
    if refused {
        anyhow!(
            "cannot connect to the workbench at {url}: {e}; the server may not be running (start it with `holdup workbench serve`), or set HOLDUP_WB_URL / --server to its address"
        )
    } else {
        anyhow!(
            "request to the workbench at {url} failed: {e}; is the server running (`holdup workbench serve`) and HOLDUP_WB_URL / --server right?"
        )
    }
}

/// A body as one of the API's types.
pub(crate) fn decode<T: DeserializeOwned>(data: &[u8]) -> Result<T> {
    // An empty body (204) reads as JSON null.
    let data = if data.is_empty() { &b"null"[..] } else { data };
    serde_json::from_slice(data).map_err(|e| {
        anyhow!(
            "the server's answer is not what this holdup expects ({e}): {}",
            String::from_utf8_lossy(data)
        )
    })
}

/// The server's refusal (`{"error": ...}`, or the text of a non-JSON body,
/// a proxy's error page say) with the HTTP status.
pub(crate) fn server_error(status: u16, data: &[u8]) -> anyhow::Error {
    let msg = match serde_json::from_slice::<ErrorBody>(data) {
        Ok(b) => b.error,
        Err(_) => String::from_utf8_lossy(data).trim().to_string(),
    };
    anyhow!("{msg} (HTTP {status} {})", reason(status))
}

/// The reason phrase of the statuses the API answers with.
pub(crate) fn reason(status: u16) -> &'static str {
    match status {
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        409 => "Conflict",
        413 => "Payload Too Large",
        422 => "Unprocessable Entity",
        500 => "Internal Server Error",
        503 => "Service Unavailable",
        507 => "Insufficient Storage",
        _ => "",
    }
}
