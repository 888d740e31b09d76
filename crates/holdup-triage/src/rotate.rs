//! A bounded rotation of triage bundles in one directory: at most `keep`
//! bundles and at most `max_bytes` in all. Room is made *before* a run
//! (the oldest bundles go until the new one fits in the worst case), so the
//! directory never holds more than the bounds allow, even while a run
//! writes.

use anyhow::{bail, Context, Result};
use std::path::PathBuf;

/// Bundles in a rotation are named `triage-<unix ms>.tar.zst`.
pub const PREFIX: &str = "triage-";
/// Their suffix.
pub const SUFFIX: &str = ".tar.zst";

/// Parses a size: a number of bytes with an optional binary unit
/// (K, M, G, T; KiB, MiB, ...; case-insensitive), e.g. `64M`, `2GiB`, `4096`.
pub fn parse_bytes(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let v: f64 = num
        .parse()
        .map_err(|_| format!("{s:?} is not a size: write e.g. 4096, 64M or 2G"))?;
    let mult: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" | "kib" => 1 << 10,
        "m" | "mb" | "mib" => 1 << 20,
        "g" | "gb" | "gib" => 1 << 30,
        "t" | "tb" | "tib" => 1 << 40,
        u => return Err(format!("{s:?}: unknown size unit {u:?} (use K, M, G or T)")),
    };
    Ok((v * mult as f64) as u64)
}

/// A directory of bundles with its bounds.
#[derive(Clone, Debug)]
pub struct Rotation {
    /// The directory.
    pub dir: PathBuf,
    /// Most bundles kept.
    pub keep: usize,
    /// Most bytes of bundles (and a run's staging files) kept.
    pub max_bytes: Option<u64>,
}

impl Rotation {
    /// Checks the bounds and that the directory exists and is writable.
    pub fn check(&self) -> Result<()> {
        if self.keep == 0 {
            bail!("--keep must be at least 1");
        }
        if !self.dir.is_dir() {
            bail!(
                "{} is not a directory: create it (mkdir -p) or choose another --dir",
                self.dir.display()
            );
        }
        crate::check_writable(&self.dir.join("x"), "triage bundles")
    }

    /// The path of a new bundle.
    pub fn next_path(&self) -> PathBuf {
        let ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis());
        let mut p = self.dir.join(format!("{PREFIX}{ms:013}{SUFFIX}"));
        let mut n = 1;
        while p.exists() {
            p = self.dir.join(format!("{PREFIX}{ms:013}-{n}{SUFFIX}"));
            n += 1;
        }
        p
    }

    /// The bundles, oldest first, with their sizes.
    pub fn bundles(&self) -> Result<Vec<(PathBuf, u64)>> {
        let mut v: Vec<(PathBuf, u64)> = std::fs::read_dir(&self.dir)
            .with_context(|| format!("cannot list {}", self.dir.display()))?
            .flatten()
            .filter(|e| {
                let n = e.file_name();
                let n = n.to_string_lossy();
                n.starts_with(PREFIX) && n.ends_with(SUFFIX)
            })
            .map(|e| (e.path(), e.metadata().map_or(0, |m| m.len())))
            .collect();
        v.sort();
        Ok(v)
    }

    /// Removes the oldest bundles until one more of at most `reserve`
    /// bytes fits in both bounds; returns what was removed.
    pub fn make_room(&self, reserve: u64) -> Result<Vec<PathBuf>> {
        self.shrink_to(
            self.keep - 1,
            self.max_bytes.map(|m| m.saturating_sub(reserve)),
        )
    }

    /// Removes the oldest bundles beyond the bounds.
    pub fn prune(&self) -> Result<Vec<PathBuf>> {
        self.shrink_to(self.keep, self.max_bytes)
    }

    fn shrink_to(&self, count: usize, bytes: Option<u64>) -> Result<Vec<PathBuf>> {
        let mut b = self.bundles()?;
        let mut removed = Vec::new();
        let mut total: u64 = b.iter().map(|x| x.1).sum();
        while !b.is_empty() && (b.len() > count || bytes.is_some_and(|m| total > m)) {
            let (p, n) = b.remove(0);
            std::fs::remove_file(&p).with_context(|| format!("cannot remove {}", p.display()))?;
            total -= n;
            removed.push(p);
        }
        Ok(removed)
    }
}

/// Space a run needs at most: its staging recording and its bundle side by
/// side, plus 1 MiB for the report, the host facts and the last window
/// (a run stops at the first window that takes the recording past its bound).
pub fn reserve_for(max_recording_bytes: u64) -> u64 {
    2 * max_recording_bytes + (1 << 20)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse() {
        assert_eq!(parse_bytes("4096").unwrap(), 4096);
        assert_eq!(parse_bytes("64M").unwrap(), 64 << 20);
        assert_eq!(parse_bytes("2GiB").unwrap(), 2 << 30);
        assert_eq!(parse_bytes("1.5k").unwrap(), 1536);
        assert!(parse_bytes("lots").is_err());
        assert!(parse_bytes("3 parsecs").is_err());
    }

    #[test]
    fn rotation_keeps_its_bounds() {
        let dir = std::env::temp_dir().join(format!("holdup-rot-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let r = Rotation {
            dir: dir.clone(),
            keep: 3,
            max_bytes: Some(1000),
        };
        r.check().unwrap();
        for i in 0..6 {
            r.make_room(400).unwrap();
            let p = dir.join(format!("{PREFIX}{i:013}{SUFFIX}"));
            std::fs::write(&p, vec![0u8; 300]).unwrap();
            let b = r.bundles().unwrap();
            let total: u64 = b.iter().map(|x| x.1).sum();
            assert!(b.len() <= 3 && total <= 1000, "{b:?}");
            assert_eq!(b.last().unwrap().0, p, "the newest is kept");
        }
        // Other files are not touched.
        std::fs::write(dir.join("notes.txt"), "x").unwrap();
        r.prune().unwrap();
        assert!(dir.join("notes.txt").exists());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
