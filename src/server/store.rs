//! State that outlives the process, in SQLite in the data dir: identities, token revocations and
//! call records. The switchboard core never waits on it: writes arrive as `StoreOp`s and are
//! applied on a thread of their own.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};

use anyhow::Context as _;
use rusqlite::{Connection, OptionalExtension, params};

use super::switchboard::{Startup, StoreOp, StoredMessage};
use super::token::TokenKey;
use crate::protocol::{Forwarding, Identity};

pub struct Store {
    db: Connection,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallRecord {
    pub call_id: String,
    pub caller: String,
    pub callees: String,
    pub started_ms: u64,
    pub connected_ms: Option<u64>,
    pub ended_ms: Option<u64>,
    pub end_code: Option<u16>,
    pub end_sub_code: Option<u32>,
}

/// A number the switchboard can own: E.164, `+` and 2 to 15 digits.
pub fn validate_number(number: &str) -> anyhow::Result<()> {
    match crate::core::Callee::parse(number) {
        crate::core::Callee::Phone(n) if n == number => Ok(()),
        _ => anyhow::bail!("{number:?} is not an E.164 number like +15550100"),
    }
}

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS identities (raw_id TEXT PRIMARY KEY, name TEXT NOT NULL UNIQUE, created_ms INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS revocations (jti TEXT PRIMARY KEY, revoked_ms INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS calls (
  call_id TEXT PRIMARY KEY, caller TEXT NOT NULL, callees TEXT NOT NULL,
  started_ms INTEGER NOT NULL, connected_ms INTEGER, ended_ms INTEGER,
  end_code INTEGER, end_sub_code INTEGER);
CREATE TABLE IF NOT EXISTS forwarding (raw_id TEXT PRIMARY KEY, settings TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS greetings (raw_id TEXT PRIMARY KEY, path TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS numbers (number TEXT PRIMARY KEY, name TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS voicemails (
  message_id TEXT PRIMARY KEY, owner TEXT NOT NULL, caller_raw_id TEXT NOT NULL, caller_name TEXT NOT NULL,
  received_ms INTEGER NOT NULL, duration_ms INTEGER NOT NULL, is_new INTEGER NOT NULL, path TEXT NOT NULL);
";

impl Store {
    pub fn open(path: &Path) -> anyhow::Result<Store> {
        let db = Connection::open(path)
            .with_context(|| format!("opening database {}", path.display()))?;
        // WAL keeps readers (the `token` command, a second process) from blocking the server.
        db.pragma_update(None, "journal_mode", "WAL")?;
        db.pragma_update(None, "busy_timeout", 5000)?;
        db.execute_batch(SCHEMA)
            .with_context(|| format!("creating schema in {}", path.display()))?;
        Ok(Store { db })
    }

    pub fn path_in(data_dir: &Path) -> PathBuf {
        data_dir.join("dialtone.sqlite3")
    }

    /// The resource id used in raw ids, made once per data dir so ids stay stable across restarts.
    pub fn resource(&self) -> anyhow::Result<String> {
        let existing: Option<String> = self
            .db
            .query_row("SELECT value FROM meta WHERE key = 'resource'", [], |r| {
                r.get(0)
            })
            .optional()?;
        if let Some(r) = existing {
            return Ok(r);
        }
        let r = uuid::Uuid::new_v4().to_string();
        self.db.execute(
            "INSERT INTO meta (key, value) VALUES ('resource', ?1)",
            [&r],
        )?;
        Ok(r)
    }

    pub fn identities(&self) -> anyhow::Result<HashMap<String, String>> {
        let mut st = self.db.prepare("SELECT raw_id, name FROM identities")?;
        let rows = st.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    pub fn revoked(&self) -> anyhow::Result<BTreeSet<String>> {
        let mut st = self.db.prepare("SELECT jti FROM revocations")?;
        let rows = st.query_map([], |r| r.get(0))?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Everything the switchboard core needs to know at start-up.
    pub fn startup(&self) -> anyhow::Result<Startup> {
        Ok(Startup {
            known: self.identities()?,
            revoked: self.revoked()?,
            forwarding: self.forwarding()?,
            messages: self.messages()?,
            greetings: self.greetings()?,
            numbers: self.numbers()?,
        })
    }

    /// The number plan: E.164 number -> owning user name.
    pub fn numbers(&self) -> anyhow::Result<BTreeMap<String, String>> {
        let mut st = self.db.prepare("SELECT number, name FROM numbers")?;
        let rows = st.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Gives `number` (E.164) to user `name`, taking it from whoever had it.
    pub fn assign_number(&self, number: &str, name: &str) -> anyhow::Result<()> {
        validate_number(number)?;
        crate::core::validate_user_name(name).map_err(anyhow::Error::msg)?;
        self.db.execute(
            "INSERT OR REPLACE INTO numbers (number, name) VALUES (?1, ?2)",
            params![number, name],
        )?;
        Ok(())
    }

    /// Frees `number`; false when nobody had it.
    pub fn unassign_number(&self, number: &str) -> anyhow::Result<bool> {
        Ok(self
            .db
            .execute("DELETE FROM numbers WHERE number = ?1", params![number])?
            > 0)
    }

    pub fn greetings(&self) -> anyhow::Result<HashMap<String, PathBuf>> {
        let mut st = self.db.prepare("SELECT raw_id, path FROM greetings")?;
        let rows = st.query_map([], |r| {
            Ok((
                r.get::<_, String>(0)?,
                PathBuf::from(r.get::<_, String>(1)?),
            ))
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    pub fn forwarding(&self) -> anyhow::Result<HashMap<String, Forwarding>> {
        let mut st = self.db.prepare("SELECT raw_id, settings FROM forwarding")?;
        let rows = st.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)))?;
        let mut out = HashMap::new();
        for row in rows {
            let (raw_id, json) = row?;
            match serde_json::from_str(&json) {
                Ok(f) => {
                    out.insert(raw_id, f);
                }
                Err(e) => {
                    tracing::warn!(%raw_id, "ignoring unreadable forwarding settings {json:?}: {e}")
                }
            }
        }
        Ok(out)
    }

    pub fn messages(&self) -> anyhow::Result<Vec<StoredMessage>> {
        let mut st = self.db.prepare(
            "SELECT message_id, owner, caller_raw_id, caller_name, received_ms, duration_ms, is_new, path
             FROM voicemails ORDER BY received_ms",
        )?;
        let rows = st.query_map([], |r| {
            Ok(StoredMessage {
                message_id: r.get(0)?,
                owner: r.get(1)?,
                caller: Identity {
                    raw_id: r.get(2)?,
                    display_name: r.get(3)?,
                },
                received_unix_ms: r.get::<_, i64>(4)? as u64,
                duration_ms: r.get::<_, i64>(5)? as u64,
                is_new: r.get(6)?,
                path: PathBuf::from(r.get::<_, String>(7)?),
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    pub fn revoke(&self, jti: &str, now_ms: u64) -> anyhow::Result<()> {
        self.db.execute(
            "INSERT OR IGNORE INTO revocations (jti, revoked_ms) VALUES (?1, ?2)",
            params![jti, now_ms as i64],
        )?;
        Ok(())
    }

    pub fn apply(&self, op: &StoreOp, now_ms: u64) -> anyhow::Result<()> {
        match op {
            StoreOp::UpsertIdentity { raw_id, name } => {
                self.db.execute(
                    "INSERT OR IGNORE INTO identities (raw_id, name, created_ms) VALUES (?1, ?2, ?3)",
                    params![raw_id, name, now_ms as i64],
                )?;
            }
            StoreOp::CallStarted {
                call_id,
                caller,
                callees,
                at_ms,
            } => {
                self.db.execute(
                    "INSERT OR REPLACE INTO calls (call_id, caller, callees, started_ms) VALUES (?1, ?2, ?3, ?4)",
                    params![call_id, caller, callees.join(","), *at_ms as i64],
                )?;
            }
            StoreOp::CallConnected { call_id, at_ms } => {
                self.db.execute(
                    "UPDATE calls SET connected_ms = ?2 WHERE call_id = ?1",
                    params![call_id, *at_ms as i64],
                )?;
            }
            StoreOp::SetForwarding { raw_id, forwarding } => {
                let json = serde_json::to_string(forwarding)?;
                self.db.execute(
                    "INSERT INTO forwarding (raw_id, settings) VALUES (?1, ?2)
                     ON CONFLICT(raw_id) DO UPDATE SET settings = excluded.settings",
                    params![raw_id, json],
                )?;
            }
            StoreOp::SaveMessage(m) => {
                self.db.execute(
                    "INSERT OR REPLACE INTO voicemails
                     (message_id, owner, caller_raw_id, caller_name, received_ms, duration_ms, is_new, path)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
                    params![
                        m.message_id,
                        m.owner,
                        m.caller.raw_id,
                        m.caller.display_name,
                        m.received_unix_ms as i64,
                        m.duration_ms as i64,
                        m.is_new,
                        m.path.to_string_lossy()
                    ],
                )?;
            }
            StoreOp::MarkMessage { message_id, is_new } => {
                self.db.execute(
                    "UPDATE voicemails SET is_new = ?2 WHERE message_id = ?1",
                    params![message_id, is_new],
                )?;
            }
            StoreOp::SetGreeting { raw_id, path } => {
                self.db.execute(
                    "INSERT INTO greetings (raw_id, path) VALUES (?1, ?2)
                     ON CONFLICT(raw_id) DO UPDATE SET path = excluded.path",
                    params![raw_id, path.to_string_lossy()],
                )?;
            }
            StoreOp::DeleteMessage { message_id } => {
                self.db.execute(
                    "DELETE FROM voicemails WHERE message_id = ?1",
                    params![message_id],
                )?;
            }
            StoreOp::CallEnded {
                call_id,
                at_ms,
                reason,
            } => {
                self.db.execute(
                    "UPDATE calls SET ended_ms = ?2, end_code = ?3, end_sub_code = ?4 WHERE call_id = ?1",
                    params![call_id, *at_ms as i64, reason.code, reason.sub_code],
                )?;
            }
        }
        Ok(())
    }

    pub fn calls(&self, limit: usize) -> anyhow::Result<Vec<CallRecord>> {
        let mut st = self.db.prepare(
            "SELECT call_id, caller, callees, started_ms, connected_ms, ended_ms, end_code, end_sub_code
             FROM calls ORDER BY started_ms DESC LIMIT ?1",
        )?;
        let rows = st.query_map([limit as i64], |r| {
            Ok(CallRecord {
                call_id: r.get(0)?,
                caller: r.get(1)?,
                callees: r.get(2)?,
                started_ms: r.get::<_, i64>(3)? as u64,
                connected_ms: r.get::<_, Option<i64>>(4)?.map(|v| v as u64),
                ended_ms: r.get::<_, Option<i64>>(5)?.map(|v| v as u64),
                end_code: r.get(6)?,
                end_sub_code: r.get(7)?,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }
}

/// Loads the token key from the data dir, creating it (readable by the owner only) on first use.
pub fn load_or_create_key(data_dir: &Path) -> anyhow::Result<TokenKey> {
    let path = data_dir.join("token.key");
    match std::fs::read(&path) {
        Ok(bytes) => {
            let arr: [u8; 32] = bytes.as_slice().try_into().map_err(|_| {
                anyhow::anyhow!(
                    "token key {} must be 32 bytes, found {}",
                    path.display(),
                    bytes.len()
                )
            })?;
            Ok(TokenKey::from_bytes(arr))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            std::fs::create_dir_all(data_dir)
                .with_context(|| format!("creating {}", data_dir.display()))?;
            let key: [u8; 32] = rand::random();
            write_private(&path, &key).with_context(|| format!("writing {}", path.display()))?;
            Ok(TokenKey::from_bytes(key))
        }
        Err(e) => Err(e).with_context(|| format!("reading {}", path.display())),
    }
}

fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    f.write_all(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::CallEndReason;

    #[test]
    fn records_survive_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let path = Store::path_in(dir.path());
        let s = Store::open(&path).unwrap();
        let res = s.resource().unwrap();
        s.apply(
            &StoreOp::UpsertIdentity {
                raw_id: "8:acs:r_bob".into(),
                name: "bob".into(),
            },
            1,
        )
        .unwrap();
        s.apply(
            &StoreOp::CallStarted {
                call_id: "c".into(),
                caller: "a".into(),
                callees: vec!["b".into()],
                at_ms: 10,
            },
            10,
        )
        .unwrap();
        s.apply(
            &StoreOp::CallEnded {
                call_id: "c".into(),
                at_ms: 20,
                reason: CallEndReason::DECLINED,
            },
            20,
        )
        .unwrap();
        s.revoke("j1", 5).unwrap();
        let fwd = Forwarding {
            mode: crate::protocol::ForwardMode::Unanswered,
            target: Some("voicemail".into()),
            unanswered_after_secs: 7,
        };
        s.apply(
            &StoreOp::SetForwarding {
                raw_id: "8:acs:r_bob".into(),
                forwarding: fwd.clone(),
            },
            1,
        )
        .unwrap();
        let msg = StoredMessage {
            message_id: "m1".into(),
            owner: "8:acs:r_bob".into(),
            caller: Identity {
                raw_id: "8:acs:r_al".into(),
                display_name: "al".into(),
            },
            received_unix_ms: 9,
            duration_ms: 1500,
            is_new: true,
            path: "/x/m1.opus".into(),
        };
        s.apply(&StoreOp::SaveMessage(msg.clone()), 1).unwrap();
        s.apply(
            &StoreOp::MarkMessage {
                message_id: "m1".into(),
                is_new: false,
            },
            1,
        )
        .unwrap();
        drop(s);
        let s = Store::open(&path).unwrap();
        assert_eq!(s.resource().unwrap(), res);
        assert_eq!(
            s.identities()
                .unwrap()
                .get("8:acs:r_bob")
                .map(String::as_str),
            Some("bob")
        );
        assert!(s.revoked().unwrap().contains("j1"));
        let calls = s.calls(10).unwrap();
        assert_eq!(calls[0].end_code, Some(603));
        assert_eq!(calls[0].ended_ms, Some(20));
        let startup = s.startup().unwrap();
        assert_eq!(startup.forwarding["8:acs:r_bob"], fwd);
        assert_eq!(
            startup.messages,
            vec![StoredMessage {
                is_new: false,
                ..msg
            }]
        );
        s.apply(
            &StoreOp::DeleteMessage {
                message_id: "m1".into(),
            },
            1,
        )
        .unwrap();
        assert!(s.messages().unwrap().is_empty());
    }

    #[test]
    fn key_is_created_once_and_private() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::tempdir().unwrap();
        let a = load_or_create_key(dir.path()).unwrap();
        let b = load_or_create_key(dir.path()).unwrap();
        assert_eq!(a.as_bytes(), b.as_bytes());
        let mode = std::fs::metadata(dir.path().join("token.key"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }
}
