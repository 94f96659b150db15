//! A one-line text field (the dialer, the `:` command line): a string and a cursor, with the
//! editing keys people expect from a shell.

use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TextField {
    chars: Vec<char>,
    /// Cursor position in chars, 0..=len.
    cursor: usize,
}

/// What a key did to the field.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Edit {
    /// The text changed.
    Changed,
    /// Only the cursor moved.
    Moved,
    /// Not an editing key.
    Ignored,
}

impl TextField {
    pub fn with_text(text: &str) -> TextField {
        let chars: Vec<char> = text.chars().collect();
        TextField {
            cursor: chars.len(),
            chars,
        }
    }

    pub fn text(&self) -> String {
        self.chars.iter().collect()
    }

    pub fn cursor(&self) -> usize {
        self.cursor
    }

    pub fn is_empty(&self) -> bool {
        self.chars.is_empty()
    }

    pub fn set(&mut self, text: &str) {
        *self = TextField::with_text(text);
    }

    /// Applies an editing key: printable characters, Backspace, Delete, Left, Right, Home, End,
    /// Ctrl-A, Ctrl-E, Ctrl-U (clear to start), Ctrl-K (clear to end), Ctrl-W (delete a word).
    pub fn edit(&mut self, key: &KeyEvent) -> Edit {
        let ctrl = key.modifiers.contains(KeyModifiers::CONTROL);
        match key.code {
            KeyCode::Char('a') if ctrl => self.move_to(0),
            KeyCode::Char('e') if ctrl => self.move_to(self.chars.len()),
            KeyCode::Char('u') if ctrl => {
                self.chars.drain(..self.cursor);
                self.cursor = 0;
                Edit::Changed
            }
            KeyCode::Char('k') if ctrl => {
                self.chars.truncate(self.cursor);
                Edit::Changed
            }
            KeyCode::Char('w') if ctrl => {
                let mut start = self.cursor;
                while start > 0 && self.chars[start - 1] == ' ' {
                    start -= 1;
                }
                while start > 0 && self.chars[start - 1] != ' ' {
                    start -= 1;
                }
                self.chars.drain(start..self.cursor);
                self.cursor = start;
                Edit::Changed
            }
            KeyCode::Char(_) if ctrl || key.modifiers.contains(KeyModifiers::ALT) => Edit::Ignored,
            KeyCode::Char(c) if c.is_control() => Edit::Ignored,
            KeyCode::Char(c) => {
                self.chars.insert(self.cursor, c);
                self.cursor += 1;
                Edit::Changed
            }
            KeyCode::Backspace if self.cursor > 0 => {
                self.cursor -= 1;
                self.chars.remove(self.cursor);
                Edit::Changed
            }
            KeyCode::Delete if self.cursor < self.chars.len() => {
                self.chars.remove(self.cursor);
                Edit::Changed
            }
            KeyCode::Backspace | KeyCode::Delete => Edit::Moved,
            KeyCode::Left => self.move_to(self.cursor.saturating_sub(1)),
            KeyCode::Right => self.move_to((self.cursor + 1).min(self.chars.len())),
            KeyCode::Home => self.move_to(0),
            KeyCode::End => self.move_to(self.chars.len()),
            _ => Edit::Ignored,
        }
    }

    fn move_to(&mut self, at: usize) -> Edit {
        self.cursor = at;
        Edit::Moved
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(code: KeyCode) -> KeyEvent {
        KeyEvent::new(code, KeyModifiers::NONE)
    }

    fn ctrl(c: char) -> KeyEvent {
        KeyEvent::new(KeyCode::Char(c), KeyModifiers::CONTROL)
    }

    fn typed(s: &str) -> TextField {
        let mut f = TextField::default();
        for c in s.chars() {
            f.edit(&key(KeyCode::Char(c)));
        }
        f
    }

    #[test]
    fn editing_keys() {
        let mut f = typed("call bob");
        assert_eq!((f.text(), f.cursor()), ("call bob".into(), 8));
        f.edit(&key(KeyCode::Backspace));
        assert_eq!(f.text(), "call bo");
        f.edit(&key(KeyCode::Home));
        f.edit(&key(KeyCode::Delete));
        assert_eq!((f.text(), f.cursor()), ("all bo".into(), 0));
        f.edit(&key(KeyCode::Right));
        f.edit(&key(KeyCode::Char('X')));
        assert_eq!(f.text(), "aXll bo");
        f.edit(&ctrl('e'));
        f.edit(&ctrl('w'));
        assert_eq!(f.text(), "aXll ");
        f.edit(&ctrl('w'));
        assert_eq!(f.text(), "");
        let mut f = typed("hello world");
        f.edit(&key(KeyCode::Left));
        f.edit(&key(KeyCode::Left));
        f.edit(&ctrl('k'));
        assert_eq!(f.text(), "hello wor");
        f.edit(&key(KeyCode::Left));
        f.edit(&ctrl('u'));
        assert_eq!((f.text(), f.cursor()), ("r".into(), 0));
        assert_eq!(f.edit(&key(KeyCode::Backspace)), Edit::Moved);
        assert_eq!(f.edit(&key(KeyCode::Enter)), Edit::Ignored);
        assert_eq!(f.edit(&ctrl('x')), Edit::Ignored);
        assert_eq!(f.edit(&key(KeyCode::Char('\n'))), Edit::Ignored);
    }

    #[test]
    fn non_ascii_text_is_edited_by_character() {
        let mut f = typed("zoë");
        f.edit(&key(KeyCode::Backspace));
        assert_eq!(f.text(), "zo");
        assert_eq!(TextField::with_text("ñé").cursor(), 2);
    }
}
