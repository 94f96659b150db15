//! Styles by role. Colours are the terminal's own 16 named colours, used as foregrounds only,
//! so the user's light or dark palette decides how they look; selection is reverse video. With
//! `NO_COLOR` set (https://no-color.org), only bold, dim, underline and reverse remain.

use ratatui::style::{Color, Modifier, Style};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Theme {
    pub color: bool,
}

impl Default for Theme {
    fn default() -> Self {
        Theme { color: true }
    }
}

impl Theme {
    /// Colour unless `NO_COLOR` is set to anything non-empty.
    pub fn from_env() -> Theme {
        Theme {
            color: std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty()),
        }
    }

    fn fg(&self, c: Color) -> Style {
        if self.color {
            Style::new().fg(c)
        } else {
            Style::new()
        }
    }

    pub fn plain(&self) -> Style {
        Style::new()
    }
    pub fn title(&self) -> Style {
        Style::new().add_modifier(Modifier::BOLD)
    }
    /// The focused panel's border and title.
    pub fn focused(&self) -> Style {
        self.fg(Color::Cyan).add_modifier(Modifier::BOLD)
    }
    pub fn selected(&self) -> Style {
        Style::new().add_modifier(Modifier::REVERSED)
    }
    pub fn dim(&self) -> Style {
        Style::new().add_modifier(Modifier::DIM)
    }
    /// Good news: connected, speaking.
    pub fn ok(&self) -> Style {
        self.fg(Color::Green).add_modifier(Modifier::BOLD)
    }
    /// Needs attention: ringing, on hold, muted.
    pub fn warn(&self) -> Style {
        self.fg(Color::Yellow).add_modifier(Modifier::BOLD)
    }
    /// Errors, disconnected.
    pub fn error(&self) -> Style {
        self.fg(Color::Red).add_modifier(Modifier::BOLD)
    }
    /// A key in a hint ("a accept").
    pub fn key(&self) -> Style {
        self.fg(Color::Cyan).add_modifier(Modifier::BOLD)
    }
    /// The incoming-call prompt's frame.
    pub fn alert(&self) -> Style {
        self.fg(Color::Magenta).add_modifier(Modifier::BOLD)
    }
    pub fn underline(&self) -> Style {
        Style::new().add_modifier(Modifier::UNDERLINED)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_color_keeps_only_modifiers() {
        let t = Theme { color: false };
        for s in [t.focused(), t.ok(), t.warn(), t.error(), t.key(), t.alert()] {
            assert_eq!(s.fg, None);
            assert_eq!(s.bg, None);
        }
        let t = Theme { color: true };
        for s in [
            t.focused(),
            t.ok(),
            t.warn(),
            t.error(),
            t.key(),
            t.alert(),
            t.selected(),
            t.dim(),
        ] {
            assert_eq!(s.bg, None, "never paint a background");
        }
    }
}
