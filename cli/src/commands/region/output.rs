//! How `region` commands print installs, grants and tables for people.

use healthcloud_runtime::regions::admin::{CapabilityView, InstallView};

pub(super) use crate::commands::table::print_table;

/// Whether the install serves, as a user would say it.
pub(super) fn state(view: &InstallView) -> String {
    let mut state = match (&view.revoked, view.serving) {
        (Some(revoked), _) => format!("revoked ({})", revoked.reason),
        (None, true) => "serving".to_owned(),
        (None, false) => "not serving".to_owned(),
    };
    if let Some(pending) = &view.pending {
        let asks: Vec<String> = pending.added.iter().map(|c| c.capability.clone()).collect();
        state.push_str(&format!(
            "; pending upgrade {} asking for {}",
            pending.version,
            listed(&asks)
        ));
        if pending.registration_changed {
            state.push_str(" and a changed SMART registration (launch URL, redirect URIs or keys)");
        }
    }
    state
}

/// What is granted and what the version requests that is not.
pub(super) fn print_grant(view: &InstallView) {
    println!("  granted:     {}", listed(&view.granted));
    if view.allow_internal_addresses {
        println!("  internal:    allowed (outbound-http may reach addresses inside your network)");
    }
    let withheld: Vec<String> = view
        .requested
        .iter()
        .filter(|c| !c.granted)
        .map(|c| c.capability.clone())
        .collect();
    if !withheld.is_empty() {
        println!("  not granted: {}", listed(&withheld));
    }
}

pub(super) fn print_capability(capability: &CapabilityView) {
    println!("  {}", capability.capability);
    if !capability.explanation.is_empty() {
        println!("      allows: {}", capability.explanation);
    }
    println!("      why:    {}", capability.justification);
}

pub(super) fn listed(capabilities: &[String]) -> String {
    if capabilities.is_empty() {
        "nothing".to_owned()
    } else {
        capabilities.join(", ")
    }
}

/// `text` quoted for a POSIX shell when it holds anything but safe characters (capabilities
/// hold `?` and `&`).
pub(super) fn shell_quoted(text: &str) -> String {
    let safe = |c: char| c.is_ascii_alphanumeric() || "/.-_=:@,+".contains(c);
    if text.chars().all(safe) {
        text.to_owned()
    } else {
        format!("'{}'", text.replace('\'', r"'\''"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suggested_commands_quote_capabilities_for_the_shell() {
        assert_eq!(shell_quoted("log"), "log");
        assert_eq!(shell_quoted("patient/Patient.r"), "patient/Patient.r");
        assert_eq!(
            shell_quoted("patient/Observation.s?category=vital-signs"),
            "'patient/Observation.s?category=vital-signs'"
        );
        assert_eq!(shell_quoted("it's"), r"'it'\''s'");
    }
}
