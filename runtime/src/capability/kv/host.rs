use healthcloud_integration::FhirError;
use healthcloud_package::manifest::Capability;
use healthcloud_platform::db::WriteTx;
use healthcloud_platform::scope::Interaction;

use super::store::{KvWriteError, Partition};
use super::{KvCtx, MAX_KEY_BYTES};
use crate::bindings::kv::{self, Error};

impl kv::Host for &mut KvCtx {
    async fn get(&mut self, key: String) -> Result<Option<Vec<u8>>, Error> {
        check_key(&key)?;
        let store = self.store.clone();
        self.in_partition(
            Interaction::Read,
            format!("key={key}"),
            async |tx, partition| Ok(store.get(tx, partition, &key).await?),
        )
        .await
    }

    async fn set(&mut self, key: String, value: Vec<u8>) -> Result<(), Error> {
        check_key(&key)?;
        let quota = self.quota;
        if value.len() as u64 > quota {
            return Err(Error::Invalid(format!(
                "the value is {} bytes; the whole store holds at most {quota} bytes",
                value.len(),
            )));
        }
        let store = self.store.clone();
        self.in_partition(Interaction::Update, format!("key={key}"), async |tx, partition| {
            match store.set(tx, partition, &key, &value, quota).await {
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
        check_key(&key)?;
        let store = self.store.clone();
        self.in_partition(
            Interaction::Delete,
            format!("key={key}"),
            async |tx, partition| Ok(store.delete(tx, partition, &key).await?),
        )
        .await
    }

    async fn list_keys(&mut self, prefix: String) -> Result<Vec<String>, Error> {
        let store = self.store.clone();
        self.in_partition(
            Interaction::Search,
            format!("prefix={prefix}"),
            async |tx, partition| Ok(store.keys(tx, partition, &prefix).await?),
        )
        .await
    }
}

fn check_key(key: &str) -> Result<(), Error> {
    if key.is_empty() || key.len() > MAX_KEY_BYTES {
        return Err(Error::Invalid(format!(
            "keys are 1 to {MAX_KEY_BYTES} bytes, not {}",
            key.len()
        )));
    }
    Ok(())
}

impl KvCtx {
    /// Runs `call` in the partition this launch reaches, under the host-call time limit, with
    /// the grant checked now (not at instantiation). A launch for a patient reaches that
    /// patient's partition: the patient's consent is checked first and the call is filed in
    /// the patient's log in the same transaction as its work. A launch without a patient
    /// reaches the install-wide partition, and only with `kv-install` granted.
    async fn in_partition<T>(
        &self,
        interaction: Interaction,
        what: String,
        call: impl AsyncFnOnce(&mut WriteTx, Partition<'_>) -> Result<T, Error>,
    ) -> Result<T, Error> {
        let work = async {
            let context = self.access();
            let Some(patient) = context.patient() else {
                if !self.grant.allows(&Capability::KvInstall) {
                    return Err(Error::Denied(format!(
                        "this launch has no patient in context, and region {} has not granted {} \
                         the kv-install capability (state shared by every launch without a patient)",
                        self.app.region, self.app.id
                    )));
                }
                let partition = self.partition("");
                let mut tx = self.store.begin().await?;
                let value = call(&mut tx, partition).await?;
                tx.commit().await?;
                return Ok(value);
            };
            if !self.grant.allows(&Capability::Kv) {
                return Err(Error::Denied(format!(
                    "region {} has not granted {} the kv capability",
                    self.app.region, self.app.id
                )));
            }
            let mut access = self
                .service
                .app_state(&context, interaction, &what)
                .await
                .map_err(refused)?;
            let value = call(access.tx(), self.partition(patient)).await?;
            access.commit().await.map_err(refused)?;
            Ok(value)
        };
        tokio::time::timeout(self.timeout, work)
            .await
            .unwrap_or_else(|_| {
                Err(Error::Unavailable(
                    "the call took longer than its limit".into(),
                ))
            })
    }

    fn partition<'a>(&'a self, patient: &'a str) -> Partition<'a> {
        Partition {
            region: &self.app.region,
            app: &self.app.id,
            patient,
        }
    }
}

/// The integration cloud's refusal as the guest sees it: consent and policy are `denied`.
fn refused(error: FhirError) -> Error {
    match error {
        FhirError::Forbidden(_) | FhirError::ConsentDenied => Error::Denied(error.to_string()),
        FhirError::Internal(cause) => {
            tracing::error!(error = format!("{cause:#}"), "kv audit failed");
            Error::Unavailable("storage failed; the error is in the host log".into())
        }
        other => Error::Unavailable(other.to_string()),
    }
}

impl From<sqlx::Error> for Error {
    fn from(error: sqlx::Error) -> Self {
        tracing::error!(%error, "kv storage failed");
        Error::Unavailable("storage failed; the error is in the host log".into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bindings::kv::Host as _;
    use crate::capability::kv::Kv;
    use crate::capability::testing::TestEnvironment;

    #[tokio::test]
    async fn a_write_past_the_quota_is_refused_with_the_numbers() {
        let env = TestEnvironment::new()
            .await
            .requesting(&["kv-install"])
            .limits(|limits| limits.kv_quota_bytes = 16);
        let mut ctx = env.instance::<Kv>().unwrap();
        let mut host = &mut ctx;
        host.set("a".into(), vec![0; 9]).await.unwrap();
        // Replacing a key counts its new size only.
        host.set("a".into(), vec![1; 9]).await.unwrap();
        let refused = host.set("b".into(), vec![0; 9]).await.unwrap_err();
        let Error::QuotaExceeded(message) = refused else {
            panic!("not a quota refusal: {refused:?}");
        };
        assert_eq!(
            message,
            "10 of 16 bytes are used and this write needs 10: delete keys first"
        );
        assert_eq!(host.get("a".into()).await.unwrap(), Some(vec![1; 9]));
        assert_eq!(host.get("b".into()).await.unwrap(), None);
        let too_big = host.set("c".into(), vec![0; 17]).await.unwrap_err();
        assert!(
            matches!(&too_big, Error::Invalid(m) if m.contains("at most 16 bytes")),
            "{too_big:?}"
        );
    }

    #[tokio::test]
    async fn the_install_wide_partition_needs_kv_install_granted() {
        let env = TestEnvironment::new()
            .await
            .requesting(&["kv", "kv-install"])
            .granting(&["kv"]);
        let mut ctx = env.instance::<Kv>().unwrap();
        let refused = (&mut ctx).get("a".into()).await.unwrap_err();
        let Error::Denied(message) = refused else {
            panic!("not a denial: {refused:?}");
        };
        assert!(
            message.contains("has not granted tests/harness the kv-install capability"),
            "{message}"
        );
    }

    #[tokio::test]
    async fn keys_are_one_to_256_bytes() {
        let env = TestEnvironment::new().await.requesting(&["kv-install"]);
        let mut ctx = env.instance::<Kv>().unwrap();
        let mut host = &mut ctx;
        for key in [String::new(), "k".repeat(MAX_KEY_BYTES + 1)] {
            let refused = host.set(key, vec![1]).await.unwrap_err();
            assert!(
                matches!(&refused, Error::Invalid(m) if m.starts_with("keys are 1 to 256 bytes")),
                "{refused:?}"
            );
        }
    }
}
