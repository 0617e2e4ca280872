//! `healthcloud:platform/kv@0.1.0`, for apps built against that version: the current host
//! calls (the same functions and errors).

use super::KvCtx;
use crate::bindings::kv as current;
use crate::bindings::v0_1::kv::{self, Error};

impl kv::Host for &mut KvCtx {
    async fn get(&mut self, key: String) -> Result<Option<Vec<u8>>, Error> {
        Ok(current::Host::get(self, key).await?)
    }

    async fn set(&mut self, key: String, value: Vec<u8>) -> Result<(), Error> {
        Ok(current::Host::set(self, key, value).await?)
    }

    async fn delete(&mut self, key: String) -> Result<(), Error> {
        Ok(current::Host::delete(self, key).await?)
    }

    async fn list_keys(&mut self, prefix: String) -> Result<Vec<String>, Error> {
        Ok(current::Host::list_keys(self, prefix).await?)
    }
}

impl From<current::Error> for Error {
    fn from(error: current::Error) -> Self {
        match error {
            current::Error::Denied(reason) => Error::Denied(reason),
            current::Error::QuotaExceeded(reason) => Error::QuotaExceeded(reason),
            current::Error::Invalid(reason) => Error::Invalid(reason),
            current::Error::Unavailable(reason) => Error::Unavailable(reason),
        }
    }
}
