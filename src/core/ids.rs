//! Identifiers. Users are ACS-style raw ids `8:acs:<resource>_<name>`; the built-in echo service
//! is `8:echo123` as in ACS. People type names; the switchboard resolves them.

use crate::protocol::Identity;

pub const ECHO_NAME: &str = "echo";
pub const ECHO_RAW_ID: &str = "8:echo123";
/// Calling this service records the caller's own voicemail greeting.
pub const GREETING_NAME: &str = "greeting";
pub const GREETING_RAW_ID: &str = "8:dialtone-greeting";

pub fn greeting_identity() -> Identity {
    Identity {
        raw_id: GREETING_RAW_ID.to_string(),
        display_name: "Greeting recorder".to_string(),
    }
}

pub fn echo_identity() -> Identity {
    Identity {
        raw_id: ECHO_RAW_ID.to_string(),
        display_name: "Echo test".to_string(),
    }
}

/// User names are what people type and what ends up in raw ids, so they are kept to a safe,
/// case-folded alphabet.
pub fn validate_user_name(name: &str) -> Result<(), String> {
    if name.is_empty() || name.len() > 64 {
        return Err(format!("user name {name:?} must be 1 to 64 characters"));
    }
    if !name
        .chars()
        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "._-".contains(c))
    {
        return Err(format!(
            "user name {name:?} may only hold a-z, 0-9, '.', '_' and '-'"
        ));
    }
    if name == ECHO_NAME || name == GREETING_NAME || name == "voicemail" {
        return Err(format!("user name {name:?} is reserved for a service"));
    }
    Ok(())
}

/// What a callee string names, before the directory is consulted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Callee {
    Echo,
    Greeting,
    RawUser(String),
    Name(String),
    Phone(String),
    Invalid(String),
}

impl Callee {
    pub fn parse(s: &str) -> Callee {
        let s = s.trim();
        if s == ECHO_NAME || s == ECHO_RAW_ID {
            Callee::Echo
        } else if s == GREETING_NAME || s == GREETING_RAW_ID {
            Callee::Greeting
        } else if s.starts_with("8:acs:") {
            Callee::RawUser(s.to_string())
        } else if let Some(num) = s
            .strip_prefix("4:")
            .or(Some(s))
            .filter(|n| n.starts_with('+'))
        {
            if num.len() >= 3 && num.len() <= 16 && num[1..].chars().all(|c| c.is_ascii_digit()) {
                Callee::Phone(num.to_string())
            } else {
                Callee::Invalid(format!("{s:?} is not an E.164 number"))
            }
        } else if validate_user_name(&s.to_ascii_lowercase()).is_ok() {
            Callee::Name(s.to_ascii_lowercase())
        } else {
            Callee::Invalid(format!(
                "{s:?} is neither a user name, a raw id nor an E.164 number"
            ))
        }
    }
}

/// A group call's id: a GUID in its canonical 8-4-4-4-12 form (braces and upper case are
/// accepted and folded), returned lower-case. It is also the call's id on every device.
pub fn parse_group_id(s: &str) -> Result<String, String> {
    let t = s.trim();
    let inner = t
        .strip_prefix('{')
        .and_then(|x| x.strip_suffix('}'))
        .unwrap_or(t);
    let groups: Vec<&str> = inner.split('-').collect();
    let lens = [8, 4, 4, 4, 12];
    let ok = groups.len() == 5
        && groups
            .iter()
            .zip(lens)
            .all(|(g, n)| g.len() == n && g.chars().all(|c| c.is_ascii_hexdigit()));
    if ok {
        Ok(inner.to_ascii_lowercase())
    } else {
        Err(format!(
            "group id {s:?} is not a GUID (like 29228d3e-040e-4656-a70e-890ab4e173e5)"
        ))
    }
}

/// The raw id ACS gives a phone number: `4:+E164`.
pub fn phone_raw_id(number: &str) -> String {
    format!("4:{number}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_group_ids() {
        assert_eq!(
            parse_group_id("{29228D3E-040E-4656-A70E-890AB4E173E5}").unwrap(),
            "29228d3e-040e-4656-a70e-890ab4e173e5"
        );
        for bad in [
            "",
            "not-a-guid",
            "29228d3e040e4656a70e890ab4e173e5",
            "29228d3e-040e-4656-a70e-890ab4e173eg",
            "29228d3e-040e-4656-a70e-890ab4e173e5-1",
        ] {
            assert!(parse_group_id(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn parses_callees() {
        assert_eq!(Callee::parse("echo"), Callee::Echo);
        assert_eq!(Callee::parse("8:echo123"), Callee::Echo);
        assert_eq!(Callee::parse("Bob"), Callee::Name("bob".into()));
        assert_eq!(
            Callee::parse("8:acs:r_bob"),
            Callee::RawUser("8:acs:r_bob".into())
        );
        assert_eq!(
            Callee::parse("+15551234567"),
            Callee::Phone("+15551234567".into())
        );
        assert_eq!(
            Callee::parse("4:+15551234567"),
            Callee::Phone("+15551234567".into())
        );
        assert!(matches!(Callee::parse("+1555abc"), Callee::Invalid(_)));
        assert!(matches!(Callee::parse("bob smith"), Callee::Invalid(_)));
        assert!(validate_user_name("echo").is_err());
        assert!(validate_user_name("Alice").is_err());
        assert!(validate_user_name("alice-2.x_y").is_ok());
    }
}
