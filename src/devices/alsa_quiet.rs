//! ALSA prints probe failures (missing cards, unknown PCMs) straight to stderr, which would tear
//! through a full-screen TUI. A no-op error handler keeps it quiet; cpal still reports the
//! failures through its own `Result`s.

/// Installs the no-op ALSA error handler once per process. Cheap to call again.
pub fn silence_alsa() {
    #[cfg(target_os = "linux")]
    {
        static ONCE: std::sync::Once = std::sync::Once::new();
        ONCE.call_once(|| {
            // SAFETY: the handler has the C ABI and ignores every argument; ALSA keeps the
            // function pointer, which lives for the whole program.
            unsafe {
                ffi::snd_lib_error_set_handler(Some(ffi::quiet));
            }
        });
    }
}

#[cfg(target_os = "linux")]
mod ffi {
    use std::os::raw::{c_char, c_int};

    // The real handler type is variadic (`const char *fmt, ...`). Stable Rust cannot define a
    // variadic function, but on the Linux C ABIs a callee that takes only the fixed arguments
    // and ignores the rest is called correctly, so the fixed prefix is declared here.
    pub type Handler =
        unsafe extern "C" fn(*const c_char, c_int, *const c_char, c_int, *const c_char);

    // libasound is already linked by cpal's ALSA backend (alsa-sys).
    unsafe extern "C" {
        pub fn snd_lib_error_set_handler(handler: Option<Handler>) -> c_int;
    }

    pub unsafe extern "C" fn quiet(
        _file: *const c_char,
        _line: c_int,
        _function: *const c_char,
        _err: c_int,
        _fmt: *const c_char,
    ) {
    }
}
