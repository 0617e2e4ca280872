//! The kinds and classes of encounter: GP visits, home visits, hospital admissions.

pub(crate) struct EncounterType {
    pub(crate) code: &'static str,
    pub(crate) display: &'static str,
    pub(crate) text: &'static str,
}

pub(crate) const ENC_CHECKUP: EncounterType = EncounterType {
    code: "185349003",
    display: "Encounter for check up",
    text: "Helbredsundersøgelse hos egen læge",
};

pub(crate) const ENC_FOLLOWUP: EncounterType = EncounterType {
    code: "390906007",
    display: "Follow-up encounter",
    text: "Kontrol hos egen læge",
};

pub(crate) const ENC_SYMPTOM: EncounterType = EncounterType {
    code: "185345009",
    display: "Encounter for symptom",
    text: "Konsultation hos egen læge",
};

pub(crate) const ENC_HOME: EncounterType = EncounterType {
    code: "439708006",
    display: "Home visit",
    text: "Besøg af hjemmesygeplejerske",
};

pub(crate) const ENC_ADMISSION: EncounterType = EncounterType {
    code: "183452005",
    display: "Emergency hospital admission",
    text: "Akut indlæggelse",
};

pub(crate) const CLASS_AMB: (&str, &str) = ("AMB", "ambulatory");

pub(crate) const CLASS_HH: (&str, &str) = ("HH", "home health");

pub(crate) const CLASS_IMP: (&str, &str) = ("IMP", "inpatient encounter");
