//! Small app-private key-value state of a region install of the app, in partitions.
//!
//! Opened for a patient (capability `kv`), the app reaches only that patient's partition: no
//! launch for another patient, no other app and no other region's install sees it; the
//! patient's consent applies and every call is in the patient's audit log. Opened without a
//! patient, it reaches the install-wide partition shared by all such launches, and only with
//! the `kv-install` capability (never keep patient data there). Keys plus values count against
//! a quota per partition; a write that would exceed it fails and changes nothing.
//!
//! ```no_run
//! use healthcloud_sdk::kv;
//!
//! kv::set("settings/threshold", b"140")?;
//! assert_eq!(kv::get("settings/threshold")?.as_deref(), Some(&b"140"[..]));
//! for key in kv::list_keys("settings/")? {
//!     kv::delete(&key)?;
//! }
//! # Ok::<(), kv::Error>(())
//! ```

use std::fmt;

use crate::bindings::healthcloud::platform::kv as wit;

/// Why a key-value call failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Error {
    /// The region did not grant this app the `kv` capability (`kv-install` without a
    /// patient), or the patient's consent denies the app.
    Denied(String),
    /// The write would take the store over its quota; the reason gives the quota and use.
    QuotaExceeded(String),
    /// The key is empty or longer than 256 bytes, or the value is larger than the quota.
    Invalid(String),
    /// Storage could not be reached right now; retrying later may succeed.
    Unavailable(String),
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Denied(reason) => write!(f, "key-value access denied: {reason}"),
            Error::QuotaExceeded(reason) => write!(f, "key-value quota exceeded: {reason}"),
            Error::Invalid(reason) => write!(f, "invalid key-value call: {reason}"),
            Error::Unavailable(reason) => write!(f, "key-value store unavailable: {reason}"),
        }
    }
}

impl std::error::Error for Error {}

impl From<wit::Error> for Error {
    fn from(error: wit::Error) -> Error {
        match error {
            wit::Error::Denied(reason) => Error::Denied(reason),
            wit::Error::QuotaExceeded(reason) => Error::QuotaExceeded(reason),
            wit::Error::Invalid(reason) => Error::Invalid(reason),
            wit::Error::Unavailable(reason) => Error::Unavailable(reason),
        }
    }
}

/// Returns the value stored under `key`, or `None`.
pub fn get(key: &str) -> Result<Option<Vec<u8>>, Error> {
    Ok(wit::get(key)?)
}

/// Stores `value` under `key`, replacing any previous value.
pub fn set(key: &str, value: &[u8]) -> Result<(), Error> {
    Ok(wit::set(key, value)?)
}

/// Removes `key`; removing a missing key is not an error.
pub fn delete(key: &str) -> Result<(), Error> {
    Ok(wit::delete(key)?)
}

/// Lists the keys that start with `prefix` (all keys for ""), in byte order.
pub fn list_keys(prefix: &str) -> Result<Vec<String>, Error> {
    Ok(wit::list_keys(prefix)?)
}
