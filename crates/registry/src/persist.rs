//! Durable registry state in SQLite (WAL, synchronous=FULL): a write is acknowledged only after
//! its transaction is committed, so it survives kill -9 of the registry right after the 200.
//!
//! Owns the on-disk schema and nothing else: it stores the model records it is handed and loads
//! them back; it knows no Consul semantics.

use std::path::Path;

use rusqlite::{params, Connection, OptionalExtension};

use super::model::{Check, KvEntry, Service};

#[derive(Debug, thiserror::Error)]
pub enum PersistError {
    #[error("sqlite: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("corrupt record {what} {id}: {source}")]
    Corrupt {
        what: &'static str,
        id: String,
        source: serde_json::Error,
    },
    #[error("cannot create data dir {path}: {source}")]
    DataDir {
        path: String,
        source: std::io::Error,
    },
}

/// One change to apply; a write is a batch of these in one transaction.
pub enum Op<'a> {
    PutService(&'a Service),
    DeleteService(&'a str),
    PutCheck(&'a Check),
    DeleteCheck(&'a str),
    PutKv(&'a KvEntry),
    DeleteKv(&'a str),
}

/// Everything the registry had when it stopped.
#[derive(Debug, Default)]
pub struct Snapshot {
    pub index: u64,
    pub services: Vec<Service>,
    pub checks: Vec<Check>,
    pub kv: Vec<KvEntry>,
}

pub struct Persist {
    conn: Connection,
}

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS services (id TEXT PRIMARY KEY, record TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS checks (id TEXT PRIMARY KEY, record TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS kv (
    key TEXT PRIMARY KEY, value BLOB NOT NULL, flags INTEGER NOT NULL,
    create_index INTEGER NOT NULL, modify_index INTEGER NOT NULL, lock_index INTEGER NOT NULL);
";

impl Persist {
    pub fn open(dir: &Path) -> Result<Persist, PersistError> {
        std::fs::create_dir_all(dir).map_err(|source| PersistError::DataDir {
            path: dir.display().to_string(),
            source,
        })?;
        let conn = Connection::open(dir.join("registry.sqlite3"))?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "FULL")?;
        conn.execute_batch(SCHEMA)?;
        Ok(Persist { conn })
    }

    pub fn load(&self) -> Result<Snapshot, PersistError> {
        let index: u64 = self
            .conn
            .query_row("SELECT value FROM meta WHERE key = 'index'", [], |r| {
                r.get::<_, i64>(0)
            })
            .optional()?
            .unwrap_or(0) as u64;
        let services = self.load_records("services")?;
        let checks = self.load_records("checks")?;
        let mut stmt = self.conn.prepare(
            "SELECT key, value, flags, create_index, modify_index, lock_index FROM kv ORDER BY key",
        )?;
        let kv = stmt
            .query_map([], |r| {
                Ok(KvEntry {
                    key: r.get(0)?,
                    value: r.get(1)?,
                    flags: r.get::<_, i64>(2)? as u64,
                    create_index: r.get::<_, i64>(3)? as u64,
                    modify_index: r.get::<_, i64>(4)? as u64,
                    lock_index: r.get::<_, i64>(5)? as u64,
                })
            })?
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Snapshot {
            index,
            services,
            checks,
            kv,
        })
    }

    fn load_records<T: serde::de::DeserializeOwned>(
        &self,
        table: &'static str,
    ) -> Result<Vec<T>, PersistError> {
        let mut stmt = self
            .conn
            .prepare(&format!("SELECT id, record FROM {table} ORDER BY id"))?;
        let rows = stmt
            .query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)))?
            .collect::<Result<Vec<_>, _>>()?;
        rows.into_iter()
            .map(|(id, record)| {
                serde_json::from_str(&record).map_err(|source| PersistError::Corrupt {
                    what: table,
                    id,
                    source,
                })
            })
            .collect()
    }

    /// Applies `ops` and records `index` atomically: all of them or none.
    pub fn apply(&mut self, index: u64, ops: &[Op<'_>]) -> Result<(), PersistError> {
        let tx = self.conn.transaction()?;
        for op in ops {
            match op {
                Op::PutService(s) => {
                    tx.execute(
                        "INSERT OR REPLACE INTO services (id, record) VALUES (?1, ?2)",
                        params![s.id, to_json(s)],
                    )?;
                }
                Op::DeleteService(id) => {
                    tx.execute("DELETE FROM services WHERE id = ?1", params![id])?;
                }
                Op::PutCheck(c) => {
                    tx.execute(
                        "INSERT OR REPLACE INTO checks (id, record) VALUES (?1, ?2)",
                        params![c.def.id, to_json(c)],
                    )?;
                }
                Op::DeleteCheck(id) => {
                    tx.execute("DELETE FROM checks WHERE id = ?1", params![id])?;
                }
                Op::PutKv(e) => {
                    tx.execute(
                        "INSERT OR REPLACE INTO kv (key, value, flags, create_index, modify_index, \
                         lock_index) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                        params![
                            e.key,
                            e.value,
                            e.flags as i64,
                            e.create_index as i64,
                            e.modify_index as i64,
                            e.lock_index as i64
                        ],
                    )?;
                }
                Op::DeleteKv(key) => {
                    tx.execute("DELETE FROM kv WHERE key = ?1", params![key])?;
                }
            }
        }
        tx.execute(
            "INSERT OR REPLACE INTO meta (key, value) VALUES ('index', ?1)",
            params![index as i64],
        )?;
        tx.commit()?;
        Ok(())
    }
}

fn to_json<T: serde::Serialize>(record: &T) -> String {
    // Model records are plain data (strings, numbers, maps with string keys): serialising them
    // cannot fail.
    serde_json::to_string(record).expect("model records serialise to JSON")
}
