//! The policy engine: who may do what to which data. The effective permission of one access is
//! **region grant ∩ token scopes ∩ patient compartment ∩ patient consent**. This module turns
//! the first three into query [`Constraints`] that every source applies; consent is checked by
//! the [`FhirService`](crate::service::FhirService) against the store's consent table, and the
//! app runtime calls the same service for every host call.

use healthcloud_platform::auth::{Claims, Principal, Role};
use healthcloud_platform::scope::{Interaction, NAMED_ONLY, Purpose, Scope, ScopeContext};

use crate::error::FhirError;
use crate::params::{TypeDef, split_reference};
use crate::query::{Alternative, parse_restriction};

/// The app acting on the user's behalf, when the access comes from the app cloud.
#[derive(Debug, Clone, PartialEq)]
pub struct AppIdentity {
    /// The app id, e.g. `examples/bp-monitor`.
    pub id: String,
    /// Its version.
    pub version: String,
    /// sha256 of its component.
    pub digest: String,
    /// Id of the publisher key that signed it.
    pub publisher_key: String,
    /// The region that installed it.
    pub region: String,
}

impl AppIdentity {
    /// The app as a FHIR Device id: `publisher/app` becomes `publisher.app`, since FHIR ids
    /// have no slashes. Consents and audit records name apps this way.
    pub fn fhir_device_id(&self) -> String {
        self.id.replace('/', ".")
    }
}

/// Everything the policy engine knows about one access.
#[derive(Debug, Clone)]
pub struct AccessContext {
    /// The verified user.
    pub principal: Principal,
    /// The app, if the access comes through one.
    pub app: Option<AppIdentity>,
    /// What the region granted the app (`None` outside the app cloud: no grant applies).
    pub grant: Option<Vec<Scope>>,
    /// The purpose of use the region granted a backend service (`None`: the care of the
    /// patients the user sees).
    pub purpose: Option<Purpose>,
}

impl AccessContext {
    /// Direct access by a user through the FHIR API.
    pub fn user(principal: Principal) -> Self {
        AccessContext {
            principal,
            app: None,
            grant: None,
            purpose: None,
        }
    }

    /// The patient in context: the token's `patient` claim.
    pub fn patient(&self) -> Option<&str> {
        self.principal.claims.patient.as_deref()
    }

    /// Parties a patient's consent may name for this access: the app (`Device/<app-id>`,
    /// with `/` in a `publisher/app` id written as `.`, since FHIR ids have no slashes), the
    /// user's organization and the user's own FHIR identity. A `PractitionerRole` acts as
    /// its practitioner and organization too (both carried in the token, see
    /// [`require_actor`]), so denying either denies every role they hold. A backend service
    /// granted a purpose of use acts for it too (`PurposeOfUse/<code>`, e.g.
    /// `PurposeOfUse/HRESCH`): an opt-out of research names it.
    pub fn consent_actors(&self) -> Vec<String> {
        let claims = &self.principal.claims;
        let mut actors = Vec::new();
        if let Some(app) = &self.app {
            actors.push(format!("Device/{}", app.fhir_device_id()));
        }
        if let Some(org) = &claims.org {
            actors.push(format!("Organization/{org}"));
        }
        // SMART allows fhirUser as an absolute URL; compare by type and id.
        match claims.fhir_user.as_deref().and_then(split_reference) {
            Some((resource_type, id)) if resource_type == "Practitioner" => {
                actors.push(format!("Practitioner/{id}"));
            }
            Some((resource_type, id)) if resource_type == "PractitionerRole" => {
                actors.push(format!("PractitionerRole/{id}"));
                if let Some(practitioner) = &claims.practitioner {
                    actors.push(format!("Practitioner/{practitioner}"));
                }
            }
            _ => {}
        }
        if let Some(purpose) = self.purpose {
            actors.push(purpose.consent_actor());
        }
        actors
    }
}

/// Refuses a workforce token that does not say who acts. Consent opt-outs name organizations
/// and practitioners; a token naming neither would match none of them, so every opted-out
/// patient would be open to it. A `PractitionerRole` must bring its organization (`org`) and
/// practitioner (`practitioner`): roles are not stored here, and a denial of either must
/// reach the role.
pub fn require_actor(claims: &Claims) -> Result<(), FhirError> {
    if !claims.role.is_workforce() {
        return Ok(());
    }
    let role = claims.role.as_str();
    match claims.fhir_user.as_deref().and_then(split_reference) {
        Some((resource_type, _)) if resource_type == "Practitioner" => Ok(()),
        Some((resource_type, _)) if resource_type == "PractitionerRole" => {
            let missing: Vec<&str> = [
                ("org", claims.org.is_none()),
                ("practitioner", claims.practitioner.is_none()),
            ]
            .iter()
            .filter_map(|(claim, absent)| absent.then_some(*claim))
            .collect();
            if missing.is_empty() {
                return Ok(());
            }
            Err(FhirError::Forbidden(format!(
                "a {role} token whose fhirUser is a PractitionerRole must also carry the role's {}: consent opt-outs name the organization and the practitioner",
                missing
                    .iter()
                    .map(|claim| format!("'{claim}' claim"))
                    .collect::<Vec<_>>()
                    .join(" and ")
            )))
        }
        _ if claims.org.is_some() => Ok(()),
        _ => Err(FhirError::Forbidden(format!(
            "a {role} token must name who acts: the 'org' claim (an Organization id) and/or 'fhirUser' (Practitioner/<id>), so the patient's consent opt-outs can apply"
        ))),
    }
}

/// What a role may reach at all, whatever its scopes: patients and citizens their own record
/// (confined below); clinicians everything but the audit trail and consents; security
/// officers only those, read-only; administrators and publishers no FHIR data.
fn role_allows(
    claims: &Claims,
    interaction: Interaction,
    type_def: &TypeDef,
) -> Result<(), FhirError> {
    let named_only = NAMED_ONLY.contains(&type_def.name);
    let reads = matches!(interaction, Interaction::Read | Interaction::Search);
    let refusal = match claims.role {
        Role::Patient | Role::Citizen => return Ok(()),
        Role::Clinician if !named_only => return Ok(()),
        Role::SecurityOfficer if named_only && reads => return Ok(()),
        Role::System if !named_only => return Ok(()),
        Role::Clinician => format!(
            "{} records are for the patient they concern and for security officers (role security-officer), not for a clinician",
            type_def.name
        ),
        Role::SecurityOfficer => {
            "a security officer reads AuditEvent and Consent records, and nothing else".to_owned()
        }
        Role::System => format!(
            "{} records are for the patient they concern and for security officers, not for a backend service",
            type_def.name
        ),
        Role::RegionAdmin | Role::StoreAdmin | Role::Publisher | Role::PlatformOperator => format!(
            "a {} token gives no access to FHIR data",
            claims.role.as_str()
        ),
    };
    Err(FhirError::Forbidden(refusal))
}

/// The constraints under which `context` may perform `interaction` on `type_def`: one group
/// of alternatives per party that must agree (the token; the region's grant). Refuses with
/// 403 when a party allows nothing.
pub fn authorize(
    context: &AccessContext,
    interaction: Interaction,
    type_def: &'static TypeDef,
) -> Result<Vec<Vec<Alternative>>, FhirError> {
    let claims = &context.principal.claims;
    if claims.role.is_own_record_only() && claims.patient.is_none() {
        return Err(FhirError::Forbidden(format!(
            "a {} token must name its patient",
            claims.role.as_str()
        )));
    }
    require_actor(claims)?;
    // A backend service is the app that acts: consent opt-outs name it, so it must be one a
    // region installed (its token from healthcloud's authorization server).
    if claims.role == Role::System && context.app.is_none() {
        return Err(FhirError::Forbidden(
            "a system token reaches data only as a backend service a region installed: get it from healthcloud's authorization server (client credentials)".into(),
        ));
    }
    // It acts for a purpose the region granted: the one a patient may opt out of. Without
    // one, an opt-out of research could not reach a research platform.
    if claims.role == Role::System && context.purpose.is_none() {
        return Err(FhirError::Forbidden(
            "a backend service reaches data only for the purpose of use its region granted it: the region admin grants purpose:research, purpose:quality or purpose:treatment with the install".into(),
        ));
    }
    role_allows(claims, interaction, type_def)?;
    let mut groups = vec![
        alternatives(context, &context.principal.scopes, interaction, type_def).ok_or_else(
            || {
                FhirError::Forbidden(format!(
                    "the token's scopes do not allow {} of {}",
                    interaction.fhir_code(),
                    type_def.name
                ))
            },
        )?,
    ];
    if let Some(grant) = &context.grant {
        groups.push(
            alternatives(context, grant, interaction, type_def).ok_or_else(|| {
                FhirError::Forbidden(format!(
                    "the region has not granted this app {} of {}",
                    interaction.fhir_code(),
                    type_def.name
                ))
            })?,
        );
    }
    Ok(groups)
}

/// The single patient every alternative of some group confines access to, if any.
pub fn confined_patient(groups: &[Vec<Alternative>]) -> Option<&str> {
    groups.iter().find_map(|group| {
        let first = group.first()?.compartment.as_deref()?;
        group
            .iter()
            .all(|a| a.compartment.as_deref() == Some(first))
            .then_some(first)
    })
}

fn alternatives(
    context: &AccessContext,
    scopes: &[Scope],
    interaction: Interaction,
    type_def: &'static TypeDef,
) -> Option<Vec<Alternative>> {
    let claims = &context.principal.claims;
    let mut result = Vec::new();
    for scope in scopes
        .iter()
        .filter(|s| s.allows(interaction, type_def.name))
    {
        let confined = claims.role.is_own_record_only() || scope.context == ScopeContext::Patient;
        let compartment = match (confined, claims.patient.as_ref()) {
            // Who is in a cohort is nobody's own record to read.
            (true, _) if type_def.lists_patients() => continue,
            (false, _) => None,
            // A patient/ scope without a patient in context reaches no one.
            (true, None) => continue,
            (true, Some(patient)) => Some(patient.clone()),
        };
        let filters = match parse_restriction(type_def, &scope.restriction) {
            Ok(filters) => filters,
            Err(error) => {
                // A restriction we cannot apply must not widen access: the scope grants nothing.
                tracing::warn!(%scope, %error, "scope restriction not applicable; scope ignored");
                continue;
            }
        };
        result.push(Alternative {
            compartment: compartment.filter(|_| type_def.in_patient_compartment()),
            filters,
        });
    }
    (!result.is_empty()).then_some(result)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::params::type_def;
    use healthcloud_platform::auth::{Claims, Role};

    fn context(role: Role, patient: Option<&str>, scope: &str) -> AccessContext {
        AccessContext::user(Principal {
            claims: Claims {
                iss: "i".into(),
                sub: "u".into(),
                exp: 0,
                iat: 0,
                role,
                scope: scope.into(),
                patient: patient.map(str::to_owned),
                region: None,
                fhir_user: Some("Practitioner/u".into()),
                org: None,
                practitioner: None,
                aud: vec!["a".into()],
                client_id: None,
                encounter: None,
                jti: None,
            },
            scopes: Scope::parse_list(scope).unwrap(),
        })
    }

    fn observation() -> &'static TypeDef {
        type_def("Observation").unwrap()
    }

    #[test]
    fn patient_tokens_are_confined_whatever_their_scopes() {
        let ctx = context(Role::Citizen, Some("p1"), "user/*.rs system/*.rs");
        let groups = authorize(&ctx, Interaction::Search, observation()).unwrap();
        assert!(
            groups[0]
                .iter()
                .all(|a| a.compartment.as_deref() == Some("p1"))
        );
        assert_eq!(confined_patient(&groups), Some("p1"));
    }

    #[test]
    fn clinician_user_scopes_are_not_confined_but_patient_scopes_are() {
        let user = context(Role::Clinician, Some("p1"), "user/Observation.rs");
        let groups = authorize(&user, Interaction::Read, observation()).unwrap();
        assert_eq!(confined_patient(&groups), None);
        let launched = context(Role::Clinician, Some("p1"), "patient/Observation.rs");
        let groups = authorize(&launched, Interaction::Read, observation()).unwrap();
        assert_eq!(confined_patient(&groups), Some("p1"));
        let no_patient = context(Role::Clinician, None, "patient/Observation.rs");
        assert_eq!(
            authorize(&no_patient, Interaction::Read, observation())
                .unwrap_err()
                .status(),
            403
        );
    }

    #[test]
    fn region_grant_intersects_the_token() {
        let mut ctx = context(Role::Clinician, Some("p1"), "user/*.rs");
        ctx.grant = Some(Scope::parse_list("patient/Observation.rs?category=vital-signs").unwrap());
        let groups = authorize(&ctx, Interaction::Search, observation()).unwrap();
        assert_eq!(groups.len(), 2);
        assert_eq!(groups[1][0].filters.len(), 1);
        assert_eq!(confined_patient(&groups), Some("p1"));
        let condition = type_def("Condition").unwrap();
        let err = authorize(&ctx, Interaction::Search, condition).unwrap_err();
        assert!(err.to_string().contains("region has not granted"), "{err}");
    }

    #[test]
    fn inapplicable_restrictions_grant_nothing() {
        let ctx = context(Role::Clinician, None, "user/Observation.rs?colour=red");
        assert_eq!(
            authorize(&ctx, Interaction::Search, observation())
                .unwrap_err()
                .status(),
            403
        );
    }

    fn with_actor(
        fhir_user: Option<&str>,
        org: Option<&str>,
        practitioner: Option<&str>,
    ) -> AccessContext {
        let mut ctx = context(Role::Clinician, None, "user/*.rs");
        let claims = &mut ctx.principal.claims;
        claims.fhir_user = fhir_user.map(str::to_owned);
        claims.org = org.map(str::to_owned);
        claims.practitioner = practitioner.map(str::to_owned);
        ctx
    }

    #[test]
    fn workforce_tokens_without_an_actor_reach_nothing() {
        let nobody = with_actor(None, None, None);
        let err = authorize(&nobody, Interaction::Search, observation()).unwrap_err();
        assert_eq!(err.status(), 403);
        assert!(err.to_string().contains("'org' claim"), "{err}");
        // A fhirUser that is not a practitioner identifies no workforce actor.
        let patient_user = with_actor(Some("Patient/p1"), None, None);
        assert!(authorize(&patient_user, Interaction::Search, observation()).is_err());
        for (fhir_user, org) in [
            (Some("Practitioner/dr-1"), None),
            (Some("https://idp.test/fhir/Practitioner/dr-1"), None),
            (None, Some("gp-1")),
        ] {
            let ctx = with_actor(fhir_user, org, None);
            assert!(authorize(&ctx, Interaction::Search, observation()).is_ok());
        }
    }

    #[test]
    fn a_practitioner_role_carries_and_acts_as_its_practitioner_and_organization() {
        let bare = with_actor(Some("PractitionerRole/role-1"), None, None);
        let err = authorize(&bare, Interaction::Read, observation()).unwrap_err();
        assert!(
            err.to_string()
                .contains("'org' claim and 'practitioner' claim"),
            "{err}"
        );
        let no_practitioner = with_actor(Some("PractitionerRole/role-1"), Some("gp-1"), None);
        let err = authorize(&no_practitioner, Interaction::Read, observation()).unwrap_err();
        assert!(err.to_string().contains("'practitioner' claim"), "{err}");
        let full = with_actor(Some("PractitionerRole/role-1"), Some("gp-1"), Some("dr-1"));
        assert!(authorize(&full, Interaction::Read, observation()).is_ok());
        assert_eq!(
            full.consent_actors(),
            [
                "Organization/gp-1",
                "PractitionerRole/role-1",
                "Practitioner/dr-1"
            ]
        );
    }

    #[test]
    fn roles_decide_who_reads_the_audit_trail_and_consents() {
        let audit = type_def("AuditEvent").unwrap();
        let consent = type_def("Consent").unwrap();
        let clinician = context(Role::Clinician, None, "user/AuditEvent.rs user/Consent.rs");
        for t in [audit, consent] {
            let err = authorize(&clinician, Interaction::Search, t).unwrap_err();
            assert!(err.to_string().contains("security officer"), "{err}");
        }
        let wildcard = context(Role::SecurityOfficer, None, "user/*.rs");
        assert!(authorize(&wildcard, Interaction::Search, audit).is_err());
        let officer = context(
            Role::SecurityOfficer,
            None,
            "user/AuditEvent.rs user/Consent.cruds user/*.rs",
        );
        assert_eq!(
            confined_patient(&authorize(&officer, Interaction::Search, audit).unwrap()),
            None
        );
        assert!(authorize(&officer, Interaction::Read, consent).is_ok());
        assert!(authorize(&officer, Interaction::Create, consent).is_err());
        assert!(authorize(&officer, Interaction::Search, observation()).is_err());
        let citizen = context(Role::Citizen, Some("p1"), "patient/AuditEvent.rs");
        let groups = authorize(&citizen, Interaction::Search, audit).unwrap();
        assert_eq!(confined_patient(&groups), Some("p1"));
        let admin = context(Role::RegionAdmin, None, "user/*.rs");
        let err = authorize(&admin, Interaction::Search, observation()).unwrap_err();
        assert!(err.to_string().contains("no access to FHIR data"), "{err}");
    }
}
