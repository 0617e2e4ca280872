//! The resource types we serve and their search parameters: one table that drives indexing,
//! query parsing and the CapabilityStatement, so what we advertise is exactly what we do.

use healthcloud_platform::auth::is_fhir_id;
use serde_json::Value;

use crate::date;

/// How a search parameter's values are indexed and matched.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ParamKind {
    /// `system|code` tokens from codes, Codings, CodeableConcepts and Identifiers.
    Token,
    /// Literal references, matched as `Type/id` or a bare `id`; `target` limits the referenced
    /// type. Identifiers inside references are indexed apart and found only with `:identifier`.
    Reference {
        /// The referenced type this parameter is restricted to, if any.
        target: Option<&'static str>,
    },
    /// Case-insensitive prefix match on strings and HumanName parts.
    String,
    /// Dates with the `eq ne gt lt ge le` prefixes.
    Date,
    /// URIs, matched exactly or with `:below` (the URI and everything under it).
    Uri,
    /// Quantities (`value` with its `system` and `code`), compared as numbers with the date
    /// prefixes.
    Quantity,
    /// Numbers (decimals), compared with the date prefixes.
    Number,
    /// A composite of a code and the quantity beside it in one element (`code` and
    /// `valueQuantity`), searched as `system|code$[prefix]number`: the pair must sit in the
    /// same element (the systolic part of a blood pressure at or above 180, not any part).
    /// It searches the rows of the quantity parameter `of`, which carry the codes beside
    /// each quantity; the number compares in the unit it was recorded in.
    CodeQuantity {
        /// The quantity parameter whose rows it searches.
        of: &'static str,
    },
}

impl ParamKind {
    /// The FHIR search parameter type name.
    pub fn fhir_type(self) -> &'static str {
        match self {
            ParamKind::Token => "token",
            ParamKind::Reference { .. } => "reference",
            ParamKind::String => "string",
            ParamKind::Date => "date",
            ParamKind::Uri => "uri",
            ParamKind::Quantity => "quantity",
            ParamKind::Number => "number",
            ParamKind::CodeQuantity { .. } => "composite",
        }
    }

    /// Whether its values are numbers, indexed as quantities.
    pub fn is_numeric(self) -> bool {
        matches!(
            self,
            ParamKind::Quantity | ParamKind::Number | ParamKind::CodeQuantity { .. }
        )
    }
}

/// One supported search parameter.
#[derive(Debug, PartialEq)]
pub struct ParamDef {
    /// The parameter's name in a query string.
    pub name: &'static str,
    /// Its kind.
    pub kind: ParamKind,
    /// Element paths it indexes; `x[x]` stands for a choice element (`effectiveDateTime`, …).
    pub paths: &'static [&'static str],
    /// What it searches, for the CapabilityStatement.
    pub doc: &'static str,
    /// The parameters whose index rows it searches, when it has none of its own
    /// (`combo-code`: those of `code` and `component-code`).
    pub union: &'static [&'static str],
}

impl ParamDef {
    /// The canonical URL of its definition in FHIR R4 on type `resource_type` (or on every
    /// resource), `None` for a parameter of this server's own.
    pub fn canonical(&self, resource_type: &str) -> Option<&'static str> {
        let defined = |on: &str| {
            (crate::elements::SEARCH_PARAMETERS.iter())
                .find(|(base, code, _)| *base == on && *code == self.name)
                .map(|(_, _, url)| *url)
        };
        defined(resource_type).or_else(|| defined("Resource"))
    }

    /// What it searches and how, for the CapabilityStatement.
    pub fn documentation(&self) -> String {
        match self.kind {
            ParamKind::Reference { .. } => format!(
                "{}. Matches literal references (Type/id or id); an identifier inside a \
                 reference only with {}:identifier=system|value; chained as \
                 {}.parameter=value (at most 200 matches)",
                self.doc, self.name, self.name
            ),
            ParamKind::Uri => format!(
                "{}. Exact, :below for a URI and those under it, or :missing=true|false",
                self.doc
            ),
            ParamKind::Token => format!(
                "{}. system|code, code or system|; :not, :missing, and :text for any word of \
                 the code's text or display",
                self.doc
            ),
            ParamKind::CodeQuantity { .. } => format!(
                "{}. As system|code$[prefix]number (e.g. http://loinc.org|8480-6$ge180): the \
                 code and the number in one element; the number compares in the unit it was \
                 recorded in, and a unit in the value is refused",
                self.doc
            ),
            _ => self.doc.to_owned(),
        }
    }
}

/// One supported resource type.
#[derive(Debug)]
pub struct TypeDef {
    /// The resource type name.
    pub name: &'static str,
    /// Search parameters besides `_id`.
    pub params: &'static [ParamDef],
}

const fn p(
    name: &'static str,
    kind: ParamKind,
    paths: &'static [&'static str],
    doc: &'static str,
) -> ParamDef {
    ParamDef {
        name,
        kind,
        paths,
        doc,
        union: &[],
    }
}

/// A parameter that searches the index rows of the parameters `of` together.
const fn union_of(
    name: &'static str,
    kind: ParamKind,
    of: &'static [&'static str],
    doc: &'static str,
) -> ParamDef {
    ParamDef {
        name,
        kind,
        paths: &[],
        doc,
        union: of,
    }
}

const TOKEN: ParamKind = ParamKind::Token;
const STRING: ParamKind = ParamKind::String;
const DATE: ParamKind = ParamKind::Date;
const PATIENT_REF: ParamKind = ParamKind::Reference {
    target: Some("Patient"),
};
const ANY_REF: ParamKind = ParamKind::Reference { target: None };

const fn patient(path: &'static [&'static str]) -> ParamDef {
    p(
        "patient",
        PATIENT_REF,
        path,
        "The patient the resource is about",
    )
}

/// The identifier system of the Devices that stand for installed apps: `publisher/app`.
pub const APP_SYSTEM: &str = "urn:healthcloud:app";

/// Every served type. Types not listed are stored on import but not served.
pub static TYPES: &[TypeDef] = &[
    TypeDef {
        name: "Patient",
        params: &[
            p(
                "identifier",
                TOKEN,
                &["identifier"],
                "A patient identifier, e.g. CPR: urn:oid:1.2.208.176.1.2|value",
            ),
            p(
                "name",
                STRING,
                &["name"],
                "Start of any part of the name, case-insensitive",
            ),
            p(
                "birthdate",
                DATE,
                &["birthDate"],
                "The patient's date of birth",
            ),
            p(
                "general-practitioner",
                ANY_REF,
                &["generalPractitioner"],
                "The patient's GP clinic or practitioner",
            ),
            p(
                "gender",
                TOKEN,
                &["gender"],
                "male, female, other or unknown",
            ),
            p(
                "family",
                STRING,
                &["name.family"],
                "Start of the family name",
            ),
            p("given", STRING, &["name.given"], "Start of a given name"),
            p(
                "address",
                STRING,
                &["address"],
                "Start of any part of the address (street, city, postal code, …)",
            ),
            p(
                "address-city",
                STRING,
                &["address.city"],
                "Start of the city",
            ),
            p(
                "address-postalcode",
                STRING,
                &["address.postalCode"],
                "Start of the postal code",
            ),
        ],
    },
    TypeDef {
        name: "Observation",
        params: &[
            patient(&["subject"]),
            p(
                "subject",
                ANY_REF,
                &["subject"],
                "The subject of the observation",
            ),
            p(
                "code",
                TOKEN,
                &["code"],
                "The observation code (LOINC, NPU)",
            ),
            p(
                "category",
                TOKEN,
                &["category"],
                "The category, e.g. vital-signs or laboratory",
            ),
            p(
                "date",
                DATE,
                &["effective[x]"],
                "When the observation was made",
            ),
            p(
                "identifier",
                TOKEN,
                &["identifier"],
                "A business identifier, e.g. the measuring device's reading id",
            ),
            p(
                "status",
                TOKEN,
                &["status"],
                "registered, preliminary, final, amended, …",
            ),
            p(
                "encounter",
                ParamKind::Reference {
                    target: Some("Encounter"),
                },
                &["encounter"],
                "The encounter it belongs to",
            ),
            p(
                "component-code",
                TOKEN,
                &["component.code"],
                "The code of one of its components",
            ),
            union_of(
                "combo-code",
                TOKEN,
                &["code", "component-code"],
                "The code of the observation or of one of its components",
            ),
            p(
                "value-quantity",
                ParamKind::Quantity,
                &["valueQuantity"],
                "Its value, as [prefix]number[|system|code] (e.g. ge7.5|http://unitsofmeasure.org|mmol/L)",
            ),
            p(
                "component-value-quantity",
                ParamKind::Quantity,
                &["component.valueQuantity"],
                "The value of one of its components, as [prefix]number[|system|code]",
            ),
            p(
                "code-value-quantity",
                ParamKind::CodeQuantity {
                    of: "value-quantity",
                },
                &[],
                "Its code and value together",
            ),
            p(
                "component-code-value-quantity",
                ParamKind::CodeQuantity {
                    of: "component-value-quantity",
                },
                &[],
                "A component's code and value together (e.g. a systolic blood pressure of 180 or more)",
            ),
        ],
    },
    TypeDef {
        name: "Condition",
        params: &[
            p(
                "identifier",
                TOKEN,
                &["identifier"],
                "A business identifier",
            ),
            patient(&["subject"]),
            p(
                "code",
                TOKEN,
                &["code"],
                "The condition code (SNOMED CT, ICD-10)",
            ),
            p(
                "clinical-status",
                TOKEN,
                &["clinicalStatus"],
                "active, resolved, …",
            ),
            p(
                "category",
                TOKEN,
                &["category"],
                "problem-list-item, encounter-diagnosis, …",
            ),
            p(
                "onset-date",
                DATE,
                &["onset[x]"],
                "When the condition began",
            ),
            p(
                "encounter",
                ParamKind::Reference {
                    target: Some("Encounter"),
                },
                &["encounter"],
                "The encounter it belongs to",
            ),
        ],
    },
    TypeDef {
        name: "MedicationStatement",
        params: &[
            p(
                "identifier",
                TOKEN,
                &["identifier"],
                "A business identifier",
            ),
            patient(&["subject"]),
            p("status", TOKEN, &["status"], "active, completed, …"),
            p(
                "code",
                TOKEN,
                &["medicationCodeableConcept"],
                "The medication code (ATC)",
            ),
        ],
    },
    TypeDef {
        name: "MedicationRequest",
        params: &[
            p(
                "identifier",
                TOKEN,
                &["identifier"],
                "A business identifier",
            ),
            patient(&["subject"]),
            p(
                "status",
                TOKEN,
                &["status"],
                "active, completed, stopped, …",
            ),
            p(
                "code",
                TOKEN,
                &["medicationCodeableConcept"],
                "The medication code (ATC)",
            ),
            p("intent", TOKEN, &["intent"], "proposal, plan, order, …"),
            p(
                "authoredon",
                DATE,
                &["authoredOn"],
                "When it was prescribed",
            ),
            p(
                "encounter",
                ParamKind::Reference {
                    target: Some("Encounter"),
                },
                &["encounter"],
                "The encounter it belongs to",
            ),
        ],
    },
    TypeDef {
        name: "AllergyIntolerance",
        params: &[
            p(
                "identifier",
                TOKEN,
                &["identifier"],
                "A business identifier",
            ),
            patient(&["patient"]),
            p(
                "date",
                DATE,
                &["recordedDate"],
                "When the allergy was recorded",
            ),
        ],
    },
    TypeDef {
        name: "Immunization",
        params: &[
            p(
                "identifier",
                TOKEN,
                &["identifier"],
                "A business identifier",
            ),
            patient(&["patient"]),
            p(
                "date",
                DATE,
                &["occurrence[x]"],
                "When the vaccine was given",
            ),
        ],
    },
    TypeDef {
        name: "Encounter",
        params: &[
            p(
                "identifier",
                TOKEN,
                &["identifier"],
                "A business identifier",
            ),
            patient(&["subject"]),
            p("date", DATE, &["period"], "When the encounter took place"),
            p(
                "class",
                TOKEN,
                &["class"],
                "Inpatient, ambulatory, home health, …",
            ),
            p("type", TOKEN, &["type"], "The kind of encounter"),
            p(
                "status",
                TOKEN,
                &["status"],
                "planned, in-progress, finished, …",
            ),
        ],
    },
    TypeDef {
        name: "Procedure",
        params: &[
            p(
                "identifier",
                TOKEN,
                &["identifier"],
                "A business identifier",
            ),
            patient(&["subject"]),
            p(
                "date",
                DATE,
                &["performed[x]"],
                "When the procedure was performed",
            ),
        ],
    },
    TypeDef {
        name: "DiagnosticReport",
        params: &[
            p(
                "identifier",
                TOKEN,
                &["identifier"],
                "A business identifier",
            ),
            patient(&["subject"]),
            p(
                "date",
                DATE,
                &["effective[x]"],
                "The clinically relevant time of the report",
            ),
            p("code", TOKEN, &["code"], "The report's code"),
            p(
                "category",
                TOKEN,
                &["category"],
                "e.g. laboratory, radiology",
            ),
            p(
                "status",
                TOKEN,
                &["status"],
                "registered, partial, final, …",
            ),
            p(
                "result",
                ParamKind::Reference {
                    target: Some("Observation"),
                },
                &["result"],
                "An observation in the report",
            ),
            p(
                "encounter",
                ParamKind::Reference {
                    target: Some("Encounter"),
                },
                &["encounter"],
                "The encounter it belongs to",
            ),
        ],
    },
    TypeDef {
        name: "Organization",
        params: &[
            p(
                "identifier",
                TOKEN,
                &["identifier"],
                "An identifier, e.g. SOR: urn:oid:1.2.208.176.1.1|value",
            ),
            p(
                "name",
                STRING,
                &["name", "alias"],
                "Start of the name or an alias, case-insensitive",
            ),
        ],
    },
    TypeDef {
        name: "Practitioner",
        params: &[
            p(
                "identifier",
                TOKEN,
                &["identifier"],
                "An identifier, e.g. an authorization id",
            ),
            p(
                "name",
                STRING,
                &["name"],
                "Start of any part of the name, case-insensitive",
            ),
            p(
                "family",
                STRING,
                &["name.family"],
                "Start of the family name",
            ),
            p("given", STRING, &["name.given"], "Start of a given name"),
        ],
    },
    TypeDef {
        name: "PractitionerRole",
        params: &[
            p(
                "identifier",
                TOKEN,
                &["identifier"],
                "An identifier of the role",
            ),
            p(
                "practitioner",
                ParamKind::Reference {
                    target: Some("Practitioner"),
                },
                &["practitioner"],
                "The practitioner in the role",
            ),
            p(
                "organization",
                ParamKind::Reference {
                    target: Some("Organization"),
                },
                &["organization"],
                "The organization the role is at",
            ),
            p(
                "role",
                TOKEN,
                &["code"],
                "The role, e.g. general practitioner",
            ),
            p("specialty", TOKEN, &["specialty"], "The specialty"),
        ],
    },
    TypeDef {
        name: "Location",
        params: &[
            p(
                "identifier",
                TOKEN,
                &["identifier"],
                "An identifier, e.g. SOR",
            ),
            p(
                "name",
                STRING,
                &["name", "alias"],
                "Start of the name or an alias",
            ),
            p(
                "organization",
                ParamKind::Reference {
                    target: Some("Organization"),
                },
                &["managingOrganization"],
                "The organization that runs the location",
            ),
            p(
                "address-city",
                STRING,
                &["address.city"],
                "Start of the city",
            ),
        ],
    },
    TypeDef {
        name: "Medication",
        params: &[
            p(
                "code",
                TOKEN,
                &["code"],
                "The medication's code, e.g. ATC or RxNorm",
            ),
            p(
                "identifier",
                TOKEN,
                &["identifier"],
                "An identifier of the medication",
            ),
        ],
    },
    TypeDef {
        name: "Provenance",
        params: &[
            patient(&["target"]),
            p(
                "target",
                ANY_REF,
                &["target"],
                "What the provenance is about",
            ),
            p("recorded", DATE, &["recorded"], "When it was recorded"),
            p("agent", ANY_REF, &["agent.who"], "Who took part"),
        ],
    },
    TypeDef {
        name: "DocumentReference",
        params: &[
            patient(&["subject"]),
            p("date", DATE, &["date"], "When the reference was created"),
            p("type", TOKEN, &["type"], "The kind of document"),
            p("category", TOKEN, &["category"], "The document's category"),
            p(
                "status",
                TOKEN,
                &["status"],
                "current, superseded or entered-in-error",
            ),
            p(
                "identifier",
                TOKEN,
                &["masterIdentifier", "identifier"],
                "The document's identifiers",
            ),
        ],
    },
    TypeDef {
        name: "Composition",
        params: &[
            p(
                "identifier",
                TOKEN,
                &["identifier"],
                "A business identifier",
            ),
            patient(&["subject"]),
            p("date", DATE, &["date"], "When the composition was edited"),
            p(
                "type",
                TOKEN,
                &["type"],
                "The kind of composition, e.g. a patient summary",
            ),
            p(
                "status",
                TOKEN,
                &["status"],
                "preliminary, final, amended, …",
            ),
        ],
    },
    TypeDef {
        name: "CarePlan",
        params: &[
            p(
                "identifier",
                TOKEN,
                &["identifier"],
                "A business identifier",
            ),
            patient(&["subject"]),
            p("date", DATE, &["period"], "The period the plan covers"),
            p("status", TOKEN, &["status"], "draft, active, completed, …"),
            p("category", TOKEN, &["category"], "The kind of plan"),
        ],
    },
    TypeDef {
        name: "CareTeam",
        params: &[
            p(
                "identifier",
                TOKEN,
                &["identifier"],
                "A business identifier",
            ),
            patient(&["subject"]),
            p("date", DATE, &["period"], "The period the team covers"),
            p(
                "status",
                TOKEN,
                &["status"],
                "proposed, active, inactive, …",
            ),
        ],
    },
    TypeDef {
        name: "Group",
        params: &[
            p(
                "identifier",
                TOKEN,
                &["identifier"],
                "An identifier of the group",
            ),
            p(
                "type",
                TOKEN,
                &["type"],
                "person, practitioner, device, medication, substance or animal",
            ),
            p("code", TOKEN, &["code"], "What kind of group it is"),
            p(
                "actual",
                TOKEN,
                &["actual"],
                "true: its members are listed; false: it is defined by characteristics",
            ),
            p(
                "member",
                ANY_REF,
                &["member.entity"],
                "A member, e.g. Patient/<id>",
            ),
            p(
                "managing-entity",
                ANY_REF,
                &["managingEntity"],
                "Who keeps the group, e.g. Organization/<id>",
            ),
        ],
    },
    TypeDef {
        name: "Goal",
        params: &[
            p(
                "identifier",
                TOKEN,
                &["identifier"],
                "A business identifier",
            ),
            patient(&["subject"]),
            p(
                "lifecycle-status",
                TOKEN,
                &["lifecycleStatus"],
                "proposed, active, completed, …",
            ),
            p(
                "start-date",
                DATE,
                &["start[x]"],
                "When the goal was started",
            ),
        ],
    },
    TypeDef {
        name: "Binary",
        params: &[p(
            "patient",
            PATIENT_REF,
            &["securityContext"],
            "The patient whose record holds it: its securityContext, which must name the Patient",
        )],
    },
    TypeDef {
        name: "RiskAssessment",
        params: &[
            p(
                "identifier",
                TOKEN,
                &["identifier"],
                "A business identifier",
            ),
            patient(&["subject"]),
            p(
                "date",
                DATE,
                &["occurrence[x]"],
                "When the assessment was made",
            ),
            p(
                "probability",
                ParamKind::Number,
                &["prediction.probabilityDecimal"],
                "The likelihood of an outcome, as [prefix]number (e.g. ge0.2)",
            ),
            p(
                "risk",
                TOKEN,
                &["prediction.qualitativeRisk"],
                "The likelihood as a code (high, moderate, low)",
            ),
            p("method", TOKEN, &["method"], "How the risk was assessed"),
            p(
                "encounter",
                ParamKind::Reference {
                    target: Some("Encounter"),
                },
                &["encounter"],
                "The encounter it was made in",
            ),
        ],
    },
    TypeDef {
        name: "ServiceRequest",
        params: &[
            p(
                "identifier",
                TOKEN,
                &["identifier"],
                "A business identifier",
            ),
            patient(&["subject"]),
            p(
                "authored",
                DATE,
                &["authoredOn"],
                "When the request was made",
            ),
            p("status", TOKEN, &["status"], "draft, active, completed, …"),
            p("code", TOKEN, &["code"], "What is requested"),
            p("category", TOKEN, &["category"], "The kind of service"),
            p("intent", TOKEN, &["intent"], "proposal, plan, order, …"),
            p(
                "performer",
                ANY_REF,
                &["performer"],
                "Who is asked to perform it",
            ),
        ],
    },
    TypeDef {
        name: "Task",
        params: &[
            p(
                "identifier",
                TOKEN,
                &["identifier"],
                "A business identifier",
            ),
            patient(&["for"]),
            p(
                "authored-on",
                DATE,
                &["authoredOn"],
                "When the task was created",
            ),
            p(
                "status",
                TOKEN,
                &["status"],
                "requested, in-progress, completed, …",
            ),
            p("code", TOKEN, &["code"], "The kind of task"),
            p(
                "owner",
                ANY_REF,
                &["owner"],
                "Who is responsible for the task",
            ),
        ],
    },
    TypeDef {
        name: "Appointment",
        params: &[
            p(
                "identifier",
                TOKEN,
                &["identifier"],
                "A business identifier",
            ),
            patient(&["participant.actor"]),
            p("date", DATE, &["start"], "When the appointment starts"),
            p(
                "status",
                TOKEN,
                &["status"],
                "booked, fulfilled, cancelled, …",
            ),
        ],
    },
    TypeDef {
        name: "EpisodeOfCare",
        params: &[
            p(
                "identifier",
                TOKEN,
                &["identifier"],
                "A business identifier",
            ),
            patient(&["patient"]),
            p("date", DATE, &["period"], "The period of the episode"),
            p("status", TOKEN, &["status"], "planned, active, finished, …"),
            p("type", TOKEN, &["type"], "The kind of episode"),
        ],
    },
    TypeDef {
        name: "QuestionnaireResponse",
        params: &[
            p(
                "identifier",
                TOKEN,
                &["identifier"],
                "A business identifier",
            ),
            patient(&["subject"]),
            p(
                "authored",
                DATE,
                &["authored"],
                "When the answers were given",
            ),
            p("status", TOKEN, &["status"], "in-progress, completed, …"),
            p(
                "questionnaire",
                ParamKind::Uri,
                &["questionnaire"],
                "The questionnaire answered (its canonical URL)",
            ),
        ],
    },
    // What Synthea writes beside the clinical record, so nothing an imported record refers to
    // dangles: claims and their explanations, imaging, administrations, deliveries, media and
    // the patient's devices.
    TypeDef {
        name: "Claim",
        params: &[
            p(
                "identifier",
                TOKEN,
                &["identifier"],
                "A business identifier",
            ),
            patient(&["patient"]),
            p("created", DATE, &["created"], "When the claim was created"),
            p(
                "status",
                TOKEN,
                &["status"],
                "active, cancelled, draft, entered-in-error",
            ),
            p(
                "use",
                TOKEN,
                &["use"],
                "claim, preauthorization, predetermination",
            ),
            p(
                "provider",
                ParamKind::Reference { target: None },
                &["provider"],
                "Who provided the care claimed for",
            ),
            p(
                "encounter",
                ParamKind::Reference {
                    target: Some("Encounter"),
                },
                &["item.encounter"],
                "An encounter the claim's items are for",
            ),
        ],
    },
    TypeDef {
        name: "ExplanationOfBenefit",
        params: &[
            p(
                "identifier",
                TOKEN,
                &["identifier"],
                "A business identifier",
            ),
            patient(&["patient"]),
            p("created", DATE, &["created"], "When it was created"),
            p(
                "status",
                TOKEN,
                &["status"],
                "active, cancelled, draft, entered-in-error",
            ),
            p(
                "claim",
                ParamKind::Reference {
                    target: Some("Claim"),
                },
                &["claim"],
                "The claim it explains",
            ),
            p(
                "provider",
                ParamKind::Reference { target: None },
                &["provider"],
                "Who provided the care",
            ),
        ],
    },
    TypeDef {
        name: "ImagingStudy",
        params: &[
            p(
                "identifier",
                TOKEN,
                &["identifier"],
                "A business identifier",
            ),
            patient(&["subject"]),
            p("started", DATE, &["started"], "When the study started"),
            p(
                "status",
                TOKEN,
                &["status"],
                "registered, available, cancelled, …",
            ),
            p(
                "modality",
                TOKEN,
                &["series.modality"],
                "The modality of a series",
            ),
            p(
                "encounter",
                ParamKind::Reference {
                    target: Some("Encounter"),
                },
                &["encounter"],
                "The encounter it belongs to",
            ),
        ],
    },
    TypeDef {
        name: "MedicationAdministration",
        params: &[
            p(
                "identifier",
                TOKEN,
                &["identifier"],
                "A business identifier",
            ),
            patient(&["subject"]),
            p(
                "effective-time",
                DATE,
                &["effective[x]"],
                "When the medication was given",
            ),
            p("status", TOKEN, &["status"], "in-progress, completed, …"),
            p(
                "code",
                TOKEN,
                &["medicationCodeableConcept"],
                "The medication, as a code",
            ),
            p(
                "medication",
                ParamKind::Reference {
                    target: Some("Medication"),
                },
                &["medicationReference"],
                "The medication, as a reference",
            ),
            p(
                "context",
                ParamKind::Reference { target: None },
                &["context"],
                "The encounter or episode it was given in",
            ),
        ],
    },
    TypeDef {
        name: "SupplyDelivery",
        params: &[
            p(
                "identifier",
                TOKEN,
                &["identifier"],
                "A business identifier",
            ),
            patient(&["patient"]),
            p(
                "status",
                TOKEN,
                &["status"],
                "in-progress, completed, abandoned, …",
            ),
            p(
                "supplier",
                ParamKind::Reference { target: None },
                &["supplier"],
                "Who supplied it",
            ),
        ],
    },
    TypeDef {
        name: "Media",
        params: &[
            p(
                "identifier",
                TOKEN,
                &["identifier"],
                "A business identifier",
            ),
            patient(&["subject"]),
            p("created", DATE, &["created[x]"], "When it was taken"),
            p(
                "status",
                TOKEN,
                &["status"],
                "preparation, in-progress, completed, …",
            ),
            p("type", TOKEN, &["type"], "image, video, audio"),
            p(
                "encounter",
                ParamKind::Reference {
                    target: Some("Encounter"),
                },
                &["encounter"],
                "The encounter it belongs to",
            ),
        ],
    },
    TypeDef {
        name: "Device",
        params: &[
            p(
                "identifier",
                TOKEN,
                &["identifier"],
                "A business identifier",
            ),
            patient(&["patient"]),
            p("type", TOKEN, &["type"], "The kind of device"),
            p(
                "status",
                TOKEN,
                &["status"],
                "active, inactive, entered-in-error, unknown",
            ),
            p(
                "device-name",
                STRING,
                &["deviceName.name"],
                "A name of the device",
            ),
            p(
                "udi-carrier",
                STRING,
                &["udiCarrier.carrierHRF"],
                "The device's UDI, as printed",
            ),
        ],
    },
    TypeDef {
        name: "Consent",
        params: &[
            p(
                "identifier",
                TOKEN,
                &["identifier"],
                "A business identifier",
            ),
            patient(&["patient"]),
            p("status", TOKEN, &["status"], "active, inactive, …"),
        ],
    },
    TypeDef {
        name: "AuditEvent",
        params: &[
            patient(&["entity.what"]),
            p("date", DATE, &["recorded"], "When the access happened"),
            p(
                "agent",
                ANY_REF,
                &["agent.who"],
                "Who accessed: a user id, Practitioner/… or Device/<app>",
            ),
        ],
    },
];

/// When a resource was last written here: its row's `last_updated` (and its `meta`).
pub const LAST_UPDATED: &str = "_lastUpdated";

/// Search parameters every served type has besides `_id`.
pub static COMMON_PARAMS: &[ParamDef] = &[
    p(
        "_source",
        ParamKind::Uri,
        &["meta.source"],
        "Who wrote the resource: resources written through this server carry urn:healthcloud:written:…, \
         set by the server (never by the client); imported data keeps its own source",
    ),
    p(
        LAST_UPDATED,
        DATE,
        &["meta.lastUpdated"],
        "When the resource was last written here",
    ),
    p(
        "_tag",
        TOKEN,
        &["meta.tag"],
        "A tag of the resource (system|code)",
    ),
    p(
        "_security",
        TOKEN,
        &["meta.security"],
        "A security label of the resource (system|code)",
    ),
    p(
        "_profile",
        ParamKind::Uri,
        &["meta.profile"],
        "A profile the resource claims to conform to (canonical URL)",
    ),
];

/// The definition of a served type.
pub fn type_def(resource_type: &str) -> Option<&'static TypeDef> {
    TYPES.iter().find(|t| t.name == resource_type)
}

impl TypeDef {
    /// A search parameter of this type by name.
    pub fn param(&self, name: &str) -> Option<&'static ParamDef> {
        self.all_params().find(|p| p.name == name)
    }

    /// Its own search parameters, then the ones every type has.
    pub fn all_params(&self) -> impl Iterator<Item = &'static ParamDef> + use<> {
        self.params.iter().chain(COMMON_PARAMS)
    }

    /// Whether clients may create, update, patch and delete resources of the type (as their
    /// scopes allow). Patients come from the population register, and the audit trail is
    /// written by the platform alone.
    pub fn writable(&self) -> bool {
        !matches!(self.name, "Patient" | "AuditEvent")
    }

    /// Whether the type lives in a patient's compartment.
    pub fn in_patient_compartment(&self) -> bool {
        self.name == "Patient" || self.params.iter().any(|p| p.name == "patient")
    }

    /// Whether a resource of this type is served only once it is in a patient's compartment.
    /// Patient data naming its patient otherwise than literally (by identifier, a contained
    /// Patient) would be outside every consent and confinement, and in nobody's log: it is
    /// kept as imported but reaches no one. A Patient is its own compartment; the audit trail
    /// also records accesses that concern no patient.
    pub fn placed_only(&self) -> bool {
        self.in_patient_compartment() && !matches!(self.name, "Patient" | "AuditEvent")
    }

    /// What makes a resource of this type that is in no patient's compartment shared data
    /// rather than patient data that could not be placed: an index token `(param, system)` —
    /// for a Device, an identifier of [`APP_SYSTEM`] (it stands for an installed app, and only
    /// the platform records those: a write of an unplaced Device is refused).
    pub fn shared_unplaced(&self) -> Option<(&'static str, &'static str)> {
        (self.name == "Device").then_some(("identifier", APP_SYSTEM))
    }

    /// Whether its resources list patients without being any one patient's data (a Group's
    /// members: a cohort). Access confined to one patient's record never reaches them.
    pub fn lists_patients(&self) -> bool {
        self.name == "Group"
    }

    /// Whether `_sort=date` applies.
    pub fn sortable_by_date(&self) -> bool {
        self.params.iter().any(|p| p.name == "date")
    }
}

/// One indexed quantity (or number) of a resource.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct QuantityRow {
    /// The parameter.
    pub param: &'static str,
    /// The unit's system (none for a number).
    pub system: String,
    /// The unit's code (or, without one, the unit as written).
    pub code: String,
    /// The value in millionths of the unit: the lowest…
    pub lo: i64,
    /// …and the highest.
    pub hi: i64,
    /// The codes of the element the quantity sits in (`Observation.code` beside its
    /// `valueQuantity`, a component's `code` beside its own), as ` system|code ` each, for
    /// the composites; empty when there are none.
    pub concept: String,
}

/// Index rows extracted from one resource.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct IndexRows {
    /// `(param, system, value)`; references use the referenced type as system.
    pub tokens: Vec<(&'static str, String, String)>,
    /// `(param, system, value)` of the Identifiers inside references: what a writer claims the
    /// reference points at, unchecked. Stored under `<param>:identifier`
    /// ([`identifier_param`]), so only that modifier finds them, never a search by id.
    pub reference_identifiers: Vec<(&'static str, String, String)>,
    /// The text of the code each token row of `tokens` came from (`CodeableConcept.text`,
    /// `Coding.display`), as [`crate::text::searchable`] writes it, for `:text`. Stored
    /// beside the row.
    pub token_texts: std::collections::BTreeMap<(&'static str, String, String), String>,
    /// `(param, lo, hi)`.
    pub dates: Vec<(&'static str, i64, i64)>,
    /// Quantities and numbers.
    pub quantities: Vec<QuantityRow>,
    /// The patient whose compartment holds the resource.
    pub patient_id: Option<String>,
    /// The resource's primary date, for `_sort=date`.
    pub sort_date: Option<i64>,
}

/// Why a resource cannot be placed in one patient compartment.
#[derive(Debug, thiserror::Error, PartialEq)]
#[error("{path}: {message}")]
pub struct IndexError {
    /// The offending element.
    pub path: String,
    /// What is wrong with it.
    pub message: String,
}

/// Extracts the search index of `resource` (of a served type; other types get only their
/// compartment from `subject`/`patient`).
pub fn index(resource_type: &str, id: &str, resource: &Value) -> Result<IndexRows, IndexError> {
    index_where(resource_type, id, resource, |_| true)
}

/// [`index`], with rows only for the parameters `wanted` names, besides the resource's patient
/// and its dates (which place and order it, and refuse it as in `index` when they are not
/// dates): enough to hold it to a search that reads only those, at a fraction of the cost (a
/// code's texts are folded and a string's forms made only when they are read).
pub fn index_where(
    resource_type: &str,
    id: &str,
    resource: &Value,
    wanted: impl Fn(&str) -> bool,
) -> Result<IndexRows, IndexError> {
    let mut rows = IndexRows::default();
    let Some(def) = type_def(resource_type) else {
        rows.patient_id = ["subject", "patient"]
            .iter()
            .filter_map(|key| resource.get(*key))
            .find_map(|r| {
                parse_reference(r)
                    .filter(|(t, _)| t == "Patient")
                    .map(|(_, id)| id)
            });
        return Ok(rows);
    };
    if def.name == "Patient" {
        rows.patient_id = Some(id.to_owned());
    }
    let indexed = |param: &ParamDef| {
        wanted(param.name) || param.kind == PATIENT_REF || param.kind == ParamKind::Date
    };
    for param in def.all_params().filter(|param| indexed(param)) {
        for path in param.paths {
            // A choice element is a date only in its date-typed variants; `occurrenceString`
            // or `performedAge` are valid FHIR that date search cannot see.
            let concrete: Vec<String> = match (param.kind, path.strip_suffix("[x]")) {
                (ParamKind::Date, Some(stem)) => ["DateTime", "Instant", "Date", "Period"]
                    .iter()
                    .map(|suffix| format!("{stem}{suffix}"))
                    .collect(),
                _ => vec![(*path).to_owned()],
            };
            // Each value with the element holding it (a quantity's codes sit beside it).
            let values: Vec<(&Value, &Value)> = match path.rsplit_once('.') {
                Some((parent, leaf)) if param.kind == ParamKind::Quantity => {
                    (select(resource, parent))
                        .into_iter()
                        .flat_map(|holder| {
                            select(holder, leaf).into_iter().map(move |v| (holder, v))
                        })
                        .collect()
                }
                _ => (concrete.iter())
                    .flat_map(|p| select(resource, p))
                    .map(|v| (resource, v))
                    .collect(),
            };
            for (holder, value) in values {
                match param.kind {
                    ParamKind::Token => {
                        // A code's text is kept once, beside its first coding's row, and no
                        // row's texts grow past what one text may be.
                        let mut text = crate::text::searchable(&code_texts(value));
                        tokens(value, &mut |system, code| {
                            if let Some(text) = text.take() {
                                let key = (param.name, system.clone(), code.clone());
                                let kept = rows.token_texts.entry(key).or_default();
                                if !kept.contains(text.as_str())
                                    && kept.len() + text.len() <= crate::text::MAX_TEXT
                                {
                                    kept.push_str(&text);
                                }
                            }
                            rows.tokens.push((param.name, system, code))
                        });
                        // A code that is only text has a row of its own for it.
                        if let Some(text) = text {
                            let key = (param.name, String::new(), String::new());
                            rows.token_texts.entry(key.clone()).or_insert(text);
                            rows.tokens.push(key);
                        }
                    }
                    ParamKind::Reference { target } => {
                        let literal = parse_reference(value);
                        let claimed_type = literal
                            .as_ref()
                            .map(|(ty, _)| ty.as_str())
                            .or_else(|| value.get("type").and_then(Value::as_str));
                        if target.is_some_and(|t| claimed_type.is_some_and(|ty| ty != t)) {
                            continue;
                        }
                        if let Some(identifier) = value.get("identifier")
                            && let Some(v) = identifier.get("value").and_then(Value::as_str)
                            && !v.is_empty()
                        {
                            let system = identifier.get("system").and_then(Value::as_str);
                            rows.reference_identifiers.push((
                                param.name,
                                system.unwrap_or_default().to_owned(),
                                v.to_owned(),
                            ));
                        }
                        if let Some((ty, rid)) = literal {
                            if param.kind == PATIENT_REF {
                                match &rows.patient_id {
                                    Some(existing) if *existing != rid => {
                                        return Err(IndexError {
                                            path: format!("{resource_type}.{path}"),
                                            message: format!(
                                                "refers to two patients (Patient/{existing} and Patient/{rid}); \
                                                 a resource belongs to one patient"
                                            ),
                                        });
                                    }
                                    _ => rows.patient_id = Some(rid.clone()),
                                }
                            }
                            rows.tokens.push((param.name, ty, rid));
                        }
                    }
                    ParamKind::Uri => {
                        if let Some(uri) = value.as_str() {
                            rows.tokens
                                .push((param.name, String::new(), uri.to_owned()));
                        }
                    }
                    ParamKind::String => strings(value, &mut |s| {
                        for form in crate::text::folds(s) {
                            rows.tokens.push((param.name, String::new(), form));
                        }
                        rows.tokens
                            .push((param.name, crate::text::EXACT.to_owned(), s.to_owned()));
                    }),
                    ParamKind::Number => {
                        if let Some(scaled) = value.as_f64().and_then(millionths) {
                            rows.quantities.push(QuantityRow {
                                param: param.name,
                                system: String::new(),
                                code: String::new(),
                                lo: scaled,
                                hi: scaled,
                                concept: String::new(),
                            });
                        }
                    }
                    // Searches the rows of the quantity parameter it names.
                    ParamKind::CodeQuantity { .. } => {}
                    ParamKind::Quantity => {
                        let quantity = value;
                        let number = quantity.get("value").and_then(Value::as_f64);
                        if let Some(scaled) = number.and_then(millionths) {
                            let text = |key: &str| {
                                quantity
                                    .get(key)
                                    .and_then(Value::as_str)
                                    .unwrap_or_default()
                            };
                            let code = match text("code") {
                                "" => text("unit"),
                                code => code,
                            };
                            let mut concept = String::new();
                            // A code with a space in it could pass for two: it is left out.
                            if let Some(codes) = holder.get("code") {
                                tokens(codes, &mut |system, code| {
                                    let spaced = |s: &str| s.contains(char::is_whitespace);
                                    if !spaced(&system) && !spaced(&code) {
                                        concept.push_str(&format!(" {system}|{code} "));
                                    }
                                });
                            }
                            rows.quantities.push(QuantityRow {
                                param: param.name,
                                system: text("system").to_owned(),
                                code: code.to_owned(),
                                lo: scaled,
                                hi: scaled,
                                concept,
                            });
                        }
                    }
                    ParamKind::Date => {
                        if let Some(range) = date_range(value) {
                            if param.name == "date" && rows.sort_date.is_none() {
                                rows.sort_date = Some(range.lo);
                            }
                            rows.dates.push((param.name, range.lo, range.hi));
                        } else {
                            return Err(IndexError {
                                path: format!("{resource_type}.{}", path.replace("[x]", "")),
                                message: format!("not a valid FHIR date or period: {value}"),
                            });
                        }
                    }
                }
            }
        }
    }
    // The same token can come from two elements (a name's text and family, say); index it once.
    rows.tokens.sort_unstable();
    rows.tokens.dedup();
    rows.reference_identifiers.sort_unstable();
    rows.reference_identifiers.dedup();
    rows.dates.sort_unstable();
    rows.dates.dedup();
    rows.quantities.sort_unstable();
    rows.quantities.dedup();
    Ok(rows)
}

/// The index name under which the Identifiers inside references of `param` are stored and
/// searched (`subject:identifier`): a name no search by id can reach.
pub fn identifier_param(param: &str) -> String {
    format!("{param}:identifier")
}

/// Whether `def` is its type's compartment parameter (`patient`): its value is the resource
/// row's own `patient_id`, so its index rows are not stored (they are kept in memory, for
/// what sources send).
pub fn is_compartment(def: &ParamDef) -> bool {
    def.name == "patient" && def.kind == PATIENT_REF
}

/// The texts of a code: a CodeableConcept's `text` and its Codings' `display`, or a Coding's
/// `display`.
fn code_texts(value: &Value) -> Vec<&str> {
    let mut texts: Vec<&str> = Vec::new();
    if let Some(text) = value.get("text").and_then(Value::as_str) {
        texts.push(text);
    }
    let codings = match value.get("coding") {
        Some(Value::Array(codings)) => codings.iter().collect(),
        _ => vec![value],
    };
    texts.extend(codings.iter().filter_map(|c| c.get("display")?.as_str()));
    texts.retain(|text| !text.trim().is_empty());
    // What is kept of them is bounded (`text::MAX_TEXT`): so is what is folded.
    let mut length = 0;
    texts.retain(|text| {
        let before = length;
        length += text.len();
        before < crate::text::MAX_TEXT
    });
    texts
}

/// The values at a dotted path, descending through arrays; `x[x]` matches choice elements.
pub fn select<'a>(resource: &'a Value, path: &str) -> Vec<&'a Value> {
    let mut current = vec![resource];
    for segment in path.split('.') {
        let mut next = Vec::new();
        for value in current {
            let Some(object) = value.as_object() else {
                continue;
            };
            let matches: Vec<&Value> = match segment.strip_suffix("[x]") {
                Some(prefix) => object
                    .iter()
                    .filter(|(k, _)| {
                        k.strip_prefix(prefix)
                            .is_some_and(|rest| rest.starts_with(|c: char| c.is_ascii_uppercase()))
                    })
                    .map(|(_, v)| v)
                    .collect(),
                None => object.get(segment).into_iter().collect(),
            };
            for m in matches {
                match m {
                    Value::Array(items) => next.extend(items.iter()),
                    other => next.push(other),
                }
            }
        }
        current = next;
    }
    current
}

/// `(type, id)` of a literal reference to a resource here: `Patient/123` (or a version of
/// it). An absolute URL names a resource on another server, not the one here with the same
/// type and id: it is filed under no local id (the API makes references under its own base
/// relative before anything is stored).
pub fn parse_reference(value: &Value) -> Option<(String, String)> {
    let reference = value.get("reference")?.as_str()?;
    match reference.contains("://") {
        true => None,
        false => split_reference(reference),
    }
}

/// Calls `f` with every literal `reference` string in `value`.
pub fn for_each_reference(value: &mut Value, f: &mut impl FnMut(&mut String)) {
    match value {
        Value::Object(object) => {
            for (key, child) in object.iter_mut() {
                match (key.as_str(), child) {
                    ("reference", Value::String(reference)) => f(reference),
                    (_, child) => for_each_reference(child, f),
                }
            }
        }
        Value::Array(items) => items
            .iter_mut()
            .for_each(|item| for_each_reference(item, f)),
        _ => {}
    }
}

/// Splits `Type/id` (or `…/Type/id`, or `Type/id/_history/n`) into its parts.
pub fn split_reference(reference: &str) -> Option<(String, String)> {
    let reference = reference.split("/_history/").next()?;
    let mut parts = reference.rsplit('/');
    let id = parts.next()?;
    let ty = parts.next()?;
    let valid_type = ty.starts_with(|c: char| c.is_ascii_uppercase())
        && ty.chars().all(|c| c.is_ascii_alphanumeric());
    (valid_type && is_fhir_id(id)).then(|| (ty.to_owned(), id.to_owned()))
}

fn tokens(value: &Value, emit: &mut impl FnMut(String, String)) {
    let text = |v: Option<&Value>| v.and_then(Value::as_str).unwrap_or_default().to_owned();
    match value {
        Value::String(code) => emit(String::new(), code.clone()),
        Value::Bool(b) => emit(String::new(), b.to_string()),
        Value::Object(object) => {
            if let Some(Value::Array(codings)) = object.get("coding") {
                for coding in codings {
                    tokens(coding, emit);
                }
            } else if object.contains_key("code") {
                emit(text(object.get("system")), text(object.get("code")));
            } else if object.contains_key("value") {
                emit(text(object.get("system")), text(object.get("value")));
            }
        }
        _ => {}
    }
}

fn strings(value: &Value, emit: &mut impl FnMut(&str)) {
    match value {
        Value::String(s) => emit(s),
        Value::Object(name) => {
            // A HumanName's parts, and an Address's.
            for key in [
                "text",
                "family",
                "given",
                "prefix",
                "line",
                "city",
                "district",
                "state",
                "postalCode",
                "country",
            ] {
                match name.get(key) {
                    Some(Value::String(s)) => emit(s),
                    Some(Value::Array(items)) => {
                        items.iter().filter_map(Value::as_str).for_each(&mut *emit)
                    }
                    _ => {}
                }
            }
        }
        _ => {}
    }
}

/// `value` in millionths, when it is a number that fits.
pub fn millionths(value: f64) -> Option<i64> {
    let scaled = (value * 1_000_000.0).round();
    (scaled.is_finite() && scaled.abs() < 9.0e18).then_some(scaled as i64)
}

fn date_range(value: &Value) -> Option<date::DateRange> {
    match value {
        Value::String(s) => date::parse(s),
        Value::Object(period) => {
            let bound = |key: &str| period.get(key).and_then(Value::as_str).map(date::parse);
            let lo = match bound("start") {
                Some(parsed) => parsed?.lo,
                None => i64::MIN,
            };
            let hi = match bound("end") {
                Some(parsed) => parsed?.hi,
                None => i64::MAX,
            };
            (lo != i64::MIN || hi != i64::MAX).then_some(date::DateRange { lo, hi })
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_codes_text_is_kept_once_and_bounded() {
        let codings: Vec<Value> = (0..5000)
            .map(|i| json!({"system": "s", "code": i.to_string(), "display": format!("word{i}")}))
            .collect();
        let concepts: Vec<Value> = (0..500)
            .map(|i| json!({"coding": [{"system": "s", "code": "same"}], "text": format!("text {i}")}))
            .collect();
        let obs = json!({"resourceType": "Observation", "status": "final",
            "code": {"coding": codings, "text": "long ".repeat(1000)},
            "category": concepts, "subject": {"reference": "Patient/p"}});
        let rows = index("Observation", "o", &obs).unwrap();
        let kept: usize = rows.token_texts.values().map(String::len).sum();
        assert!(kept <= 2 * (crate::text::MAX_TEXT + 1), "{kept}");
        assert_eq!(
            rows.token_texts
                .keys()
                .filter(|(p, ..)| *p == "code")
                .count(),
            1
        );
    }

    #[test]
    fn every_patient_parameter_is_the_compartment() {
        // The store keeps no index rows of `patient`: it is the resource's `patient_id`.
        for t in TYPES {
            if let Some(def) = t.param("patient") {
                assert!(is_compartment(def), "{}", t.name);
            }
        }
    }

    #[test]
    fn every_parameter_is_one_r4_defines() {
        let own: Vec<String> = (TYPES.iter())
            .flat_map(|t| t.all_params().map(move |p| (t, p)))
            .filter(|(t, p)| p.canonical(t.name).is_none())
            .map(|(t, p)| format!("{}.{}", t.name, p.name))
            .collect();
        // A Binary's place in a record is its securityContext.
        assert_eq!(own, ["Binary.patient"]);
        let observation = type_def("Observation").unwrap();
        let patient = observation.param("patient").unwrap();
        assert_eq!(
            patient.canonical("Observation"),
            Some("http://hl7.org/fhir/SearchParameter/clinical-patient")
        );
        let tag = observation.param("_tag").unwrap();
        assert_eq!(
            tag.canonical("Observation"),
            Some("http://hl7.org/fhir/SearchParameter/Resource-tag")
        );
    }

    #[test]
    fn observation_index_has_compartment_codes_and_date() {
        let obs = json!({
            "resourceType": "Observation", "status": "final",
            "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category", "code": "vital-signs"}]}],
            "code": {"coding": [{"system": "http://loinc.org", "code": "85354-9"}]},
            "subject": {"reference": "Patient/p1"},
            "effectiveDateTime": "2024-03-01T10:00:00Z"
        });
        let rows = index("Observation", "o1", &obs).unwrap();
        assert_eq!(rows.patient_id.as_deref(), Some("p1"));
        assert!(
            rows.tokens
                .contains(&("code", "http://loinc.org".into(), "85354-9".into()))
        );
        assert!(
            rows.tokens
                .contains(&("patient", "Patient".into(), "p1".into()))
        );
        assert!(
            rows.tokens
                .contains(&("subject", "Patient".into(), "p1".into()))
        );
        assert_eq!(rows.dates.len(), 1);
        assert_eq!(rows.sort_date, Some(rows.dates[0].1));
    }

    #[test]
    fn non_date_choice_variants_are_not_dates() {
        let given = json!({"resourceType": "Immunization", "patient": {"reference": "Patient/p"},
            "occurrenceString": "last autumn"});
        let rows = index("Immunization", "i", &given).unwrap();
        assert!(rows.dates.is_empty());
        let dated = json!({"resourceType": "Procedure", "subject": {"reference": "Patient/p"},
            "performedPeriod": {"start": "2024-01-01"}});
        assert_eq!(index("Procedure", "x", &dated).unwrap().dates.len(), 1);
    }

    #[test]
    fn two_patients_in_one_resource_are_refused() {
        let audit = json!({"resourceType": "AuditEvent", "entity": [
            {"what": {"reference": "Patient/a"}}, {"what": {"reference": "Patient/b"}}]});
        let err = index("AuditEvent", "x", &audit).unwrap_err();
        assert!(err.message.contains("two patients"), "{err}");
    }

    #[test]
    fn names_are_indexed_folded_by_part_once() {
        let patient = json!({"resourceType": "Patient", "name": [
            {"family": "Sørensen", "given": ["Åse", "Marie"]}, {"text": "SØRENSEN"}]});
        let rows = index("Patient", "p", &patient).unwrap();
        let names = |system: &str| -> std::collections::BTreeSet<&str> {
            (rows.tokens.iter())
                .filter(|t| t.0 == "name" && t.1 == system)
                .map(|t| t.2.as_str())
                .collect()
        };
        assert_eq!(
            names(""),
            ["aase", "ase", "marie", "soerensen", "sorensen"].into()
        );
        assert_eq!(
            names(crate::text::EXACT),
            ["Marie", "SØRENSEN", "Sørensen", "Åse"].into()
        );
        let all = rows.tokens.iter().filter(|t| t.0 == "name").count();
        assert_eq!(all, 9, "each form once: {:?}", rows.tokens);
        assert_eq!(rows.patient_id.as_deref(), Some("p"));
    }

    #[test]
    fn identifiers_in_references_are_indexed_apart_from_literal_references() {
        let planted = json!({"resourceType": "Observation", "status": "final", "code": {"text": "x"},
            "subject": {"reference": "Patient/a", "identifier": {"value": "b"}}});
        let rows = index("Observation", "o", &planted).unwrap();
        assert_eq!(rows.patient_id.as_deref(), Some("a"));
        assert!(
            rows.tokens.iter().all(|t| t.2 != "b"),
            "an identifier value is not a reference: {:?}",
            rows.tokens
        );
        assert_eq!(
            rows.reference_identifiers,
            [
                ("patient", String::new(), "b".to_owned()),
                ("subject", String::new(), "b".to_owned())
            ]
        );
        let gp = json!({"resourceType": "Patient", "generalPractitioner": [
            {"type": "Organization", "identifier": {"system": "urn:oid:1.2.208.176.1.1", "value": "111111"}}]});
        let rows = index("Patient", "p", &gp).unwrap();
        assert_eq!(
            rows.reference_identifiers,
            [(
                "general-practitioner",
                "urn:oid:1.2.208.176.1.1".to_owned(),
                "111111".to_owned()
            )]
        );
        assert_eq!(identifier_param("subject"), "subject:identifier");
    }

    #[test]
    fn a_logical_reference_to_another_type_is_not_a_patient_identifier() {
        let obs = json!({"resourceType": "Observation", "status": "final", "code": {"text": "x"},
            "subject": {"type": "Group", "identifier": {"system": "s", "value": "g"}}});
        let rows = index("Observation", "o", &obs).unwrap();
        assert_eq!(
            rows.reference_identifiers,
            [("subject", "s".to_owned(), "g".to_owned())]
        );
    }

    #[test]
    fn meta_source_is_indexed_for_every_type() {
        let org =
            json!({"resourceType": "Organization", "meta": {"source": "https://lab.example/fhir"}});
        let rows = index("Organization", "o", &org).unwrap();
        assert!(rows.tokens.contains(&(
            "_source",
            String::new(),
            "https://lab.example/fhir".into()
        )));
        assert!(type_def("Consent").unwrap().param("_source").is_some());
    }

    #[test]
    fn references_accept_absolute_urls_and_history() {
        assert_eq!(
            split_reference("https://x.example/fhir/r4/Patient/abc/_history/2"),
            Some(("Patient".into(), "abc".into()))
        );
        assert_eq!(split_reference("urn:uuid:1234"), None);
        assert_eq!(split_reference("#contained"), None);
    }
}
