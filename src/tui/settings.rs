//! The `[tui]` section of the config file. Every field has a default; `validate` gives errors
//! that name the key and quote the bad value, like the rest of `Config`.

use serde::Deserialize;

use crate::core::Callee;

use super::keymap::{Keymap, KeysConfig};

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TuiConfig {
    /// Names (or numbers) the dialer offers before the call history.
    pub contacts: Vec<String>,
    /// Answer every incoming call at once.
    pub auto_accept: bool,
    /// Most redraws per second. The screen is only redrawn when something changed.
    pub max_fps: u32,
    /// Key overrides: command name → a key or a list of keys (docs/keys.md lists the names).
    pub keys: KeysConfig,
}

impl Default for TuiConfig {
    fn default() -> Self {
        TuiConfig {
            contacts: Vec::new(),
            auto_accept: false,
            max_fps: 60,
            keys: KeysConfig::default(),
        }
    }
}

impl TuiConfig {
    pub fn validate(&self) -> Result<(), String> {
        for c in &self.contacts {
            if let Callee::Invalid(why) = Callee::parse(c) {
                return Err(format!("key tui.contacts = {c:?}: {why}"));
            }
        }
        if !(1..=240).contains(&self.max_fps) {
            return Err(format!(
                "key tui.max_fps = {}: must be between 1 and 240",
                self.max_fps
            ));
        }
        Keymap::new(&self.keys).map(|_| ())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<TuiConfig, String> {
        let cfg: TuiConfig = toml::from_str(text).map_err(|e| e.to_string())?;
        cfg.validate()?;
        Ok(cfg)
    }

    #[test]
    fn defaults_and_a_full_section() {
        assert_eq!(parse("").unwrap(), TuiConfig::default());
        let cfg = parse(
            "contacts = [\"bob\", \"+15551234567\"]\nauto_accept = true\nmax_fps = 30\n[keys]\nhang_up = \"x\"\naccept = [\"a\", \"y\"]\n",
        )
        .unwrap();
        assert_eq!(cfg.contacts, vec!["bob", "+15551234567"]);
        assert!(cfg.auto_accept);
        assert_eq!(cfg.max_fps, 30);
        assert_eq!(cfg.keys.0.len(), 2);
    }

    #[test]
    fn bad_values_are_named() {
        let e = parse("contacts = [\"bob smith\"]").unwrap_err();
        assert!(e.contains("tui.contacts") && e.contains("bob smith"), "{e}");
        let e = parse("max_fps = 0").unwrap_err();
        assert!(e.contains("tui.max_fps = 0"), "{e}");
        let e = parse("[keys]\nhang_up = \"ctrl-\"").unwrap_err();
        assert!(e.contains("tui.keys.hang_up") && e.contains("ctrl-"), "{e}");
        let e = parse("[keys]\nhangup = \"x\"").unwrap_err();
        assert!(e.contains("tui.keys.hangup"), "{e}");
        let e = parse("colour = 1").unwrap_err();
        assert!(e.contains("colour"), "{e}");
        let e = parse("[keys]\nmute = 5").unwrap_err();
        assert!(e.contains("mute"), "{e}");
    }
}
