//! Sends a bundle to a workbench incident as an artifact
//! (`PUT /api/incidents/{id}/artifacts/{name}`, docs/WORKBENCH.md).

use anyhow::{anyhow, bail, Context, Result};
use std::path::Path;
use std::time::Duration;

/// Reads a token file: its first line, trimmed.
pub fn read_token(path: &Path) -> Result<String> {
    let t = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read the token file {}", path.display()))?;
    let t = t.lines().next().unwrap_or("").trim().to_string();
    if t.is_empty() {
        bail!(
            "the token file {} is empty: put the workbench token on its first line",
            path.display()
        );
    }
    Ok(t)
}

/// Uploads `bundle` to incident `incident` of the workbench at `base`
/// under its file name; the artifact name, or an error saying what the
/// server answered.
pub fn upload(base: &str, incident: u64, token: &str, bundle: &Path) -> Result<String> {
    let name = bundle
        .file_name()
        .and_then(|n| n.to_str())
        .ok_or_else(|| anyhow!("the bundle path {} has no file name", bundle.display()))?
        .to_string();
    let data = std::fs::read(bundle)
        .with_context(|| format!("cannot read the bundle {}", bundle.display()))?;
    let url = format!(
        "{}/api/incidents/{incident}/artifacts/{name}",
        base.trim_end_matches('/')
    );
    let agent = ureq::Agent::new_with_config(
        ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_connect(Some(Duration::from_secs(10)))
            .timeout_global(Some(Duration::from_secs(300)))
            .build(),
    );
    let mut resp = agent
        .put(&url)
        .header("Authorization", &format!("Bearer {token}"))
        .header("Content-Type", "application/octet-stream")
        .send(&data[..])
        .map_err(|e| {
            anyhow!("cannot reach the workbench at {url}: {e}; is it running and the URL right?")
        })?;
    let status = resp.status().as_u16();
    if (200..300).contains(&status) {
        return Ok(name);
    }
    let body = resp
        .body_mut()
        .with_config()
        .limit(64 * 1024)
        .read_to_string()
        .unwrap_or_default();
    let msg = serde_json::from_str::<serde_json::Value>(&body)
        .ok()
        .and_then(|v| v.get("error").and_then(|e| e.as_str()).map(str::to_string))
        .unwrap_or_else(|| body.trim().to_string());
    bail!("the workbench refused the upload to incident {incident} (HTTP {status}): {msg}")
}
