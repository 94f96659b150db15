//! What `dialtone devices` shows: real microphones and speakers, the virtual ones as templates,
//! and cameras.

use std::fmt::Write as _;

use serde::{Deserialize, Serialize};

use super::cameras::list_cameras;
use super::{DeviceKind, host};

/// Where a device comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DeviceBackend {
    /// A sound card or sound server device, opened through cpal.
    Cpal,
    /// Simulated by the pipeline (file, record, tone, silence).
    Virtual,
    /// A Video4Linux capture node.
    V4l2,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DeviceInfo {
    /// What a person reads, e.g. "Monitor of Null Output".
    pub name: String,
    /// What to pass as `--mic`, `--speaker` or in the config. For virtual devices a template
    /// (`file:PATH.wav`) whose placeholder is to be replaced.
    pub spec: String,
    pub is_default: bool,
    pub kind: DeviceBackend,
    /// The cpal host (`pulseaudio`, `alsa`), for cpal devices only.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub host: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DeviceList {
    pub microphones: Vec<DeviceInfo>,
    pub speakers: Vec<DeviceInfo>,
    pub cameras: Vec<DeviceInfo>,
    /// Why some real devices may be missing (sound server down, no card), one line each.
    #[serde(skip_serializing_if = "Vec::is_empty", default)]
    pub problems: Vec<String>,
}

/// Enumerates devices. Talks to the sound server, so it may take a moment: call it off the UI
/// thread. Never fails: problems are listed in `problems`, and the virtual devices are always
/// there.
pub fn list_devices() -> DeviceList {
    let mut list = DeviceList::default();
    let host = host::preferred_host();
    let host_name = host.id().name().to_lowercase();
    for kind in [DeviceKind::Microphone, DeviceKind::Speaker] {
        let (found, default_id) = match host::listing(&host, kind) {
            Ok(found) => found,
            Err(e) => {
                list.problems.push(e.to_string());
                (Vec::new(), None)
            }
        };
        let target = match kind {
            DeviceKind::Microphone => &mut list.microphones,
            DeviceKind::Speaker => &mut list.speakers,
        };
        for (name, id) in found {
            target.push(DeviceInfo {
                is_default: default_id.as_deref() == Some(id.as_str()),
                name,
                spec: id,
                kind: DeviceBackend::Cpal,
                host: Some(host_name.clone()),
            });
        }
        target.extend(virtual_devices(kind));
    }
    list.cameras = list_cameras()
        .into_iter()
        .enumerate()
        .map(|(i, (node, name))| DeviceInfo {
            name,
            spec: node,
            is_default: i == 0,
            kind: DeviceBackend::V4l2,
            host: None,
        })
        .collect();
    list
}

fn virtual_devices(kind: DeviceKind) -> Vec<DeviceInfo> {
    let entry = |spec: &str, name: &str| DeviceInfo {
        name: name.to_string(),
        spec: spec.to_string(),
        is_default: false,
        kind: DeviceBackend::Virtual,
        host: None,
    };
    match kind {
        DeviceKind::Microphone => vec![
            entry(
                "file:PATH.wav",
                "Plays a WAV file once, in real time, then silence",
            ),
            entry("tone:440", "A steady sine tone (any frequency in Hz)"),
            entry("silence", "Captures nothing"),
        ],
        DeviceKind::Speaker => vec![
            entry(
                "record:PATH.wav",
                "Writes what would be played to a 48 kHz mono WAV file",
            ),
            entry("silence", "Plays nothing"),
        ],
    }
}

impl DeviceList {
    /// A plain-text table for `dialtone devices`.
    pub fn to_table(&self) -> String {
        let mut out = String::new();
        for (title, items) in [
            ("Microphones", &self.microphones),
            ("Speakers", &self.speakers),
            ("Cameras", &self.cameras),
        ] {
            let _ = writeln!(out, "{title}:");
            if items.is_empty() {
                let _ = writeln!(out, "  (none)");
            }
            let width = items
                .iter()
                .map(|d| d.spec.chars().count())
                .max()
                .unwrap_or(0);
            for d in items {
                let mark = if d.is_default { '*' } else { ' ' };
                let origin = match (&d.kind, &d.host) {
                    (_, Some(host)) => host.as_str(),
                    (DeviceBackend::Virtual, None) => "virtual",
                    (DeviceBackend::V4l2, None) => "v4l2",
                    (DeviceBackend::Cpal, None) => "cpal",
                };
                let _ = writeln!(out, "{mark} {:<width$}  {}  [{origin}]", d.spec, d.name);
            }
            out.push('\n');
        }
        for p in &self.problems {
            let _ = writeln!(out, "note: {p}");
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> DeviceList {
        DeviceList {
            microphones: vec![DeviceInfo {
                name: "Monitor of Null Output".into(),
                spec: "test.monitor".into(),
                is_default: true,
                kind: DeviceBackend::Cpal,
                host: Some("pulseaudio".into()),
            }],
            speakers: virtual_devices(DeviceKind::Speaker),
            cameras: vec![],
            problems: vec!["pulse is down".into()],
        }
    }

    #[test]
    fn serializes_in_camel_case() {
        let json = serde_json::to_value(sample()).unwrap();
        assert_eq!(json["microphones"][0]["isDefault"], true);
        assert_eq!(json["microphones"][0]["kind"], "cpal");
        assert_eq!(json["microphones"][0]["host"], "pulseaudio");
        assert_eq!(json["speakers"][0]["kind"], "virtual");
        assert!(json["speakers"][0].get("host").is_none());
        assert_eq!(json["cameras"], serde_json::json!([]));
    }

    #[test]
    fn every_virtual_template_parses_and_fits_its_end() {
        for kind in [DeviceKind::Microphone, DeviceKind::Speaker] {
            for d in virtual_devices(kind) {
                let spec: super::super::DeviceSpec = d.spec.parse().unwrap();
                assert!(spec.is_virtual() && spec.usable_as(kind), "{}", d.spec);
            }
        }
    }

    #[test]
    fn table_marks_the_default_and_lists_problems() {
        let table = sample().to_table();
        assert!(table.contains("* test.monitor"), "{table}");
        assert!(table.contains("record:PATH.wav"), "{table}");
        assert!(table.contains("Cameras:\n  (none)"), "{table}");
        assert!(table.contains("note: pulse is down"), "{table}");
    }
}
