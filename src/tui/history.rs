//! Call history: one JSON object per line in `history.jsonl` in the data dir, newest last on
//! disk, newest first in memory. The list itself is pure; `load` and `save` are the only I/O and
//! only the driver calls them.

use std::collections::VecDeque;
use std::io::Write as _;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::core::{CallEndReason, Direction};

/// How many calls are kept.
pub const MAX_ENTRIES: usize = 500;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HistoryEntry {
    /// The call's id (the same on every party and in the switchboard's call records).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub call_id: Option<String>,
    /// When the call started (wall clock).
    pub started_unix_ms: u64,
    pub direction: Direction,
    /// What to dial to reach them again: a user name, a number or a raw id.
    pub peer: String,
    /// What to show: the display name.
    pub label: String,
    /// How long the call was connected, if it was.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connected_ms: Option<u64>,
    pub end_reason: CallEndReason,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct History {
    entries: VecDeque<HistoryEntry>,
}

impl History {
    pub fn from_entries(mut entries: Vec<HistoryEntry>) -> History {
        entries.sort_by_key(|e| std::cmp::Reverse(e.started_unix_ms));
        entries.truncate(MAX_ENTRIES);
        History {
            entries: entries.into(),
        }
    }

    pub fn push(&mut self, e: HistoryEntry) {
        self.entries.push_front(e);
        self.entries.truncate(MAX_ENTRIES);
    }

    /// Newest first.
    pub fn entries(&self) -> impl ExactSizeIterator<Item = &HistoryEntry> {
        self.entries.iter()
    }

    pub fn get(&self, i: usize) -> Option<&HistoryEntry> {
        self.entries.get(i)
    }

    pub fn find_call_mut(&mut self, call_id: &str) -> Option<&mut HistoryEntry> {
        self.entries
            .iter_mut()
            .find(|e| e.call_id.as_deref() == Some(call_id))
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Distinct peers, most recent first: the dialer's completion candidates.
    pub fn peers(&self) -> Vec<String> {
        let mut seen = Vec::new();
        for e in &self.entries {
            if !seen.contains(&e.peer) {
                seen.push(e.peer.clone());
            }
        }
        seen
    }
}

pub fn default_path(data_dir: &Path) -> PathBuf {
    data_dir.join("history.jsonl")
}

/// Reads the file; a missing file is an empty history, and lines that do not parse (a newer
/// format, a torn write) are skipped with a warning in the log.
pub fn load(path: &Path) -> anyhow::Result<History> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(History::default()),
        Err(e) => {
            return Err(anyhow::anyhow!(
                "reading call history {}: {e}",
                path.display()
            ));
        }
    };
    let mut entries = Vec::new();
    for (n, line) in text
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
    {
        match serde_json::from_str::<HistoryEntry>(line) {
            Ok(e) => entries.push(e),
            Err(e) => tracing::warn!("{}:{}: skipping a history line: {e}", path.display(), n + 1),
        }
    }
    Ok(History::from_entries(entries))
}

/// Writes the whole history (oldest first) to a temporary file and renames it into place.
pub fn save(path: &Path, history: &History) -> anyhow::Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)
            .map_err(|e| anyhow::anyhow!("creating {}: {e}", dir.display()))?;
    }
    let tmp = path.with_extension("jsonl.tmp");
    let mut out = Vec::new();
    for e in history.entries.iter().rev() {
        serde_json::to_writer(&mut out, e)?;
        out.push(b'\n');
    }
    let mut f = std::fs::File::create(&tmp)
        .map_err(|e| anyhow::anyhow!("writing {}: {e}", tmp.display()))?;
    f.write_all(&out)?;
    f.sync_data().ok();
    std::fs::rename(&tmp, path)
        .map_err(|e| anyhow::anyhow!("renaming {} to {}: {e}", tmp.display(), path.display()))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(t: u64, peer: &str) -> HistoryEntry {
        HistoryEntry {
            call_id: None,
            started_unix_ms: t,
            direction: Direction::Outgoing,
            peer: peer.into(),
            label: peer.into(),
            connected_ms: Some(1500),
            end_reason: CallEndReason::NORMAL,
        }
    }

    #[test]
    fn newest_first_and_distinct_peers() {
        let mut h = History::from_entries(vec![entry(2, "bob"), entry(1, "carol")]);
        h.push(entry(3, "carol"));
        let order: Vec<u64> = h.entries().map(|e| e.started_unix_ms).collect();
        assert_eq!(order, vec![3, 2, 1]);
        assert_eq!(h.peers(), vec!["carol", "bob"]);
    }

    #[test]
    fn caps_its_length() {
        let mut h = History::default();
        for i in 0..(MAX_ENTRIES as u64 + 10) {
            h.push(entry(i, "bob"));
        }
        assert_eq!(h.len(), MAX_ENTRIES);
        assert_eq!(h.get(0).unwrap().started_unix_ms, MAX_ENTRIES as u64 + 9);
    }

    #[test]
    fn saves_and_loads_and_skips_bad_lines() {
        let dir = tempfile::tempdir().unwrap();
        let path = default_path(dir.path());
        assert!(load(&path).unwrap().is_empty());
        let h = History::from_entries(vec![entry(1, "bob"), entry(2, "echo")]);
        save(&path, &h).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.starts_with("{\"startedUnixMs\":1,"), "{text}");
        std::fs::write(&path, format!("{text}not json\n")).unwrap();
        assert_eq!(load(&path).unwrap(), h);
    }
}
