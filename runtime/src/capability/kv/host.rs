use std::future::Future;

use healthcloud_store::manifest::Capability;

use super::store::KvWriteError;
use super::{KvCtx, MAX_KEY_BYTES};
use crate::bindings::kv::{self, Error};

impl kv::Host for &mut KvCtx {
    async fn get(&mut self, key: String) -> Result<Option<Vec<u8>>, Error> {
        self.checked(&key, async {
            Ok(self.store.get(&self.app.region, &self.app.id, &key).await?)
        })
        .await
    }

    async fn set(&mut self, key: String, value: Vec<u8>) -> Result<(), Error> {
        self.checked(&key, async {
            if value.len() as u64 > self.quota {
                return Err(Error::Invalid(format!(
                    "the value is {} bytes; the whole store holds at most {} bytes",
                    value.len(),
                    self.quota
                )));
            }
            let namespace = (self.app.region.as_str(), self.app.id.as_str());
            match self.store.set(namespace, &key, &value, self.quota).await {
                Ok(()) => Ok(()),
                Err(KvWriteError::Quota { used, quota, needed }) => Err(Error::QuotaExceeded(format!(
                    "{used} of {quota} bytes are used and this write needs {needed}: delete keys first"
                ))),
                Err(KvWriteError::Storage(error)) => Err(error.into()),
            }
        })
        .await
    }

    async fn delete(&mut self, key: String) -> Result<(), Error> {
        self.checked(&key, async {
            Ok(self
                .store
                .delete(&self.app.region, &self.app.id, &key)
                .await?)
        })
        .await
    }

    async fn list_keys(&mut self, prefix: String) -> Result<Vec<String>, Error> {
        self.checked("-", async {
            Ok(self
                .store
                .keys(&self.app.region, &self.app.id, &prefix)
                .await?)
        })
        .await
    }
}

impl KvCtx {
    /// Checks the grant (now, not at instantiation) and the key, then runs the call under
    /// the host-call time limit.
    async fn checked<T>(
        &self,
        key: &str,
        call: impl Future<Output = Result<T, Error>>,
    ) -> Result<T, Error> {
        if !self.grant.allows(&Capability::Kv) {
            return Err(Error::Denied(format!(
                "region {} has not granted {} the kv capability",
                self.app.region, self.app.id
            )));
        }
        if key.is_empty() || key.len() > MAX_KEY_BYTES {
            return Err(Error::Invalid(format!(
                "keys are 1 to {MAX_KEY_BYTES} bytes, not {}",
                key.len()
            )));
        }
        tokio::time::timeout(self.timeout, call)
            .await
            .unwrap_or_else(|_| {
                Err(Error::Unavailable(
                    "the call took longer than its limit".into(),
                ))
            })
    }
}

impl From<sqlx::Error> for Error {
    fn from(error: sqlx::Error) -> Self {
        tracing::error!(%error, "kv storage failed");
        Error::Unavailable("storage failed; the error is in the host log".into())
    }
}
