//! The cpal side of real devices: which host to talk to, which device a name means, and which
//! stream configuration to open it with.

use cpal::traits::{DeviceTrait, HostTrait};
use cpal::{
    BufferSize, SampleFormat, StreamConfig, SupportedBufferSize, SupportedStreamConfigRange,
};

use super::{DeviceKind, DeviceSpec, silence_alsa};

/// The pipeline's native rate; a device opened at this rate needs no resampling.
pub const PREFERRED_RATE: u32 = 48_000;

/// Callback period asked of the device. The hosts' defaults are far larger (PulseAudio's asks
/// for 2 s), and every period spent in a device buffer is added to mouth-to-ear delay; but each
/// period also wakes the capture and playout threads, the sound server and its client thread.
/// 20 ms is one Opus frame, as baresip asks. Measured on a PulseAudio null sink (benches/call.rs
/// `real`, per endpoint, median of 3 interleaved rounds, baresip on the same sinks beside it):
/// 5 ms 2.80 % of a core (1.22x baresip), 10 ms 2.70 % (1.23x), 20 ms 2.25 % (0.98x); the
/// daemon 9.3 %, 8.2 %, 7.5 %. Virtual devices (`file:`, `tone:`, `record:`) do not use it.
pub const PERIOD_MS: u32 = 20;

/// Sample formats the pipeline converts from and to, best first.
const FORMATS: [SampleFormat; 5] = [
    SampleFormat::F32,
    SampleFormat::I16,
    SampleFormat::I32,
    SampleFormat::U16,
    SampleFormat::U8,
];

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum HostError {
    #[error("no {kind} named `{name}` on host {host} (see `dialtone devices`)")]
    NotFound {
        kind: DeviceKind,
        name: String,
        host: String,
    },
    #[error("host {host} has no default {kind}")]
    NoDefault { kind: DeviceKind, host: String },
    #[error("cannot list {kind}s on host {host}: {message}")]
    Enumerate {
        kind: DeviceKind,
        host: String,
        message: String,
    },
    #[error("{kind} `{name}` offers no usable stream format: {message}")]
    NoConfig {
        kind: DeviceKind,
        name: String,
        message: String,
    },
    #[error("`{spec}` is a virtual device, not a cpal one")]
    NotCpal { spec: String },
}

/// PulseAudio when a server is reachable (it mixes, follows default-device changes and honours
/// small buffers), else the platform default (ALSA on Linux).
pub fn preferred_host() -> cpal::Host {
    silence_alsa();
    #[cfg(target_os = "linux")]
    if cpal::available_hosts().contains(&cpal::HostId::PulseAudio)
        && let Ok(host) = cpal::host_from_id(cpal::HostId::PulseAudio)
    {
        return host;
    }
    cpal::default_host()
}

/// Human name of a device; cpal 0.18 has no `name()`, the description carries it.
pub fn device_name(device: &cpal::Device) -> String {
    device
        .description()
        .map(|d| d.name().to_string())
        .unwrap_or_else(|_| device_id(device))
}

/// The host-specific id (a PulseAudio sink/source name, an ALSA PCM name). Stable across runs,
/// so it is what listings offer as the spec to type.
pub fn device_id(device: &cpal::Device) -> String {
    device
        .id()
        .map(|id| id.id().to_string())
        .unwrap_or_default()
}

fn devices_of(host: &cpal::Host, kind: DeviceKind) -> Result<Vec<cpal::Device>, HostError> {
    let listed = match kind {
        DeviceKind::Microphone => host.input_devices().map(|d| d.collect()),
        DeviceKind::Speaker => host.output_devices().map(|d| d.collect()),
    };
    listed.map_err(|e| HostError::Enumerate {
        kind,
        host: host.id().name().to_string(),
        message: e.to_string(),
    })
}

/// Every device of that kind on the host, with its name and id.
pub fn list(
    host: &cpal::Host,
    kind: DeviceKind,
) -> Result<Vec<(cpal::Device, String, String)>, HostError> {
    Ok(devices_of(host, kind)?
        .into_iter()
        .map(|d| {
            let name = device_name(&d);
            let id = device_id(&d);
            (d, name, id)
        })
        .collect())
}

/// One end's devices, (name, id) each, and the default's id.
pub type Listing = (Vec<(String, String)>, Option<String>);

/// What `host` offers on one end.
///
/// # Errors
///
/// If the host cannot be asked.
pub fn listing(host: &cpal::Host, kind: DeviceKind) -> Result<Listing, HostError> {
    let devices = list(host, kind)?
        .into_iter()
        .map(|(_, name, id)| (name, id))
        .collect();
    Ok((devices, default_device(host, kind).map(|d| device_id(&d))))
}

pub fn default_device(host: &cpal::Host, kind: DeviceKind) -> Option<cpal::Device> {
    match kind {
        DeviceKind::Microphone => host.default_input_device(),
        DeviceKind::Speaker => host.default_output_device(),
    }
}

/// The device a spec means: the host default, or a device whose id or name matches exactly,
/// then case-insensitively, then as a case-insensitive substring.
pub fn find_device(
    host: &cpal::Host,
    kind: DeviceKind,
    spec: &DeviceSpec,
) -> Result<cpal::Device, HostError> {
    let host_name = host.id().name().to_string();
    match spec {
        DeviceSpec::Default => default_device(host, kind).ok_or(HostError::NoDefault {
            kind,
            host: host_name,
        }),
        DeviceSpec::Named(wanted) => {
            let candidates = list(host, kind)?;
            let names = candidates
                .iter()
                .map(|(_, name, id)| (name.as_str(), id.as_str()));
            match super::best_match(names, wanted) {
                Some(i) => Ok(candidates
                    .into_iter()
                    .nth(i)
                    .map(|(d, _, _)| d)
                    .expect("index from best_match")),
                None => Err(HostError::NotFound {
                    kind,
                    name: wanted.clone(),
                    host: host_name,
                }),
            }
        }
        other => Err(HostError::NotCpal {
            spec: other.to_string(),
        }),
    }
}

/// A stream configuration and sample format to open a device with.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct OpenConfig {
    pub config: StreamConfig,
    pub format: SampleFormat,
}

/// Picks 48 kHz when the device offers it, mono when it can, the best sample format the
/// pipeline converts, and a fixed period of `PERIOD_MS`.
pub fn choose_config(device: &cpal::Device, kind: DeviceKind) -> Result<OpenConfig, HostError> {
    let name = device_name(device);
    let no_config = |message: String| HostError::NoConfig {
        kind,
        name: name.clone(),
        message,
    };
    let ranges: Vec<SupportedStreamConfigRange> = match kind {
        DeviceKind::Microphone => device.supported_input_configs().map(|c| c.collect()),
        DeviceKind::Speaker => device.supported_output_configs().map(|c| c.collect()),
    }
    .map_err(|e| no_config(e.to_string()))?;
    let usable: Vec<&SupportedStreamConfigRange> = ranges
        .iter()
        .filter(|r| FORMATS.contains(&r.sample_format()) && r.channels() > 0)
        .collect();
    let default_rate = match kind {
        DeviceKind::Microphone => device.default_input_config().ok(),
        DeviceKind::Speaker => device.default_output_config().ok(),
    }
    .map(|c| c.sample_rate());
    let score = |r: &SupportedStreamConfigRange| {
        let format_rank = FORMATS
            .iter()
            .position(|f| *f == r.sample_format())
            .unwrap_or(FORMATS.len());
        let channel_rank = match r.channels() {
            1 => 0,
            2 => 1,
            _ => 2,
        };
        (!r.contains_rate(PREFERRED_RATE), channel_rank, format_rank)
    };
    let best = usable.iter().min_by_key(|r| score(r)).ok_or_else(|| {
        no_config(format!(
            "{} configurations, none in a supported format",
            ranges.len()
        ))
    })?;
    let rate = if best.contains_rate(PREFERRED_RATE) {
        PREFERRED_RATE
    } else {
        default_rate
            .filter(|r| best.contains_rate(*r))
            .unwrap_or_else(|| {
                best.max_sample_rate()
                    .min(PREFERRED_RATE)
                    .max(best.min_sample_rate())
            })
    };
    let period = rate * PERIOD_MS / 1000;
    let frames = match best.buffer_size() {
        SupportedBufferSize::Range { min, max } => period.clamp(*min, (*max).max(*min)),
        SupportedBufferSize::Unknown => period,
    };
    Ok(OpenConfig {
        config: StreamConfig {
            channels: best.channels(),
            sample_rate: rate,
            buffer_size: BufferSize::Fixed(frames),
        },
        format: best.sample_format(),
    })
}

#[cfg(test)]
mod tests {
    use crate::devices::best_match as pick;

    #[test]
    fn picks_exact_then_folded_then_substring() {
        let devices = [
            ("Null Output", "test"),
            ("Monitor of Null Output", "test.monitor"),
            ("USB Mic", "alsa_input.usb"),
        ];
        let it = || devices.iter().map(|(n, id)| (*n, *id));
        assert_eq!(pick(it(), "test"), Some(0));
        assert_eq!(pick(it(), "test.monitor"), Some(1));
        assert_eq!(pick(it(), "Monitor of Null Output"), Some(1));
        assert_eq!(pick(it(), "usb mic"), Some(2));
        assert_eq!(pick(it(), "monitor"), Some(1));
        assert_eq!(pick(it(), "USB"), Some(2));
        assert_eq!(pick(it(), "nothing"), None);
    }
}
