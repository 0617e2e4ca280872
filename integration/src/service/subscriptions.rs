//! Topic-based subscriptions (FHIR R5 topics as the R4 backport carries them, usable from R4
//! clients): a client subscribes to one of the platform's [`topics`](crate::topics), narrowed
//! by a filter that is a search it may run now, and healthcloud tells its endpoint
//! (`rest-hook`) when a write triggers the topic.
//!
//! Every write of a topic's type records a change in the write's own transaction
//! (`change_events`), so no change is lost to a crash. Each node's dispatcher, woken by the
//! writes it commits and every [`POLL`] for the others', takes a subscription at a time under
//! a lease (no two nodes deliver the same one) and walks the changes after its cursor in
//! order. A change is delivered only when the subscriber may read the resource *now*: the
//! subscriber's authorization is checked again (an uninstall, a changed install or a revoked
//! authorization ends the subscription), and the filter, the subscriber's scopes, the region's
//! grant and the patient's consent are held to the resource as one search, the same the
//! subscriber's own would be. Each delivered notification is in the patient's log before it
//! leaves. A failed delivery is retried with back-off, the subscription in `error` meanwhile,
//! and nothing after it is sent before it (order holds).

use std::collections::HashMap;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use healthcloud_platform::auth::{Claims, Principal};
use healthcloud_platform::scope::{Interaction, Scope};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use sqlx::Row as _;
use tokio::sync::{mpsc, oneshot};

use super::{FhirService, Pending};
use crate::date;
use crate::error::FhirError;
use crate::params::type_def;
use crate::policy::{AccessContext, authorize};
use crate::query::{ConsentExclusion, Constraints, SearchQuery};
use crate::topics::{self, Topic};
use crate::webhook::{self, EndpointPolicy, Webhooks};

/// How often a node looks for changes other nodes wrote (its own wake it at once), and for
/// heartbeats and retries that are due.
pub const POLL: Duration = Duration::from_millis(500);

/// How long a gap in the changes' order is waited for: on PostgreSQL a change numbered
/// before another may commit after it (or never, when its write rolls back).
const GAP_WAIT_MS: i64 = 2_000;

/// How often a node forgets what is no longer needed.
const TIDY_EVERY_MS: i64 = 60_000;

/// How long a switched-off subscription is kept, for its owner to read why.
const KEEP_OFF_MS: i64 = 24 * 3600 * 1000;

/// How long a change is kept at least, every subscription past it or not.
const KEEP_CHANGES_MS: i64 = 3600 * 1000;

/// Websockets one subscription may have bound at once, on one node.
const MAX_SOCKETS: usize = 4;

/// How long a node holds a subscription it delivers.
const LEASE_MS: i64 = 60_000;

/// The first retry after a failed delivery; each next one waits twice as long, up to
/// [`MAX_BACKOFF_MS`].
const FIRST_BACKOFF_MS: i64 = 500;
const MAX_BACKOFF_MS: i64 = 60_000;

/// Notifications taken before their cursor is noted (and at the end of each pass).
const NOTE_EVERY: i64 = 20;

/// Changes looked at in one pass over a subscription.
const BATCH: i64 = 200;

/// Subscriptions one subscriber may hold.
pub const MAX_PER_SUBSCRIBER: i64 = 20;

/// The longest life of a subscription made with an app's token (one of healthcloud's
/// authorization server); one made with another token lives as long as the token.
pub const MAX_LIFETIME_MS: i64 = 30 * 24 * 3600 * 1000;

/// The backport IG's extensions.
const BACKPORT: &str = "http://hl7.org/fhir/uv/subscriptions-backport/StructureDefinition";

/// Where a subscription's secret is shown, once, in the answer that made it.
pub const SECRET_EXTENSION: &str =
    "https://healthcloud.example/fhir/StructureDefinition/notification-secret";

/// Turns a subscriber's kept claims into the access they have now (or why they have none):
/// the FHIR API's own view of a caller, given by the API when it starts delivery.
pub type Resolver = Arc<dyn Fn(Principal) -> Result<AccessContext, FhirError> + Send + Sync>;

/// What delivery needs from the deployment.
pub struct Delivery {
    /// Which endpoints may be notified.
    pub policy: EndpointPolicy,
    /// The FHIR base URL notifications name resources under.
    pub base_url: String,
    /// The subscriber's access now.
    pub resolve: Resolver,
}

/// The subscriptions of a service: the wake-up of its dispatcher and what delivery needs.
#[derive(Clone, Default)]
pub struct Subscriptions {
    inner: Arc<Inner>,
}

#[derive(Default)]
struct Inner {
    wake: tokio::sync::Notify,
    delivery: OnceLock<(Delivery, Webhooks)>,
    /// The websockets bound on this node, by subscription.
    sockets: Mutex<HashMap<String, Vec<Socket>>>,
    /// When this node last tidied (epoch ms).
    tidied: AtomicI64,
    /// How many times the dispatcher was woken: a pass that sees it change was running
    /// while something was committed, and wakes it again.
    wakes: AtomicI64,
}

/// A bound websocket: each notification goes with a reply saying whether it was sent.
pub type Socket = mpsc::UnboundedSender<(String, oneshot::Sender<bool>)>;

/// How long a websocket binding token is good for.
pub const BINDING_TOKEN_MS: i64 = 5 * 60 * 1000;

impl std::fmt::Debug for Subscriptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Subscriptions")
            .field("delivering", &self.inner.delivery.get().is_some())
            .finish()
    }
}

impl Subscriptions {
    /// Tells the dispatcher that changes were committed.
    pub fn wake(&self) {
        self.inner.wakes.fetch_add(1, Ordering::SeqCst);
        self.inner.wake.notify_one();
    }

    /// Binds a websocket to subscription `id` on this node; refused (`false`) when
    /// [`MAX_SOCKETS`] are bound to it already.
    pub fn bind_socket(&self, id: &str, socket: Socket) -> bool {
        let mut sockets = self.inner.sockets.lock().expect("sockets lock");
        let bound = sockets.entry(id.to_owned()).or_default();
        bound.retain(|socket| !socket.is_closed());
        if bound.len() >= MAX_SOCKETS {
            return false;
        }
        bound.push(socket);
        drop(sockets);
        self.wake();
        true
    }

    /// Forgets the websockets of this node that closed.
    pub fn forget_closed_sockets(&self) {
        let mut sockets = self.inner.sockets.lock().expect("sockets lock");
        for bound in sockets.values_mut() {
            bound.retain(|socket| !socket.is_closed());
        }
        sockets.retain(|_, bound| !bound.is_empty());
    }

    /// Whether a websocket is bound to `id` on this node.
    fn has_socket(&self, id: &str) -> bool {
        let sockets = self.inner.sockets.lock().expect("sockets lock");
        sockets
            .get(id)
            .is_some_and(|bound| bound.iter().any(|s| !s.is_closed()))
    }

    /// Sends `body` over every websocket bound to `id` here: `Ok` once one of them sent it.
    async fn send_socket(&self, id: &str, body: String) -> Result<(), String> {
        let bound: Vec<Socket> = {
            let sockets = self.inner.sockets.lock().expect("sockets lock");
            sockets.get(id).cloned().unwrap_or_default()
        };
        let mut sent = false;
        for socket in bound {
            let (reply, answer) = oneshot::channel();
            if socket.send((body.clone(), reply)).is_ok()
                && let Ok(Ok(true)) = tokio::time::timeout(webhook::TIMEOUT, answer).await
            {
                sent = true;
            }
        }
        self.forget_closed_sockets();
        match sent {
            true => Ok(()),
            false => Err("no websocket bound to the subscription took it".into()),
        }
    }

    fn delivery(&self) -> Result<&(Delivery, Webhooks), FhirError> {
        self.inner.delivery.get().ok_or_else(|| {
            FhirError::Unavailable("subscriptions are not delivered by this server".into())
        })
    }
}

/// How much of the resource a notification carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Content {
    Empty,
    IdOnly,
    FullResource,
}

/// Where notifications go.
enum Channel {
    /// POSTed to the subscriber's endpoint, with its headers.
    RestHook {
        endpoint: String,
        headers: Vec<(String, String)>,
    },
    /// Sent over the websockets bound to the subscription (`$get-ws-binding-token`, then
    /// `bind-with-token` on `[base]/$subscription-ws`).
    WebSocket,
}

/// A Subscription as checked: what delivery reads of it.
struct Parsed {
    topic: &'static Topic,
    filter: Vec<(String, String)>,
    channel: Channel,
    content: Content,
    heartbeat_ms: i64,
    end: Option<i64>,
}

/// The value of the extension `url` among `extensions`.
fn extension<'a>(holder: &'a Value, url: &str) -> impl Iterator<Item = &'a Value> {
    (holder["extension"].as_array().into_iter().flatten()).filter(move |e| e["url"] == url)
}

fn invalid(path: &str, message: impl Into<String>) -> FhirError {
    FhirError::invalid(format!("Subscription.{path}"), message)
}

impl Parsed {
    /// Checks a Subscription as a client sends it.
    fn from_resource(resource: &Value, policy: EndpointPolicy) -> Result<Parsed, FhirError> {
        if resource["resourceType"] != "Subscription" {
            return Err(FhirError::BadRequest(
                "the body is not a Subscription".into(),
            ));
        }
        let known = || {
            (topics::TOPICS.iter())
                .map(|t| t.url)
                .collect::<Vec<_>>()
                .join(", ")
        };
        let criteria = resource["criteria"].as_str().unwrap_or_default();
        let topic = topics::topic(criteria).ok_or_else(|| {
            invalid(
                "criteria",
                format!(
                    "'{criteria}' is not a topic of this server: one of {}",
                    known()
                ),
            )
        })?;
        let mut filter = Vec::new();
        for (i, criterion) in extension(
            &resource["_criteria"],
            &format!("{BACKPORT}/backport-filter-criteria"),
        )
        .enumerate()
        {
            let path = format!("criteria.extension[{i}]");
            let text = criterion["valueString"].as_str().unwrap_or_default();
            let Some((resource_type, query)) = text.split_once('?') else {
                return Err(invalid(
                    &path,
                    format!(
                        "'{text}' is not '{}?<param>=<value>&…'",
                        topic.resource_type
                    ),
                ));
            };
            if resource_type != topic.resource_type {
                return Err(invalid(
                    &path,
                    format!(
                        "the topic is about {}, not {resource_type}",
                        topic.resource_type
                    ),
                ));
            }
            for (name, value) in url::form_urlencoded::parse(query.as_bytes()) {
                if !topic.filters.contains(&name.as_ref()) {
                    return Err(invalid(
                        &path,
                        format!(
                            "'{name}' is not a filter of this topic: {}",
                            topic.filters.join(", ")
                        ),
                    ));
                }
                filter.push((name.into_owned(), value.into_owned()));
            }
        }
        let channel = &resource["channel"];
        let rest_hook = match channel["type"].as_str() {
            Some("rest-hook") => true,
            Some("websocket") => false,
            Some(other) => {
                return Err(invalid(
                    "channel.type",
                    format!("'{other}' is not supported here: use rest-hook or websocket"),
                ));
            }
            None => return Err(invalid("channel.type", "required: rest-hook or websocket")),
        };
        if let Some(payload) = channel["payload"].as_str()
            && payload != "application/fhir+json"
        {
            return Err(invalid(
                "channel.payload",
                "notifications are application/fhir+json",
            ));
        }
        let content = match extension(
            &channel["_payload"],
            &format!("{BACKPORT}/backport-payload-content"),
        )
        .next()
        .map(|e| e["valueCode"].as_str().unwrap_or_default())
        {
            None | Some("id-only") => Content::IdOnly,
            Some("empty") => Content::Empty,
            Some("full-resource") => Content::FullResource,
            Some(other) => {
                return Err(invalid(
                    "channel.payload.extension",
                    format!("'{other}' is not empty, id-only or full-resource"),
                ));
            }
        };
        let lines: Vec<String> = (channel["header"].as_array().into_iter().flatten())
            .map(|line| line.as_str().map(str::to_owned).ok_or(()))
            .collect::<Result<_, _>>()
            .map_err(|()| invalid("channel.header", "each header is a string 'Name: value'"))?;
        let headers =
            webhook::check_headers(&lines).map_err(|why| invalid("channel.header", why))?;
        let channel_to = match rest_hook {
            true => {
                let endpoint = channel["endpoint"].as_str().unwrap_or_default();
                let endpoint = webhook::check_endpoint(endpoint, policy)
                    .map_err(|why| invalid("channel.endpoint", why))?
                    .to_string();
                Channel::RestHook { endpoint, headers }
            }
            false if channel.get("endpoint").is_some() || !headers.is_empty() => {
                return Err(invalid(
                    "channel",
                    "a websocket subscription has no endpoint or headers: its client binds a websocket to it",
                ));
            }
            false => Channel::WebSocket,
        };
        let heartbeat_ms =
            match extension(channel, &format!("{BACKPORT}/backport-heartbeat-period")).next() {
                None => 0,
                Some(e) => match e["valueUnsignedInt"].as_u64() {
                    Some(seconds @ 1..=86_400) => seconds as i64 * 1000,
                    _ => {
                        return Err(invalid(
                            "channel.extension",
                            "the heartbeat period is 1 to 86400 seconds (valueUnsignedInt)",
                        ));
                    }
                },
            };
        let end = match resource["end"].as_str() {
            None => None,
            Some(text) => Some(
                date::parse(text)
                    .map(|range| range.lo)
                    .ok_or_else(|| invalid("end", "not a valid instant"))?,
            ),
        };
        Ok(Parsed {
            topic,
            filter,
            channel: channel_to,
            content,
            heartbeat_ms,
            end,
        })
    }

    /// The search a change must match to be delivered: the filter, the resource's id, and
    /// the subscriber's constraints and consent now.
    fn query(
        &self,
        context: &AccessContext,
        id: &str,
        service: &FhirService,
    ) -> Result<SearchQuery, FhirError> {
        let type_def = type_def(self.topic.resource_type).expect("topics name served types");
        let groups = authorize(context, Interaction::Search, type_def)?;
        let mut params = self.filter.clone();
        params.push(("_id".into(), id.to_owned()));
        let mut query = SearchQuery::parse(type_def.name, &params, service.limits)?;
        let actors = context.consent_actors();
        query.constraints = Constraints {
            groups,
            consent: (!actors.is_empty()).then(|| ConsentExclusion {
                actors,
                at: date::now_ms(),
            }),
        };
        Ok(query)
    }
}

/// The subscriber as kept: the claims its notifications are checked under.
#[derive(Serialize, Deserialize)]
struct Subscriber {
    claims: Claims,
}

/// The columns [`row_of`] reads.
const COLUMNS: &str = "id, resource, subscriber, status, error, secret, end_at, events_since_start, cursor, \
    last_sent, failures, binding_key";

/// One subscription's row.
struct SubscriptionRow {
    id: String,
    resource: Value,
    subscriber: String,
    status: String,
    error: Option<String>,
    secret: String,
    end_at: i64,
    events_since_start: i64,
    cursor: i64,
    last_sent: i64,
    failures: i64,
    binding_key: String,
}

/// A statement run in a write transaction of its own: on SQLite, writers take turns in
/// process ([`Database::begin_write`](healthcloud_platform::db::Database::begin_write)), and
/// the dispatcher's writes must too.
trait ExecuteIn {
    async fn execute_in(self, service: &FhirService) -> Result<u64, FhirError>;
}

impl<'q> ExecuteIn for sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments<'q>> {
    async fn execute_in(self, service: &FhirService) -> Result<u64, FhirError> {
        let mut tx = service.store.database().begin_write().await?;
        let done = self.execute(&mut *tx.tx).await?;
        tx.commit().await?;
        Ok(done.rows_affected())
    }
}

/// Who a caller's subscriptions belong to: the issuer, the app (client), the user, the
/// patient they act for (one user acting for two patients holds two sets), and the role and
/// scopes they act with (a narrower token of the same user does not take over what a broader
/// one made, whose notifications are checked under the broader one's scopes).
fn owner(context: &AccessContext) -> String {
    use sha2::Digest as _;
    let claims = &context.principal.claims;
    let acting = sha2::Sha256::digest(format!("{} {}", claims.role.as_str(), claims.scope));
    format!(
        "{} {} {} {} {}",
        claims.iss,
        claims.client_id.as_deref().unwrap_or("-"),
        claims.sub,
        claims.patient.as_deref().unwrap_or("-"),
        hex::encode(&acting[..8])
    )
}

impl FhirService {
    /// Starts delivering notifications (once; later calls change nothing): the FHIR API
    /// calls it when it is mounted, with its view of callers.
    pub fn start_subscriptions(&self, delivery: Delivery) {
        let webhooks = Webhooks::new(delivery.policy);
        // The first call sets delivery up and starts the dispatcher; later ones find it set.
        let inner = &self.subscriptions.inner;
        if inner.delivery.set((delivery, webhooks)).is_err()
            || tokio::runtime::Handle::try_current().is_err()
        {
            return;
        }
        let service = self.clone();
        tokio::spawn(async move {
            loop {
                if let Err(error) = service.deliver_due().await {
                    tracing::warn!(%error, "subscription delivery");
                }
                let wake = service.subscriptions.inner.wake.notified();
                tokio::select! {
                    () = wake => {}
                    () = tokio::time::sleep(POLL) => {}
                }
            }
        });
    }

    /// Records, in `tx`, a write a topic may be about.
    pub(crate) async fn record_change(
        &self,
        tx: &mut healthcloud_platform::db::WriteTx,
        resource_type: &str,
        id: &str,
        version_id: i64,
        patient: Option<&str>,
        deleted: bool,
    ) -> Result<(), FhirError> {
        if !topics::triggers(resource_type) {
            return Ok(());
        }
        sqlx::query(
            "INSERT INTO change_events (resource_type, resource_id, version_id, patient_id, deleted, recorded) \
             VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(resource_type)
        .bind(id)
        .bind(version_id)
        .bind(patient)
        .bind(i64::from(deleted))
        .bind(date::now_ms())
        .execute(&mut *tx.tx)
        .await?;
        Ok(())
    }

    /// Its subscriptions (to bind websockets to them).
    pub fn subscriptions(&self) -> &Subscriptions {
        &self.subscriptions
    }

    /// Makes a subscription for `context`: its filter must be a search the caller may run
    /// now, and its endpoint must answer the handshake. Returns it as stored, with its secret
    /// (shown this once).
    pub async fn subscription_create(
        &self,
        context: &AccessContext,
        resource: Value,
    ) -> Result<Value, FhirError> {
        self.admit(context)?;
        let mut audit = Pending::new(context, Interaction::Create, "Subscription");
        let result = self.subscribe(context, resource, &mut audit).await;
        self.finish(audit, result).await
    }

    async fn subscribe(
        &self,
        context: &AccessContext,
        mut resource: Value,
        audit: &mut Pending<'_>,
    ) -> Result<Value, FhirError> {
        let (delivery, webhooks) = self.subscriptions.delivery()?;
        let parsed = Parsed::from_resource(&resource, delivery.policy)?;
        let type_def = type_def(parsed.topic.resource_type).expect("topics name served types");
        authorize(context, Interaction::Search, type_def).map_err(|_| {
            FhirError::Forbidden(format!(
                "you may not search {}, so you cannot subscribe to '{}'",
                type_def.name, parsed.topic.title
            ))
        })?;
        // The filter is a search the subscriber may run: one naming a patient out of reach
        // is refused here as that search is (and recorded as a probe).
        let mut probe = parsed.filter.clone();
        probe.push(("_count".into(), "1".into()));
        let mut search = Pending::new(context, Interaction::Search, type_def.name);
        search.query = Some(super::encode(&probe));
        let query = SearchQuery::parse(type_def.name, &probe, self.limits)?;
        let checked = self.search_checked(context, query, &mut search).await;
        audit.absorb(search);
        checked?;
        // A search for another patient answers a confined caller with nothing (and a probe
        // in the security log); a subscription to it is refused outright.
        if super::confined(context)
            && let Some(other) =
                (audit.patients.iter()).find(|p| Some(p.as_str()) != context.patient())
        {
            return Err(FhirError::Forbidden(format!(
                "you may follow your own record only, not Patient/{other}"
            )));
        }
        let db = self.store.database();
        let owner = owner(context);
        let now = date::now_ms();
        let claims = &context.principal.claims;
        // An app of healthcloud's authorization server (a backend service is always one):
        // its install's life bounds the subscription; another token's own expiry does.
        let lifetime = match context.app.is_some() {
            true => now + MAX_LIFETIME_MS,
            false => claims.exp.saturating_mul(1000),
        };
        let end = parsed.end.map_or(lifetime, |end| end.min(lifetime));
        if end <= now {
            return Err(invalid(
                "end",
                "the subscription would end before it starts",
            ));
        }
        let id = crate::import::new_id();
        let secret = hex::encode(rand::random::<[u8; 32]>());
        resource["id"] = json!(id);
        resource["status"] = json!("active");
        resource["end"] = json!(date::instant(end));
        resource["meta"] = json!({"versionId": "1", "lastUpdated": date::instant(now)});
        if let Some(object) = resource.as_object_mut() {
            object.remove("error");
        }
        let subscription_url = format!("{}/Subscription/{id}", delivery.base_url);
        let handshake = notification(&subscription_url, parsed.topic, "handshake", 0, "requested");
        let subscriber = serde_json::to_string(&Subscriber {
            claims: claims.clone(),
        })
        .map_err(|e| FhirError::Internal(e.into()))?;
        // Counted and made in one transaction, one subscriber's at a time on every node; it
        // is `requested` (not delivered) until its endpoint took the handshake.
        let mut tx = db.begin_write().await?;
        db.lock(&mut tx.tx, &format!("subscriptions {owner}"))
            .await?;
        let held: i64 = sqlx::query("SELECT COUNT(*) FROM subscriptions WHERE owner = $1")
            .bind(&owner)
            .fetch_one(&mut *tx.tx)
            .await?
            .try_get(0)?;
        if held >= MAX_PER_SUBSCRIBER {
            return Err(FhirError::Conflict(format!(
                "you hold {held} subscriptions (one switched off is kept a day, for its status): delete one before making another"
            )));
        }
        let cursor: i64 = sqlx::query("SELECT COALESCE(MAX(seq), 0) FROM change_events")
            .fetch_one(&mut *tx.tx)
            .await?
            .try_get(0)?;
        sqlx::query(
            "INSERT INTO subscriptions (id, owner, subscriber, resource, topic, status, error, secret, binding_key, \
             end_at, events_since_start, cursor, last_sent, retry_at, failures, lease_until, created, ended_at) \
             VALUES ($1, $2, $3, $4, $5, 'requested', NULL, $6, $7, $8, 0, $9, $10, 0, 0, 0, $11, 0)",
        )
        .bind(&id)
        .bind(&owner)
        .bind(subscriber)
        .bind(resource.to_string())
        .bind(parsed.topic.url)
        .bind(&secret)
        .bind(hex::encode(rand::random::<[u8; 32]>()))
        .bind(end)
        .bind(cursor)
        .bind(now)
        .bind(now)
        .execute(&mut *tx.tx)
        .await?;
        tx.commit().await?;
        if let Channel::RestHook { endpoint, headers } = &parsed.channel
            && let Err(why) =
                (webhooks.post(endpoint, headers, handshake.to_string(), &secret)).await
        {
            sqlx::query("DELETE FROM subscriptions WHERE id = $1")
                .bind(&id)
                .execute_in(self)
                .await?;
            return Err(invalid(
                "channel.endpoint",
                format!("the endpoint did not take the handshake: {why}"),
            ));
        }
        sqlx::query(
            "UPDATE subscriptions SET status = 'active' WHERE id = $1 AND status = 'requested'",
        )
        .bind(&id)
        .execute_in(self)
        .await?;
        audit.resource_id = Some(id);
        let mut answer = resource;
        let extensions = answer["extension"].as_array().cloned().unwrap_or_default();
        let mut extensions: Vec<Value> = extensions
            .into_iter()
            .filter(|e| e["url"] != SECRET_EXTENSION)
            .collect();
        extensions.push(json!({"url": SECRET_EXTENSION, "valueString": secret}));
        answer["extension"] = json!(extensions);
        Ok(answer)
    }

    /// The caller's subscription `id` (another's is as unknown as none), the caller admitted
    /// first (a caller refused too often waits).
    async fn subscription_row(
        &self,
        context: &AccessContext,
        id: &str,
    ) -> Result<SubscriptionRow, FhirError> {
        self.admit(context)?;
        (self.subscription_by_id(id, Some(owner(context))).await?)
            .ok_or_else(|| FhirError::NotFound(format!("no Subscription/{id} of yours")))
    }

    /// Subscription `id` (only if `owner`'s, when given).
    async fn subscription_by_id(
        &self,
        id: &str,
        owner: Option<String>,
    ) -> Result<Option<SubscriptionRow>, FhirError> {
        let db = self.store.database();
        let mut sql = db.sql(&format!("SELECT {COLUMNS} FROM subscriptions WHERE id = "));
        sql.bind(id);
        if let Some(owner) = owner {
            sql.push(" AND owner = ").bind(owner);
        }
        let row = sql.query().fetch_optional(db.pool()).await?;
        row.as_ref().map(row_of).transpose()
    }

    /// The caller's subscription `id`, as it stands.
    pub async fn subscription_read(
        &self,
        context: &AccessContext,
        id: &str,
    ) -> Result<Value, FhirError> {
        let row = self.subscription_row(context, id).await?;
        Ok(shown(&row))
    }

    /// The caller's subscriptions.
    pub async fn subscription_list(
        &self,
        context: &AccessContext,
    ) -> Result<Vec<Value>, FhirError> {
        self.admit(context)?;
        let rows = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM subscriptions WHERE owner = $1 ORDER BY created"
        ))
        .bind(owner(context))
        .fetch_all(self.store.database().pool())
        .await?;
        rows.iter()
            .map(|row| row_of(row).map(|row| shown(&row)))
            .collect()
    }

    /// Deletes the caller's subscription `id`: nothing more is sent.
    pub async fn subscription_delete(
        &self,
        context: &AccessContext,
        id: &str,
    ) -> Result<(), FhirError> {
        self.admit(context)?;
        let done = sqlx::query("DELETE FROM subscriptions WHERE id = $1 AND owner = $2")
            .bind(id)
            .bind(owner(context))
            .execute_in(self)
            .await?;
        match done {
            0 => Err(FhirError::NotFound(format!(
                "no Subscription/{id} of yours"
            ))),
            _ => Ok(()),
        }
    }

    /// The caller's subscription `id`'s status (`$status`), as the backport's Parameters.
    pub async fn subscription_status(
        &self,
        context: &AccessContext,
        id: &str,
    ) -> Result<Value, FhirError> {
        let (delivery, _) = self.subscriptions.delivery()?;
        let row = self.subscription_row(context, id).await?;
        let status = Status {
            subscription: &format!("{}/Subscription/{id}", delivery.base_url),
            topic: row.resource["criteria"].as_str().unwrap_or_default(),
            status: &row.status,
            kind: "query-status",
            events: row.events_since_start,
            error: row.error.as_deref(),
        };
        Ok(json!({"resourceType": "Parameters", "parameter": status.parameters()}))
    }

    /// A token that binds a websocket to the caller's websocket subscription `id`
    /// (`$get-ws-binding-token`), as the backport's Parameters: good for
    /// [`BINDING_TOKEN_MS`], on any node.
    pub async fn subscription_binding_token(
        &self,
        context: &AccessContext,
        id: &str,
    ) -> Result<Value, FhirError> {
        let (delivery, _) = self.subscriptions.delivery()?;
        let row = self.subscription_row(context, id).await?;
        if row.resource["channel"]["type"] != "websocket" {
            return Err(FhirError::BadRequest(format!(
                "Subscription/{id} is not a websocket subscription"
            )));
        }
        let expires = date::now_ms() + BINDING_TOKEN_MS;
        let token = binding_token(id, expires, &row.binding_key);
        let websocket_url = match delivery.base_url.split_once("://") {
            Some(("https", rest)) => format!("wss://{rest}/$subscription-ws"),
            Some((_, rest)) => format!("ws://{rest}/$subscription-ws"),
            None => format!("{}/$subscription-ws", delivery.base_url),
        };
        Ok(json!({
            "resourceType": "Parameters",
            "parameter": [
                {"name": "token", "valueString": token},
                {"name": "expiration", "valueDateTime": date::instant(expires)},
                {"name": "subscription", "valueString": format!("{}/Subscription/{id}", delivery.base_url)},
                {"name": "websocket-url", "valueUrl": websocket_url},
            ]
        }))
    }

    /// The subscription a websocket binding token is for, and the handshake to send on the
    /// bound socket; refused when the token is not one (its key is the subscription's binding
    /// key, never shown), has expired or claims to last longer than a token is made to, is
    /// not for a websocket subscription, or its subscription ended or its subscriber's
    /// authorization did (which switches it off).
    pub async fn subscription_bind(&self, token: &str) -> Result<(String, Value), FhirError> {
        let refused = || {
            FhirError::Forbidden(
                "not a valid binding token: get a new one with $get-ws-binding-token".into(),
            )
        };
        let mut parts = token.splitn(3, '.');
        let (Some(id), Some(expires), Some(given)) = (parts.next(), parts.next(), parts.next())
        else {
            return Err(refused());
        };
        let expires: i64 = expires.parse().map_err(|_| refused())?;
        let row = (self.subscription_by_id(id, None).await?).ok_or_else(refused)?;
        let genuine = webhook::mac_matches(&row.binding_key, expires, id.as_bytes(), given);
        let now = date::now_ms();
        if !genuine
            || !(now..=now + BINDING_TOKEN_MS).contains(&expires)
            || row.status == "off"
            || row.status == "requested"
            || row.resource["channel"]["type"] != "websocket"
        {
            return Err(refused());
        }
        if row.end_at <= now {
            self.switch_off(id, "the subscription reached its end")
                .await?;
            return Err(refused());
        }
        if let Err(why) = self.subscriber_access(&row) {
            self.switch_off(id, &why).await?;
            return Err(refused());
        }
        let (delivery, _) = self.subscriptions.delivery()?;
        let topic = topics::topic(row.resource["criteria"].as_str().unwrap_or_default())
            .ok_or_else(refused)?;
        let url = format!("{}/Subscription/{id}", delivery.base_url);
        let handshake = notification(
            &url,
            topic,
            "handshake",
            row.events_since_start,
            &row.status,
        );
        Ok((row.id, handshake))
    }

    /// One pass: every subscription due (not leased by another node, not waiting out a
    /// back-off) is delivered in its own task; now and then, what is no longer needed goes.
    async fn deliver_due(&self) -> Result<(), FhirError> {
        let now = date::now_ms();
        let db = self.store.database();
        self.tidy(now).await?;
        let due = sqlx::query(
            "SELECT id FROM subscriptions WHERE status IN ('active', 'error') AND retry_at <= $1 AND lease_until < $1",
        )
        .bind(now)
        .fetch_all(db.pool())
        .await?;
        for row in due {
            let id: String = row.try_get(0)?;
            let leased = sqlx::query(
                "UPDATE subscriptions SET lease_until = $1 WHERE id = $2 AND lease_until < $3",
            )
            .bind(now + LEASE_MS)
            .bind(&id)
            .bind(now)
            .execute_in(self)
            .await?;
            if leased == 0 {
                continue;
            }
            let service = self.clone();
            let wakes = self.subscriptions.inner.wakes.load(Ordering::SeqCst);
            tokio::spawn(async move {
                if let Err(error) = service.deliver(&id).await {
                    tracing::warn!(subscription = %id, %error, "a subscription's delivery stopped");
                }
                let release = sqlx::query("UPDATE subscriptions SET lease_until = 0 WHERE id = $1")
                    .bind(&id)
                    .execute_in(&service)
                    .await;
                if let Err(error) = release {
                    tracing::warn!(subscription = %id, %error, "a subscription's lease was kept");
                }
                // What was committed while this pass held the subscription is for the next.
                if service.subscriptions.inner.wakes.load(Ordering::SeqCst) != wakes {
                    service.subscriptions.wake();
                }
            });
        }
        Ok(())
    }

    /// At most every [`TIDY_EVERY_MS`]: forgets subscriptions switched off a day ago, and the
    /// changes every subscription has passed (kept an hour at least).
    async fn tidy(&self, now: i64) -> Result<(), FhirError> {
        let last = self.subscriptions.inner.tidied.load(Ordering::SeqCst);
        if now - last < TIDY_EVERY_MS
            || (self.subscriptions.inner.tidied)
                .compare_exchange(last, now, Ordering::SeqCst, Ordering::SeqCst)
                .is_err()
        {
            return Ok(());
        }
        sqlx::query("DELETE FROM subscriptions WHERE status = 'off' AND ended_at < $1")
            .bind(now - KEEP_OFF_MS)
            .execute_in(self)
            .await?;
        sqlx::query(
            "DELETE FROM change_events WHERE recorded < $1 AND seq <= \
             (SELECT COALESCE(MIN(cursor), (SELECT COALESCE(MAX(seq), 0) FROM change_events)) \
              FROM subscriptions WHERE status <> 'off')",
        )
        .bind(now - KEEP_CHANGES_MS)
        .execute_in(self)
        .await?;
        Ok(())
    }

    /// The subscriber's access now, or why it has none (the subscription is switched off).
    fn subscriber_access(&self, row: &SubscriptionRow) -> Result<AccessContext, String> {
        let (delivery, _) = self.subscriptions.delivery().map_err(|e| e.to_string())?;
        let subscriber: Subscriber =
            serde_json::from_str(&row.subscriber).map_err(|e| e.to_string())?;
        let scopes = Scope::parse_list(&subscriber.claims.scope).unwrap_or_default();
        let principal = Principal {
            claims: subscriber.claims,
            scopes,
        };
        (delivery.resolve)(principal).map_err(|error| {
            format!("the subscriber's authorization ended ({error}): make the subscription again")
        })
    }

    /// Delivers what is due of subscription `id` (leased by this node). Each change is
    /// checked under the subscriber's access as it is at that moment; a subscriber who has
    /// none any more, or may no longer search the topic's type, switches the subscription
    /// off. A websocket subscription no socket is bound to here is only checked.
    async fn deliver(&self, id: &str) -> Result<(), FhirError> {
        let (delivery, _) = self.subscriptions.delivery()?;
        let db = self.store.database();
        let Some(mut row) = self.subscription_by_id(id, None).await? else {
            return Ok(());
        };
        let started = date::now_ms();
        if row.end_at <= started {
            return self
                .switch_off(id, "the subscription reached its end")
                .await;
        }
        let parsed = match Parsed::from_resource(&row.resource, delivery.policy) {
            Ok(parsed) => parsed,
            Err(error) => return self.switch_off(id, &error.to_string()).await,
        };
        if let Err(why) = self.subscriber_access(&row) {
            return self.switch_off(id, &why).await;
        }
        if matches!(parsed.channel, Channel::WebSocket) && !self.subscriptions.has_socket(id) {
            return Ok(());
        }
        let url = format!("{}/Subscription/{id}", delivery.base_url);
        let changes = sqlx::query(
            "SELECT seq, resource_type, resource_id, version_id, deleted, recorded \
             FROM change_events WHERE seq > $1 ORDER BY seq LIMIT $2",
        )
        .bind(row.cursor)
        .bind(BATCH)
        .fetch_all(db.pool())
        .await?;
        let mut sent = 0;
        let mut expected = row.cursor + 1;
        for change in &changes {
            let now = date::now_ms();
            // The lease is not held past half its time: the rest waits for the next pass.
            if now - started > LEASE_MS / 2 {
                break;
            }
            let seq: i64 = change.try_get(0)?;
            let recorded: i64 = change.try_get(5)?;
            // A change numbered before this one may still commit: wait for it a while.
            if seq != expected && now - recorded < GAP_WAIT_MS {
                break;
            }
            expected = seq + 1;
            let resource_type: String = change.try_get(1)?;
            let resource_id: String = change.try_get(2)?;
            let version_id: i64 = change.try_get(3)?;
            let deleted = change.try_get::<i64, _>(4)? != 0;
            if resource_type != parsed.topic.resource_type
                || !parsed.topic.fires(version_id, deleted)
            {
                row.cursor = seq;
                continue;
            }
            let context = match self.subscriber_access(&row) {
                Ok(context) => context,
                Err(why) => return self.switch_off(id, &why).await,
            };
            // One search decides and reads: the filter, the id, the subscriber's constraints
            // and consent now, over the resource as it is now.
            let query = match parsed.query(&context, &resource_id, self) {
                Ok(query) => query,
                Err(FhirError::Forbidden(why)) => {
                    let why =
                        format!("the subscriber may no longer search {resource_type} ({why})");
                    return self.switch_off(id, &why).await;
                }
                Err(error) => return Err(error),
            };
            let Some(found) = self
                .store
                .search(&query)
                .await?
                .resources
                .into_iter()
                .next()
            else {
                row.cursor = seq;
                continue;
            };
            let number = row.events_since_start + 1;
            let mut body = notification(&url, parsed.topic, "event-notification", number, "active");
            if parsed.content != Content::Empty {
                let resource = match parsed.content {
                    Content::FullResource => serde_json::from_str::<Value>(&found.content).ok(),
                    _ => None,
                };
                let what = (resource_type.as_str(), resource_id.as_str());
                add_event(
                    &mut body,
                    number,
                    &delivery.base_url,
                    what,
                    resource,
                    version_id,
                );
            }
            // In the patient's log before it leaves, whatever it carries: even an empty one
            // tells that something of theirs happened.
            let mut audit = Pending::new(&context, Interaction::Read, parsed.topic.resource_type);
            audit.resource_id = Some(resource_id.clone());
            audit.query = Some(super::encode(&[(
                "subscription".to_owned(),
                format!("Subscription/{id}"),
            )]));
            if let Some(patient) = &found.patient_id {
                audit.patients = vec![patient.clone()];
                audit.stored = vec![patient.clone()];
            }
            self.finish(audit, Ok(())).await?;
            match self.send(&parsed.channel, &row, body.to_string()).await {
                Ok(()) => {
                    row.cursor = seq;
                    row.events_since_start = number;
                    row.last_sent = now;
                    row.failures = 0;
                    sent += 1;
                    // Noted every few: a crash in between sends those again (at least once;
                    // the event numbers tell a receiver what it has seen).
                    if sent % NOTE_EVERY == 0 {
                        self.delivered(&row).await?;
                    }
                }
                Err(why) => return self.failed(&row, &why, now).await,
            }
        }
        let now = date::now_ms();
        if sent > 0 {
            return self.delivered(&row).await;
        }
        if parsed.heartbeat_ms > 0 && now - row.last_sent >= parsed.heartbeat_ms {
            let body = notification(
                &url,
                parsed.topic,
                "heartbeat",
                row.events_since_start,
                "active",
            );
            match self.send(&parsed.channel, &row, body.to_string()).await {
                Ok(()) => {
                    row.last_sent = now;
                    return self.delivered(&row).await;
                }
                Err(why) => return self.failed(&row, &why, now).await,
            }
        }
        sqlx::query("UPDATE subscriptions SET cursor = $1 WHERE id = $2 AND status <> 'off'")
            .bind(row.cursor)
            .bind(id)
            .execute_in(self)
            .await?;
        if row.status == "error" && row.failures == 0 {
            sqlx::query("UPDATE subscriptions SET status = 'active', error = NULL WHERE id = $1 AND status = 'error'")
                .bind(id)
                .execute_in(self)
                .await?;
        }
        Ok(())
    }

    /// Sends one notification over the subscription's channel: `Ok` once it was taken.
    async fn send(
        &self,
        channel: &Channel,
        row: &SubscriptionRow,
        body: String,
    ) -> Result<(), String> {
        match channel {
            Channel::RestHook { endpoint, headers } => {
                let (_, webhooks) = self.subscriptions.delivery().map_err(|e| e.to_string())?;
                webhooks.post(endpoint, headers, body, &row.secret).await
            }
            Channel::WebSocket => self.subscriptions.send_socket(&row.id, body).await,
        }
    }

    /// Notes notifications (or a heartbeat) taken: the cursor past them, the subscription
    /// active.
    async fn delivered(&self, row: &SubscriptionRow) -> Result<(), FhirError> {
        sqlx::query(
            "UPDATE subscriptions SET cursor = $1, events_since_start = $2, last_sent = $3, failures = 0, \
             retry_at = 0, status = 'active', error = NULL WHERE id = $4 AND status <> 'off'",
        )
        .bind(row.cursor)
        .bind(row.events_since_start)
        .bind(row.last_sent)
        .bind(&row.id)
        .execute_in(self)
        .await?;
        Ok(())
    }

    /// Notes a failed delivery: in `error`, retried after a back-off from the same change.
    async fn failed(&self, row: &SubscriptionRow, why: &str, now: i64) -> Result<(), FhirError> {
        let failures = row.failures + 1;
        let backoff = (FIRST_BACKOFF_MS << (failures - 1).min(20)).min(MAX_BACKOFF_MS);
        tracing::info!(subscription = %row.id, %why, failures, "a notification was not taken");
        sqlx::query(
            "UPDATE subscriptions SET cursor = $1, failures = $2, retry_at = $3, status = 'error', error = $4, \
             events_since_start = $5, last_sent = $6 WHERE id = $7 AND status <> 'off'",
        )
        .bind(row.cursor)
        .bind(failures)
        .bind(now + backoff)
        .bind(format!(
            "{why} ({failures} failed attempts; the next in {:.1} s)",
            backoff as f64 / 1000.0
        ))
        .bind(row.events_since_start)
        .bind(row.last_sent)
        .bind(&row.id)
        .execute_in(self)
        .await?;
        Ok(())
    }

    /// Ends a subscription: nothing more is sent, and its status says why.
    async fn switch_off(&self, id: &str, why: &str) -> Result<(), FhirError> {
        sqlx::query(
            "UPDATE subscriptions SET status = 'off', error = $1, ended_at = $2 WHERE id = $3",
        )
        .bind(why)
        .bind(date::now_ms())
        .bind(id)
        .execute_in(self)
        .await?;
        Ok(())
    }
}

fn row_of(row: &sqlx::any::AnyRow) -> Result<SubscriptionRow, FhirError> {
    let resource: String = row.try_get(1)?;
    Ok(SubscriptionRow {
        id: row.try_get(0)?,
        resource: serde_json::from_str(&resource).map_err(|e| FhirError::Internal(e.into()))?,
        subscriber: row.try_get(2)?,
        status: row.try_get(3)?,
        error: row.try_get(4)?,
        secret: row.try_get(5)?,
        end_at: row.try_get(6)?,
        events_since_start: row.try_get(7)?,
        cursor: row.try_get(8)?,
        last_sent: row.try_get(9)?,
        failures: row.try_get(10)?,
        binding_key: row.try_get(11)?,
    })
}

/// A subscription as its owner reads it: its status and error now, never its secret.
fn shown(row: &SubscriptionRow) -> Value {
    let mut resource = row.resource.clone();
    resource["status"] = json!(row.status);
    match &row.error {
        Some(error) => resource["error"] = json!(error),
        None => {
            if let Some(object) = resource.as_object_mut() {
                object.remove("error");
            }
        }
    }
    resource
}

/// `<id>.<expires>.<hex HMAC of both under the subscription's binding key>`.
fn binding_token(id: &str, expires: i64, key: &str) -> String {
    format!(
        "{id}.{expires}.{}",
        webhook::mac(key, expires, id.as_bytes())
    )
}

/// Where a subscription stands, as `$status` and every notification's first entry say it.
struct Status<'a> {
    subscription: &'a str,
    topic: &'a str,
    status: &'a str,
    /// `query-status`, `handshake`, `heartbeat` or `event-notification`.
    kind: &'a str,
    events: i64,
    error: Option<&'a str>,
}

impl Status<'_> {
    /// The backport's status parameters.
    fn parameters(&self) -> Vec<Value> {
        let mut parameters = vec![
            json!({"name": "subscription", "valueReference": {"reference": self.subscription}}),
            json!({"name": "topic", "valueCanonical": self.topic}),
            json!({"name": "status", "valueCode": self.status}),
            json!({"name": "type", "valueCode": self.kind}),
            json!({"name": "events-since-subscription-start", "valueString": self.events.to_string()}),
        ];
        if let Some(error) = self.error {
            parameters.push(json!({"name": "error", "valueCodeableConcept": {"text": error}}));
        }
        parameters
    }
}

/// A notification Bundle (R4 backport: a history Bundle whose first entry is the status as
/// Parameters).
fn notification(subscription: &str, topic: &Topic, kind: &str, events: i64, status: &str) -> Value {
    let status = Status {
        subscription,
        topic: topic.url,
        status,
        kind,
        events,
        error: None,
    };
    json!({
        "resourceType": "Bundle",
        "id": crate::import::new_id(),
        "type": "history",
        "timestamp": date::instant(date::now_ms()),
        "entry": [{
            "fullUrl": format!("urn:uuid:{}", crate::import::new_id()),
            "resource": {"resourceType": "Parameters", "parameter": status.parameters()},
            "request": {"method": "GET", "url": format!("{subscription}/$status")},
            "response": {"status": "200"}
        }]
    })
}

/// Adds one event to a notification: its number and focus in the status, and the resource
/// itself for a full-resource payload.
fn add_event(
    body: &mut Value,
    number: i64,
    base: &str,
    (resource_type, id): (&str, &str),
    resource: Option<Value>,
    version_id: i64,
) {
    let focus = format!("{base}/{resource_type}/{id}");
    let event = json!({"name": "notification-event", "part": [
        {"name": "event-number", "valueString": number.to_string()},
        {"name": "timestamp", "valueInstant": date::instant(date::now_ms())},
        {"name": "focus", "valueReference": {"reference": focus}},
    ]});
    if let Some(parameters) = body["entry"][0]["resource"]["parameter"].as_array_mut() {
        parameters.push(event);
    }
    if let (Some(resource), Some(entries)) = (resource, body["entry"].as_array_mut()) {
        let (method, status) = match version_id {
            1 => ("POST", "201"),
            _ => ("PUT", "200"),
        };
        entries.push(json!({
            "fullUrl": focus,
            "resource": resource,
            "request": {"method": method, "url": format!("{resource_type}/{id}")},
            "response": {"status": status}
        }));
    }
}
