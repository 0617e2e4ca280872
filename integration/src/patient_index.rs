//! The patient index: which patient of an upstream source is which healthcloud patient.
//!
//! A patient is matched at each source by CPR number (`urn:oid:1.2.208.176.1.2`), looked up
//! with `Patient?identifier=system|value` and remembered (table `source_patients`), so a
//! source is asked again only when what is remembered is older than the index's maximum age.
//! Only identities are kept, never clinical data. A match must carry the CPR number itself:
//! a source that ignores the `identifier` parameter and answers with its whole patient list
//! matches nobody, and a CPR number the source holds twice matches nobody either, since
//! either would join one person's record to another's.

use std::collections::BTreeMap;
use std::time::Duration;

use chrono::{DateTime, SecondsFormat, Utc};
use healthcloud_platform::db::Database;
use serde_json::Value;
use sqlx::Row;

use crate::error::FhirError;
use crate::query::{PageLimits, SearchQuery};
use crate::store::EmbeddedStore;
use crate::upstream::{Upstream, UpstreamError};

/// The system of Danish CPR numbers.
pub const CPR_SYSTEM: &str = "urn:oid:1.2.208.176.1.2";

/// Why a patient could not be matched at a source.
#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    /// The source could not be asked.
    #[error(transparent)]
    Upstream(#[from] UpstreamError),
    /// The source holds the CPR number on more than one patient.
    #[error(
        "source '{source_name}' holds {count} patients with this CPR number: none is used until the source merges them"
    )]
    Ambiguous {
        /// The source.
        source_name: String,
        /// How many patients carry the number there.
        count: usize,
    },
    /// The index could not be read or written.
    #[error("the patient index could not be read or written: {0}")]
    Database(#[from] sqlx::Error),
    /// The home records could not be searched.
    #[error("the home records could not be searched: {0}")]
    Home(#[from] FhirError),
}

/// What the index held, still fresh, about one patient: per source, their id there (`None`
/// when the source was found to hold no such patient).
#[derive(Debug, Clone, Default)]
pub struct Remembered {
    patient: String,
    fresh: BTreeMap<String, Option<String>>,
}

impl Remembered {
    /// Nothing read yet: the index is read when a source is asked.
    pub const NOT_READ: Remembered = Remembered {
        patient: String::new(),
        fresh: BTreeMap::new(),
    };
}

/// The patient index in the shared database.
#[derive(Debug, Clone)]
pub struct PatientIndex {
    db: Database,
    max_age: Duration,
}

impl PatientIndex {
    /// The index in `db`; a match older than `max_age` is looked up again.
    pub fn new(db: Database, max_age: Duration) -> Self {
        PatientIndex { db, max_age }
    }

    /// The id at `source` of healthcloud patient `patient`, whose CPR number is `cpr`: from
    /// the index while fresh, else looked up at the source and remembered. `None` when the
    /// source holds no such patient.
    pub async fn at_source(
        &self,
        source: &Upstream,
        patient: &str,
        cpr: &str,
    ) -> Result<Option<String>, IdentityError> {
        self.at_source_with(source, patient, cpr, &Remembered::NOT_READ)
            .await
    }

    /// What the index holds, still fresh, about `patient` at every source: read once for a
    /// search that asks several sources.
    pub async fn remembered(&self, patient: &str) -> Result<Remembered, sqlx::Error> {
        let mut select = self
            .db
            .sql("SELECT source, source_patient, checked_at FROM source_patients WHERE patient = ");
        select.bind(patient);
        let mut fresh = BTreeMap::new();
        for row in select.query().fetch_all(self.db.pool()).await? {
            let checked_at: String = row.try_get("checked_at")?;
            if self.is_fresh(&checked_at) {
                fresh.insert(row.try_get("source")?, row.try_get("source_patient")?);
            }
        }
        Ok(Remembered {
            patient: patient.to_owned(),
            fresh,
        })
    }

    /// As [`at_source`](Self::at_source), with what the index held about `patient` already
    /// read ([`Remembered::NOT_READ`] reads it now).
    pub async fn at_source_with(
        &self,
        source: &Upstream,
        patient: &str,
        cpr: &str,
        remembered: &Remembered,
    ) -> Result<Option<String>, IdentityError> {
        let read;
        let remembered = match remembered.patient == patient {
            true => remembered,
            false => {
                read = self.remembered(patient).await?;
                &read
            }
        };
        if let Some(known) = remembered.fresh.get(source.name()) {
            return Ok(known.clone());
        }
        let found = self.look_up(source, cpr).await?;
        self.remember(source.name(), patient, found.as_deref())
            .await?;
        Ok(found)
    }

    /// The healthcloud patient whom `source_patient` at `source` is: from the index, else
    /// matched now by the CPR number on the source's Patient record against the home records
    /// (exactly one each side, or nobody; the source is asked whether it holds the number on
    /// any other record) and remembered. A resource read by id from a source
    /// lands in the compartment of the patient its CPR number names.
    pub async fn patient_at_home(
        &self,
        source: &Upstream,
        source_patient: &str,
    ) -> Result<Option<String>, IdentityError> {
        let mut select = self
            .db
            .sql("SELECT patient, checked_at FROM source_patients WHERE source = ");
        select
            .bind(source.name())
            .push(" AND source_patient = ")
            .bind(source_patient);
        if let Some(row) = select.query().fetch_optional(self.db.pool()).await? {
            let checked_at: String = row.try_get("checked_at")?;
            // A stale match is checked again: the source may have corrected the number since.
            if self.is_fresh(&checked_at) {
                return Ok(Some(row.try_get("patient")?));
            }
        }
        let Some(record) = source.read("Patient", source_patient).await? else {
            return Ok(None);
        };
        let numbers: Vec<&str> = record["identifier"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|identifier| identifier["system"] == CPR_SYSTEM)
            .filter_map(|identifier| identifier["value"].as_str())
            .collect();
        let [cpr] = numbers.as_slice() else {
            return Ok(None);
        };
        // As for a search (`at_source`), the source must hold the number on this one record:
        // held on two, either may be another person's, and remembering this one would join
        // it to the healthcloud patient for every later search.
        match self.look_up(source, cpr).await {
            Ok(Some(only)) if only == source_patient => {}
            Ok(_) | Err(IdentityError::Ambiguous { .. }) => return Ok(None),
            Err(error) => return Err(error),
        }
        let query = SearchQuery::parse(
            "Patient",
            &[("identifier".into(), format!("{CPR_SYSTEM}|{cpr}"))],
            PageLimits::default(),
        )?;
        let home = EmbeddedStore::new(self.db.clone()).search(&query).await?;
        let [patient] = home.resources.as_slice() else {
            return Ok(None);
        };
        self.remember(source.name(), &patient.id, Some(source_patient))
            .await?;
        Ok(Some(patient.id.clone()))
    }

    /// The healthcloud patient whom `source_patient` at `source` is, if the index matched one.
    pub async fn patient_of(
        &self,
        source: &str,
        source_patient: &str,
    ) -> Result<Option<String>, sqlx::Error> {
        let mut select = self
            .db
            .sql("SELECT patient FROM source_patients WHERE source = ");
        select
            .bind(source)
            .push(" AND source_patient = ")
            .bind(source_patient);
        let row = select.query().fetch_optional(self.db.pool()).await?;
        row.map(|row| row.try_get("patient")).transpose()
    }

    /// Whether a match checked at `checked_at` (RFC 3339) is younger than the index's maximum age.
    fn is_fresh(&self, checked_at: &str) -> bool {
        DateTime::parse_from_rfc3339(checked_at).is_ok_and(|at| {
            Utc::now()
                .signed_duration_since(at)
                .to_std()
                .unwrap_or_default()
                < self.max_age
        })
    }

    /// The source's one patient carrying `cpr`, asked now.
    async fn look_up(&self, source: &Upstream, cpr: &str) -> Result<Option<String>, IdentityError> {
        // An empty number is nobody's: asked for it (`identifier=<system>|`), a source would
        // name whoever has an empty one, or everyone with a number.
        if cpr.trim().is_empty() {
            return Ok(None);
        }
        let bundle = source
            .search(
                "Patient",
                &[("identifier".into(), format!("{CPR_SYSTEM}|{cpr}"))],
            )
            .await?;
        let matches: Vec<&str> = bundle["entry"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|entry| entry["search"]["mode"] != "outcome")
            .map(|entry| &entry["resource"])
            .filter(|resource| resource["resourceType"] == "Patient" && carries(resource, cpr))
            .filter_map(|resource| resource["id"].as_str())
            .collect();
        match matches.as_slice() {
            [] => Ok(None),
            [id] => Ok(Some((*id).to_owned())),
            more => Err(IdentityError::Ambiguous {
                source_name: source.name().to_owned(),
                count: more.len(),
            }),
        }
    }

    async fn remember(
        &self,
        source: &str,
        patient: &str,
        source_patient: Option<&str>,
    ) -> Result<(), sqlx::Error> {
        let now = Utc::now().to_rfc3339_opts(SecondsFormat::Millis, true);
        let mut write = self.db.begin_write().await?;
        if let Some(id) = source_patient {
            // A source's record is one person: matched to this patient now (a source that
            // corrected a CPR number), it is no longer anyone else's, or reads by id would
            // still land with them and their searches still fetch it.
            let mut forget = self.db.sql("DELETE FROM source_patients WHERE source = ");
            forget
                .bind(source)
                .push(" AND source_patient = ")
                .bind(id)
                .push(" AND patient <> ")
                .bind(patient);
            forget.query().execute(&mut *write.tx).await?;
        }
        let mut upsert = self.db.sql(
            "INSERT INTO source_patients (source, patient, source_patient, checked_at) VALUES (",
        );
        upsert.bind(source).push(", ").bind(patient).push(", ");
        match source_patient {
            Some(id) => upsert.bind(id),
            None => upsert.push("NULL"),
        };
        upsert.push(", ").bind(now.as_str()).push(
            ") ON CONFLICT (source, patient) DO UPDATE SET \
             source_patient = excluded.source_patient, checked_at = excluded.checked_at",
        );
        upsert.query().execute(&mut *write.tx).await?;
        write.commit().await
    }
}

/// Whether `patient` carries CPR number `cpr`.
fn carries(patient: &Value, cpr: &str) -> bool {
    patient["identifier"]
        .as_array()
        .into_iter()
        .flatten()
        .any(|identifier| identifier["system"] == CPR_SYSTEM && identifier["value"] == cpr)
}
