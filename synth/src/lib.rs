//! Deterministic generator of synthetic, clearly fake Danish patient data as FHIR R4 JSON.
//!
//! Each patient is derived from its own RNG keyed by `(seed, index)`, so a run can be produced in
//! parallel, in any order, or streamed one patient at a time without holding the population in
//! memory. The CPR-like identifiers follow the Danish "replacement number" convention (day of
//! month + 60), so no generated number can ever belong to a real person.
//!
//! The clinical model is deliberately simple but internally consistent: diagnoses drive
//! treatments, treatments drive the vital-sign and lab trajectories, and every date lies in the
//! five years before [`SynthOptions::today`], so benchmarks and demos see realistic shapes
//! (long blood-pressure series, quarterly HbA1c, medication switches) without any real data.
//!
//! # Examples
//!
//! ```
//! use healthcloud_synth::{SynthOptions, organizations, patient};
//!
//! let options = SynthOptions {
//!     patients: 10,
//!     seed: 7,
//!     today: chrono::NaiveDate::from_ymd_opt(2025, 6, 15).unwrap(),
//! };
//! let clinics_and_authorities = organizations(&options);
//! let first = patient(&options, 0);
//! assert_eq!(first[0]["resourceType"], "Patient");
//! // The same options give the same data, on any day and in any order.
//! assert_eq!(patient(&options, 0), first);
//! # assert!(!clinics_and_authorities.is_empty());
//! ```
#![deny(missing_docs)]

mod allergies;
mod calendar;
mod care;
mod codes;
mod context;
mod diagnoses;
mod encounters;
mod fhir;
mod geography;
mod immunizations;
mod names;
mod observations;
mod options;
mod organizations;
mod patient;
mod person;
mod physiology;
mod procedures;
mod rng;
mod sectors;
#[cfg(test)]
mod tests;
mod treatments;

pub use options::SynthOptions;
pub use organizations::organizations;
pub use patient::patient;
pub use sectors::{BySector, Sector, patient_by_sector};
