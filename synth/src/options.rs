//! What one generation run depends on: the patient count, the seed and the day taken as today.

use chrono::NaiveDate;

/// Options for one generation run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SynthOptions {
    /// Number of patients in the run. It sizes the GP clinic population (about one clinic per
    /// 1,500 patients, as in Danish general practice), so it is part of every patient's output.
    pub patients: usize,
    /// Master seed: the same seed, patient count and `today` always yield byte-identical data.
    pub seed: u64,
    /// The "now" anchor. All dates are derived from it rather than the wall clock so that a run
    /// is reproducible on any day.
    pub today: NaiveDate,
}
