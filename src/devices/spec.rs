//! What a user types to pick a microphone or a speaker (`--mic`, `--speaker`, config, agent).

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::DeviceKind;

/// Highest tone we accept: anything above is inaudible for most people and near Nyquist at 48 kHz.
pub const MAX_TONE_HZ: f32 = 20_000.0;

/// A microphone or speaker, as written on the command line or in the config.
///
/// | text              | meaning                                                           |
/// |-------------------|-------------------------------------------------------------------|
/// | `default`         | the host's default device                                         |
/// | `file:PATH.wav`   | mic: play the file once, in real time, then silence               |
/// | `record:PATH.wav` | speaker: write what would be played, in real time (48 kHz mono)  |
/// | `tone:HZ`         | mic: a steady sine wave                                           |
/// | `silence`         | mic or speaker that captures or plays nothing                     |
/// | anything else     | a real device, matched by name                                    |
#[derive(Debug, Clone, PartialEq, Default)]
pub enum DeviceSpec {
    #[default]
    Default,
    Named(String),
    File(PathBuf),
    Record(PathBuf),
    Tone(f32),
    Silence,
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum SpecError {
    #[error(
        "device spec is empty: use `default`, a device name, `file:PATH.wav`, `record:PATH.wav`, `tone:HZ` or `silence`"
    )]
    Empty,
    #[error("`{spec}` has no path: write `{prefix}:PATH.wav`")]
    MissingPath { spec: String, prefix: &'static str },
    #[error("tone frequency `{value}` is not a number of hertz between 1 and 20000")]
    BadFrequency { value: String },
}

impl DeviceSpec {
    /// True for the devices the pipeline simulates (no cpal involved).
    pub fn is_virtual(&self) -> bool {
        !matches!(self, DeviceSpec::Default | DeviceSpec::Named(_))
    }

    /// Whether this spec makes sense for that end: a `record:` cannot capture and a `file:` or
    /// `tone:` cannot play.
    pub fn usable_as(&self, kind: DeviceKind) -> bool {
        match self {
            DeviceSpec::Default | DeviceSpec::Named(_) | DeviceSpec::Silence => true,
            DeviceSpec::File(_) | DeviceSpec::Tone(_) => kind == DeviceKind::Microphone,
            DeviceSpec::Record(_) => kind == DeviceKind::Speaker,
        }
    }
}

impl FromStr for DeviceSpec {
    type Err = SpecError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim();
        if s.is_empty() {
            return Err(SpecError::Empty);
        }
        if s.eq_ignore_ascii_case("default") {
            return Ok(DeviceSpec::Default);
        }
        if s.eq_ignore_ascii_case("silence") {
            return Ok(DeviceSpec::Silence);
        }
        if let Some(path) = s.strip_prefix("file:") {
            return path_of(s, "file", path).map(DeviceSpec::File);
        }
        if let Some(path) = s.strip_prefix("record:") {
            return path_of(s, "record", path).map(DeviceSpec::Record);
        }
        if let Some(hz) = s.strip_prefix("tone:") {
            let bad = || SpecError::BadFrequency {
                value: hz.to_string(),
            };
            let value: f32 = hz.trim().parse().map_err(|_| bad())?;
            if !value.is_finite() || !(1.0..=MAX_TONE_HZ).contains(&value) {
                return Err(bad());
            }
            return Ok(DeviceSpec::Tone(value));
        }
        Ok(DeviceSpec::Named(s.to_string()))
    }
}

fn path_of(spec: &str, prefix: &'static str, path: &str) -> Result<PathBuf, SpecError> {
    if path.trim().is_empty() {
        return Err(SpecError::MissingPath {
            spec: spec.to_string(),
            prefix,
        });
    }
    Ok(PathBuf::from(path))
}

impl fmt::Display for DeviceSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DeviceSpec::Default => f.write_str("default"),
            DeviceSpec::Named(name) => f.write_str(name),
            DeviceSpec::File(path) => write!(f, "file:{}", path.display()),
            DeviceSpec::Record(path) => write!(f, "record:{}", path.display()),
            DeviceSpec::Tone(hz) => write!(f, "tone:{hz}"),
            DeviceSpec::Silence => f.write_str("silence"),
        }
    }
}

impl Serialize for DeviceSpec {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for DeviceSpec {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> Result<DeviceSpec, SpecError> {
        s.parse()
    }

    #[test]
    fn parses_every_form() {
        assert_eq!(parse("default").unwrap(), DeviceSpec::Default);
        assert_eq!(parse(" DEFAULT ").unwrap(), DeviceSpec::Default);
        assert_eq!(parse("silence").unwrap(), DeviceSpec::Silence);
        assert_eq!(
            parse("file:/tmp/a b.wav").unwrap(),
            DeviceSpec::File("/tmp/a b.wav".into())
        );
        assert_eq!(
            parse("record:out.wav").unwrap(),
            DeviceSpec::Record("out.wav".into())
        );
        assert_eq!(parse("tone:440").unwrap(), DeviceSpec::Tone(440.0));
        assert_eq!(parse("tone:997.5").unwrap(), DeviceSpec::Tone(997.5));
        assert_eq!(
            parse("Monitor of Null Output").unwrap(),
            DeviceSpec::Named("Monitor of Null Output".into())
        );
        assert_eq!(parse("hw:0,0").unwrap(), DeviceSpec::Named("hw:0,0".into()));
    }

    #[test]
    fn round_trips_through_display() {
        for text in [
            "default",
            "silence",
            "file:x.wav",
            "record:/a/b.wav",
            "tone:440",
            "tone:12.25",
            "test",
        ] {
            let spec = parse(text).unwrap();
            assert_eq!(spec.to_string(), text);
            assert_eq!(parse(&spec.to_string()).unwrap(), spec);
        }
    }

    #[test]
    fn rejects_bad_input_with_the_bad_value_quoted() {
        assert_eq!(parse("  ").unwrap_err(), SpecError::Empty);
        let e = parse("file:").unwrap_err().to_string();
        assert!(e.contains("`file:`") && !e.ends_with('.'), "{e}");
        let e = parse("record: ").unwrap_err().to_string();
        assert!(e.contains("record:PATH.wav"), "{e}");
        for bad in [
            "tone:abc",
            "tone:0",
            "tone:-3",
            "tone:30000",
            "tone:NaN",
            "tone:inf",
            "tone:",
        ] {
            let e = parse(bad).unwrap_err().to_string();
            let value = bad.strip_prefix("tone:").unwrap();
            assert!(e.contains(&format!("`{value}`")), "{e}");
            assert!(!e.ends_with('.'), "{e}");
        }
    }

    #[test]
    fn serde_is_a_plain_string() {
        let json = serde_json::to_string(&DeviceSpec::Tone(440.0)).unwrap();
        assert_eq!(json, "\"tone:440\"");
        let back: DeviceSpec = serde_json::from_str("\"record:r.wav\"").unwrap();
        assert_eq!(back, DeviceSpec::Record("r.wav".into()));
        let err = serde_json::from_str::<DeviceSpec>("\"tone:x\"")
            .unwrap_err()
            .to_string();
        assert!(err.contains("`x`"), "{err}");
    }

    #[test]
    fn knows_which_end_a_spec_fits() {
        use DeviceKind::*;
        assert!(DeviceSpec::File("a".into()).usable_as(Microphone));
        assert!(!DeviceSpec::File("a".into()).usable_as(Speaker));
        assert!(DeviceSpec::Record("a".into()).usable_as(Speaker));
        assert!(!DeviceSpec::Record("a".into()).usable_as(Microphone));
        assert!(!DeviceSpec::Tone(1.0).usable_as(Speaker));
        assert!(
            DeviceSpec::Silence.usable_as(Speaker) && DeviceSpec::Silence.usable_as(Microphone)
        );
        assert!(!DeviceSpec::Default.is_virtual() && DeviceSpec::Silence.is_virtual());
    }
}
