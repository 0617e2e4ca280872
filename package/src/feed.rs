//! The store's revocation feed as it travels: an append-only list of revoked versions and
//! keys with a monotonic sequence, signed by the store's key with an expiry. A runtime that
//! polls `GET /store/v1/revocations?since=SEQ` learns what to stop serving, and one holding an
//! expired feed knows the feed is frozen rather than quiet. The store service makes and
//! serves it; this is what both ends agree on, and how the receiving end checks it.

use serde::{Deserialize, Serialize};

use crate::keys::{KeyError, KeyId, PublicKey, Purpose};

/// One revocation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct FeedEntry {
    /// Position in the feed; only grows.
    pub seq: i64,
    /// `version` (stop serving this version) or `key` (a key was revoked; every version it
    /// voids also has its own `version` entry).
    pub kind: String,
    /// The publisher.
    pub publisher: String,
    /// The app, for `version`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub app: Option<String>,
    /// The version, for `version`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// The key, for `key` (and for versions voided by a key).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_id: Option<String>,
    /// For `key`: only versions published from then on are void.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub compromised_since: Option<String>,
    /// Why, in words for the people affected.
    pub reason: String,
    /// When.
    pub at: String,
}

/// The signed part of a feed answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Feed {
    /// The key that signs the feed.
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub store_key_id: KeyId,
    /// When this answer was made.
    pub issued_at: String,
    /// After this, the answer proves nothing about the present: fetch again, and fail closed
    /// if the store cannot be reached.
    pub expires_at: String,
    /// The `since` asked for.
    pub since: i64,
    /// Ask from here next time.
    pub next: i64,
    /// Whether entries after `next` exist already.
    pub more: bool,
    /// The caller's nonce, signed back: a recorded answer cannot be replayed to it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nonce: Option<String>,
    /// Entries with `seq > since`, in order.
    pub entries: Vec<FeedEntry>,
}

/// A feed answer: the feed and the store's signature over its canonical JSON.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SignedFeed {
    /// What is signed.
    pub feed: Feed,
    /// base64 ed25519 signature (purpose "healthcloud revocations v1") over the RFC 8785
    /// JSON of `feed`.
    pub signature: String,
}

/// Why a feed answer is not to be trusted.
#[derive(Debug, thiserror::Error)]
pub enum FeedError {
    /// Not signed by the store's key.
    #[error("the revocation feed is not signed by the store's key: {0}")]
    Signature(#[from] KeyError),
    /// Past its expiry.
    #[error(
        "the revocation feed expired at {0}: the store cannot be reached or the feed is frozen"
    )]
    Expired(String),
}

impl SignedFeed {
    /// Checks the signature with the store's key and that the feed has not expired at `now`.
    pub fn verify(
        &self,
        store_key: &PublicKey,
        now: chrono::DateTime<chrono::Utc>,
    ) -> Result<(), FeedError> {
        let canonical = serde_json_canonicalizer::to_vec(&self.feed).expect("a feed serializes");
        store_key.verify(Purpose::Revocations, &canonical, &self.signature)?;
        let expired = chrono::DateTime::parse_from_rfc3339(&self.feed.expires_at)
            .map(|at| at <= now)
            .unwrap_or(true);
        if expired {
            return Err(FeedError::Expired(self.feed.expires_at.clone()));
        }
        Ok(())
    }
}

/// The key that signs the feed and the version records. A runtime pins it from its
/// configuration (`--store-key`); this is for setting that up over a channel one trusts.
#[derive(Debug, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct FeedKey {
    /// The key's id.
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub key_id: KeyId,
    /// Its 32 bytes, base64.
    pub public_key: String,
    /// PEM.
    pub pem: String,
}

/// The PostgreSQL channel notified when revocations commit: runtime nodes listening on it
/// fetch the feed at once instead of at their next poll.
pub const REVOCATIONS_CHANNEL: &str = "healthcloud_revocations";
