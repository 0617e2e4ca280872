//! The audit trail ("min log"): every access, allowed or denied, becomes a FHIR AuditEvent in
//! the patient's compartment, so the citizen can read who looked at their data.

use base64::Engine;
use healthcloud_platform::scope::{Interaction, PURPOSE_SYSTEM};
use serde_json::{Value, json};

use crate::date;
use crate::policy::AccessContext;

/// What happened, for one audit record.
#[derive(Debug, Clone)]
pub struct AuditRecord<'a> {
    /// Who, through which app.
    pub context: &'a AccessContext,
    /// The interaction attempted.
    pub interaction: Interaction,
    /// The resource type.
    pub resource_type: &'a str,
    /// The resource, for reads and writes.
    pub resource_id: Option<&'a str>,
    /// The query string, for searches.
    pub query: Option<&'a str>,
    /// The patient whose data was touched, if known.
    pub patient: Option<&'a str>,
    /// `None` when allowed, else why it was refused.
    pub denied: Option<String>,
    /// The upstream sources asked, each with what it returned (`returned 3`, `failed: …`).
    pub sources: &'a [(String, String)],
}

/// The identifier system naming a source in an AuditEvent's entities.
pub const SOURCE_SYSTEM: &str = "urn:healthcloud:source";

/// The identifier system naming a resource (`Type/id`) that an AuditEvent's entity cannot
/// reference.
pub const RESOURCE_SYSTEM: &str = "urn:healthcloud:resource";

const EXT: &str = "https://healthcloud.example/fhir/StructureDefinition";

/// The AuditEvent resource for `record`, recorded at `now` (epoch ms).
pub fn audit_event(record: &AuditRecord<'_>, now: i64) -> Value {
    let claims = &record.context.principal.claims;
    // A backend service's token is the service itself (client credentials): no person.
    let requestor_type = match claims.role {
        healthcloud_platform::auth::Role::System => json!({"coding": [
            {"system": "http://dicom.nema.org/resources/ontology/DCM", "code": "110150", "display": "Application"}]}),
        _ => json!({"coding": [
            {"system": "http://terminology.hl7.org/CodeSystem/extra-security-role-type", "code": "humanuser"}]}),
    };
    let mut user = json!({
        "type": requestor_type,
        "who": {"identifier": {"system": "urn:healthcloud:user", "value": claims.sub}},
        "role": [{"text": claims.role.as_str()}],
        "requestor": true
    });
    if let Some(fhir_user) = &claims.fhir_user {
        user["who"]["reference"] = json!(fhir_user);
    }
    let mut agents = vec![user];
    if let Some(app) = &record.context.app {
        agents.push(json!({
            "type": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/extra-security-role-type", "code": "dataprocessor"}]},
            "who": {"reference": format!("Device/{}", app.fhir_device_id()), "display": format!("{} {}", app.id, app.version)},
            "name": format!("{} {}", app.id, app.version),
            "requestor": false,
            "extension": [
                {"url": format!("{EXT}/app-version"), "valueString": app.version},
                {"url": format!("{EXT}/app-digest"), "valueString": app.digest},
                {"url": format!("{EXT}/publisher-key"), "valueString": app.publisher_key},
                {"url": format!("{EXT}/region"), "valueString": app.region}
            ]
        }));
    }
    let mut entities = Vec::new();
    if let Some(patient) = record.patient {
        entities.push(json!({
            "what": {"reference": format!("Patient/{patient}")},
            "type": {"system": "http://terminology.hl7.org/CodeSystem/audit-entity-type", "code": "1", "display": "Person"},
            "role": {"system": "http://terminology.hl7.org/CodeSystem/object-role", "code": "1", "display": "Patient"}
        }));
    }
    let mut data = json!({
        "type": {"system": "http://terminology.hl7.org/CodeSystem/audit-entity-type", "code": "2", "display": "System Object"},
        "description": record.resource_type
    });
    if let Some(id) = record.resource_id {
        let reference = format!("{}/{id}", record.resource_type);
        // A Patient other than the one the record is filed for (a source's record of that
        // patient, `Patient/<source>.<id>`) would, as a reference, put the event in a second
        // patient's compartment, which the index refuses, and the access would go unrecorded:
        // it is named by identifier instead.
        data["what"] = match record.patient {
            Some(patient) if record.resource_type == "Patient" && patient != id => {
                json!({"identifier": {"system": RESOURCE_SYSTEM, "value": reference}})
            }
            _ => json!({"reference": reference}),
        };
    }
    if let Some(query) = record.query {
        data["query"] = json!(base64::engine::general_purpose::STANDARD.encode(query));
    }
    entities.push(data);
    for (source, returned) in record.sources {
        entities.push(json!({
            "what": {"identifier": {"system": SOURCE_SYSTEM, "value": source}},
            "type": {"system": "http://terminology.hl7.org/CodeSystem/audit-entity-type", "code": "2", "display": "System Object"},
            "name": format!("source {source}"),
            "description": returned
        }));
    }
    let mut event = json!({
        "resourceType": "AuditEvent",
        "type": {"system": "http://terminology.hl7.org/CodeSystem/audit-event-type", "code": "rest", "display": "RESTful Operation"},
        "subtype": [{"system": "http://hl7.org/fhir/restful-interaction", "code": record.interaction.fhir_code()}],
        "action": record.interaction.audit_action(),
        "recorded": date::instant(now),
        "outcome": if record.denied.is_some() { "4" } else { "0" },
        "agent": agents,
        "source": {
            "site": record.context.app.as_ref().map(|a| a.region.clone()).or_else(|| claims.region.clone()).unwrap_or_else(|| "integration".into()),
            "observer": {"display": "healthcloud integration cloud"},
            "type": [{"system": "http://terminology.hl7.org/CodeSystem/security-source-type", "code": "4", "display": "Application Server"}]
        },
        "entity": entities
    });
    if let Some(reason) = &record.denied {
        event["outcomeDesc"] = json!(reason);
    }
    if let Some(purpose) = record.context.purpose {
        event["purposeOfEvent"] = json!([{"coding": [{
            "system": PURPOSE_SYSTEM, "code": purpose.code(), "display": purpose.display()
        }]}]);
    }
    event
}
