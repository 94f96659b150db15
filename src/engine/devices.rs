//! The device listing, polled off the engine loop: a plain thread asks the sound system what it
//! offers every [`POLL_EVERY`] while the engine says a real device is in use, and sends each
//! listing that differs from the last. What a listing means is `core::media_diagnostics`'s
//! business; this only asks and translates.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use crate::core::media_diagnostics::{DeviceEntry, DeviceSnapshot, Enumeration};
use crate::devices::{DeviceKind, host};

/// How often the listing is asked for. Asking PulseAudio costs a connection and two round
/// trips: a few milliseconds of one core every 1.5 s.
pub const POLL_EVERY: Duration = Duration::from_millis(1500);

/// One listing of `host`.
pub fn snapshot(host: &cpal::Host) -> Enumeration {
    let host_name = host.id().name().to_string();
    let mut snap = DeviceSnapshot {
        host: host_name,
        ..DeviceSnapshot::default()
    };
    for kind in [DeviceKind::Microphone, DeviceKind::Speaker] {
        let (list, default) = host::listing(host, kind).map_err(|e| e.to_string())?;
        let entries = list
            .into_iter()
            .map(|(name, id)| DeviceEntry { id, name })
            .collect();
        match kind {
            DeviceKind::Microphone => {
                snap.microphones = entries;
                snap.default_microphone = default;
            }
            DeviceKind::Speaker => {
                snap.speakers = entries;
                snap.default_speaker = default;
            }
        }
    }
    Ok(snap)
}

/// Whether a host's client is kept between polls: PulseAudio's (a connection).
fn worth_keeping(host: &cpal::Host) -> bool {
    #[cfg(target_os = "linux")]
    {
        host.id() == cpal::HostId::PulseAudio
    }
    #[cfg(not(target_os = "linux"))]
    {
        let _ = host;
        false
    }
}

/// The polling thread's handle: it polls while `watching` is set, and ends when the receiver
/// of its listings is gone or `stop` is set.
pub struct Watcher {
    pub watching: Arc<AtomicBool>,
    stop: Arc<AtomicBool>,
    thread: std::thread::Thread,
}

impl Watcher {
    /// Starts the thread, polling at once if `watching`; each changed listing is handed to `send`, which returns false once
    /// nobody listens.
    pub fn start(
        watching: bool,
        send: impl Fn(Enumeration) -> bool + Send + 'static,
    ) -> std::io::Result<Watcher> {
        let watching = Arc::new(AtomicBool::new(watching));
        let stop = Arc::new(AtomicBool::new(false));
        let (w, s) = (watching.clone(), stop.clone());
        let handle = std::thread::Builder::new()
            .name("dialtone-devwatch".into())
            .spawn(move || {
                let mut last: Option<Enumeration> = None;
                // A PulseAudio client is kept between polls (connecting costs more than
                // asking); any other host is asked afresh, so that a sound server that comes
                // up later is found.
                let mut kept: Option<cpal::Host> = None;
                while !s.load(Ordering::Relaxed) {
                    if w.load(Ordering::Relaxed) {
                        let host = kept.take().unwrap_or_else(host::preferred_host);
                        let now = snapshot(&host);
                        if now.is_ok() && worth_keeping(&host) {
                            kept = Some(host);
                        }
                        if last.as_ref() != Some(&now) {
                            last = Some(now.clone());
                            if !send(now) {
                                return;
                            }
                        }
                    } else {
                        // Listings taken before a pause say nothing about after it.
                        last = None;
                    }
                    std::thread::park_timeout(POLL_EVERY);
                }
            })?;
        Ok(Watcher {
            watching,
            stop,
            thread: handle.thread().clone(),
        })
    }

    /// Polls now rather than at the next period (watching was just turned on).
    pub fn wake(&self) {
        self.thread.unpark();
    }
}

impl Drop for Watcher {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.unpark();
    }
}
