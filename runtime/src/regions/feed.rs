//! Following the store's revocation feed: fetched at once when the store says something was
//! revoked (PostgreSQL `NOTIFY`, or a store in this process) and polled in any case. Each
//! answer must be signed by the pinned store key and unexpired; a revoked version stops
//! serving on this node at once, in-flight requests included. While the last good answer is
//! expired, no app instance starts (fail closed) and the log says so loudly.

use std::sync::Mutex;
use std::time::Duration;

use anyhow::Context;
use chrono::{DateTime, Utc};
use healthcloud_package::feed::{FeedEntry, REVOCATIONS_CHANNEL, SignedFeed};
use healthcloud_package::keys::PublicKey;
use healthcloud_platform::db::Database;
use sqlx::Row;

use super::trust::{pin, store_key};
use super::{CHANNEL, Regions, Revoked};
use crate::Runtime;

/// How far the feed was read and until when its last answer holds.
pub(crate) struct FeedState {
    /// The pinned store key, once known (see [`super::trust::store_key`]).
    pub(super) key: Mutex<Option<PublicKey>>,
    /// The next `since`.
    next: Mutex<i64>,
    /// The last verified answer's expiry; `None` before the first.
    valid_until: Mutex<Option<DateTime<Utc>>>,
    /// The validity last recorded in `runtime_feed` for the nodes that do not follow it.
    shared_until: Mutex<Option<DateTime<Utc>>>,
    /// When the last verified answer was issued: answers only move forward.
    issued: Mutex<Option<DateTime<Utc>>>,
    /// Why the last attempt failed, for the fail-closed message.
    last_error: Mutex<Option<String>>,
}

impl FeedState {
    /// The pinned key and the position from the database; `configured` must agree with a key
    /// pinned earlier.
    pub(crate) async fn load(
        db: &Database,
        configured: Option<PublicKey>,
    ) -> anyhow::Result<FeedState> {
        let row = sqlx::query("SELECT store_key, next FROM runtime_feed WHERE id = 1")
            .fetch_optional(db.pool())
            .await?;
        let (pinned, next) = match &row {
            Some(row) => (
                Some(
                    PublicKey::from_pem(&row.get::<String, _>(0))
                        .context("the pinned store key")?,
                ),
                row.get(1),
            ),
            None => (None, 0),
        };
        let key = match (configured, pinned) {
            (Some(configured), Some(pinned)) if configured != pinned => anyhow::bail!(
                "the configured store key {} is not the key {} this database pinned earlier: if the store's key really changed, delete the row of runtime_feed",
                configured.id(),
                pinned.id()
            ),
            (Some(configured), None) => Some(pin(db, &configured).await?),
            (configured, pinned) => configured.or(pinned),
        };
        Ok(FeedState {
            key: Mutex::new(key),
            next: Mutex::new(next),
            valid_until: Mutex::new(None),
            shared_until: Mutex::new(None),
            issued: Mutex::new(None),
            last_error: Mutex::new(None),
        })
    }

    /// `Err` with the reason when no app instance may start: the feed's last answer expired
    /// (or none was read yet).
    pub(crate) fn check_fresh(&self, now: DateTime<Utc>) -> Result<(), String> {
        let why = match self
            .last_error
            .lock()
            .expect("feed lock poisoned")
            .as_deref()
        {
            Some(error) => format!("the last attempt failed: {error}"),
            None => "the store has not been reached yet".to_owned(),
        };
        match *self.valid_until.lock().expect("feed lock poisoned") {
            Some(until) if until > now => Ok(()),
            Some(until) => Err(format!(
                "the app store's revocation feed expired at {} and could not be renewed, so no app can be confirmed as not revoked ({why}); apps start again once it is renewed",
                until.to_rfc3339()
            )),
            None => Err(format!(
                "the app store's revocation feed has not been read yet, so no app can be confirmed as not revoked ({why}); apps start once it is read"
            )),
        }
    }

    fn next(&self) -> i64 {
        *self.next.lock().expect("feed lock poisoned")
    }
}

/// Follows the store's revocation feed for one runtime: a revoked version stops serving on
/// this node at once, and the node's installs are brought in line with the database whenever
/// they change. Started once by [`Runtime::serve_regions`].
#[derive(Debug, Clone)]
pub(crate) struct FeedFollower {
    runtime: Runtime,
}

impl FeedFollower {
    /// The follower of `runtime`'s feed (whose regions are served).
    pub(crate) fn new(runtime: Runtime) -> Self {
        FeedFollower { runtime }
    }

    fn regions(&self) -> Option<&Regions> {
        self.runtime.regions()
    }

    /// Reads the feed from where this node left off, applies every revocation and renews the
    /// feed's validity. Returns how many versions were newly revoked.
    pub(crate) async fn fetch(&self) -> anyhow::Result<usize> {
        let Some(regions) = self.regions() else {
            return Ok(0);
        };
        let result = self.fetch_pages(regions).await;
        *regions.feed.last_error.lock().expect("feed lock poisoned") =
            result.as_ref().err().map(|error| format!("{error:#}"));
        result
    }

    async fn fetch_pages(&self, regions: &Regions) -> anyhow::Result<usize> {
        let state = &regions.feed;
        let key = store_key(regions).await?;
        let mut revoked = 0;
        loop {
            let since = state.next();
            let nonce = hex::encode(rand::random::<[u8; 16]>());
            let signed: SignedFeed = regions
                .store()
                .revocations(since, &nonce)
                .await
                .context("fetching the revocation feed")?;
            let issued = *state.issued.lock().expect("feed lock poisoned");
            check_answer(&signed, &key, (since, &nonce), issued, Utc::now())?;
            let feed = &signed.feed;
            for entry in &feed.entries {
                let (Some(app), Some(version)) = (&entry.app, &entry.version) else {
                    // A key entry: every version it voids has its own entry.
                    continue;
                };
                let app = format!("{}/{app}", entry.publisher);
                if self.apply_revocation(
                    &app,
                    version,
                    Revoked {
                        reason: entry.reason.clone(),
                        at: entry.at.clone(),
                    },
                ) {
                    revoked += 1;
                }
            }
            // Nothing new, nothing to write: a quiet feed costs no disk writes.
            if !feed.entries.is_empty() {
                persist(regions.db(), &feed.entries, feed.next).await?;
            }
            *state.next.lock().expect("feed lock poisoned") = feed.next;
            *state.issued.lock().expect("feed lock poisoned") = Some(timestamp(&feed.issued_at)?);
            let valid_until = timestamp(&feed.expires_at)?;
            *state.valid_until.lock().expect("feed lock poisoned") = Some(valid_until);
            share_validity(
                regions.db(),
                state,
                timestamp(&feed.issued_at)?,
                valid_until,
            )
            .await?;
            if !feed.more {
                return Ok(revoked);
            }
        }
    }

    /// Marks `app@version` revoked on this node and interrupts whatever serves it. Returns
    /// whether it was news.
    fn apply_revocation(&self, app: &str, version: &str, revoked: Revoked) -> bool {
        let Some(regions) = self.regions() else {
            return false;
        };
        let news = regions.revocation(app, version).is_none();
        if news {
            tracing::warn!(
                app,
                version,
                reason = revoked.reason,
                "the store revoked a version; it stops serving in every region"
            );
            regions.record_revocation(app, version, revoked);
        }
        for install in self.runtime.installs() {
            if install.identity.id == app && install.identity.version == version {
                install.stop.cancel();
            }
        }
        // A SMART web app of that version: unregistered, its tokens refused from now on, and
        // what was authorized under it never works again.
        let clients = self.runtime.smart_clients();
        clients.revoke_version(app, version);
        clients.retain(|client| !(client.app == app && client.version == version));
        news
    }

    /// Starts following: fetch the feed and check the installs on every push and every
    /// `poll`, until the process ends.
    pub(crate) async fn start(
        self,
        poll: Duration,
        mut push: Option<tokio::sync::watch::Receiver<u64>>,
    ) -> anyhow::Result<()> {
        let follower = self;
        let runtime = follower.runtime.clone();
        let db = runtime.regions().expect("called with regions").db().clone();
        let mut listener = db.listen(&[CHANNEL, REVOCATIONS_CHANNEL]).await?;
        tokio::spawn(async move {
            let mut stale_logged: Option<std::time::Instant> = None;
            loop {
                if let Err(error) = follower.fetch().await {
                    tracing::warn!(
                        error = format!("{error:#}"),
                        "cannot renew the revocation feed"
                    );
                }
                let regions = runtime.regions().expect("called with regions");
                let fresh = regions.feed.check_fresh(Utc::now());
                // The SMART web apps' tokens fail closed with the hosted apps.
                runtime.smart_clients().suspend(fresh.clone().err());
                match fresh {
                    Ok(()) => stale_logged = None,
                    Err(reason) => {
                        if stale_logged.is_none_or(|at| at.elapsed() > Duration::from_secs(30)) {
                            tracing::error!("FAILING CLOSED: {reason}");
                            stale_logged = Some(std::time::Instant::now());
                        }
                    }
                }
                match runtime.regions_changed().await {
                    // In its own task: loading a new install downloads and compiles it, and the
                    // feed must keep being followed meanwhile.
                    Ok(true) => {
                        let runtime = runtime.clone();
                        tokio::spawn(async move {
                            if let Err(error) = runtime.sync_regions().await {
                                tracing::warn!(
                                    error = format!("{error:#}"),
                                    "cannot read the region installs"
                                );
                            }
                        });
                    }
                    Ok(false) => {}
                    Err(error) => {
                        tracing::warn!(
                            error = format!("{error:#}"),
                            "cannot read the region installs"
                        )
                    }
                }
                tokio::select! {
                    _ = tokio::time::sleep(poll) => {}
                    Some(_) = async {
                        match push.as_mut() {
                            Some(push) => push.changed().await.ok(),
                            None => std::future::pending().await,
                        }
                    } => {}
                    Some(()) = async {
                        match listener.as_mut() {
                            Some(listener) => match listener.recv().await {
                                Ok(_) => Some(()),
                                Err(error) => {
                                    tracing::warn!(%error, "the database LISTEN connection failed; polling until it is back");
                                    tokio::time::sleep(poll).await;
                                    Some(())
                                }
                            },
                            None => std::future::pending().await,
                        }
                    } => {}
                }
            }
        });
        Ok(())
    }
}

/// Checks one feed answer: signed by the pinned store key, unexpired, an answer to this very
/// request (its `since` and nonce, so a recorded answer cannot be replayed), and not older
/// than the last answer accepted.
fn check_answer(
    signed: &SignedFeed,
    key: &PublicKey,
    (since, nonce): (i64, &str),
    last_issued: Option<DateTime<Utc>>,
    now: DateTime<Utc>,
) -> anyhow::Result<()> {
    signed
        .verify(key, now)
        .context("the store's revocation feed")?;
    let feed = &signed.feed;
    anyhow::ensure!(
        feed.nonce.as_deref() == Some(nonce),
        "the revocation feed's answer is not to this request (its nonce differs): a replayed or misdirected answer"
    );
    anyhow::ensure!(
        feed.since == since && feed.next >= since,
        "the revocation feed answered from {} when asked from {since}",
        feed.since
    );
    let issued = timestamp(&feed.issued_at)?;
    if let Some(last) = last_issued {
        anyhow::ensure!(
            issued >= last,
            "the revocation feed's answer was issued at {issued}, before the last one accepted ({last})"
        );
    }
    Ok(())
}

fn timestamp(text: &str) -> anyhow::Result<DateTime<Utc>> {
    Ok(DateTime::parse_from_rfc3339(text)
        .with_context(|| format!("'{text}' is not a time"))?
        .with_timezone(&Utc))
}

/// Records revocations for restarts and other nodes, and how far the feed was read.
async fn persist(db: &Database, entries: &[FeedEntry], next: i64) -> anyhow::Result<()> {
    let mut write = db.begin_write().await?;
    for entry in entries {
        let (Some(app), Some(version)) = (&entry.app, &entry.version) else {
            continue;
        };
        let mut insert =
            db.sql("INSERT INTO runtime_revocations (app, version, reason, at) VALUES (");
        insert
            .bind(format!("{}/{app}", entry.publisher))
            .push(", ")
            .bind(version.as_str())
            .push(", ")
            .bind(entry.reason.as_str())
            .push(", ")
            .bind(entry.at.as_str())
            .push(") ON CONFLICT (app, version) DO NOTHING");
        insert.query().execute(&mut *write.tx).await?;
    }
    let mut cursor = db.sql("UPDATE runtime_feed SET next = ");
    cursor
        .bind(next)
        .push(" WHERE id = 1 AND next < ")
        .bind(next);
    cursor.query().execute(&mut *write.tx).await?;
    write.commit().await?;
    Ok(())
}

/// Records until when the feed is valid for the nodes that do not follow it, when half of
/// what was recorded is used up (or nothing was).
async fn share_validity(
    db: &Database,
    state: &FeedState,
    issued: DateTime<Utc>,
    valid_until: DateTime<Utc>,
) -> anyhow::Result<()> {
    let half = (valid_until - issued) / 2;
    let due = state
        .shared_until
        .lock()
        .expect("feed lock poisoned")
        .is_none_or(|shared| shared < valid_until - half);
    if due {
        let mut update = db.sql("UPDATE runtime_feed SET valid_until = ");
        update.bind(valid_until.to_rfc3339()).push(" WHERE id = 1");
        update.query().execute(db.pool()).await?;
        *state.shared_until.lock().expect("feed lock poisoned") = Some(valid_until);
    }
    Ok(())
}

/// Why no app's token may be taken now, for a node that does not follow the feed itself:
/// the validity the following nodes recorded is missing or past.
pub(crate) async fn shared_staleness(db: &Database) -> anyhow::Result<Option<String>> {
    let row = sqlx::query("SELECT valid_until FROM runtime_feed WHERE id = 1")
        .fetch_optional(db.pool())
        .await?;
    let until: Option<String> = row.and_then(|row| row.get(0));
    let until = until.and_then(|until| DateTime::parse_from_rfc3339(&until).ok());
    Ok(match until {
        Some(until) if until > Utc::now() => None,
        Some(until) => Some(format!(
            "the app store's revocation feed expired at {} and the app cloud's nodes could not renew it, so no app can be confirmed as not revoked",
            until.to_rfc3339()
        )),
        None => Some(
            "the app store's revocation feed has not been read by any app cloud node yet, so no app can be confirmed as not revoked".into(),
        ),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use healthcloud_package::feed::Feed;
    use healthcloud_package::keys::{Purpose, SecretKey};

    fn answer(key: &SecretKey, since: i64, nonce: &str, issued: DateTime<Utc>) -> SignedFeed {
        let feed = Feed {
            store_key_id: key.public().id(),
            issued_at: issued.to_rfc3339(),
            expires_at: (issued + chrono::Duration::minutes(5)).to_rfc3339(),
            since,
            next: since,
            more: false,
            nonce: Some(nonce.to_owned()),
            entries: vec![],
        };
        let canonical = serde_json_canonicalizer::to_vec(&feed).unwrap();
        SignedFeed {
            signature: key.sign(Purpose::Revocations, &canonical),
            feed,
        }
    }

    #[test]
    fn only_a_fresh_answer_to_this_request_from_the_pinned_key_is_accepted() {
        let store = SecretKey::generate();
        let pinned = store.public();
        let now = Utc::now();
        let check = |signed: &SignedFeed, last: Option<DateTime<Utc>>, at: DateTime<Utc>| {
            check_answer(signed, &pinned, (7, "n1"), last, at).map_err(|e| format!("{e:#}"))
        };
        let good = answer(&store, 7, "n1", now);
        assert!(check(&good, None, now).is_ok());
        assert!(check(&good, Some(now), now).is_ok());

        let other_key = answer(&SecretKey::generate(), 7, "n1", now);
        assert!(
            check(&other_key, None, now)
                .unwrap_err()
                .contains("not signed by the store's key")
        );
        let replayed = answer(&store, 7, "n0", now);
        assert!(check(&replayed, None, now).unwrap_err().contains("nonce"));
        let other_cursor = answer(&store, 3, "n1", now);
        assert!(
            check(&other_cursor, None, now)
                .unwrap_err()
                .contains("asked from 7")
        );
        let later = now + chrono::Duration::minutes(6);
        assert!(check(&good, None, later).unwrap_err().contains("expired"));
        let older = answer(&store, 7, "n1", now - chrono::Duration::seconds(30));
        assert!(
            check(&older, Some(now), now)
                .unwrap_err()
                .contains("before the last one")
        );
        let mut tampered = good.clone();
        tampered.feed.since = 8;
        assert!(check(&tampered, None, now).is_err());
    }
}
