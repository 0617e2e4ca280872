//! The code systems and identifier systems of the generated resources.

pub(crate) const SYS_SOR: &str = "urn:oid:1.2.208.176.1.1";

pub(crate) const SYS_CPR: &str = "urn:oid:1.2.208.176.1.2";

pub(crate) const SYS_NPU: &str = "urn:oid:1.2.208.176.2.1";

pub(crate) const SYS_SNOMED: &str = "http://snomed.info/sct";

pub(crate) const SYS_ICD10: &str = "http://hl7.org/fhir/sid/icd-10";

pub(crate) const SYS_LOINC: &str = "http://loinc.org";

pub(crate) const SYS_UCUM: &str = "http://unitsofmeasure.org";

pub(crate) const SYS_ATC: &str = "http://www.whocc.no/atc";

pub(crate) const SYS_CVX: &str = "http://hl7.org/fhir/sid/cvx";

pub(crate) const SYS_OBS_CATEGORY: &str =
    "http://terminology.hl7.org/CodeSystem/observation-category";

pub(crate) const SYS_CONDITION_CLINICAL: &str =
    "http://terminology.hl7.org/CodeSystem/condition-clinical";

pub(crate) const SYS_CONDITION_VERIFICATION: &str =
    "http://terminology.hl7.org/CodeSystem/condition-ver-status";

pub(crate) const SYS_CONDITION_CATEGORY: &str =
    "http://terminology.hl7.org/CodeSystem/condition-category";

pub(crate) const SYS_ALLERGY_CLINICAL: &str =
    "http://terminology.hl7.org/CodeSystem/allergyintolerance-clinical";

pub(crate) const SYS_ALLERGY_VERIFICATION: &str =
    "http://terminology.hl7.org/CodeSystem/allergyintolerance-verification";

pub(crate) const SYS_ACT_CODE: &str = "http://terminology.hl7.org/CodeSystem/v3-ActCode";

pub(crate) const SYS_ORG_TYPE: &str = "http://terminology.hl7.org/CodeSystem/organization-type";

pub(crate) const SYS_DIAGNOSTIC_SERVICE: &str = "http://terminology.hl7.org/CodeSystem/v2-0074";

pub(crate) const SYS_DISCHARGE: &str =
    "http://terminology.hl7.org/CodeSystem/discharge-disposition";
