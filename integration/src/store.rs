//! The embedded FHIR store: resources as JSON with extracted search-index rows, on SQLite or
//! PostgreSQL. It is one [`Source`](crate::source::Source) of patient data, and also where the
//! integration cloud keeps what it owns itself: consents and the audit trail.

use healthcloud_platform::db::{Backend, Database, Sql, WriteTx};
use serde_json::Value;
use sqlx::Row;

use crate::consent::{self, Denial};
use crate::date;
use crate::error::FhirError;
use crate::params::{self, IndexRows, ParamKind};
use crate::query::{
    Alternative, Filter, Match, Prefix, SearchQuery, Sort, Value as QueryValue,
    compartment_patients,
};

/// A version of a resource kept in its history.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Version {
    /// Its version number.
    pub version_id: i64,
    /// When it was written (epoch ms).
    pub last_updated: i64,
    /// The patient whose compartment held it.
    pub patient_id: Option<String>,
    /// Its JSON; `None` for a deletion.
    pub content: Option<String>,
}

impl Version {
    /// This version as the store's resources are handed around, unless it is a deletion.
    pub fn into_stored(self, id: &str) -> Option<StoredResource> {
        Some(StoredResource {
            id: id.to_owned(),
            version_id: self.version_id,
            patient_id: self.patient_id,
            content: self.content?,
            sort_date: None,
        })
    }
}

/// The tables of the search index, each row naming its resource.
const INDEX_TABLES: [&str; 3] = ["search_token", "search_date", "search_quantity"];

/// Where a page of a type's or the system's `_history` ends: the last version it holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HistoryCursor {
    /// When it was written (epoch ms).
    pub last_updated: i64,
    /// Its resource's type.
    pub resource_type: String,
    /// Its resource's id.
    pub id: String,
    /// Its version.
    pub version_id: i64,
}

/// A stored resource as the store returns it.
#[derive(Debug, Clone)]
pub struct StoredResource {
    /// Its logical id.
    pub id: String,
    /// Its current version.
    pub version_id: i64,
    /// The patient whose compartment holds it.
    pub patient_id: Option<String>,
    /// The resource JSON, with `id` and `meta` set.
    pub content: String,
    /// Its primary date (epoch ms), what `_sort=date` orders by.
    pub sort_date: Option<i64>,
}

impl StoredResource {
    /// What it is ordered by in a search: its date and its id.
    pub fn sort_key(&self) -> (Option<i64>, &str) {
        (self.sort_date, &self.id)
    }
}

/// One page of search results.
#[derive(Debug, Clone, Default)]
pub struct SearchPage {
    /// Matches on this page.
    pub resources: Vec<StoredResource>,
    /// Matches in all.
    pub total: usize,
    /// The parts of the answer that are missing (a source that failed); empty when complete.
    pub incomplete: Vec<Incomplete>,
    /// What `_include` and `_revinclude` added beside the matches.
    pub included: Vec<Included>,
    /// What the includes left out, and why.
    pub omissions: Vec<Omission>,
}

/// A resource a search returns beside its matches (`_include`, `_revinclude`).
#[derive(Debug, Clone)]
pub struct Included {
    /// Its type.
    pub resource_type: &'static str,
    /// The resource.
    pub resource: StoredResource,
}

/// Something a search's answer leaves out on purpose, as an OperationOutcome issue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Omission {
    /// `information` or `warning`.
    pub severity: &'static str,
    /// The issue code: `suppressed`, `too-costly`, …
    pub code: &'static str,
    /// What was left out and why.
    pub diagnostics: String,
}

/// A part of a search's answer that is missing: a source that could not be asked or had more
/// matches than were read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Incomplete {
    /// The source.
    pub source: String,
    /// The OperationOutcome issue code: `timeout`, `transient`, `too-costly`, `incomplete`, …
    pub code: &'static str,
    /// What happened, naming the source; never the source's own error body.
    pub diagnostics: String,
}

/// A resource ready to be written: JSON with `id`/`meta` set, index rows and consent denials.
#[derive(Debug, Clone)]
pub struct Prepared {
    /// Its type.
    pub resource_type: String,
    /// Its id.
    pub id: String,
    /// Version being written (1 for a create).
    pub version_id: i64,
    /// Write time, epoch milliseconds.
    pub last_updated: i64,
    /// Extracted index.
    pub index: IndexRows,
    /// Serialized JSON.
    pub content: String,
    /// For Consent resources: their deny provisions.
    pub denials: Vec<Denial>,
}

impl Prepared {
    /// Stamps `resource` with id and meta, indexes it and serializes it.
    pub fn new(
        resource_type: &str,
        id: &str,
        version_id: i64,
        last_updated: i64,
        mut resource: Value,
    ) -> Result<Prepared, FhirError> {
        let object = resource
            .as_object_mut()
            .ok_or_else(|| FhirError::invalid(resource_type, "a resource must be a JSON object"))?;
        object.insert("id".into(), Value::String(id.to_owned()));
        let meta = object
            .entry("meta")
            .or_insert_with(|| Value::Object(Default::default()));
        if !meta.is_object() {
            return Err(FhirError::invalid(
                format!("{resource_type}.meta"),
                "must be an object",
            ));
        }
        meta["versionId"] = Value::String(version_id.to_string());
        meta["lastUpdated"] = Value::String(date::instant(last_updated));
        let index = params::index(resource_type, id, &resource)
            .map_err(|e| FhirError::invalid(e.path, e.message))?;
        let denials = if resource_type == "Consent" {
            consent::denials(&resource)?
        } else {
            Vec::new()
        };
        Ok(Prepared {
            resource_type: resource_type.to_owned(),
            id: id.to_owned(),
            version_id,
            last_updated,
            index,
            content: resource.to_string(),
            denials,
        })
    }
}

/// Rows per multi-row INSERT: below SQLite's and PostgreSQL's bound-parameter limits.
const BATCH_ROWS: usize = 500;

/// The embedded store.
#[derive(Debug, Clone)]
pub struct EmbeddedStore {
    db: Database,
}

impl EmbeddedStore {
    /// A store on `db`.
    pub fn new(db: Database) -> Self {
        EmbeddedStore { db }
    }

    /// The database.
    pub fn database(&self) -> &Database {
        &self.db
    }

    /// The current version of a resource, if stored.
    pub async fn read(
        &self,
        resource_type: &str,
        id: &str,
    ) -> Result<Option<StoredResource>, FhirError> {
        let row = sqlx::query(
            "SELECT id, version_id, patient_id, content, sort_date FROM resources WHERE resource_type = $1 AND id = $2",
        )
        .bind(resource_type)
        .bind(id)
        .fetch_optional(self.db.pool())
        .await?;
        Ok(row.map(|row| stored(&row)))
    }

    /// The latest version numbers of the given ids: the current one, or for a deleted
    /// resource its deletion's (a resource created again goes on from there).
    pub async fn versions(
        &self,
        tx: &mut WriteTx,
        resource_type: &str,
        ids: &[String],
    ) -> Result<Vec<(String, i64)>, FhirError> {
        let mut found = Vec::new();
        for chunk in ids.chunks(BATCH_ROWS) {
            // A deleted resource's versions go on from its deletion's.
            let mut sql = self.db.sql("SELECT id, MAX(version_id) FROM (");
            for (n, table) in ["resources", "resource_history"].iter().enumerate() {
                if n > 0 {
                    sql.push(" UNION ALL ");
                }
                sql.push(&format!(
                    "SELECT id, version_id FROM {table} WHERE resource_type = "
                ))
                .bind(resource_type)
                .push(" AND id IN (");
                for (i, id) in chunk.iter().enumerate() {
                    if i > 0 {
                        sql.push(", ");
                    }
                    sql.bind(id);
                }
                sql.push(")");
            }
            sql.push(") v GROUP BY id");
            for row in sql.query().fetch_all(&mut *tx.tx).await? {
                found.push((row.try_get(0)?, row.try_get(1)?));
            }
        }
        Ok(found)
    }

    /// Runs a search.
    pub async fn search(&self, query: &SearchQuery) -> Result<SearchPage, FhirError> {
        // Joins are turned into filters under the caller's rights; the store cannot.
        if let Some(join) = query.joins.first() {
            return Err(FhirError::Internal(anyhow::anyhow!(
                "'{}' reached the store unresolved",
                join.written
            )));
        }
        let mut count = self.db.sql("SELECT COUNT(*) FROM resources r");
        push_where(&mut count, query, Quantifier::Any);
        let total: i64 = count.query().fetch_one(self.db.pool()).await?.try_get(0)?;
        if query.count == 0 || query.offset as i64 >= total {
            return Ok(SearchPage {
                total: total as usize,
                ..SearchPage::default()
            });
        }
        let mut sql = self.db.sql(
            "SELECT r.id, r.version_id, r.patient_id, r.content, r.sort_date FROM resources r",
        );
        push_where(&mut sql, query, Quantifier::Any);
        sql.push(match query.sort {
            Sort::Id => " ORDER BY r.id",
            Sort::DateAscending => " ORDER BY r.sort_date ASC NULLS LAST, r.id",
            Sort::DateDescending => " ORDER BY r.sort_date DESC NULLS LAST, r.id",
        });
        // Ids in byte order on both databases (PostgreSQL's default collation would order
        // them by its locale), the order federated answers are merged in.
        if self.db.backend() == Backend::Postgres {
            sql.push(" COLLATE \"C\"");
        }
        sql.push(" LIMIT ")
            .bind(query.count as i64)
            .push(" OFFSET ")
            .bind(query.offset as i64);
        let rows = sql.query().fetch_all(self.db.pool()).await?;
        Ok(SearchPage {
            resources: rows.iter().map(stored).collect(),
            total: total as usize,
            ..SearchPage::default()
        })
    }

    /// The key `owner`'s de-identified exports are pseudonymized under, made at its first.
    pub async fn export_key(&self, owner: &str) -> Result<[u8; 32], FhirError> {
        let read = async || -> Result<Option<String>, FhirError> {
            let mut sql = self.db.sql("SELECT key FROM export_keys WHERE owner = ");
            sql.bind(owner);
            let row = sql.query().fetch_optional(self.db.pool()).await?;
            Ok(row.map(|row| row.get(0)))
        };
        let key = match read().await? {
            Some(key) => key,
            None => {
                use rand::RngCore as _;
                let mut fresh = [0u8; 32];
                rand::rngs::OsRng.fill_bytes(&mut fresh);
                let fresh: String = fresh.iter().map(|b| format!("{b:02x}")).collect();
                // Two first exports at once: one key is kept, and both read it.
                let mut tx = self.db.begin_write().await?;
                let mut sql = self.db.sql("INSERT INTO export_keys (owner, key) VALUES (");
                sql.bind(owner)
                    .push(", ")
                    .bind(fresh)
                    .push(") ON CONFLICT (owner) DO NOTHING");
                sql.query().execute(&mut *tx.tx).await?;
                tx.commit().await?;
                read().await?.ok_or_else(|| {
                    FhirError::Internal(anyhow::anyhow!("an export key was not kept"))
                })?
            }
        };
        let mut bytes = [0u8; 32];
        for (i, byte) in bytes.iter_mut().enumerate() {
            *byte = key
                .get(2 * i..2 * i + 2)
                .and_then(|hex| u8::from_str_radix(hex, 16).ok())
                .ok_or_else(|| FhirError::Internal(anyhow::anyhow!("a malformed export key")))?;
        }
        Ok(bytes)
    }

    /// A connection of its own, held for a long read ([`EmbeddedStore::search_after`]): each of
    /// the pool's connections keeps a page cache, so a long read on one stays within one cache
    /// instead of growing all of them.
    pub async fn connection(&self) -> Result<sqlx::pool::PoolConnection<sqlx::Any>, FhirError> {
        Ok(self.db.pool().acquire().await?)
    }

    /// The next `limit` matches of `query` in id order after the id `after` (from the first
    /// without it), with no count, on `connection`: how an export walks a whole type in pages
    /// whose cost does not grow with how far it has read.
    pub async fn search_after(
        &self,
        connection: &mut sqlx::AnyConnection,
        query: &SearchQuery,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<StoredResource>, FhirError> {
        if let Some(join) = query.joins.first() {
            return Err(FhirError::Internal(anyhow::anyhow!(
                "'{}' reached the store unresolved",
                join.written
            )));
        }
        let mut sql = self.db.sql(
            "SELECT r.id, r.version_id, r.patient_id, r.content, r.sort_date FROM resources r",
        );
        push_where(&mut sql, query, Quantifier::Any);
        // In the database's own order of ids (its primary key's), whatever that is: the
        // order only has to be the same on every page.
        if let Some(after) = after {
            sql.push(" AND r.id > ").bind(after);
        }
        sql.push(" ORDER BY r.id LIMIT ").bind(limit as i64);
        let rows = sql.query().fetch_all(connection).await?;
        Ok(rows.iter().map(stored).collect())
    }

    /// Whether any resource satisfies `query`'s filters and constraints.
    pub async fn matches(&self, query: &SearchQuery) -> Result<bool, FhirError> {
        let mut sql = self.db.sql("SELECT 1 FROM resources r");
        push_where(&mut sql, query, Quantifier::Any);
        Ok(sql.query().fetch_optional(self.db.pool()).await?.is_some())
    }

    /// Holds conditional creates of `resource_type` in `patient`'s record until `tx` ends, on
    /// every node: the search that must find nothing is repeated in `tx` and sees every one
    /// committed before.
    pub async fn serialize_conditional_creates(
        &self,
        tx: &mut WriteTx,
        resource_type: &str,
        patient: Option<&str>,
    ) -> Result<(), FhirError> {
        let key = format!(
            "conditional create of {resource_type} for {}",
            patient.unwrap_or_default()
        );
        Ok(self.db.lock(&mut tx.tx, &key).await?)
    }

    /// Whether the resource `query` selects (written in `tx`, not yet committed) may be
    /// written under `query`'s constraints: as [`matches`](Self::matches), except that a
    /// restricted parameter must hold for **every** value the resource has for it, so an
    /// allowed value cannot carry an unallowed one in (`category` vital-signs *and*
    /// laboratory under a vital-signs scope). With `Quantifier::Any`, the read semantics.
    pub async fn permits(
        &self,
        query: &SearchQuery,
        quantifier: Quantifier,
        tx: &mut WriteTx,
    ) -> Result<bool, FhirError> {
        let mut sql = self.db.sql("SELECT 1 FROM resources r");
        push_where(&mut sql, query, quantifier);
        Ok(sql.query().fetch_optional(&mut *tx.tx).await?.is_some())
    }

    /// Writes prepared resources (new versions replace old ones) in `tx`.
    pub async fn write(&self, tx: &mut WriteTx, items: &[Prepared]) -> Result<(), FhirError> {
        for item in items.iter().filter(|i| i.version_id > 1) {
            // Only the version this one follows may be replaced. On PostgreSQL a concurrent
            // writer waits on the row here and then finds it gone: a conflict, not a lost update.
            let replaced = self
                .take_current(tx, &item.resource_type, &item.id, Some(item.version_id - 1))
                .await?;
            if replaced.is_none() && !self.deleted_at(tx, item, item.version_id - 1).await? {
                return Err(FhirError::Conflict(format!(
                    "{}/{} changed while it was being written: read it again and retry",
                    item.resource_type, item.id
                )));
            }
            self.remove(tx, &item.resource_type, &item.id).await?;
        }
        for chunk in items.chunks(BATCH_ROWS) {
            let mut sql = self.db.sql(
                "INSERT INTO resources (resource_type, id, version_id, last_updated, patient_id, sort_date, content) VALUES ",
            );
            for (i, item) in chunk.iter().enumerate() {
                sql.push(if i == 0 { "(" } else { ", (" })
                    .bind(&item.resource_type)
                    .push(", ")
                    .bind(&item.id)
                    .push(", ")
                    .bind(item.version_id)
                    .push(", ")
                    .bind(item.last_updated)
                    .push(", ");
                match &item.index.patient_id {
                    Some(p) => sql.bind(p),
                    None => sql.push("NULL"),
                };
                sql.push(", ")
                    .bind(item.index.sort_date)
                    .push(", ")
                    .bind(&item.content)
                    .push(")");
            }
            sql.query().execute(&mut *tx.tx).await?;
        }
        let indexed: Vec<(&str, &str, &IndexRows)> = items
            .iter()
            .map(|item| (item.resource_type.as_str(), item.id.as_str(), &item.index))
            .collect();
        self.insert_index(tx, &indexed).await?;
        let denials: Vec<_> = items
            .iter()
            .flat_map(|item| item.denials.iter().map(move |d| (item, d)))
            .collect();
        insert_rows(&self.db, tx, "INSERT INTO consent_denial (consent_id, patient_id, actor, resource_type, period_start, period_end) VALUES ", &denials, |sql, (item, d)| {
            sql.bind(&item.id).push(", ").bind(&d.patient_id).push(", ").bind(&d.actor).push(", ").bind(&d.resource_type).push(", ").bind(d.period_start).push(", ").bind(d.period_end);
        })
        .await?;
        Ok(())
    }

    /// Inserts the index rows of `(type, id, index)` items in `tx`.
    async fn insert_index(
        &self,
        tx: &mut WriteTx,
        items: &[(&str, &str, &IndexRows)],
    ) -> Result<(), FhirError> {
        // Collected first: iterator adapters borrowed across an await make the future !Send.
        // Identifiers inside references share the token table, under `<param>:identifier`; a
        // code's text is kept beside its row.
        let tokens: Vec<_> = items
            .iter()
            .flat_map(|item| {
                // The compartment's rows are the resource row's `patient_id`.
                let stored = |(param, ..): &&(&str, String, String)| *param != "patient";
                let tokens = item.2.tokens.iter().filter(stored).map(move |row| {
                    let (param, system, value) = row;
                    let text = item.2.token_texts.get(row);
                    (
                        item,
                        std::borrow::Cow::Borrowed(*param),
                        system,
                        value,
                        text,
                    )
                });
                let identifiers =
                    item.2
                        .reference_identifiers
                        .iter()
                        .map(move |(param, system, value)| {
                            let param = std::borrow::Cow::Owned(params::identifier_param(param));
                            (item, param, system, value, None)
                        });
                tokens.chain(identifiers)
            })
            .collect();
        insert_rows(
            &self.db,
            tx,
            "INSERT INTO search_token (resource_type, resource_id, param, system, value, text) VALUES ",
            &tokens,
            |sql, (item, param, system, value, text)| {
                sql.bind(item.0)
                    .push(", ")
                    .bind(item.1)
                    .push(", ")
                    .bind(param.as_ref())
                    .push(", ")
                    .bind(*system)
                    .push(", ")
                    .bind(*value)
                    .push(", ")
                    .bind(text.map_or("", String::as_str));
            },
        )
        .await?;
        let quantities: Vec<_> = items
            .iter()
            .flat_map(|item| item.2.quantities.iter().map(move |q| (item, q)))
            .collect();
        insert_rows(
            &self.db,
            tx,
            "INSERT INTO search_quantity (resource_type, resource_id, param, system, code, lo, hi, concept) VALUES ",
            &quantities,
            |sql, (item, row)| {
                sql.bind(item.0)
                    .push(", ")
                    .bind(item.1)
                    .push(", ")
                    .bind(row.param)
                    .push(", ")
                    .bind(row.system.as_str())
                    .push(", ")
                    .bind(row.code.as_str())
                    .push(", ")
                    .bind(row.lo)
                    .push(", ")
                    .bind(row.hi)
                    .push(", ")
                    .bind(row.concept.as_str());
            },
        )
        .await?;
        // `_lastUpdated` is the resource row's own `last_updated`.
        let dates: Vec<_> = items
            .iter()
            .flat_map(|item| item.2.dates.iter().map(move |d| (item, d)))
            .filter(|(_, (param, _, _))| *param != params::LAST_UPDATED)
            .collect();
        insert_rows(
            &self.db,
            tx,
            "INSERT INTO search_date (resource_type, resource_id, param, lo, hi) VALUES ",
            &dates,
            |sql, (item, (param, lo, hi))| {
                sql.bind(item.0)
                    .push(", ")
                    .bind(item.1)
                    .push(", ")
                    .bind(*param)
                    .push(", ")
                    .bind(*lo)
                    .push(", ")
                    .bind(*hi);
            },
        )
        .await?;
        Ok(())
    }

    /// Reindexes, from their stored JSON, the resources a migration queued in `reindex_queue`
    /// because the shape of their index rows changed; returns how many. Runs when the
    /// database is opened. Several nodes may run it at once: each resource is taken off the
    /// queue by one of them, in the transaction that reindexes it.
    pub async fn reindex_queued(&self) -> Result<usize, FhirError> {
        let queued: i64 = sqlx::query("SELECT COUNT(*) FROM reindex_queue")
            .fetch_one(self.db.pool())
            .await?
            .try_get(0)?;
        if queued > 0 {
            tracing::info!(queued, "reindexing resources after a database migration…");
        }
        let mut reindexed = 0;
        let mut reported = 0;
        loop {
            if reindexed >= reported + 50_000 {
                reported = reindexed;
                tracing::info!(reindexed, queued, "reindexing…");
            }
            let batch: Vec<(String, String)> = sqlx::query(
                "SELECT resource_type, resource_id FROM reindex_queue \
                 ORDER BY resource_type, resource_id LIMIT 500",
            )
            .fetch_all(self.db.pool())
            .await?
            .iter()
            .map(|row| (row.get(0), row.get(1)))
            .collect();
            if batch.is_empty() {
                return Ok(reindexed);
            }
            let mut tx = self.db.begin_write().await?;
            let mut rebuilt = Vec::new();
            for (resource_type, id) in &batch {
                let taken = sqlx::query(
                    "DELETE FROM reindex_queue WHERE resource_type = $1 AND resource_id = $2",
                )
                .bind(resource_type)
                .bind(id)
                .execute(&mut *tx.tx)
                .await?;
                if taken.rows_affected() != 1 {
                    continue;
                }
                // Locked on PostgreSQL, so a concurrent write of the resource waits for us.
                let lock = match self.db.backend() {
                    healthcloud_platform::db::Backend::Postgres => " FOR UPDATE",
                    healthcloud_platform::db::Backend::Sqlite => "",
                };
                let Some(row) = sqlx::query(&format!(
                    "SELECT content FROM resources WHERE resource_type = $1 AND id = $2{lock}"
                ))
                .bind(resource_type)
                .bind(id)
                .fetch_optional(&mut *tx.tx)
                .await?
                else {
                    continue;
                };
                let content: String = row.try_get(0)?;
                let json = serde_json::from_str::<Value>(&content).map_err(|e| e.to_string());
                let index = (json.clone()).and_then(|json| {
                    params::index(resource_type, id, &json).map_err(|e| e.to_string())
                });
                match index {
                    Ok(index) => {
                        // A consent's opt-outs are read again too (their periods are dates).
                        if resource_type == "Consent"
                            && let Ok(json) = &json
                            && let Ok(denials) = consent::denials(json)
                        {
                            sqlx::query("DELETE FROM consent_denial WHERE consent_id = $1")
                                .bind(id)
                                .execute(&mut *tx.tx)
                                .await?;
                            for d in denials {
                                sqlx::query(
                                    "INSERT INTO consent_denial (consent_id, patient_id, actor, resource_type, period_start, period_end) \
                                     VALUES ($1, $2, $3, $4, $5, $6)",
                                )
                                .bind(id)
                                .bind(&d.patient_id)
                                .bind(&d.actor)
                                .bind(&d.resource_type)
                                .bind(d.period_start)
                                .bind(d.period_end)
                                .execute(&mut *tx.tx)
                                .await?;
                            }
                        }
                        // Its compartment and date too: a type newly served is placed by its
                        // own definition (`Task.for`), no longer by a guess at `subject`.
                        sqlx::query(
                            "UPDATE resources SET patient_id = $1, sort_date = $2 \
                             WHERE resource_type = $3 AND id = $4",
                        )
                        .bind(index.patient_id.clone())
                        .bind(index.sort_date)
                        .bind(resource_type)
                        .bind(id)
                        .execute(&mut *tx.tx)
                        .await?;
                        for table in INDEX_TABLES {
                            sqlx::query(&format!(
                                "DELETE FROM {table} WHERE resource_type = $1 AND resource_id = $2"
                            ))
                            .bind(resource_type)
                            .bind(id)
                            .execute(&mut *tx.tx)
                            .await?;
                        }
                        rebuilt.push((resource_type, id, index));
                    }
                    // It was indexed when written; its other rows stay as they were.
                    Err(error) => {
                        tracing::warn!(%resource_type, %id, %error, "cannot reindex; left as it was")
                    }
                }
            }
            let items: Vec<(&str, &str, &IndexRows)> = rebuilt
                .iter()
                .map(|(t, id, index)| (t.as_str(), id.as_str(), index))
                .collect();
            self.insert_index(&mut tx, &items).await?;
            tx.commit().await?;
            reindexed += items.len();
        }
    }

    /// Refreshes the query planner's statistics after a bulk load, so SQLite keeps choosing
    /// the compartment index over a scan of every token (PostgreSQL's autovacuum does this).
    pub async fn refresh_statistics(&self) -> Result<(), FhirError> {
        if self.db.backend() == healthcloud_platform::db::Backend::Sqlite {
            sqlx::query("PRAGMA analysis_limit = 1000; PRAGMA optimize = 0x10002;")
                .execute(self.db.pool())
                .await?;
        }
        Ok(())
    }

    /// Removes a resource with its index rows; returns whether it existed.
    pub async fn remove(
        &self,
        tx: &mut WriteTx,
        resource_type: &str,
        id: &str,
    ) -> Result<bool, FhirError> {
        for table in INDEX_TABLES {
            sqlx::query(&format!(
                "DELETE FROM {table} WHERE resource_type = $1 AND resource_id = $2"
            ))
            .bind(resource_type)
            .bind(id)
            .execute(&mut *tx.tx)
            .await?;
        }
        if resource_type == "Consent" {
            sqlx::query("DELETE FROM consent_denial WHERE consent_id = $1")
                .bind(id)
                .execute(&mut *tx.tx)
                .await?;
        }
        let done = sqlx::query("DELETE FROM resources WHERE resource_type = $1 AND id = $2")
            .bind(resource_type)
            .bind(id)
            .execute(&mut *tx.tx)
            .await?;
        Ok(done.rows_affected() > 0)
    }

    /// Whether `item` is created again after its deletion, version `version_id`: nothing is
    /// current to replace, and its versions go on from there.
    async fn deleted_at(
        &self,
        tx: &mut WriteTx,
        item: &Prepared,
        version_id: i64,
    ) -> Result<bool, FhirError> {
        let current = sqlx::query("SELECT 1 FROM resources WHERE resource_type = $1 AND id = $2")
            .bind(&item.resource_type)
            .bind(&item.id)
            .fetch_optional(&mut *tx.tx)
            .await?;
        let deletion = sqlx::query(
            "SELECT 1 FROM resource_history WHERE resource_type = $1 AND id = $2 \
             AND version_id = $3 AND content IS NULL",
        )
        .bind(&item.resource_type)
        .bind(&item.id)
        .bind(version_id)
        .fetch_optional(&mut *tx.tx)
        .await?;
        Ok(current.is_none() && deletion.is_some())
    }

    /// Takes the current version of `resource_type/id` (only if it is `version_id`, when
    /// given) out of `resources` into its history: its version number and patient, or `None`
    /// when there is no such current version. On PostgreSQL a concurrent writer of the same
    /// resource waits here and then finds nothing.
    async fn take_current(
        &self,
        tx: &mut WriteTx,
        resource_type: &str,
        id: &str,
        version_id: Option<i64>,
    ) -> Result<Option<(i64, Option<String>)>, FhirError> {
        let mut sql = self.db.sql("DELETE FROM resources WHERE resource_type = ");
        sql.bind(resource_type).push(" AND id = ").bind(id);
        if let Some(version_id) = version_id {
            sql.push(" AND version_id = ").bind(version_id);
        }
        sql.push(" RETURNING version_id, last_updated, patient_id, content");
        let Some(row) = sql.query().fetch_optional(&mut *tx.tx).await? else {
            return Ok(None);
        };
        let (version_id, patient_id): (i64, Option<String>) = (row.try_get(0)?, row.try_get(2)?);
        sqlx::query(
            "INSERT INTO resource_history (resource_type, id, version_id, last_updated, patient_id, content) \
             VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(resource_type)
        .bind(id)
        .bind(version_id)
        .bind(row.try_get::<i64, _>(1)?)
        .bind(patient_id.clone())
        .bind(row.try_get::<String, _>(3)?)
        .execute(&mut *tx.tx)
        .await?;
        Ok(Some((version_id, patient_id)))
    }

    /// Deletes `resource_type/id` (only if its current version is `version_id`, when given)
    /// in `tx`, keeping its last version in its history and the deletion as a version of its
    /// own (at `now`, epoch ms): it then reads as gone. Whether there was such a version.
    pub async fn delete(
        &self,
        tx: &mut WriteTx,
        resource_type: &str,
        id: &str,
        version_id: Option<i64>,
        now: i64,
    ) -> Result<bool, FhirError> {
        let Some((version_id, patient_id)) =
            self.take_current(tx, resource_type, id, version_id).await?
        else {
            return Ok(false);
        };
        sqlx::query(
            "INSERT INTO resource_history (resource_type, id, version_id, last_updated, patient_id, content) \
             VALUES ($1, $2, $3, $4, $5, NULL)",
        )
        .bind(resource_type)
        .bind(id)
        .bind(version_id + 1)
        .bind(now)
        .bind(patient_id)
        .execute(&mut *tx.tx)
        .await?;
        self.remove(tx, resource_type, id).await?;
        Ok(true)
    }

    /// The kept versions of `resource_type/id`, newest first, at most `limit` after skipping
    /// `offset` (the current one is in `resources`, not here).
    pub async fn history(
        &self,
        resource_type: &str,
        id: &str,
        limit: usize,
        offset: usize,
    ) -> Result<Vec<Version>, FhirError> {
        let rows = sqlx::query(
            "SELECT version_id, last_updated, patient_id, content FROM resource_history \
             WHERE resource_type = $1 AND id = $2 ORDER BY version_id DESC LIMIT $3 OFFSET $4",
        )
        .bind(resource_type)
        .bind(id)
        .bind(limit as i64)
        .bind(offset as i64)
        .fetch_all(self.db.pool())
        .await?;
        Ok(rows.iter().map(kept).collect())
    }

    /// How many versions of `resource_type/id` are kept in its history.
    pub async fn history_count(&self, resource_type: &str, id: &str) -> Result<usize, FhirError> {
        let count: i64 = sqlx::query(
            "SELECT COUNT(*) FROM resource_history WHERE resource_type = $1 AND id = $2",
        )
        .bind(resource_type)
        .bind(id)
        .fetch_one(self.db.pool())
        .await?
        .try_get(0)?;
        Ok(count as usize)
    }

    /// The versions of every resource of the `scans`' types (current and kept, deletions
    /// included), newest first by when they were written (then by type and id, then newest
    /// version first), after `after`, at most `limit`: of each type only those in the scan's
    /// patient's compartment when it names one, and only those written at or after `since`.
    pub async fn history_of_types(
        &self,
        scans: &[(&str, Option<&str>)],
        since: Option<i64>,
        after: Option<&HistoryCursor>,
        limit: usize,
    ) -> Result<Vec<(String, String, Version)>, FhirError> {
        let collate = match self.db.backend() {
            Backend::Postgres => " COLLATE \"C\"",
            Backend::Sqlite => "",
        };
        let mut sql = self
            .db
            .sql("SELECT resource_type, id, version_id, last_updated, patient_id, content FROM (");
        for (i, table) in ["resources", "resource_history"].into_iter().enumerate() {
            if i > 0 {
                sql.push(" UNION ALL ");
            }
            sql.push(&format!(
                "SELECT resource_type, id, version_id, last_updated, patient_id, content FROM {table} WHERE (1 = 0"
            ));
            for (resource_type, patient) in scans {
                sql.push(" OR (resource_type = ").bind(*resource_type);
                if let Some(patient) = patient {
                    sql.push(" AND patient_id = ").bind(*patient);
                }
                sql.push(")");
            }
            sql.push(")");
            if let Some(since) = since {
                sql.push(" AND last_updated >= ").bind(since);
            }
            if let Some(after) = after {
                sql.push(" AND (last_updated < ")
                    .bind(after.last_updated)
                    .push(" OR (last_updated = ")
                    .bind(after.last_updated)
                    .push(&format!(" AND (resource_type{collate} > "))
                    .bind(after.resource_type.clone())
                    .push(" OR (resource_type = ")
                    .bind(after.resource_type.clone())
                    .push(&format!(" AND (id{collate} > "))
                    .bind(after.id.clone())
                    .push(" OR (id = ")
                    .bind(after.id.clone())
                    .push(" AND version_id < ")
                    .bind(after.version_id)
                    .push("))))))");
            }
        }
        sql.push(&format!(
            ") v ORDER BY last_updated DESC, resource_type{collate}, id{collate}, version_id DESC LIMIT "
        ))
        .bind(limit as i64);
        let rows = sql.query().fetch_all(self.db.pool()).await?;
        Ok(rows
            .iter()
            .map(|row| {
                let version = Version {
                    version_id: row.get(2),
                    last_updated: row.get(3),
                    patient_id: row.get(4),
                    content: row.get(5),
                };
                (row.get(0), row.get(1), version)
            })
            .collect())
    }

    /// Version `version_id` of `resource_type/id`, when kept in its history.
    pub async fn version(
        &self,
        resource_type: &str,
        id: &str,
        version_id: i64,
    ) -> Result<Option<Version>, FhirError> {
        let row = sqlx::query(
            "SELECT version_id, last_updated, patient_id, content FROM resource_history \
             WHERE resource_type = $1 AND id = $2 AND version_id = $3",
        )
        .bind(resource_type)
        .bind(id)
        .bind(version_id)
        .fetch_optional(self.db.pool())
        .await?;
        Ok(row.as_ref().map(kept))
    }

    /// Whether an active consent of `patient` denies one of `actors` `resource_type` (any
    /// type if `None`) at time `now`.
    pub async fn consent_denies(
        &self,
        actors: &[String],
        resource_type: Option<&str>,
        patient: &str,
        now: i64,
    ) -> Result<bool, FhirError> {
        if actors.is_empty() {
            return Ok(false);
        }
        let mut sql = self
            .db
            .sql("SELECT 1 FROM consent_denial WHERE patient_id = ");
        sql.bind(patient).push(" AND actor IN (");
        for (i, actor) in actors.iter().enumerate() {
            if i > 0 {
                sql.push(", ");
            }
            sql.bind(actor);
        }
        sql.push(")");
        if let Some(resource_type) = resource_type {
            sql.push(" AND (resource_type = '' OR resource_type = ")
                .bind(resource_type)
                .push(")");
        }
        sql.push(" AND (period_start IS NULL OR period_start <= ")
            .bind(now)
            .push(") AND (period_end IS NULL OR period_end >= ")
            .bind(now)
            .push(") LIMIT 1");
        Ok(sql.query().fetch_optional(self.db.pool()).await?.is_some())
    }

    /// Patient `patient`'s identifier in `system`, when the record holds one value there (an
    /// empty one is none) and no other Patient holds the same: one query, as a search by
    /// identifier would count them.
    pub async fn sole_identifier(
        &self,
        patient: &str,
        system: &str,
    ) -> Result<Option<String>, FhirError> {
        let mut sql = self.db.sql(
            "SELECT DISTINCT t.value, (SELECT COUNT(DISTINCT u.resource_id) FROM search_token u \
             WHERE u.resource_type = 'Patient' AND u.param = 'identifier' \
             AND u.value = t.value AND u.system = t.system) \
             FROM search_token t WHERE t.resource_type = 'Patient' AND t.param = 'identifier' \
             AND t.value <> '' AND t.resource_id = ",
        );
        sql.bind(patient).push(" AND t.system = ").bind(system);
        let rows = sql.query().fetch_all(self.db.pool()).await?;
        let [row] = rows.as_slice() else {
            return Ok(None);
        };
        let holders: i64 = row.try_get(1)?;
        Ok((holders == 1).then(|| row.try_get(0)).transpose()?)
    }

    /// A value that changes whenever one of `patient`'s Consents is created, updated or
    /// deleted, by any process on this database: how many there are, the newest change and
    /// the sum of their versions.
    pub async fn consent_version(&self, patient: &str) -> Result<ConsentVersion, FhirError> {
        let mut sql = self.db.sql(
            "SELECT COUNT(*), CAST(COALESCE(MAX(last_updated), 0) AS BIGINT), \
             CAST(COALESCE(SUM(version_id), 0) AS BIGINT) FROM resources WHERE patient_id = ",
        );
        sql.bind(patient).push(" AND resource_type = 'Consent'");
        let row = sql.query().fetch_one(self.db.pool()).await?;
        Ok(ConsentVersion(
            row.try_get(0)?,
            row.try_get(1)?,
            row.try_get(2)?,
        ))
    }
}

/// What [`EmbeddedStore::consent_version`] returns: equal values mean no Consent of the
/// patient changed in between.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConsentVersion(i64, i64, i64);

/// A history row (`version_id, last_updated, patient_id, content`).
fn kept(row: &sqlx::any::AnyRow) -> Version {
    Version {
        version_id: row.get(0),
        last_updated: row.get(1),
        patient_id: row.get(2),
        content: row.get(3),
    }
}

fn stored(row: &sqlx::any::AnyRow) -> StoredResource {
    StoredResource {
        id: row.get(0),
        version_id: row.get(1),
        patient_id: row.get(2),
        content: row.get(3),
        sort_date: row.get(4),
    }
}

async fn insert_rows<T: Sync>(
    db: &Database,
    tx: &mut WriteTx,
    head: &str,
    rows: &[T],
    push_row: impl Fn(&mut Sql, &T),
) -> Result<(), FhirError> {
    for chunk in rows.chunks(BATCH_ROWS) {
        let mut sql = db.sql(head);
        for (i, row) in chunk.iter().enumerate() {
            sql.push(if i == 0 { "(" } else { ", (" });
            push_row(&mut sql, row);
            sql.push(")");
        }
        sql.query().execute(&mut *tx.tx).await?;
    }
    Ok(())
}

/// How a constraint's filter holds for a resource with several values of its parameter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Quantifier {
    /// One value matches: how searches and reads work.
    Any,
    /// One value matches and every other does too: how writes are checked.
    Every,
}

/// Appends the WHERE clause of `query`: type, client filters, policy constraints (their
/// filters held with `quantifier`), consent.
fn push_where(sql: &mut Sql, query: &SearchQuery, quantifier: Quantifier) {
    sql.push(" WHERE r.resource_type = ")
        .bind(query.type_def.name);
    match (
        query.type_def.placed_only(),
        query.type_def.shared_unplaced(),
    ) {
        (false, _) => {}
        (true, None) => {
            sql.push(" AND r.patient_id IS NOT NULL");
        }
        (true, Some((param, system))) => {
            sql.push(
                " AND (r.patient_id IS NOT NULL OR EXISTS (SELECT 1 FROM search_token x \
                 WHERE x.resource_type = r.resource_type AND x.resource_id = r.id AND x.param = ",
            )
            .bind(param)
            .push(" AND x.system = ")
            .bind(system)
            .push("))");
        }
    }
    let narrowed = narrowed_to_patients(query);
    for filter in &query.filters {
        sql.push(" AND ");
        push_filter(sql, query, filter, narrowed, Quantifier::Any);
    }
    for group in &query.constraints.groups {
        if group.is_empty() {
            sql.push(" AND 1 = 0");
            continue;
        }
        sql.push(" AND (");
        for (i, alternative) in group.iter().enumerate() {
            if i > 0 {
                sql.push(" OR ");
            }
            push_alternative(sql, query, alternative, narrowed, quantifier);
        }
        sql.push(")");
    }
    if let Some(consent) = &query.constraints.consent {
        sql.push(
            " AND (r.patient_id IS NULL OR NOT EXISTS (SELECT 1 FROM consent_denial c \
             WHERE c.patient_id = r.patient_id AND c.actor IN (",
        );
        for (i, actor) in consent.actors.iter().enumerate() {
            if i > 0 {
                sql.push(", ");
            }
            sql.bind(actor);
        }
        sql.push(") AND (c.resource_type = '' OR c.resource_type = ")
            .bind(query.type_def.name)
            .push(") AND (c.period_start IS NULL OR c.period_start <= ")
            .bind(consent.at)
            .push(") AND (c.period_end IS NULL OR c.period_end >= ")
            .bind(consent.at)
            .push(")))");
    }
}

/// Whether the query is confined to named patients (by the client or the policy), so the
/// compartment index selects the candidate rows.
fn narrowed_to_patients(query: &SearchQuery) -> bool {
    query.named_patients().is_some_and(|p| !p.is_empty())
        || query
            .constraints
            .groups
            .iter()
            .any(|group| !group.is_empty() && group.iter().all(|a| a.compartment.is_some()))
}

fn push_alternative(
    sql: &mut Sql,
    query: &SearchQuery,
    alternative: &Alternative,
    narrowed: bool,
    quantifier: Quantifier,
) {
    sql.push("(1 = 1");
    if let Some(patient) = &alternative.compartment {
        sql.push(" AND r.patient_id = ").bind(patient);
    }
    for filter in &alternative.filters {
        sql.push(" AND ");
        push_filter(sql, query, filter, narrowed, quantifier);
    }
    sql.push(")");
}

fn push_filter(
    sql: &mut Sql,
    query: &SearchQuery,
    filter: &Filter,
    narrowed: bool,
    quantifier: Quantifier,
) {
    let (def, mode, values) = match filter {
        // A join that found nothing: nothing matches.
        Filter::Id(ids) if ids.is_empty() => {
            sql.push("1 = 0");
            return;
        }
        Filter::Id(ids) => {
            sql.push("r.id IN (");
            for (i, id) in ids.iter().enumerate() {
                if i > 0 {
                    sql.push(", ");
                }
                sql.bind(id);
            }
            sql.push(")");
            return;
        }
        Filter::Param { def, mode, values } => (*def, *mode, values),
    };
    // `:not`: no value matches (a resource without any value included).
    if mode == Match::Not {
        let positive = Filter::Param {
            def,
            mode: Match::Prefix,
            values: values.clone(),
        };
        sql.push("NOT (");
        push_filter(sql, query, &positive, narrowed, Quantifier::Any);
        sql.push(")");
        return;
    }
    // A reference to a Patient through the type's compartment element is exactly the
    // compartment column (one patient per resource): use it, so a patient's data is found
    // through its index.
    if let Some(ids) = compartment_patients(query.type_def, def, mode, values) {
        sql.push("r.patient_id IN (");
        for (i, id) in ids.into_iter().enumerate() {
            if i > 0 {
                sql.push(", ");
            }
            sql.bind(id);
        }
        sql.push(")");
        return;
    }
    let table = match def.kind {
        ParamKind::Date => "search_date",
        kind if kind.is_numeric() => "search_quantity",
        _ => "search_token",
    };
    // Identifiers inside references live under their own name, out of reach of a search by
    // id; a composite or union searches the rows of others.
    let names = crate::query::indexed_params(def, mode);
    let push_names = |sql: &mut Sql| {
        sql.push("x.param IN (");
        for (i, name) in names.iter().enumerate() {
            if i > 0 {
                sql.push(", ");
            }
            sql.bind(name);
        }
        sql.push(")");
    };
    // The compartment is the resource row's own `patient_id`.
    if let (true, Match::Missing(missing)) = (params::is_compartment(def), mode) {
        sql.push(if missing {
            "r.patient_id IS NULL"
        } else {
            "r.patient_id IS NOT NULL"
        });
        return;
    }
    // When a resource was written is its own column, not index rows.
    if def.name == params::LAST_UPDATED {
        if let Match::Missing(missing) = mode {
            sql.push(if missing { "1 = 0" } else { "1 = 1" });
            return;
        }
        sql.push("(1 = 0");
        for value in values {
            if let QueryValue::Date(prefix, range) = value {
                sql.push(" OR (1 = 1");
                push_range(sql, *prefix, *range, ("r.last_updated", "r.last_updated"));
                sql.push(")");
            }
        }
        sql.push(")");
        return;
    }
    if let Match::Missing(missing) = mode {
        sql.push(if missing { "NOT EXISTS" } else { "EXISTS" });
        sql.push(&format!(
            " (SELECT 1 FROM {table} x WHERE x.resource_type = r.resource_type AND x.resource_id = r.id AND "
        ));
        push_names(sql);
        sql.push(")");
        return;
    }
    if quantifier == Quantifier::Every {
        sql.push("(");
    }
    if narrowed || def.kind == ParamKind::Date || def.kind.is_numeric() {
        // A patient narrows the rows to a few hundred: probe each one's index rows.
        sql.push(&format!(
            "EXISTS (SELECT 1 FROM {table} x WHERE x.resource_type = r.resource_type AND x.resource_id = r.id AND "
        ));
    } else {
        // Across all patients: let the value index find the few matching resources.
        sql.push(&format!(
            "r.id IN (SELECT x.resource_id FROM {table} x WHERE x.resource_type = "
        ))
        .bind(query.type_def.name)
        .push(" AND ");
    }
    push_names(sql);
    sql.push(" AND ");
    push_values(sql, mode, values);
    sql.push(")");
    if quantifier == Quantifier::Every {
        // ... and no value of the parameter falls outside the filter.
        sql.push(&format!(
            " AND NOT EXISTS (SELECT 1 FROM {table} x WHERE x.resource_type = r.resource_type AND x.resource_id = r.id AND "
        ));
        push_names(sql);
        // A string's values are those of the form compared (folded, or as written).
        if let Some(form) = crate::query::string_form(def.kind, mode) {
            sql.push(" AND x.system = ").bind(form);
        }
        sql.push(" AND NOT ");
        push_values(sql, mode, values);
        sql.push("))");
    }
}

/// `(…)`: whether the index row `x` matches one of `values`.
fn push_values(sql: &mut Sql, mode: Match, values: &[QueryValue]) {
    sql.push("(");
    for (i, value) in values.iter().enumerate() {
        if i > 0 {
            sql.push(" OR ");
        }
        sql.push("(1 = 1");
        match value {
            QueryValue::Token { system, code } => {
                if let Some(system) = system {
                    sql.push(" AND x.system = ").bind(system);
                }
                if let Some(code) = code {
                    sql.push(" AND x.value = ").bind(code);
                }
            }
            QueryValue::Reference { resource_type, id } => {
                if let Some(t) = resource_type {
                    sql.push(" AND x.system = ").bind(t);
                }
                sql.push(" AND x.value = ").bind(id);
            }
            QueryValue::Text(text) if mode == Match::Exact => {
                sql.push(" AND x.system = ")
                    .bind(crate::text::EXACT)
                    .push(" AND x.value = ")
                    .bind(text);
            }
            QueryValue::Text(text) if mode == Match::Text => {
                sql.push(" AND x.text LIKE ")
                    .bind(format!("%{}%", like_escape(text)))
                    .push(" ESCAPE '\\'");
            }
            QueryValue::Text(text) => {
                let pattern = match mode {
                    Match::Contains => format!("%{}%", like_escape(text)),
                    _ => format!("{}%", like_escape(text)),
                };
                sql.push(" AND x.system = '' AND x.value LIKE ")
                    .bind(pattern)
                    .push(" ESCAPE '\\'");
            }
            QueryValue::Uri(uri) => {
                sql.push(" AND (x.value = ").bind(uri);
                // `:below`: the URI's own children, not every string it happens to start.
                if mode == Match::Below {
                    if uri.ends_with([':', '/']) {
                        sql.push(" OR x.value LIKE ")
                            .bind(format!("{}%", like_escape(uri)))
                            .push(" ESCAPE '\\'");
                    } else {
                        for separator in [':', '/'] {
                            sql.push(" OR x.value LIKE ")
                                .bind(format!("{}{separator}%", like_escape(uri)))
                                .push(" ESCAPE '\\'");
                        }
                    }
                }
                sql.push(")");
            }
            QueryValue::Date(prefix, range) => push_range(sql, *prefix, *range, ("x.lo", "x.hi")),
            QueryValue::Quantity {
                prefix,
                range,
                system,
                code,
                concept,
            } => {
                if let Some(system) = system {
                    sql.push(" AND x.system = ").bind(system);
                }
                if let Some(code) = code {
                    sql.push(" AND x.code = ").bind(code);
                }
                // Held exactly, case and all (`LIKE` would ignore case on SQLite).
                if let Some(concept) = concept {
                    let holds = match sql.backend() {
                        Backend::Sqlite => " AND instr(x.concept, ",
                        Backend::Postgres => " AND strpos(x.concept, ",
                    };
                    sql.push(holds).bind(concept).push(") > 0");
                }
                push_range(sql, *prefix, *range, ("x.lo", "x.hi"));
            }
        }
        sql.push(")");
    }
    sql.push(")");
}

/// ` AND …`: whether the range held in the columns `lo`…`hi` (an index row's, or a
/// resource's `last_updated` twice) compares with `range` as `prefix` asks.
fn push_range(sql: &mut Sql, prefix: Prefix, range: date::DateRange, (lo, hi): (&str, &str)) {
    match prefix {
        Prefix::Eq => sql
            .push(&format!(" AND {lo} >= "))
            .bind(range.lo)
            .push(&format!(" AND {hi} <= "))
            .bind(range.hi),
        Prefix::Ne => sql
            .push(&format!(" AND NOT ({lo} >= "))
            .bind(range.lo)
            .push(&format!(" AND {hi} <= "))
            .bind(range.hi)
            .push(")"),
        Prefix::Gt => sql.push(&format!(" AND {hi} > ")).bind(range.hi),
        Prefix::Lt => sql.push(&format!(" AND {lo} < ")).bind(range.lo),
        // ge/le: the target reaches beyond the value, or lies within it.
        Prefix::Ge => sql
            .push(&format!(" AND ({hi} > "))
            .bind(range.hi)
            .push(&format!(" OR ({lo} >= "))
            .bind(range.lo)
            .push(&format!(" AND {hi} <= "))
            .bind(range.hi)
            .push("))"),
        Prefix::Le => sql
            .push(&format!(" AND ({lo} < "))
            .bind(range.lo)
            .push(&format!(" OR ({lo} >= "))
            .bind(range.lo)
            .push(&format!(" AND {hi} <= "))
            .bind(range.hi)
            .push("))"),
        Prefix::Sa => sql.push(&format!(" AND {lo} > ")).bind(range.hi),
        Prefix::Eb => sql.push(&format!(" AND {hi} < ")).bind(range.lo),
        Prefix::Ap => sql
            .push(&format!(" AND {hi} >= "))
            .bind(range.lo)
            .push(&format!(" AND {lo} <= "))
            .bind(range.hi),
    };
}

fn like_escape(text: &str) -> String {
    text.replace('\\', "\\\\")
        .replace('%', "\\%")
        .replace('_', "\\_")
}
