//! How search compares strings: without regard to case or accents, and with the Danish
//! letters as Danish users write them either way (`Søren` and `Soeren`, `Åse` and `Aase`,
//! `Ærø` and `Aeroe`). A string is indexed in every form it can be written in, and a search
//! value matches when any of its forms starts (or, `:contains`, holds) any indexed form.
//! `:exact` compares the text as written.

use unicode_normalization::UnicodeNormalization;
use unicode_normalization::char::is_combining_mark;

/// The system under which a string's exact text is indexed (its folded forms have none).
pub const EXACT: &str = "=";

/// The forms `text` is compared in: lower case, accents removed, each Danish letter spelt
/// short (`ø` as `o`, `å` as `a`) and long (`oe`, `aa`); `æ` is `ae` in both.
pub fn folds(text: &str) -> Vec<String> {
    let lower = text.to_lowercase();
    let spelt = |short: bool| -> String {
        let mut out = String::with_capacity(lower.len() + 4);
        for c in lower.chars() {
            match c {
                'æ' | 'ä' => out.push_str("ae"),
                'ø' | 'ö' => out.push_str(if short { "o" } else { "oe" }),
                'å' => out.push_str(if short { "a" } else { "aa" }),
                c => out.push(c),
            }
        }
        out.nfd().filter(|c| !is_combining_mark(*c)).collect()
    };
    let short = spelt(true);
    let long = spelt(false);
    match short == long {
        true => vec![short],
        false => vec![short, long],
    }
}

/// The most words of one text indexed for `:text` (from each word on).
pub const MAX_WORDS: usize = 12;

/// `text` from each of its first [`MAX_WORDS`] words on (`"Systolic blood pressure"`, `"blood
/// pressure"`, `"pressure"`), so that a prefix match finds any word's start.
pub fn word_starts(text: &str) -> impl Iterator<Item = &str> {
    let text = text.trim_start();
    let starts = std::iter::once(0).chain(
        text.char_indices()
            .zip(text.chars().skip(1))
            .filter(|((_, c), next)| !c.is_alphanumeric() && next.is_alphanumeric())
            .map(|((i, c), _)| i + c.len_utf8()),
    );
    starts.take(MAX_WORDS).map(move |i| &text[i..])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_text_is_indexed_from_each_word_on() {
        let starts: Vec<&str> = word_starts("  Forhøjet blodtryk (type-2)").collect();
        assert_eq!(
            starts,
            [
                "Forhøjet blodtryk (type-2)",
                "blodtryk (type-2)",
                "type-2)",
                "2)"
            ]
        );
        assert_eq!(word_starts(&"ord ".repeat(50)).count(), MAX_WORDS);
        assert_eq!(word_starts("").collect::<Vec<_>>(), [""]);
    }

    /// Whether a search for `query` finds `stored` (by prefix).
    fn finds(query: &str, stored: &str) -> bool {
        let indexed = folds(stored);
        folds(query)
            .iter()
            .any(|q| indexed.iter().any(|form| form.starts_with(q.as_str())))
    }

    #[test]
    fn danish_letters_match_either_spelling() {
        for (query, stored) in [
            ("sørensen", "Sørensen"),
            ("sorensen", "Sørensen"),
            ("soerensen", "Sørensen"),
            ("SØREN", "Sørensen"),
            ("åse", "Åse"),
            ("aase", "Åse"),
            ("åse", "Aase"),
            ("ase", "Åse"),
            ("aeroe", "Ærø"),
            ("ærø", "Aerø"),
            ("rene", "René"),
            ("jose", "José"),
        ] {
            assert!(finds(query, stored), "{query} should find {stored}");
        }
        for (query, stored) in [("sa", "Sørensen"), ("hansen", "Sørensen"), ("aas", "Ase")] {
            assert!(!finds(query, stored), "{query} should not find {stored}");
        }
    }

    #[test]
    fn plain_text_has_one_form() {
        assert_eq!(folds("Hansen"), ["hansen"]);
        assert_eq!(folds("Åse"), ["ase", "aase"]);
    }
}
