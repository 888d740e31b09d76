//! The agent's configuration: `/etc/holdup/agent.toml`, or the same from
//! command-line flags. See docs/AGENT.md for every key.

use anyhow::{bail, Context, Result};
use regex::Regex;
use serde::Deserialize;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// How one configured service picks its threads.
#[derive(Clone, Debug)]
pub enum Selector {
    /// Processes whose name (`/proc/PID/comm`) matches.
    Comm(Regex),
    /// Every process in one cgroup v2 directory (and below).
    Cgroup(PathBuf),
    /// Every child cgroup of a slice is a service of its own, named by the
    /// child's directory name (`redis.service`).
    Slice(PathBuf),
}

/// One service to watch.
#[derive(Clone, Debug)]
pub struct Service {
    /// The `service` label (for a slice: its prefix, unused; each child names itself).
    pub name: String,
    /// Which threads belong to it.
    pub selector: Selector,
}

/// The agent's whole configuration, validated.
#[derive(Clone, Debug)]
pub struct Config {
    /// Where `/metrics` is served.
    pub listen: SocketAddr,
    /// Window length of the collectors.
    pub interval: Duration,
    /// Attach only the scheduler tracepoints (cheapest; no disk metrics).
    pub sched_only: bool,
    /// Culprits with their own label per service; the rest are `other`.
    pub top_culprits: usize,
    /// Roles (thread-name patterns) with their own label per service; the rest are `other`.
    pub max_roles: usize,
    /// The services.
    pub services: Vec<Service>,
    /// The flight recorder's settings, when configured (hook only: see
    /// [`crate::Agent::add_window_sink`]).
    pub flight_recorder: Option<FlightRecorderConfig>,
}

/// `[flight_recorder]`: kept for the ring recorder (`record --ring`), which
/// plugs in as a window sink; this build does not start one itself.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FlightRecorderConfig {
    /// Directory of the ring.
    pub dir: PathBuf,
    /// How much history to keep (e.g. "10m").
    #[serde(default)]
    pub keep: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    listen: Option<String>,
    interval: Option<String>,
    #[serde(default)]
    sched_only: bool,
    top_culprits: Option<usize>,
    max_roles: Option<usize>,
    #[serde(default, rename = "service")]
    services: Vec<RawService>,
    flight_recorder: Option<FlightRecorderConfig>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawService {
    name: Option<String>,
    comm: Option<String>,
    cgroup: Option<PathBuf>,
    slice: Option<PathBuf>,
}

/// The default `/metrics` address (9464 is not taken by a well-known exporter).
pub const DEFAULT_LISTEN: &str = "127.0.0.1:9464";

impl Config {
    /// Reads and validates a TOML file.
    pub fn load(path: &Path) -> Result<Config> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read the agent config {}", path.display()))?;
        Config::parse(&text).with_context(|| format!("in the agent config {}", path.display()))
    }

    /// Parses and validates TOML text.
    pub fn parse(text: &str) -> Result<Config> {
        let raw: RawConfig = toml::from_str(text).context("not valid agent TOML")?;
        let mut services = Vec::new();
        for (i, s) in raw.services.into_iter().enumerate() {
            services.push(service_of(i, s)?);
        }
        Config::build(
            raw.listen.as_deref(),
            raw.interval.as_deref(),
            raw.sched_only,
            raw.top_culprits,
            raw.max_roles,
            services,
            raw.flight_recorder,
        )
    }

    /// Builds a config from parts (the command-line flags), with defaults.
    pub fn build(
        listen: Option<&str>,
        interval: Option<&str>,
        sched_only: bool,
        top_culprits: Option<usize>,
        max_roles: Option<usize>,
        services: Vec<Service>,
        flight_recorder: Option<FlightRecorderConfig>,
    ) -> Result<Config> {
        let listen = listen.unwrap_or(DEFAULT_LISTEN);
        let listen: SocketAddr = listen.parse().with_context(|| {
            format!("listen = {listen:?} is not an address:port (e.g. \"127.0.0.1:9464\")")
        })?;
        let interval = match interval {
            Some(s) => holdup_format::parse_duration(s)
                .map_err(|e| anyhow::anyhow!("interval = {s:?}: {e}"))?,
            None => Duration::from_secs(1),
        };
        if interval < Duration::from_millis(100) {
            bail!("interval must be at least 100ms for the agent (it runs continuously)");
        }
        if services.is_empty() {
            bail!("no service to watch: add a [[service]] with comm, cgroup or slice (or --comm NAME=REGEX, --cgroup NAME=PATH, --slice PATH)");
        }
        let mut seen = std::collections::BTreeSet::new();
        for s in &services {
            if !matches!(s.selector, Selector::Slice(_)) && !seen.insert(s.name.clone()) {
                bail!(
                    "two services are named {:?}: give each its own name",
                    s.name
                );
            }
        }
        let top_culprits = top_culprits.unwrap_or(5);
        let max_roles = max_roles.unwrap_or(20);
        if top_culprits == 0 || top_culprits > 100 || max_roles == 0 || max_roles > 1000 {
            bail!("top_culprits must be 1..=100 and max_roles 1..=1000 (they bound label cardinality)");
        }
        Ok(Config {
            listen,
            interval,
            sched_only,
            top_culprits,
            max_roles,
            services,
            flight_recorder,
        })
    }
}

fn service_of(i: usize, s: RawService) -> Result<Service> {
    let which = format!("[[service]] number {}", i + 1);
    let selector = match (s.comm, s.cgroup, s.slice) {
        (Some(re), None, None) => Selector::Comm(comm_regex(&re)?),
        (None, Some(c), None) => Selector::Cgroup(c),
        (None, None, Some(sl)) => Selector::Slice(sl),
        _ => bail!("{which}: give exactly one of comm = REGEX, cgroup = PATH, slice = PATH"),
    };
    let name = match (&selector, s.name) {
        (_, Some(n)) => n,
        (Selector::Slice(p), None) => p.display().to_string(),
        (_, None) => bail!("{which}: give it a name = \"...\" (the service label)"),
    };
    check_label(&name).with_context(|| which.clone())?;
    Ok(Service { name, selector })
}

/// A comm regex, with a clear error.
pub fn comm_regex(re: &str) -> Result<Regex> {
    Regex::new(re).with_context(|| format!("comm {re:?} is not a valid regular expression"))
}

fn check_label(name: &str) -> Result<()> {
    if name.is_empty() || name.chars().any(|c| c.is_control()) {
        bail!("service name {name:?} must be non-empty printable text");
    }
    Ok(())
}

/// Parses a `NAME=VALUE` flag.
pub fn name_value(flag: &str, s: &str) -> Result<(String, String)> {
    let (n, v) = s.split_once('=').with_context(|| {
        format!("{flag} {s:?}: write NAME=VALUE, e.g. {flag} redis=^redis-server$")
    })?;
    check_label(n)?;
    Ok((n.to_string(), v.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_file_parses() {
        let c = Config::parse(
            r#"
            listen = "127.0.0.1:9999"
            interval = "2s"
            top_culprits = 3
            [[service]]
            name = "redis"
            comm = "^redis-server$"
            [[service]]
            slice = "/system.slice"
            "#,
        )
        .unwrap();
        assert_eq!(c.listen.port(), 9999);
        assert_eq!(c.interval, Duration::from_secs(2));
        assert_eq!(c.top_culprits, 3);
        assert_eq!(c.services.len(), 2);
        assert!(matches!(c.services[1].selector, Selector::Slice(_)));
    }

    #[test]
    fn bad_input_says_what_is_wrong() {
        let e = format!(
            "{:#}",
            Config::parse("[[service]]\nname = \"x\"\n").unwrap_err()
        );
        assert!(e.contains("exactly one of comm"), "{e}");
        let e = format!(
            "{:#}",
            Config::parse("listen = \"nowhere\"\n[[service]]\nname=\"x\"\ncomm=\"x\"").unwrap_err()
        );
        assert!(e.contains("address:port"), "{e}");
        let e = format!("{:#}", Config::parse("").unwrap_err());
        assert!(e.contains("no service"), "{e}");
        let e = format!(
            "{:#}",
            Config::parse("[[service]]\nname=\"x\"\ncomm=\"(\"").unwrap_err()
        );
        assert!(e.contains("regular expression"), "{e}");
        let e = format!("{:#}", Config::parse("bogus = 1").unwrap_err());
        assert!(e.contains("bogus"), "{e}");
    }
}
