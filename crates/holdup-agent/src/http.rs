//! The `/metrics` endpoint: a small synchronous server (tiny_http) on one
//! thread; a scrape renders the registry under its lock.

use crate::metrics::{OwnCost, Registry};
use anyhow::Result;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tiny_http::{Header, Response, Server};

/// A bound, not yet serving, `/metrics` server.
pub struct MetricsServer {
    server: Server,
    registry: Arc<Mutex<Registry>>,
}

impl MetricsServer {
    /// Binds `addr` (fails at once if it is taken).
    pub fn bind(addr: SocketAddr, registry: Arc<Mutex<Registry>>) -> Result<MetricsServer> {
        let server = Server::http(addr).map_err(|e| {
            anyhow::anyhow!("cannot listen on {addr}: {e} (choose another listen address)")
        })?;
        Ok(MetricsServer { server, registry })
    }

    /// The address bound.
    pub fn addr(&self) -> SocketAddr {
        self.server
            .server_addr()
            .to_ip()
            .expect("bound to an IP address")
    }

    /// Answers requests until `stop` is set.
    pub fn serve(self, stop: &AtomicBool) {
        while !stop.load(Ordering::Relaxed) {
            let req = match self.server.recv_timeout(Duration::from_millis(200)) {
                Ok(Some(r)) => r,
                Ok(None) => continue,
                Err(e) => {
                    tracing::warn!("metrics server: {e}");
                    continue;
                }
            };
            let path = req.url().split('?').next().unwrap_or("");
            let resp = match path {
                "/metrics" => {
                    let om = req.headers().iter().any(|h| {
                        h.field.equiv("Accept")
                            && h.value.as_str().contains("application/openmetrics-text")
                    });
                    let own = OwnCost::now();
                    let body = match self.registry.lock() {
                        Ok(r) => r.render(&own, om),
                        Err(_) => String::new(),
                    };
                    let ctype = if om {
                        "application/openmetrics-text; version=1.0.0; charset=utf-8"
                    } else {
                        "text/plain; version=0.0.4; charset=utf-8"
                    };
                    Response::from_string(body).with_header(header("Content-Type", ctype))
                }
                "/" => Response::from_string("holdup agent: metrics on /metrics (docs/AGENT.md)\n"),
                _ => Response::from_string("not found: try /metrics\n").with_status_code(404),
            };
            let _ = req.respond(resp);
        }
    }
}

fn header(k: &str, v: &str) -> Header {
    Header::from_bytes(k.as_bytes(), v.as_bytes()).expect("static header")
}
