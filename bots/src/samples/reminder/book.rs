//! The reminder bot's state: every pending reminder, kept in a JSON file
//! that is replaced atomically (written beside it, synced, renamed) on
//! every change, so a restart — or a crash — loses none.

use std::fs;
use std::io::Write as _;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// Pending reminders one conversation may hold.
pub const MAX_PER_CONVERSATION: usize = 50;
/// Pending reminders the bot holds in all.
pub const MAX_TOTAL: usize = 10_000;
/// Longest reminder text, in bytes.
pub const MAX_TEXT_LEN: usize = 1000;
/// Largest state file read back (bytes); a larger one is refused.
pub const MAX_FILE_LEN: u64 = 16 * 1024 * 1024;
/// The file format's version.
const VERSION: u32 = 1;

/// One pending reminder.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reminder {
    /// Its number, unique for the bot's lifetime.
    pub id: u64,
    /// `Conversation::key()` of the chat it was set in.
    pub conversation: String,
    /// Who set it.
    pub author: String,
    /// When it is due, milliseconds since the Unix epoch.
    pub due_ms: u64,
    /// What to say.
    pub text: String,
}

/// Why the book refused something.
#[derive(Debug, thiserror::Error)]
pub enum BookError {
    /// The file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The failure.
        source: std::io::Error,
    },
    /// The file is not a reminder book of this version (or too large);
    /// nothing was changed — move it away to start empty.
    #[error("{path} is not a reminder file this bot can read: {reason}")]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// This conversation, or the bot, holds as many reminders as it may.
    #[error("too many pending reminders")]
    Full,
    /// The text is empty or longer than [`MAX_TEXT_LEN`].
    #[error("a reminder text is 1 to {MAX_TEXT_LEN} bytes")]
    BadText,
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct Stored {
    version: u32,
    next_id: u64,
    reminders: Vec<Reminder>,
}

/// The pending reminders and the file they live in.
#[derive(Debug)]
pub struct Book {
    path: PathBuf,
    state: Stored,
}

impl Book {
    /// Reads the book at `path` (an absent file is an empty book).
    ///
    /// # Errors
    /// [`BookError::Io`] or [`BookError::Corrupt`].
    pub fn open(path: &Path) -> Result<Self, BookError> {
        let io = |source| BookError::Io {
            path: path.to_owned(),
            source,
        };
        let state = match fs::metadata(path) {
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => Stored {
                version: VERSION,
                next_id: 1,
                reminders: Vec::new(),
            },
            Err(error) => return Err(io(error)),
            Ok(meta) if meta.len() > MAX_FILE_LEN => {
                return Err(BookError::Corrupt {
                    path: path.to_owned(),
                    reason: format!("larger than {MAX_FILE_LEN} bytes"),
                });
            }
            Ok(_) => decode_stored(&fs::read(path).map_err(io)?).map_err(|reason| {
                BookError::Corrupt {
                    path: path.to_owned(),
                    reason,
                }
            })?,
        };
        Ok(Self {
            path: path.to_owned(),
            state,
        })
    }

    /// Adds a reminder and saves; returns it.
    ///
    /// # Errors
    /// [`BookError::Full`], [`BookError::BadText`], or the write failing
    /// (the book is then unchanged).
    pub fn add(
        &mut self,
        conversation: &str,
        author: &str,
        due_ms: u64,
        text: &str,
    ) -> Result<Reminder, BookError> {
        if text.is_empty() || text.len() > MAX_TEXT_LEN {
            return Err(BookError::BadText);
        }
        let here = self.in_conversation(conversation).len();
        if here >= MAX_PER_CONVERSATION || self.state.reminders.len() >= MAX_TOTAL {
            return Err(BookError::Full);
        }
        let reminder = Reminder {
            id: self.state.next_id,
            conversation: conversation.to_owned(),
            author: author.to_owned(),
            due_ms,
            text: text.to_owned(),
        };
        self.state.next_id += 1;
        self.state.reminders.push(reminder.clone());
        if let Err(error) = self.save() {
            self.state.reminders.pop();
            self.state.next_id -= 1;
            return Err(error);
        }
        Ok(reminder)
    }

    /// Removes reminder `id` of `conversation` (and saves); returns whether
    /// there was one.
    ///
    /// # Errors
    /// The write failing (the book is then unchanged).
    pub fn remove(&mut self, conversation: &str, id: u64) -> Result<bool, BookError> {
        let Some(index) = self
            .state
            .reminders
            .iter()
            .position(|r| r.id == id && r.conversation == conversation)
        else {
            return Ok(false);
        };
        let removed = self.state.reminders.remove(index);
        if let Err(error) = self.save() {
            self.state.reminders.insert(index, removed);
            return Err(error);
        }
        Ok(true)
    }

    /// The reminders of `conversation`, soonest first.
    pub fn in_conversation(&self, conversation: &str) -> Vec<Reminder> {
        let mut list: Vec<Reminder> = self
            .state
            .reminders
            .iter()
            .filter(|r| r.conversation == conversation)
            .cloned()
            .collect();
        list.sort_by_key(|r| (r.due_ms, r.id));
        list
    }

    /// The reminder due first, if any.
    pub fn next_due(&self) -> Option<&Reminder> {
        self.state.reminders.iter().min_by_key(|r| (r.due_ms, r.id))
    }

    fn save(&self) -> Result<(), BookError> {
        let io = |source| BookError::Io {
            path: self.path.clone(),
            source,
        };
        let bytes = serde_json::to_vec_pretty(&self.state).map_err(|e| io(e.into()))?;
        let temporary = self.path.with_extension("json.tmp");
        let mut file = fs::File::create(&temporary).map_err(io)?;
        file.write_all(&bytes).map_err(io)?;
        file.sync_all().map_err(io)?;
        fs::rename(&temporary, &self.path).map_err(io)
    }
}

/// Decodes a book file's bytes: JSON of this version, ids below `next_id`
/// and unique, texts within [`MAX_TEXT_LEN`], at most [`MAX_TOTAL`]
/// reminders.
///
/// # Errors
/// What is wrong, as text.
pub fn decode(bytes: &[u8]) -> Result<(), String> {
    decode_stored(bytes).map(|_| ())
}

fn decode_stored(bytes: &[u8]) -> Result<Stored, String> {
    let stored: Stored = serde_json::from_slice(bytes).map_err(|e| e.to_string())?;
    if stored.version != VERSION {
        return Err(format!(
            "version {} (this bot reads {VERSION})",
            stored.version
        ));
    }
    if stored.reminders.len() > MAX_TOTAL {
        return Err(format!("more than {MAX_TOTAL} reminders"));
    }
    let mut ids = std::collections::HashSet::new();
    for r in &stored.reminders {
        if r.id >= stored.next_id || !ids.insert(r.id) {
            return Err(format!(
                "reminder id {} repeated or not below next_id",
                r.id
            ));
        }
        if r.text.is_empty() || r.text.len() > MAX_TEXT_LEN {
            return Err(format!("reminder {} has a bad text length", r.id));
        }
    }
    Ok(stored)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn survives_reopening_and_refuses_what_it_cannot_read() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("reminders.json");
        let mut book = Book::open(&path).unwrap();
        let a = book.add("u:alice", "alice", 2_000, "tea").unwrap();
        let b = book.add("u:alice", "alice", 1_000, "walk").unwrap();
        book.add("u:bob", "bob", 500, "call").unwrap();
        assert!(book.remove("u:bob", a.id).is_ok_and(|removed| !removed));
        let book = Book::open(&path).unwrap();
        let mine: Vec<u64> = book
            .in_conversation("u:alice")
            .iter()
            .map(|r| r.id)
            .collect();
        assert_eq!(mine, [b.id, a.id]);
        assert_eq!(book.next_due().unwrap().text, "call");

        for junk in [&b"{"[..], b"[]", br#"{"version":2,"next_id":1,"reminders":[]}"#,
            br#"{"version":1,"next_id":1,"reminders":[{"id":1,"conversation":"u:a","author":"a","due_ms":0,"text":"x"}]}"#] {
            fs::write(&path, junk).unwrap();
            assert!(matches!(Book::open(&path), Err(BookError::Corrupt { .. })));
        }
    }

    #[test]
    fn limits_hold() {
        let dir = tempfile::tempdir().unwrap();
        let mut book = Book::open(&dir.path().join("r.json")).unwrap();
        assert!(matches!(
            book.add("u:a", "a", 1, ""),
            Err(BookError::BadText)
        ));
        let long = "x".repeat(MAX_TEXT_LEN + 1);
        assert!(matches!(
            book.add("u:a", "a", 1, &long),
            Err(BookError::BadText)
        ));
        for i in 0..MAX_PER_CONVERSATION {
            book.add("u:a", "a", i as u64, "t").unwrap();
        }
        assert!(matches!(book.add("u:a", "a", 1, "t"), Err(BookError::Full)));
        assert!(book.add("u:b", "b", 1, "t").is_ok());
    }
}
