//! The authorization server's clients: SMART apps a region installed. The install is the
//! registration: its redirect URIs, and the region's grant that bounds every token the app
//! gets. Removing a client stops its authorizations, refreshes and introspections at once.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use healthcloud_platform::auth::Role;
use healthcloud_platform::scope::{Scope, ScopeContext};

/// One registered SMART app.
#[derive(Debug, Clone, PartialEq)]
pub struct Client {
    /// Its client id.
    pub client_id: String,
    /// Its display name, on the consent page.
    pub name: String,
    /// The app it is, `publisher/app` (audit records and consents name it as
    /// `Device/publisher.app`).
    pub app: String,
    /// The region that installed it: its tokens work in that region only.
    pub region: String,
    /// The redirect URIs it registered; a request must name one of them exactly.
    pub redirect_uris: Vec<String>,
    /// What it asked for, each with the vendor's justification (shown on the consent page).
    pub requested: Vec<(Scope, String)>,
    /// What the region granted it: no token carries a data scope outside it.
    pub grant: Vec<Scope>,
}

impl Client {
    /// The granted part of `asked`: each data scope that lies within one the region granted.
    pub fn narrow(&self, asked: &[Scope]) -> Vec<Scope> {
        asked
            .iter()
            .filter(|scope| self.grant.iter().any(|granted| scope.within(granted)))
            .cloned()
            .collect()
    }

    /// What a user of `role` may get of `asked`: the region's grant, and only scopes of a
    /// context the role can hold (`user/` for clinicians; never `system/`).
    pub fn narrow_for(&self, asked: &[Scope], role: Role) -> Vec<Scope> {
        self.narrow(asked)
            .into_iter()
            .filter(|scope| match scope.context {
                ScopeContext::Patient => true,
                ScopeContext::User => role == Role::Clinician,
                ScopeContext::System => false,
            })
            .collect()
    }
}

/// The registered clients, by client id. Cheap to clone (shared).
#[derive(Debug, Clone, Default)]
pub struct Clients {
    by_id: Arc<RwLock<HashMap<String, Arc<Client>>>>,
}

impl Clients {
    /// Registers `client`, replacing an earlier registration under its id. Its redirect URIs
    /// must be absolute URLs without a fragment (RFC 6749, section 3.1.2).
    pub fn register(&self, client: Client) -> Result<(), String> {
        for uri in &client.redirect_uris {
            match url::Url::parse(uri) {
                Ok(url) if url.fragment().is_none() && !url.cannot_be_a_base() => {}
                _ => {
                    return Err(format!(
                        "redirect URI '{uri}' of {} is not an absolute URL without a fragment",
                        client.client_id
                    ));
                }
            }
        }
        self.by_id
            .write()
            .expect("clients poisoned")
            .insert(client.client_id.clone(), Arc::new(client));
        Ok(())
    }

    /// Removes `client_id`; returns whether it was registered.
    pub fn remove(&self, client_id: &str) -> bool {
        self.by_id
            .write()
            .expect("clients poisoned")
            .remove(client_id)
            .is_some()
    }

    /// The client `client_id`, if registered.
    pub fn get(&self, client_id: &str) -> Option<Arc<Client>> {
        self.by_id
            .read()
            .expect("clients poisoned")
            .get(client_id)
            .cloned()
    }
}
