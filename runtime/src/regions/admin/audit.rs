//! The region's admin audit log (`region_audit`): every action of a region admin of the
//! region, allowed (in the transaction of its change) or refused, and reading it back.

use sqlx::Row;

use super::{Admin, AdminError, AuditEntry};
use crate::regions::Regions;

/// One admin action as the audit log records it.
pub(super) struct Action<'a> {
    pub admin: &'a Admin,
    /// `install`, `grant`, …
    pub name: &'a str,
    pub app: Option<&'a str>,
    pub detail: String,
}

/// Writes `action`'s audit record with `outcome` in `tx`.
pub(super) async fn audited(
    regions: &Regions,
    tx: &mut sqlx::Transaction<'static, sqlx::Any>,
    action: &Action<'_>,
    outcome: &str,
) -> sqlx::Result<()> {
    let admin = action.admin;
    tracing::info!(
        region = admin.region,
        actor = admin.actor,
        action = action.name,
        app = action.app,
        detail = action.detail,
        outcome,
        "region admin action"
    );
    let db = regions.db();
    let mut insert = db
        .sql("INSERT INTO region_audit (at, region, actor, action, app, detail, outcome) VALUES (");
    insert
        .bind(now())
        .push(", ")
        .bind(admin.region.as_str())
        .push(", ")
        .bind(admin.actor.as_str())
        .push(", ")
        .bind(action.name)
        .push(", ");
    match action.app {
        Some(app) => insert.bind(app),
        None => insert.push("NULL"),
    };
    insert
        .push(", ")
        .bind(action.detail.trim())
        .push(", ")
        .bind(outcome)
        .push(")");
    insert.query().execute(&mut **tx).await?;
    Ok(())
}

/// The region's audit log, newest first.
pub(super) async fn audit_log(
    regions: &Regions,
    admin: &Admin,
    limit: i64,
) -> Result<Vec<AuditEntry>, AdminError> {
    let db = regions.db();
    let mut select =
        db.sql("SELECT at, actor, action, app, detail, outcome FROM region_audit WHERE region = ");
    select
        .bind(admin.region.as_str())
        .push(" ORDER BY id DESC LIMIT ")
        .bind(limit.clamp(1, 1000));
    Ok(select
        .query()
        .fetch_all(db.pool())
        .await?
        .iter()
        .map(|row| AuditEntry {
            at: row.get(0),
            actor: row.get(1),
            action: row.get(2),
            app: row.get(3),
            detail: row.get(4),
            outcome: row.get(5),
        })
        .collect())
}

/// Records a refused admin action (an allowed one is recorded in its own transaction). A
/// failure to record is logged: the action was refused either way.
pub(super) async fn audit_refusal<T>(
    regions: Option<&Regions>,
    action: &Action<'_>,
    result: &Result<T, impl std::fmt::Display>,
) {
    let (Some(regions), Err(error)) = (regions, result) else {
        return;
    };
    let written = async {
        let mut write = regions.db().begin_write().await?;
        audited(regions, &mut write.tx, action, &format!("refused: {error}")).await?;
        write.commit().await
    };
    if let Err(error) = written.await {
        tracing::error!(%error, "cannot write the region admin audit record");
    }
}

/// An audit detail that records the admin's allowance for internal addresses.
pub(super) fn allowing(detail: String, allow_internal_addresses: bool) -> String {
    if allow_internal_addresses {
        format!("{detail} allowing internal addresses")
    } else {
        detail
    }
}

/// An audit detail: `what`, and what it grants if anything.
pub(super) fn with_grant(what: String, grant: &[String]) -> String {
    if grant.is_empty() {
        what
    } else {
        format!("{what} granting {}", grant.join(" "))
    }
}

/// Now, as audit records and install rows write it.
pub(super) fn now() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}
