//! The security log: what operators must see and no patient's log may hold. A request about
//! patients the caller cannot reach (another patient's record, ids that do not exist), a
//! region admin request from someone without a role in that region, and a principal slowed
//! down for too many refusals each become one row here (as does a sources admin request
//! from someone who is not a platform operator), naming the caller (subject, role,
//! organization, app, region), what was asked and when.
//!
//! Patients' access logs ([`audit`](crate::audit)) only ever hold accesses by callers who
//! could reach that patient, so nobody can write into a stranger's log; the probes go here.
//! Operators read this log with `healthcloud security-log`.

use healthcloud_platform::auth::Principal;
use healthcloud_platform::db::Database;
use serde::Serialize;
use sqlx::Row;

use crate::policy::AppIdentity;

/// Longest `request` text kept; longer requests are cut (and say so).
const MAX_REQUEST_CHARS: usize = 2000;

/// What kind of security event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SecurityKind {
    /// A FHIR request about patients outside what the caller may reach.
    Probe,
    /// A region admin request from a caller who is not a region admin of that region.
    RegionAdmin,
    /// A principal refused so often that its further requests are answered 429 for a while.
    RateLimited,
    /// An upstream source sent data that failed the caller's search or access (another
    /// patient's, a type or category outside the scopes) and was withheld.
    SourceWithheld,
    /// A request to the sources admin API (`/admin/v1/sources`) from a caller who is not a
    /// platform operator.
    SourceAdmin,
}

impl SecurityKind {
    /// The name stored and shown: `probe`, `region-admin`, `rate-limited`,
    /// `source-withheld` or `source-admin`.
    pub fn as_str(self) -> &'static str {
        match self {
            SecurityKind::Probe => "probe",
            SecurityKind::RegionAdmin => "region-admin",
            SecurityKind::RateLimited => "rate-limited",
            SecurityKind::SourceWithheld => "source-withheld",
            SecurityKind::SourceAdmin => "source-admin",
        }
    }
}

/// One security event: who asked what, and why it is here.
#[derive(Debug, Clone)]
pub struct SecurityEvent {
    /// What kind of event.
    pub kind: SecurityKind,
    /// The caller's subject.
    pub sub: String,
    /// The caller's role.
    pub role: String,
    /// The caller's organization, if the token names one.
    pub org: Option<String>,
    /// The caller's `fhirUser`, if the token names one.
    pub fhir_user: Option<String>,
    /// The app the request came through (`id version`), if any.
    pub app: Option<String>,
    /// The region: the app's, else the token's.
    pub region: Option<String>,
    /// What was asked, e.g. `search-type Observation?patient=…`.
    pub request: String,
    /// Why it was refused (or what was done about it).
    pub reason: String,
}

impl SecurityEvent {
    /// An event about `principal`'s request, made through `app` if any.
    pub fn new(
        kind: SecurityKind,
        principal: &Principal,
        app: Option<&AppIdentity>,
        request: impl Into<String>,
        reason: impl Into<String>,
    ) -> Self {
        let claims = &principal.claims;
        let mut request: String = request.into();
        if let Some((cut, _)) = request.char_indices().nth(MAX_REQUEST_CHARS) {
            request.truncate(cut);
            request.push_str(" (cut)");
        }
        SecurityEvent {
            kind,
            sub: claims.sub.clone(),
            role: claims.role.as_str().to_owned(),
            org: claims.org.clone(),
            fhir_user: claims.fhir_user.clone(),
            app: app.map(|a| format!("{} {}", a.id, a.version)),
            region: app
                .map(|a| a.region.clone())
                .or_else(|| claims.region.clone()),
            request,
            reason: reason.into(),
        }
    }
}

/// A row of the security log as operators read it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SecurityEntry {
    /// Row number (increasing).
    pub id: i64,
    /// When (RFC 3339, UTC).
    pub at: String,
    /// `probe`, `region-admin` or `rate-limited`.
    pub kind: String,
    /// The caller's subject.
    pub sub: String,
    /// The caller's role.
    pub role: String,
    /// The caller's organization.
    pub org: Option<String>,
    /// The caller's `fhirUser`.
    pub fhir_user: Option<String>,
    /// The app (`id version`).
    pub app: Option<String>,
    /// The region.
    pub region: Option<String>,
    /// What was asked.
    pub request: String,
    /// Why it is here.
    pub reason: String,
}

/// The security log in the shared database.
#[derive(Debug, Clone)]
pub struct SecurityLog {
    db: Database,
}

impl SecurityLog {
    /// The security log of `db`.
    pub fn new(db: Database) -> Self {
        SecurityLog { db }
    }

    /// Records `event` in its own transaction.
    pub async fn record(&self, event: &SecurityEvent) -> sqlx::Result<()> {
        let mut write = self.db.begin_write().await?;
        self.record_in(&mut write.tx, event).await?;
        write.commit().await
    }

    /// Records `event` in `tx`, so it commits (or not) with the rest of the request's records.
    pub async fn record_in(
        &self,
        tx: &mut sqlx::Transaction<'static, sqlx::Any>,
        event: &SecurityEvent,
    ) -> sqlx::Result<()> {
        tracing::warn!(
            kind = event.kind.as_str(),
            sub = event.sub,
            role = event.role,
            org = event.org,
            app = event.app,
            region = event.region,
            request = event.request,
            reason = event.reason,
            "security event"
        );
        let at = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
        let mut insert = self.db.sql(
            "INSERT INTO security_log (at, kind, sub, role, org, fhir_user, app, region, request, reason) VALUES (",
        );
        insert.bind(at).push(", ").bind(event.kind.as_str());
        for value in [&event.sub, &event.role] {
            insert.push(", ").bind(value.as_str());
        }
        for value in [&event.org, &event.fhir_user, &event.app, &event.region] {
            insert.push(", ");
            match value {
                Some(value) => insert.bind(value.as_str()),
                None => insert.push("NULL"),
            };
        }
        insert
            .push(", ")
            .bind(event.request.as_str())
            .push(", ")
            .bind(event.reason.as_str())
            .push(")");
        insert.query().execute(&mut **tx).await?;
        Ok(())
    }

    /// The newest `limit` rows (at most 1,000), newest first; only `sub`'s with `Some`.
    pub async fn recent(&self, limit: i64, sub: Option<&str>) -> sqlx::Result<Vec<SecurityEntry>> {
        let mut select = self.db.sql(
            "SELECT id, at, kind, sub, role, org, fhir_user, app, region, request, reason FROM security_log",
        );
        if let Some(sub) = sub {
            select.push(" WHERE sub = ").bind(sub);
        }
        select
            .push(" ORDER BY id DESC LIMIT ")
            .bind(limit.clamp(1, 1000));
        let rows = select.query().fetch_all(self.db.pool()).await?;
        Ok(rows
            .iter()
            .map(|row| SecurityEntry {
                id: row.get(0),
                at: row.get(1),
                kind: row.get(2),
                sub: row.get(3),
                role: row.get(4),
                org: row.get(5),
                fhir_user: row.get(6),
                app: row.get(7),
                region: row.get(8),
                request: row.get(9),
                reason: row.get(10),
            })
            .collect())
    }
}
