//! The authorization server's clients: SMART apps a region installed. The install is the
//! registration: its redirect URIs, and the region's grant that bounds every token the app
//! gets. Removing a client stops its authorizations, refreshes and introspections at once.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use healthcloud_platform::scope::Scope;

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
}

/// The registered clients, by client id. Cheap to clone (shared).
#[derive(Debug, Clone, Default)]
pub struct Clients {
    by_id: Arc<RwLock<HashMap<String, Arc<Client>>>>,
}

impl Clients {
    /// Registers `client`, replacing an earlier registration under its id.
    pub fn register(&self, client: Client) {
        self.by_id
            .write()
            .expect("clients poisoned")
            .insert(client.client_id.clone(), Arc::new(client));
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
