//! SMART App Launch v2 scopes: `(patient|user|system)/(Type|*).[c][r][u][d][s][?param=value&…]`,
//! with the v1 forms `.read`, `.write` and `.*` mapped onto them.

use std::fmt;

/// Whose data a scope reaches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ScopeContext {
    /// Only the patient in context.
    Patient,
    /// Whatever the signed-in user may see.
    User,
    /// A backend service, no user.
    System,
}

/// One interaction a scope permits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Interaction {
    /// `c`: create.
    Create,
    /// `r`: read one resource by id.
    Read,
    /// `u`: update.
    Update,
    /// `d`: delete.
    Delete,
    /// `s`: search.
    Search,
}

impl Interaction {
    const ORDER: [(char, Interaction); 5] = [
        ('c', Interaction::Create),
        ('r', Interaction::Read),
        ('u', Interaction::Update),
        ('d', Interaction::Delete),
        ('s', Interaction::Search),
    ];

    fn bit(self) -> u8 {
        1 << Self::ORDER
            .iter()
            .position(|(_, i)| *i == self)
            .unwrap_or(0)
    }

    /// The FHIR RESTful interaction code (`read`, `search-type`, …).
    pub fn fhir_code(self) -> &'static str {
        match self {
            Interaction::Create => "create",
            Interaction::Read => "read",
            Interaction::Update => "update",
            Interaction::Delete => "delete",
            Interaction::Search => "search-type",
        }
    }

    /// The AuditEvent action code (C, R, U, D, E).
    pub fn audit_action(self) -> &'static str {
        match self {
            Interaction::Create => "C",
            Interaction::Read => "R",
            Interaction::Update => "U",
            Interaction::Delete => "D",
            Interaction::Search => "E",
        }
    }
}

/// A parsed data-access scope.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scope {
    /// Whose data.
    pub context: ScopeContext,
    /// The resource type, or `None` for `*`.
    pub resource_type: Option<String>,
    permissions: u8,
    /// Search parameters every access through this scope must satisfy (ANDed).
    pub restriction: Vec<(String, String)>,
}

/// Why a scope string was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("malformed scope '{scope}': {reason}")]
pub struct ScopeError {
    /// The scope as given.
    pub scope: String,
    /// What is wrong.
    pub reason: String,
}

/// Types no wildcard scope reaches, only a scope that names them: the audit trail (who looked
/// at whose data) and consents (whom a patient opted out of) are about access, not care, and
/// the policy engine decides by role who may read them at all.
pub const NAMED_ONLY: &[&str] = &["AuditEvent", "Consent"];

/// Scopes that are part of SMART but grant no data access (launch, identity, refresh).
const NON_DATA_SCOPES: &[&str] = &[
    "openid",
    "fhirUser",
    "profile",
    "launch",
    "launch/patient",
    "launch/encounter",
    "offline_access",
    "online_access",
];

impl Scope {
    /// Parses one scope. Returns `Ok(None)` for SMART scopes that grant no data (`openid`, `launch`, …).
    pub fn parse(text: &str) -> Result<Option<Scope>, ScopeError> {
        if NON_DATA_SCOPES.contains(&text) {
            return Ok(None);
        }
        let error = |reason: &str| ScopeError {
            scope: text.to_owned(),
            reason: reason.to_owned(),
        };
        let (context, rest) = text
            .split_once('/')
            .ok_or_else(|| error("expected (patient|user|system)/Type.permissions"))?;
        let context = match context {
            "patient" => ScopeContext::Patient,
            "user" => ScopeContext::User,
            "system" => ScopeContext::System,
            _ => return Err(error("the context must be patient, user or system")),
        };
        let (rest, query) = match rest.split_once('?') {
            Some((rest, query)) => (rest, Some(query)),
            None => (rest, None),
        };
        let (resource_type, permissions) = rest
            .split_once('.')
            .ok_or_else(|| error("expected Type.permissions after the context"))?;
        let resource_type = match resource_type {
            "*" => None,
            t if t.starts_with(|c: char| c.is_ascii_uppercase())
                && t.chars().all(|c| c.is_ascii_alphanumeric()) =>
            {
                Some(t.to_owned())
            }
            _ => return Err(error("the resource type must be a FHIR type name or *")),
        };
        let v1 = matches!(permissions, "read" | "write" | "*");
        if v1 && query.is_some() {
            return Err(error(
                "a query restriction needs v2 permissions (e.g. .rs?…)",
            ));
        }
        let permissions = match permissions {
            "read" => bits("rs"),
            "write" => bits("cud"),
            "*" => bits("cruds"),
            letters => {
                let mut last = None;
                for letter in letters.chars() {
                    let position = Interaction::ORDER.iter().position(|(c, _)| *c == letter);
                    match (position, last) {
                        (None, _) => {
                            return Err(error("permissions are letters from c, r, u, d, s"));
                        }
                        (Some(p), Some(l)) if p <= l => {
                            return Err(error(
                                "permissions must appear once each, in the order c r u d s",
                            ));
                        }
                        (Some(p), _) => last = Some(p),
                    }
                }
                if letters.is_empty() {
                    return Err(error("no permissions given"));
                }
                bits(letters)
            }
        };
        let mut restriction = Vec::new();
        if let Some(query) = query {
            for pair in query.split('&') {
                let (name, value) = pair
                    .split_once('=')
                    .filter(|(n, v)| !n.is_empty() && !v.is_empty())
                    .ok_or_else(|| {
                        error("the query restriction must be param=value pairs joined by &")
                    })?;
                let decode = |s: &str| {
                    form_urlencoded::parse(format!("x={s}").as_bytes())
                        .next()
                        .map(|(_, v)| v.into_owned())
                        .unwrap_or_default()
                };
                restriction.push((decode(name), decode(value)));
            }
        }
        Ok(Some(Scope {
            context,
            resource_type,
            permissions,
            restriction,
        }))
    }

    /// Parses a space-separated scope list, refusing it whole if any scope is malformed.
    pub fn parse_list(text: &str) -> Result<Vec<Scope>, ScopeError> {
        let mut scopes = Vec::new();
        for item in text.split_whitespace() {
            if let Some(scope) = Scope::parse(item)? {
                scopes.push(scope);
            }
        }
        Ok(scopes)
    }

    /// Whether this scope allows `interaction` on `resource_type` (ignoring its restriction).
    /// A wildcard (`*`) covers every type except [`NAMED_ONLY`].
    pub fn allows(&self, interaction: Interaction, resource_type: &str) -> bool {
        self.permissions & interaction.bit() != 0
            && match self.resource_type.as_deref() {
                Some(named) => named == resource_type,
                None => !NAMED_ONLY.contains(&resource_type),
            }
    }
}

impl Scope {
    /// Whether everything this scope allows, `wider` allows too: the same context, the same
    /// type (or a wildcard that reaches it), no permission `wider` lacks, and at least its
    /// restriction. What an authorization server asks before it grants a requested scope.
    pub fn within(&self, wider: &Scope) -> bool {
        self.context == wider.context
            && match (&self.resource_type, &wider.resource_type) {
                (_, None) => self
                    .resource_type
                    .as_deref()
                    .is_none_or(|named| !NAMED_ONLY.contains(&named)),
                (Some(named), Some(theirs)) => named == theirs,
                (None, Some(_)) => false,
            }
            && self.permissions & !wider.permissions == 0
            && wider
                .restriction
                .iter()
                .all(|condition| self.restriction.contains(condition))
    }
}

fn bits(letters: &str) -> u8 {
    letters
        .chars()
        .filter_map(|letter| Interaction::ORDER.iter().find(|(c, _)| *c == letter))
        .fold(0, |acc, (_, i)| acc | i.bit())
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let context = match self.context {
            ScopeContext::Patient => "patient",
            ScopeContext::User => "user",
            ScopeContext::System => "system",
        };
        write!(
            f,
            "{context}/{}.",
            self.resource_type.as_deref().unwrap_or("*")
        )?;
        for (letter, interaction) in Interaction::ORDER {
            if self.permissions & interaction.bit() != 0 {
                write!(f, "{letter}")?;
            }
        }
        for (i, (name, value)) in self.restriction.iter().enumerate() {
            let encoded: String = form_urlencoded::Serializer::new(String::new())
                .append_pair(name, value)
                .finish();
            write!(f, "{}{encoded}", if i == 0 { '?' } else { '&' })?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one(text: &str) -> Scope {
        Scope::parse(text).unwrap().unwrap()
    }

    #[test]
    fn a_scope_is_within_another_only_if_it_allows_no_more() {
        let within = |narrow: &str, wide: &str| one(narrow).within(&one(wide));
        assert!(within("patient/Observation.rs", "patient/*.rs"));
        assert!(within("patient/Observation.r", "patient/Observation.rs"));
        assert!(within(
            "patient/Observation.rs?category=vital-signs",
            "patient/Observation.rs?category=vital-signs"
        ));
        assert!(within(
            "patient/Observation.rs?category=vital-signs",
            "patient/Observation.rs"
        ));
        assert!(!within(
            "patient/Observation.rs",
            "patient/Observation.rs?category=vital-signs"
        ));
        assert!(!within("patient/Observation.crs", "patient/Observation.rs"));
        assert!(!within("patient/*.rs", "patient/Observation.rs"));
        assert!(!within("user/Observation.rs", "patient/Observation.rs"));
        assert!(!within("patient/Condition.rs", "patient/Observation.rs"));
        assert!(
            !within("patient/AuditEvent.rs", "patient/*.rs"),
            "named only"
        );
    }

    #[test]
    fn v2_permissions_are_distinct() {
        let read_only = one("patient/Observation.r");
        assert!(read_only.allows(Interaction::Read, "Observation"));
        assert!(!read_only.allows(Interaction::Search, "Observation"));
        assert!(!read_only.allows(Interaction::Read, "Condition"));
        let search_only = one("user/Observation.s");
        assert!(search_only.allows(Interaction::Search, "Observation"));
        assert!(!search_only.allows(Interaction::Read, "Observation"));
        let create = one("patient/Observation.c");
        assert!(create.allows(Interaction::Create, "Observation"));
        assert!(!create.allows(Interaction::Update, "Observation"));
    }

    #[test]
    fn wildcard_type_covers_every_type() {
        let all = one("system/*.rs");
        assert_eq!(all.context, ScopeContext::System);
        assert!(all.allows(Interaction::Search, "Condition"));
        assert!(!all.allows(Interaction::Create, "Observation"));
    }

    #[test]
    fn a_wildcard_never_reaches_the_audit_trail_or_consents() {
        for wildcard in ["user/*.cruds", "system/*.rs", "patient/*.*"] {
            let scope = one(wildcard);
            for named_only in NAMED_ONLY {
                for interaction in [Interaction::Read, Interaction::Search, Interaction::Create] {
                    assert!(
                        !scope.allows(interaction, named_only),
                        "{wildcard} reaches {named_only}"
                    );
                }
            }
        }
        assert!(one("user/AuditEvent.rs").allows(Interaction::Search, "AuditEvent"));
        assert!(one("patient/Consent.cud").allows(Interaction::Create, "Consent"));
    }

    #[test]
    fn v1_forms_map_onto_v2() {
        assert_eq!(
            one("patient/Observation.read").to_string(),
            "patient/Observation.rs"
        );
        assert_eq!(one("user/Consent.write").to_string(), "user/Consent.cud");
        assert_eq!(one("patient/*.*").to_string(), "patient/*.cruds");
    }

    #[test]
    fn query_restrictions_are_kept_and_round_trip() {
        let scope = one(
            "patient/Observation.rs?category=http://terminology.hl7.org/CodeSystem/observation-category|vital-signs",
        );
        assert_eq!(
            scope.restriction,
            vec![(
                "category".to_owned(),
                "http://terminology.hl7.org/CodeSystem/observation-category|vital-signs".to_owned()
            )]
        );
        assert_eq!(one(&scope.to_string()), scope);
    }

    #[test]
    fn malformed_scopes_are_rejected() {
        for bad in [
            "patient/Observation.sr",
            "patient/Observation.rr",
            "patient/Observation.x",
            "patient/Observation.",
            "patient/Observation",
            "doctor/Observation.rs",
            "patient/observation.rs",
            "patient/Obs-ervation.rs",
            "Observation.rs",
            "patient/Observation.rs?category",
            "patient/Observation.rs?=x",
            "patient/Observation.read?code=1",
        ] {
            assert!(Scope::parse(bad).is_err(), "{bad} was accepted");
        }
        assert!(Scope::parse_list("openid patient/Observation.rs patient/Observation.rx").is_err());
    }

    #[test]
    fn launch_and_identity_scopes_grant_nothing() {
        let scopes =
            Scope::parse_list("openid fhirUser launch/patient offline_access patient/Patient.r")
                .unwrap();
        assert_eq!(scopes.len(), 1);
    }
}

/// Why a backend service uses data (its purpose of use): part of what a region grants it,
/// stated in its audit records, and what a patient's consent may opt out of (HL7 v3
/// ActReason codes).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Purpose {
    /// `treatment`: care of the patients themselves (`TREAT`).
    Treatment,
    /// `quality`: quality registries and improvement (`HQUALIMP`).
    Quality,
    /// `research`: research (`HRESCH`).
    Research,
}

/// The code system of [`Purpose::code`].
pub const PURPOSE_SYSTEM: &str = "http://terminology.hl7.org/CodeSystem/v3-ActReason";

impl Purpose {
    /// Every purpose, in the order they are listed.
    pub const ALL: [Purpose; 3] = [Purpose::Treatment, Purpose::Quality, Purpose::Research];

    /// Its name in a grant (`purpose:<name>`).
    pub fn name(self) -> &'static str {
        match self {
            Purpose::Treatment => "treatment",
            Purpose::Quality => "quality",
            Purpose::Research => "research",
        }
    }

    /// Its HL7 v3 ActReason code.
    pub fn code(self) -> &'static str {
        match self {
            Purpose::Treatment => "TREAT",
            Purpose::Quality => "HQUALIMP",
            Purpose::Research => "HRESCH",
        }
    }

    /// In words, for audit records and pages.
    pub fn display(self) -> &'static str {
        match self {
            Purpose::Treatment => "treatment",
            Purpose::Quality => "health quality improvement",
            Purpose::Research => "research",
        }
    }

    /// How a patient's consent names those who use data for it: `PurposeOfUse/<code>`.
    pub fn consent_actor(self) -> String {
        format!("PurposeOfUse/{}", self.code())
    }

    /// The purpose named `name` (`research`, …).
    pub fn from_name(name: &str) -> Option<Purpose> {
        Purpose::ALL.into_iter().find(|p| p.name() == name)
    }

    /// The purpose of the ActReason `code` (`HRESCH`, …).
    pub fn from_code(code: &str) -> Option<Purpose> {
        Purpose::ALL.into_iter().find(|p| p.code() == code)
    }
}

impl fmt::Display for Purpose {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}
