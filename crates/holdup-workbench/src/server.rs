//! The server loop: connections over hyper with a header-read timeout and
//! graceful shutdown, and the `Host` check against DNS rebinding. The
//! routes are in [`crate::api`].

use crate::api::router;
use crate::{Error, Workbench};
use axum::extract::State;
use axum::http::header;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use std::sync::Arc;
use std::time::Duration;

/// Whether `host` (a `Host` header: name or address, maybe a port) names
/// this server: an IP address, a single-label name (`localhost`, a short
/// host name), this host's name, or one of the policy's `server_names`. A
/// DNS-rebinding page is served from a domain: that is what is refused.
pub fn host_allowed(host: &str, server_names: &[String]) -> bool {
    let name = if let Some(rest) = host.strip_prefix('[') {
        // [v6]:port
        return rest
            .split(']')
            .next()
            .is_some_and(|a| a.parse::<std::net::Ipv6Addr>().is_ok());
    } else {
        host.rsplit_once(':')
            .filter(|(_, port)| port.chars().all(|c| c.is_ascii_digit()))
            .map_or(host, |(n, _)| n)
    };
    let name = name.trim_end_matches('.').to_ascii_lowercase();
    name.parse::<std::net::IpAddr>().is_ok()
        // a single-label name is local (a rebinding page is on a domain)
        || !name.contains('.')
        || name == crate::runs::this_host().to_ascii_lowercase()
        || server_names.iter().any(|s| s.eq_ignore_ascii_case(&name))
}

/// Refuses requests whose `Host` names another server (DNS rebinding: a
/// page on another domain resolving to this address), UI included.
pub(crate) async fn check_host(
    State(wb): State<Arc<Workbench>>,
    req: axum::extract::Request,
    next: Next,
) -> Response {
    if let Some(h) = req.headers().get(header::HOST) {
        let host = h.to_str().unwrap_or("");
        if !host_allowed(host, &wb.policy().server_names) {
            return Error::bad_request(format!(
                "this workbench is not {host:?}: reach it by its address, localhost or its host name, or add the name to the policy's server_names"
            ))
            .into_response();
        }
    }
    next.run(req).await
}

/// Opens the store, prints the admin token on first start, and serves the
/// API on `addr` until Ctrl-C / SIGTERM: `holdup workbench serve`.
pub fn serve_blocking(
    db_path: &std::path::Path,
    policy_path: Option<&std::path::Path>,
    addr: std::net::SocketAddr,
) -> anyhow::Result<()> {
    serve_blocking_tls(db_path, policy_path, addr, None)
}

/// A TLS acceptor for a PEM certificate chain and its private key.
pub fn tls_acceptor(
    cert: &std::path::Path,
    key: &std::path::Path,
) -> anyhow::Result<tokio_rustls::TlsAcceptor> {
    use tokio_rustls::rustls;
    use tokio_rustls::rustls::pki_types::pem::PemObject;
    use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .map_err(|e| anyhow::anyhow!("cannot read the TLS certificate {}: {e}", cert.display()))?
        .collect::<Result<_, _>>()
        .map_err(|e| anyhow::anyhow!("the TLS certificate {} is not PEM: {e}", cert.display()))?;
    if certs.is_empty() {
        anyhow::bail!(
            "{} holds no certificate (expected PEM `BEGIN CERTIFICATE` blocks)",
            cert.display()
        );
    }
    let key = PrivateKeyDer::from_pem_file(key).map_err(|e| {
        anyhow::anyhow!(
            "cannot read a private key (PEM) from {}: {e}",
            key.display()
        )
    })?;
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()?
    .with_no_client_auth()
    .with_single_cert(certs, key)
    .map_err(|e| anyhow::anyhow!("the TLS certificate and key do not fit together: {e}"))?;
    Ok(tokio_rustls::TlsAcceptor::from(Arc::new(config)))
}

/// [`serve_blocking`], over TLS when `tls` names a certificate chain and
/// its key (PEM files): `holdup workbench serve --tls-cert --tls-key`.
pub fn serve_blocking_tls(
    db_path: &std::path::Path,
    policy_path: Option<&std::path::Path>,
    addr: std::net::SocketAddr,
    tls: Option<(&std::path::Path, &std::path::Path)>,
) -> anyhow::Result<()> {
    let acceptor = tls.map(|(c, k)| tls_acceptor(c, k)).transpose()?;
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
            "holdup workbench: serving {}://{} (store {}); open it in a browser and log in with a token, or use `holdup wb`",
            if acceptor.is_some() { "https" } else { "http" },
            listener.local_addr()?,
            db_path.display()
        );
        serve_inner(
            Arc::new(wb),
            listener,
            HEADER_READ_TIMEOUT,
            shutdown_signal(),
            acceptor,
        )
        .await
    })
}

/// How long a client may take to send a request's headers, and to start
/// the next request on a kept-alive connection: half-open connections are
/// closed after it, so they cannot pile up.
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);

/// Serves the API on `listener` until Ctrl-C / SIGTERM.
pub async fn serve(wb: Arc<Workbench>, listener: tokio::net::TcpListener) -> anyhow::Result<()> {
    serve_with(wb, listener, HEADER_READ_TIMEOUT, shutdown_signal()).await
}

/// Serves the API on `listener` until `shutdown` completes, closing
/// connections whose headers (or next request) do not arrive within
/// `header_read_timeout`. On shutdown, requests under way get 5 s to end.
pub async fn serve_with(
    wb: Arc<Workbench>,
    listener: tokio::net::TcpListener,
    header_read_timeout: Duration,
    shutdown: impl std::future::Future<Output = ()>,
) -> anyhow::Result<()> {
    serve_inner(wb, listener, header_read_timeout, shutdown, None).await
}

/// One connection: HTTP/1 over `io` until it closes or the server stops.
async fn serve_connection<I>(
    io: I,
    app: axum::Router,
    header_read_timeout: Duration,
    mut stopping: tokio::sync::watch::Receiver<()>,
) where
    I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let svc = hyper_util::service::TowerToHyperService::new(app);
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(hyper_util::rt::TokioTimer::new())
        .header_read_timeout(header_read_timeout);
    let conn = http.serve_connection(hyper_util::rt::TokioIo::new(io), svc);
    tokio::pin!(conn);
    tokio::select! {
        _ = conn.as_mut() => {}
        _ = stopping.changed() => {
            // idle connections close now, busy ones after their response
            conn.as_mut().graceful_shutdown();
            let _ = conn.await;
        }
    }
}

/// The accept loop, over TLS with `tls`; the agents' heartbeat sweeper
/// runs beside it.
async fn serve_inner(
    wb: Arc<Workbench>,
    listener: tokio::net::TcpListener,
    header_read_timeout: Duration,
    shutdown: impl std::future::Future<Output = ()>,
    tls: Option<tokio_rustls::TlsAcceptor>,
) -> anyhow::Result<()> {
    let app = router(wb.clone());
    let sweeper = tokio::spawn(crate::agent_api::sweep_forever(wb));
    let mut conns = tokio::task::JoinSet::new();
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(());
    tokio::pin!(shutdown);
    loop {
        let stream = tokio::select! {
            _ = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok((s, _)) => s,
                // out of descriptors, say: back off instead of spinning
                Err(_) => {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let (app, stopping, tls) = (app.clone(), stop_rx.clone(), tls.clone());
        conns.spawn(async move {
            match tls {
                None => serve_connection(stream, app, header_read_timeout, stopping).await,
                Some(acceptor) => {
                    // The handshake is bounded like the headers after it.
                    let hs = tokio::time::timeout(header_read_timeout, acceptor.accept(stream));
                    if let Ok(Ok(io)) = hs.await {
                        serve_connection(io, app, header_read_timeout, stopping).await
                    }
                }
            }
        });
        while conns.try_join_next().is_some() {}
    }
    let _ = stop_tx.send(());
    let _ = tokio::time::timeout(Duration::from_secs(5), async {
        while conns.join_next().await.is_some() {}
    })
    .await;
    conns.abort_all();
    sweeper.abort();
    Ok(())
}

/// Ctrl-C or SIGTERM.
async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
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
