//! The SubscriptionTopics healthcloud defines (FHIR R5 topic-based subscriptions as the R4
//! backport carries them): what happens that a clinician, an organization or an app can be
//! told of, and by which search parameters a subscription may narrow it.

use serde_json::{Value, json};

/// One topic.
#[derive(Debug)]
pub struct Topic {
    /// Its canonical URL: a Subscription's `criteria`.
    pub url: &'static str,
    /// A short title.
    pub title: &'static str,
    /// The resource type whose writes trigger it.
    pub resource_type: &'static str,
    /// Whether only a new resource (its first version) triggers it; otherwise every new
    /// version does (a deletion never does: nothing is left to notify of).
    pub created_only: bool,
    /// The search parameters of the type a subscription's filter may use.
    pub filters: &'static [&'static str],
    /// What it tells, for the CapabilityStatement and the docs.
    pub description: &'static str,
}

/// The base of the topics' canonical URLs.
const BASE: &str = "https://healthcloud.example/fhir/SubscriptionTopic";

/// Every topic.
pub const TOPICS: &[Topic] = &[
    Topic {
        url: "https://healthcloud.example/fhir/SubscriptionTopic/new-observation",
        title: "New Observation",
        resource_type: "Observation",
        created_only: true,
        filters: &["patient", "category", "code"],
        description: "A new Observation (a lab result, a home blood pressure) for a patient, by category or code",
    },
    Topic {
        url: "https://healthcloud.example/fhir/SubscriptionTopic/new-diagnosticreport",
        title: "New DiagnosticReport",
        resource_type: "DiagnosticReport",
        created_only: true,
        filters: &["patient", "category", "code"],
        description: "A new DiagnosticReport for a patient, by category or code",
    },
    Topic {
        url: "https://healthcloud.example/fhir/SubscriptionTopic/new-servicerequest",
        title: "New ServiceRequest",
        resource_type: "ServiceRequest",
        created_only: true,
        filters: &["performer", "patient", "category", "code"],
        description: "A new ServiceRequest (a referral) for an organization to perform",
    },
    Topic {
        url: "https://healthcloud.example/fhir/SubscriptionTopic/new-task",
        title: "New Task",
        resource_type: "Task",
        created_only: true,
        filters: &["owner", "patient", "code"],
        description: "A new Task for an organization (its owner)",
    },
    Topic {
        url: "https://healthcloud.example/fhir/SubscriptionTopic/consent-changed",
        title: "Consent changed",
        resource_type: "Consent",
        created_only: false,
        filters: &["patient"],
        description: "A patient's Consent was given or changed (an opt-out, or its lifting)",
    },
];

/// The topic whose canonical URL is `url`.
pub fn topic(url: &str) -> Option<&'static Topic> {
    TOPICS.iter().find(|topic| topic.url == url)
}

/// Whether writes of `resource_type` trigger any topic (only those are recorded).
pub fn triggers(resource_type: &str) -> bool {
    TOPICS
        .iter()
        .any(|topic| topic.resource_type == resource_type)
}

impl Topic {
    /// Whether a write of version `version_id` (`deleted`: a deletion) triggers it.
    pub fn fires(&self, version_id: i64, deleted: bool) -> bool {
        !deleted && (!self.created_only || version_id == 1)
    }

    /// The topic as an R4B SubscriptionTopic, for those who read one.
    pub fn resource(&self) -> Value {
        let interactions: &[&str] = match self.created_only {
            true => &["create"],
            false => &["create", "update"],
        };
        json!({
            "resourceType": "SubscriptionTopic",
            "id": self.url.trim_start_matches(BASE).trim_start_matches('/'),
            "url": self.url,
            "title": self.title,
            "status": "active",
            "description": self.description,
            "resourceTrigger": [{
                "resource": format!("http://hl7.org/fhir/StructureDefinition/{}", self.resource_type),
                "supportedInteraction": interactions,
            }],
            "canFilterBy": self.filters.iter().map(|filter| json!({
                "resource": self.resource_type,
                "filterParameter": filter,
            })).collect::<Vec<_>>(),
            "notificationShape": [{"resource": self.resource_type}],
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::params::type_def;

    #[test]
    fn every_topic_filters_by_parameters_its_type_serves() {
        for topic in TOPICS {
            let def = type_def(topic.resource_type).unwrap();
            for filter in topic.filters {
                assert!(def.param(filter).is_some(), "{} {filter}", topic.url);
            }
            assert!(topic.url.starts_with(BASE));
            assert_eq!(topic.resource()["url"], topic.url);
        }
        let new = topic(TOPICS[0].url).unwrap();
        assert!(new.fires(1, false) && !new.fires(2, false) && !new.fires(1, true));
        let consent = topic(&format!("{BASE}/consent-changed")).unwrap();
        assert!(consent.fires(3, false) && !consent.fires(3, true));
    }
}
