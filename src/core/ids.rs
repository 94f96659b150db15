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

#[cfg(test)]
mod tests {
    use super::*;

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
