//! Where `chat` writes and how it reads lines.
//!
//! On a terminal (standard input and output both), the terminal is put in
//! raw mode with a one-line editor at the bottom: incoming lines are
//! printed above it without breaking what is being typed, and keystrokes
//! tell the chat when the user starts and stops typing (the typing
//! indicator). Otherwise (pipes, files) lines are read from standard input
//! as they come and output is plain. Not owned here: what the lines mean.

use std::io::{BufRead as _, IsTerminal as _, Write as _};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use crossterm::event::{self, Event, KeyCode, KeyEvent, KeyEventKind, KeyModifiers};
use crossterm::terminal;
use tokio::sync::mpsc;

/// The prompt in front of the line being typed.
const PROMPT: &str = "> ";
/// Typing counts as stopped after this long without a keystroke.
const TYPING_IDLE: Duration = Duration::from_secs(5);

/// What the user did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Input {
    /// A complete line.
    Line(String),
    /// Started (true) or stopped (false) typing a message.
    Typing(bool),
    /// End of input (end of file, Ctrl-C, Ctrl-D).
    End,
}

/// The chat's output, plain or above a line editor.
pub struct Screen {
    editor: Option<Editor>,
}

struct Editor {
    buffer: Arc<Mutex<String>>,
}

impl Drop for Editor {
    fn drop(&mut self) {
        let _ = terminal::disable_raw_mode();
        let mut out = std::io::stdout();
        let _ = write!(out, "\r\x1b[2K");
        let _ = out.flush();
    }
}

impl Screen {
    /// Starts reading input: an editor on a terminal, lines otherwise.
    pub fn start() -> (Screen, mpsc::UnboundedReceiver<Input>) {
        let (tx, rx) = mpsc::unbounded_channel();
        let tty = std::io::stdin().is_terminal() && std::io::stdout().is_terminal();
        if tty && terminal::enable_raw_mode().is_ok() {
            let buffer = Arc::new(Mutex::new(String::new()));
            let shared = Arc::clone(&buffer);
            std::thread::spawn(move || edit(&shared, &tx));
            let screen = Screen {
                editor: Some(Editor { buffer }),
            };
            screen.redraw();
            return (screen, rx);
        }
        std::thread::spawn(move || {
            for line in std::io::stdin().lock().lines() {
                match line {
                    Ok(line) => {
                        if tx.send(Input::Line(line)).is_err() {
                            return;
                        }
                    }
                    Err(_) => break,
                }
            }
            let _ = tx.send(Input::End);
        });
        (Screen { editor: None }, rx)
    }

    /// Prints a line of the conversation.
    pub fn say(&self, line: &str) {
        match &self.editor {
            None => println!("{line}"),
            Some(editor) => editor.print(&mut std::io::stdout(), line),
        }
    }

    /// Prints a notice or an error (standard error when plain).
    pub fn warn(&self, line: &str) {
        match &self.editor {
            None => eprintln!("{line}"),
            Some(editor) => editor.print(&mut std::io::stdout(), line),
        }
    }

    fn redraw(&self) {
        if let Some(editor) = &self.editor {
            let buffer = editor.buffer.lock().unwrap_or_else(PoisonError::into_inner);
            draw(&mut std::io::stdout(), &buffer);
        }
    }
}

impl Editor {
    fn print(&self, out: &mut impl std::io::Write, line: &str) {
        // Holding the buffer keeps the editor thread from drawing meanwhile.
        let buffer = self.buffer.lock().unwrap_or_else(PoisonError::into_inner);
        let _ = write!(out, "\r\x1b[2K{}\r\n", line.replace('\n', "\r\n"));
        draw(out, &buffer);
    }
}

fn draw(out: &mut impl std::io::Write, buffer: &str) {
    let _ = write!(out, "\r\x1b[2K{PROMPT}{buffer}");
    let _ = out.flush();
}

/// The editor thread: keys into the buffer, lines and typing changes out.
fn edit(buffer: &Mutex<String>, tx: &mpsc::UnboundedSender<Input>) {
    let mut typing = false;
    let mut out = std::io::stdout();
    loop {
        let wait = if typing {
            TYPING_IDLE
        } else {
            Duration::from_secs(3600)
        };
        match event::poll(wait) {
            Ok(true) => {}
            Ok(false) => {
                if typing {
                    typing = false;
                    let _ = tx.send(Input::Typing(false));
                }
                continue;
            }
            Err(_) => break,
        }
        let key = match event::read() {
            Ok(Event::Key(key)) if key.kind != KeyEventKind::Release => key,
            Ok(Event::Resize(..)) => {
                draw(
                    &mut out,
                    &buffer.lock().unwrap_or_else(PoisonError::into_inner),
                );
                continue;
            }
            Ok(_) => continue,
            Err(_) => break,
        };
        let mut text = buffer.lock().unwrap_or_else(PoisonError::into_inner);
        match apply(&mut text, key) {
            Action::Redraw => {
                // A message (not a command) is being typed.
                let now_typing = !text.is_empty() && !text.starts_with('/');
                if now_typing != typing {
                    typing = now_typing;
                    let _ = tx.send(Input::Typing(typing));
                }
                draw(&mut out, &text);
            }
            Action::Submit(line) => {
                draw(&mut out, &text);
                drop(text);
                // The message itself ends the typing, as far as others see.
                typing = false;
                if tx.send(Input::Line(line)).is_err() {
                    return;
                }
            }
            Action::End => {
                drop(text);
                let _ = tx.send(Input::End);
                return;
            }
            Action::None => {}
        }
    }
    let _ = tx.send(Input::End);
}

/// What a key did to the line.
#[derive(Debug, PartialEq, Eq)]
enum Action {
    /// The line changed.
    Redraw,
    /// Enter: the line (the buffer is empty again).
    Submit(String),
    /// Ctrl-C, or Ctrl-D on an empty line.
    End,
    /// Nothing.
    None,
}

fn apply(text: &mut String, key: KeyEvent) -> Action {
    let control = key.modifiers.contains(KeyModifiers::CONTROL);
    match key.code {
        KeyCode::Char('c') if control => Action::End,
        KeyCode::Char('d') if control && text.is_empty() => Action::End,
        KeyCode::Char('u') if control => {
            text.clear();
            Action::Redraw
        }
        KeyCode::Char(c) if !control => {
            text.push(c);
            Action::Redraw
        }
        KeyCode::Backspace => {
            text.pop();
            Action::Redraw
        }
        KeyCode::Esc => {
            text.clear();
            Action::Redraw
        }
        KeyCode::Enter => Action::Submit(std::mem::take(text)),
        _ => Action::None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(code: KeyCode, modifiers: KeyModifiers) -> KeyEvent {
        KeyEvent::new(code, modifiers)
    }

    #[test]
    fn keys_edit_the_line_and_enter_submits_it() {
        let mut text = String::new();
        for c in "héllo".chars() {
            assert_eq!(
                apply(&mut text, key(KeyCode::Char(c), KeyModifiers::NONE)),
                Action::Redraw
            );
        }
        apply(&mut text, key(KeyCode::Backspace, KeyModifiers::NONE));
        assert_eq!(text, "héll");
        assert_eq!(
            apply(&mut text, key(KeyCode::Enter, KeyModifiers::NONE)),
            Action::Submit("héll".into())
        );
        assert!(text.is_empty());
        apply(&mut text, key(KeyCode::Char('x'), KeyModifiers::NONE));
        // Ctrl-D ends only on an empty line; Ctrl-U clears; Ctrl-C ends.
        assert_eq!(
            apply(&mut text, key(KeyCode::Char('d'), KeyModifiers::CONTROL)),
            Action::None
        );
        apply(&mut text, key(KeyCode::Char('u'), KeyModifiers::CONTROL));
        assert!(text.is_empty());
        assert_eq!(
            apply(&mut text, key(KeyCode::Char('c'), KeyModifiers::CONTROL)),
            Action::End
        );
    }

    #[test]
    fn printing_keeps_the_line_being_typed() {
        let editor = Editor {
            buffer: Arc::new(Mutex::new("half a mess".into())),
        };
        let mut out = Vec::new();
        editor.print(&mut out, "bob: hi\nthere");
        let out = String::from_utf8(out).unwrap();
        assert_eq!(out, "\r\x1b[2Kbob: hi\r\nthere\r\n\r\x1b[2K> half a mess");
        // Do not restore the terminal of the test runner.
        std::mem::forget(editor);
    }
}
