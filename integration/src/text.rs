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
    // Plain ASCII has no accents and no Danish letters: one form, found at once.
    if text.is_ascii() {
        return vec![text.to_ascii_lowercase()];
    }
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

/// The longest text kept for `:text`, in bytes (a code's text is a few words).
pub const MAX_TEXT: usize = 1000;

/// `texts` as `:text` searches them: in every form they can be written in ([`folds`]),
/// anything but letters and digits a space, each word after a space and the whole ending in
/// one (` forhojet blodtryk forhoejet blodtryk `), so that a search for a word's start is a
/// match of ` word`. `None` when there is no text.
pub fn searchable(texts: &[&str]) -> Option<String> {
    let joined = texts.join(" ");
    let mut out = String::from(" ");
    for form in folds(&joined) {
        for word in words(&form) {
            out.push_str(word);
            out.push(' ');
        }
    }
    if out.len() == 1 {
        return None;
    }
    if out.len() > MAX_TEXT {
        let mut end = MAX_TEXT;
        while !out.is_char_boundary(end) {
            end -= 1;
        }
        out.truncate(end);
        out.push(' ');
    }
    Some(out)
}

/// The words of a folded text: runs of letters and digits.
pub fn words(folded: &str) -> impl Iterator<Item = &str> {
    folded
        .split(|c: char| !c.is_alphanumeric())
        .filter(|word| !word.is_empty())
}

/// What a `:text` search for `value` looks for in a [`searchable`] text, in each form it can
/// be written in: ` word` (a word's start), ` two words` for more.
pub fn text_patterns(value: &str) -> Vec<String> {
    let mut patterns: Vec<String> = folds(value)
        .iter()
        .map(|form| format!(" {}", words(form).collect::<Vec<_>>().join(" ")))
        .filter(|pattern| pattern.len() > 1)
        .collect();
    patterns.dedup();
    patterns
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_text_is_searched_by_the_start_of_any_word_as_danes_write_it() {
        let text = searchable(&["  Forhøjet blodtryk (type-2)", "Hypertension"]).unwrap();
        assert_eq!(
            text,
            " forhojet blodtryk type 2 hypertension forhoejet blodtryk type 2 hypertension "
        );
        let finds = |value: &str| {
            text_patterns(value)
                .iter()
                .any(|p| text.contains(p.as_str()))
        };
        for found in [
            "blod",
            "FORHØJET",
            "forhoejet",
            "type-2",
            "hypert",
            "blodtryk type",
        ] {
            assert!(finds(found), "{found}");
        }
        for missed in ["lodtryk", "2 hyp x", "ertension"] {
            assert!(!finds(missed), "{missed}");
        }
        assert_eq!(text_patterns(" - "), Vec::<String>::new());
        assert_eq!(searchable(&[" ", "--"]), None);
        assert!(searchable(&[&"ord ".repeat(1000)]).unwrap().len() <= MAX_TEXT + 1);
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
