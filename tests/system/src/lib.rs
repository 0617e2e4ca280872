//! Tests of services composed through their public APIs (see `tests/`): the store with the
//! runtime's install-time check, and runtimes installing apps from a real store.
