//! How a search answer is presented: `_summary`, `_elements`, `_total` and `_pretty` (FHIR R4
//! search result parameters). They are applied to what the caller may see, after every check,
//! and only ever leave elements out: none of them can widen access.

use serde_json::{Map, Value, json};

use crate::elements::ELEMENTS;
pub use crate::elements::Element;
use crate::error::FhirError;

/// Which elements of each resource a search returns.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum Shape {
    /// All of them (`_summary=false`, the default).
    #[default]
    Full,
    /// `_summary=true`: the elements the type's definition marks as summary.
    Summary,
    /// `_summary=text`: the narrative, `id`, `meta` and the mandatory elements.
    Text,
    /// `_summary=data`: everything but the narrative.
    Data,
    /// `_elements`: these elements, with `id`, `meta` and the mandatory ones.
    Elements(Vec<&'static str>),
}

/// How a search answer is presented (the result parameters besides paging and order).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Presentation {
    /// Which elements of each match are returned.
    pub shape: Shape,
    /// Whether the Bundle says how many match (`_total=none` leaves it out).
    pub total: bool,
    /// Whether JSON is indented for reading (`_pretty=true`).
    pub pretty: bool,
}

impl Default for Presentation {
    fn default() -> Self {
        Presentation {
            shape: Shape::Full,
            total: true,
            pretty: false,
        }
    }
}

/// The result parameters of a request as they are read, one by one.
#[derive(Debug, Default)]
pub struct PresentationParams {
    summary: Option<Option<Shape>>,
    elements: Option<Shape>,
    total: Option<bool>,
    pretty: Option<bool>,
}

/// The result parameters ([`PresentationParams::take`]): they choose no resources.
pub const RESULT_PARAMETERS: &[&str] = &[
    "_summary",
    "_elements",
    "_total",
    "_totalMethod",
    "_pretty",
    "_format",
];

/// `_format` values that are JSON, the one format served.
const JSON_FORMATS: &[&str] = &[
    "json",
    "application/json",
    "application/fhir+json",
    "application/json+fhir",
];

/// Whether `media` (a `_format` or `Accept` media range, parameters stripped) is or admits
/// JSON.
pub fn admits_json(media: &str) -> bool {
    JSON_FORMATS.contains(&media) || matches!(media, "*/*" | "application/*")
}

/// Refuses a `_format` that admits no JSON (406, naming the one format served).
pub fn check_format(value: &str) -> Result<(), FhirError> {
    let media = value.split(';').next().unwrap_or_default().trim();
    match admits_json(&media.to_ascii_lowercase()) {
        true => Ok(()),
        false => Err(json_only(value)),
    }
}

/// The error of a request for a format other than JSON.
pub fn json_only(asked: &str) -> FhirError {
    FhirError::NotAcceptable(format!(
        "'{asked}' is not served: this server speaks FHIR JSON only; ask for application/fhir+json"
    ))
}

impl PresentationParams {
    /// Takes `name=value` of a request on `resource_type` when it is a result parameter
    /// (`_summary`, `_elements`, `_total`/`_totalMethod`, `_pretty`, `_format`): `Ok(false)`
    /// when it is not one.
    pub fn take(
        &mut self,
        resource_type: &str,
        name: &str,
        value: &str,
    ) -> Result<bool, FhirError> {
        fn once<T>(slot: &mut Option<T>, name: &str, value: T) -> Result<(), FhirError> {
            match slot.replace(value) {
                Some(_) => Err(FhirError::BadRequest(format!(
                    "'{name}' may be given only once"
                ))),
                None => Ok(()),
            }
        }
        let flag = |yes: &str, no: &str| match value {
            v if v == yes => Ok(true),
            v if v == no => Ok(false),
            _ => Err(FhirError::BadRequest(format!(
                "unsupported {name} '{value}': use {yes} or {no}"
            ))),
        };
        match name {
            "_summary" => once(&mut self.summary, name, Shape::summary(value)?)?,
            "_elements" => once(
                &mut self.elements,
                name,
                Shape::elements(resource_type, value)?,
            )?,
            // `_totalMethod` is what some clients (fhirpy's `count()`) send for `_total`.
            "_total" | "_totalMethod" => {
                let counted = match value {
                    "estimate" | "accurate" | "count" => true,
                    "none" => false,
                    _ => {
                        return Err(FhirError::BadRequest(format!(
                            "unsupported {name} '{value}': use accurate, estimate or none"
                        )));
                    }
                };
                once(&mut self.total, "_total", counted)?;
            }
            "_pretty" => once(&mut self.pretty, name, flag("true", "false")?)?,
            "_format" => check_format(value)?,
            _ => return Ok(false),
        }
        Ok(true)
    }

    /// The presentation asked for, and whether only the count is (`_summary=count`).
    pub fn finish(self) -> Result<(Presentation, bool), FhirError> {
        let (shape, only_count) = match (self.summary, self.elements) {
            (Some(Some(Shape::Full)) | None, Some(elements)) => (elements, false),
            (Some(_), Some(_)) => {
                return Err(FhirError::BadRequest(
                    "_summary and _elements cannot be combined: give one of them".into(),
                ));
            }
            (Some(None), None) => (Shape::Full, true),
            (Some(Some(shape)), None) => (shape, false),
            (None, None) => (Shape::Full, false),
        };
        let presentation = Presentation {
            shape,
            total: self.total.unwrap_or(true),
            pretty: self.pretty.unwrap_or(false),
        };
        Ok((presentation, only_count))
    }
}

/// The tag of a resource some elements were left out of: a client must not write it back.
const SUBSETTED: &str = "SUBSETTED";
const SUBSETTED_SYSTEM: &str = "http://terminology.hl7.org/CodeSystem/v3-ObservationValue";

/// The top-level elements of `resource_type`.
pub fn elements_of(resource_type: &str) -> &'static [Element] {
    ELEMENTS
        .iter()
        .find(|(name, _)| *name == resource_type)
        .map_or(&[], |(_, elements)| elements)
}

/// The element a JSON property of a `resource_type` belongs to: `status` and its primitive
/// extension `_status` to `status`, `valueQuantity` to the choice `value`.
pub(crate) fn element_of(resource_type: &str, property: &str) -> Option<&'static Element> {
    element_among(elements_of(resource_type), property)
}

/// The element of `elements` (a type's) that a JSON property belongs to (see [`element_of`]).
pub(crate) fn element_among(
    elements: &'static [Element],
    property: &str,
) -> Option<&'static Element> {
    let property = property.strip_prefix('_').unwrap_or(property);
    elements.iter().find(|e| e.name == property).or_else(|| {
        elements.iter().find(|e| {
            e.choice
                && property
                    .strip_prefix(e.name)
                    .is_some_and(|rest| rest.starts_with(|c: char| c.is_ascii_uppercase()))
        })
    })
}

impl Shape {
    /// The shape `_summary=value` asks for; `None` for `count` (no resources at all).
    pub fn summary(value: &str) -> Result<Option<Shape>, FhirError> {
        Ok(Some(match value {
            "false" => Shape::Full,
            "true" => Shape::Summary,
            "text" => Shape::Text,
            "data" => Shape::Data,
            "count" => return Ok(None),
            _ => {
                return Err(FhirError::BadRequest(format!(
                    "unsupported _summary '{value}': use true, text, data, count or false"
                )));
            }
        }))
    }

    /// The shape `_elements=value` asks for on `resource_type`: each name must be one of its
    /// top-level elements (`value` for `value[x]`), so a typo is an error, not an empty answer.
    pub fn elements(resource_type: &str, value: &str) -> Result<Shape, FhirError> {
        let known = elements_of(resource_type);
        let mut names = Vec::new();
        for name in value.split(',').map(str::trim) {
            let bare = name
                .strip_prefix(resource_type)
                .and_then(|rest| rest.strip_prefix('.'))
                .unwrap_or(name);
            if bare == "resourceType" {
                // Always there (fhirpy names it with every `elements()`).
                continue;
            }
            if bare.starts_with('-') {
                return Err(FhirError::BadRequest(format!(
                    "_elements: '{name}': elements cannot be excluded, name those to keep"
                )));
            }
            let Some(element) = known.iter().find(|e| e.name == bare) else {
                let hint = match element_of(resource_type, bare) {
                    Some(choice) => format!("name the choice as '{}'", choice.name),
                    None => format!(
                        "{resource_type}'s elements are {}",
                        known.iter().map(|e| e.name).collect::<Vec<_>>().join(", ")
                    ),
                };
                return Err(FhirError::BadRequest(format!(
                    "_elements: '{name}' is not an element of {resource_type}: {hint}"
                )));
            };
            if !names.contains(&element.name) {
                names.push(element.name);
            }
        }
        Ok(Shape::Elements(names))
    }

    /// Whether top-level property `property` of a `resource_type` is kept.
    fn keeps(&self, resource_type: &str, property: &str) -> bool {
        if matches!(property, "resourceType" | "id" | "meta") {
            return true;
        }
        let element = element_of(resource_type, property);
        match self {
            Shape::Full => true,
            Shape::Data => element.is_none_or(|e| e.name != "text"),
            Shape::Summary => element.is_some_and(|e| e.summary),
            Shape::Text => element.is_some_and(|e| e.mandatory || e.name == "text"),
            Shape::Elements(names) => {
                element.is_some_and(|e| e.mandatory || names.contains(&e.name))
            }
        }
    }
}

impl Presentation {
    /// How resources included beside the matches (`_include`) are presented: as the matches,
    /// except for `_elements`, which names elements of the searched type only.
    pub fn for_included(&self) -> Presentation {
        let mut included = self.clone();
        if let Shape::Elements(_) = included.shape {
            included.shape = Shape::Full;
        }
        included
    }

    /// `content`, a stored `resource_type`, as presented: the same text when whole and not
    /// indented; otherwise without the elements the shape leaves out (and then tagged
    /// `SUBSETTED`), indented when asked.
    pub fn apply(&self, resource_type: &str, content: String) -> Result<String, FhirError> {
        if self.shape == Shape::Full && !self.pretty {
            return Ok(content);
        }
        let mut resource: Map<String, Value> =
            serde_json::from_str(&content).map_err(|e| FhirError::Internal(e.into()))?;
        if self.shape != Shape::Full {
            resource.retain(|property, _| self.shape.keeps(resource_type, property));
            let meta = resource
                .entry("meta")
                .or_insert_with(|| Value::Object(Map::new()));
            if let Value::Object(meta) = meta {
                let tags = meta
                    .entry("tag")
                    .or_insert_with(|| Value::Array(Vec::new()));
                if let Value::Array(tags) = tags {
                    tags.push(json!({"system": SUBSETTED_SYSTEM, "code": SUBSETTED}));
                }
            }
        }
        let written = match self.pretty {
            true => serde_json::to_string_pretty(&resource),
            false => serde_json::to_string(&resource),
        };
        written.map_err(|e| FhirError::Internal(e.into()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::params::TYPES;

    #[test]
    fn every_served_type_has_its_elements() {
        for type_def in TYPES {
            assert!(
                !elements_of(type_def.name).is_empty(),
                "{} has no elements: add it to integration/tools/elements.mjs",
                type_def.name
            );
        }
    }

    fn observation() -> String {
        json!({
            "resourceType": "Observation", "id": "o1", "meta": {"versionId": "2"},
            "text": {"status": "generated", "div": "<div>120/80</div>"},
            "status": "final", "_status": {"extension": []},
            "category": [{"text": "vital-signs"}], "code": {"text": "BP"},
            "subject": {"reference": "Patient/p1"},
            "valueQuantity": {"value": 120}, "note": [{"text": "after a walk"}],
            "unknownProperty": 1
        })
        .to_string()
    }

    fn presented(shape: Shape, pretty: bool) -> String {
        let presentation = Presentation {
            shape,
            pretty,
            ..Default::default()
        };
        presentation.apply("Observation", observation()).unwrap()
    }

    fn shaped(shape: Shape) -> Value {
        serde_json::from_str(&presented(shape, false)).unwrap()
    }

    fn properties(resource: &Value) -> Vec<&str> {
        resource
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect()
    }

    #[test]
    fn summary_keeps_the_summary_elements_and_tags_the_resource() {
        let resource = shaped(Shape::Summary);
        assert_eq!(
            properties(&resource),
            [
                "resourceType",
                "id",
                "meta",
                "status",
                "_status",
                "code",
                "subject",
                "valueQuantity"
            ]
        );
        assert_eq!(resource["meta"]["versionId"], "2");
        assert_eq!(resource["meta"]["tag"][0]["code"], "SUBSETTED");
    }

    #[test]
    fn text_data_and_elements_keep_what_r4_says() {
        assert_eq!(
            properties(&shaped(Shape::Text)),
            [
                "resourceType",
                "id",
                "meta",
                "text",
                "status",
                "_status",
                "code"
            ]
        );
        let data = shaped(Shape::Data);
        assert!(data.get("text").is_none());
        assert_eq!(data["note"][0]["text"], "after a walk");
        assert_eq!(data["unknownProperty"], 1);
        let elements =
            Shape::elements("Observation", "value,Observation.subject,resourceType,id").unwrap();
        assert_eq!(
            properties(&shaped(elements)),
            [
                "resourceType",
                "id",
                "meta",
                "status",
                "_status",
                "code",
                "subject",
                "valueQuantity"
            ]
        );
    }

    #[test]
    fn the_whole_resource_is_the_stored_text_untouched_unless_indented() {
        assert_eq!(presented(Shape::Full, false), observation());
        let pretty = presented(Shape::Full, true);
        assert!(pretty.contains("\n  \"status\": \"final\""), "{pretty}");
        assert_eq!(
            serde_json::from_str::<Value>(&pretty).unwrap(),
            serde_json::from_str::<Value>(&observation()).unwrap()
        );
    }

    #[test]
    fn an_unknown_element_or_summary_mode_is_refused_with_the_fix() {
        let error = Shape::elements("Observation", "valueQuantity")
            .unwrap_err()
            .to_string();
        assert!(error.contains("name the choice as 'value'"), "{error}");
        let error = Shape::elements("Observation", "colour")
            .unwrap_err()
            .to_string();
        assert!(
            error.contains("Observation's elements are id, meta"),
            "{error}"
        );
        let error = Shape::elements("Observation", "-text")
            .unwrap_err()
            .to_string();
        assert!(error.contains("name those to keep"), "{error}");
        let error = Shape::summary("yes").unwrap_err().to_string();
        assert!(
            error.contains("use true, text, data, count or false"),
            "{error}"
        );
    }
}
