//! Where a resource came from, as its `meta.source` says, so an app can show it beside the
//! data: the integration cloud reads a patient's data from the organizations' own systems (a
//! GP system, a municipal care record, another region) and names each resource's origin.

use std::borrow::Cow;

use crate::model::Meta;

/// What the integration cloud stamps on a resource written through it.
const WRITTEN: &str = "urn:healthcloud:written:";
/// What it stamps on a resource read from an upstream source, before the source's name.
const SOURCE: &str = "urn:healthcloud:source:";

/// Where a resource came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    /// The region's own record, kept by healthcloud itself: in Denmark the regions run the
    /// hospitals, so this is the hospital record. Also anything whose `meta.source` names no
    /// healthcloud origin (data imported with its own source).
    Record,
    /// Written through healthcloud by a user with this role (`patient`, `citizen`,
    /// `clinician`, …), directly or with an app: e.g. a home measurement a patient entered.
    Written {
        /// The writer's role, as the platform names roles.
        role: String,
    },
    /// Read from an upstream source: an organization's own FHIR server, by the name the
    /// platform's operators gave it (e.g. `gp`, `municipality`).
    Source(String),
}

impl Origin {
    /// The origin a `meta.source` value names.
    ///
    /// ```
    /// use healthcloud_sdk::fhir::Origin;
    ///
    /// assert_eq!(Origin::of(Some("urn:healthcloud:source:gp")), Origin::Source("gp".into()));
    /// let home = Origin::of(Some("urn:healthcloud:written:app:examples.bp-monitor:patient:p-1"));
    /// assert_eq!(home.label(), "home");
    /// assert_eq!(Origin::of(None), Origin::Record);
    /// ```
    pub fn of(meta_source: Option<&str>) -> Origin {
        let Some(source) = meta_source else {
            return Origin::Record;
        };
        if let Some(name) = source.strip_prefix(SOURCE).filter(|name| !name.is_empty()) {
            return Origin::Source(name.to_owned());
        }
        if let Some(writer) = source.strip_prefix(WRITTEN) {
            // `user:<role>:<user>` or `app:<publisher.app>:<role>:<user>`.
            let parts: Vec<&str> = writer.split(':').collect();
            let role = match parts.as_slice() {
                ["user", role, _] | ["app", _, role, _] => role,
                _ => "",
            };
            return Origin::Written {
                role: role.to_owned(),
            };
        }
        Origin::Record
    }

    /// A short label for people: `hospital` for the region's record, `home` for what a
    /// patient entered, `healthcloud` for what someone else entered through it, and a
    /// source's name for a source's data.
    pub fn label(&self) -> Cow<'_, str> {
        match self {
            Origin::Record => "hospital".into(),
            Origin::Written { role } if role == "patient" || role == "citizen" => "home".into(),
            Origin::Written { .. } => "healthcloud".into(),
            Origin::Source(name) => name.as_str().into(),
        }
    }
}

/// Where the resource with this `meta` came from: e.g.
/// `fhir::origin(observation.meta.as_ref())`. For a resource held as JSON, use
/// [`Origin::of`] with its `meta.source`.
pub fn origin(meta: Option<&Meta>) -> Origin {
    Origin::of(meta.and_then(|meta| meta.source.as_deref()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_stamp_names_its_origin() {
        let cases = [
            (None, Origin::Record, "hospital"),
            (Some("https://lab.example/fhir"), Origin::Record, "hospital"),
            (
                Some("urn:healthcloud:source:municipality"),
                Origin::Source("municipality".into()),
                "municipality",
            ),
            (Some("urn:healthcloud:source:"), Origin::Record, "hospital"),
            (
                Some("urn:healthcloud:written:user:citizen:c-1"),
                Origin::Written {
                    role: "citizen".into(),
                },
                "home",
            ),
            (
                Some("urn:healthcloud:written:app:examples.bp-monitor:clinician:dr"),
                Origin::Written {
                    role: "clinician".into(),
                },
                "healthcloud",
            ),
        ];
        for (source, origin, label) in cases {
            assert_eq!(Origin::of(source), origin, "{source:?}");
            assert_eq!(origin.label(), label);
        }
        let meta = Meta {
            source: Some("urn:healthcloud:source:gp".into()),
            ..Meta::default()
        };
        assert_eq!(super::origin(Some(&meta)), Origin::Source("gp".into()));
        assert_eq!(super::origin(None), Origin::Record);
    }
}
