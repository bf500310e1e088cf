//! Files queued for upload (schema v7): the record of each file message
//! whose outbox row waits for its upload, and the staging directory next
//! to the store file that holds their encrypted copies, one file per
//! pending upload named by a random id (32 hex digits).
//!
//! A staging copy is ciphertext under the attachment key; the key, digest
//! and names are only in the file message itself (the outbox payload and
//! our history row, both sealed when the store has a passphrase). A
//! record goes with its outbox row ([`Tx::delete_outbox`]); a staging
//! file without a record (a crash between the steps) is removed when the
//! store opens. Not owned here: writing and uploading the copies
//! (attachments/staging.rs, attachments/upload.rs).

use std::path::Path;

use microbot_protocol::MessageId;

use super::backend::UploadRecord;
use super::rows::message_ad;
use super::{Store, Tx};
use crate::error::StoreError;
use crate::store::OutboxRow;

/// The suffix of a staging copy still being written.
pub(crate) const PARTIAL_SUFFIX: &str = ".part";

/// A file message waiting for its upload.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct PendingUpload {
    /// The file message's id (its outbox row and history row).
    pub message_id: MessageId,
    /// The staging copy's file name in [`Store::staging_dir`].
    pub staging: String,
    /// Size of the encrypted copy, what the server is asked to store.
    pub ciphertext_len: u64,
    /// The server's id for the upload once it started (to resume it).
    pub attachment_id: Option<Vec<u8>>,
}

/// Whether `name` is one a staging copy gets (32 hex digits, maybe with
/// [`PARTIAL_SUFFIX`]): nothing else in the directory is touched.
fn staging_name(name: &str) -> Option<&str> {
    let id = name.strip_suffix(PARTIAL_SUFFIX).unwrap_or(name);
    (id.len() == 32 && id.bytes().all(|b| b.is_ascii_hexdigit())).then_some(id)
}

impl Store {
    /// Where the staging copies of queued files are kept.
    pub(crate) fn staging_dir(&self) -> &Path {
        &self.staging
    }

    /// Removes the staging copies no record names (a crash after writing
    /// one and before recording it, or after removing the record), and
    /// the records whose outbox row is gone. Only run while no send is
    /// staging a file (when the store opens). A copy that cannot be
    /// removed is logged and left for the next time.
    pub(super) fn sweep_staging(&mut self) -> Result<(), StoreError> {
        let known = self.tx(|tx| {
            tx.drop_orphan_uploads()?;
            tx.upload_names()
        })?;
        let entries = match std::fs::read_dir(&self.staging) {
            Ok(entries) => entries,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(error) => {
                tracing::warn!(%error, "cannot list the staging directory");
                return Ok(());
            }
        };
        for entry in entries.flatten() {
            let name = entry.file_name();
            let Some(name) = name.to_str() else { continue };
            let recorded = !name.ends_with(PARTIAL_SUFFIX) && known.iter().any(|k| k == name);
            if staging_name(name).is_some()
                && !recorded
                && let Err(error) = std::fs::remove_file(entry.path())
            {
                tracing::warn!(%error, "cannot remove an unrecorded staging copy");
            }
        }
        Ok(())
    }
}

impl Tx<'_> {
    /// Records a file message's pending upload.
    pub(crate) fn insert_upload(&self, upload: &PendingUpload) -> Result<(), StoreError> {
        self.write()?.insert_upload(&UploadRecord {
            message_id: upload.message_id.to_vec(),
            staging: upload.staging.clone(),
            ciphertext_len: upload.ciphertext_len,
            attachment_id: upload.attachment_id.clone(),
        })
    }

    /// The pending upload of file message `message_id`, if it waits for one.
    pub(crate) fn pending_upload(
        &self,
        message_id: &MessageId,
    ) -> Result<Option<PendingUpload>, StoreError> {
        let record = self.read()?.upload(message_id)?;
        record
            .map(|record| {
                if staging_name(&record.staging).is_none()
                    || record.staging.ends_with(PARTIAL_SUFFIX)
                {
                    return Err(StoreError::Corrupt {
                        what: "staging file name",
                    });
                }
                Ok(PendingUpload {
                    message_id: *message_id,
                    staging: record.staging,
                    ciphertext_len: record.ciphertext_len,
                    attachment_id: record.attachment_id,
                })
            })
            .transpose()
    }

    /// Remembers the server's id of an upload that started (or forgets
    /// it, `None`, when the server no longer knows it).
    pub(crate) fn set_upload_attachment_id(
        &self,
        message_id: &MessageId,
        attachment_id: Option<&[u8]>,
    ) -> Result<(), StoreError> {
        self.write()?
            .set_upload_attachment_id(message_id, attachment_id)
    }

    /// The upload of `row`'s file message is complete: its content (now
    /// naming the server's attachment id) replaces the queued one and our
    /// history copy (written by `author`), and the record goes.
    pub(crate) fn finish_upload(
        &self,
        row: &OutboxRow,
        author: &str,
        content: &[u8],
    ) -> Result<(), StoreError> {
        self.replace_outbox_content(row, content)?;
        let stored = self.read()?.message(author, &row.message_id)?;
        if let Some(stored) = stored {
            let body = self
                .sealer
                .seal(&message_ad(author, &row.message_id), content);
            self.write()?.set_message_body(stored.seq, &body)?;
        }
        self.write()?.delete_upload(&row.message_id)
    }

    /// The staging file names of every pending upload.
    pub(crate) fn upload_names(&self) -> Result<Vec<String>, StoreError> {
        Ok(self
            .read()?
            .uploads()?
            .into_iter()
            .map(|u| u.staging)
            .collect())
    }

    /// Removes the upload records whose outbox row is gone.
    fn drop_orphan_uploads(&self) -> Result<(), StoreError> {
        let uploads = self.read()?.uploads()?;
        for upload in uploads {
            if !self.read()?.outbox_has_message(&upload.message_id)? {
                self.write()?.delete_upload(&upload.message_id)?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::StoreConfig;
    use crate::store::sqlite::file::staging_dir_of;
    use std::path::PathBuf;

    const NAME: &str = "0123456789abcdef0123456789abcdef";

    fn upload(message_id: MessageId, staging: &str) -> PendingUpload {
        PendingUpload {
            message_id,
            staging: staging.to_owned(),
            ciphertext_len: 99,
            attachment_id: None,
        }
    }

    #[test]
    fn only_staging_names_count() {
        assert_eq!(staging_name(NAME), Some(NAME));
        assert_eq!(staging_name(&format!("{NAME}.part")), Some(NAME));
        for other in [
            "",
            "notes.txt",
            "0123",
            "../0123456789abcdef0123456789abcdef",
        ] {
            assert_eq!(staging_name(other), None, "{other:?}");
        }
        assert_eq!(
            staging_dir_of(Path::new("/x/alice.db")),
            PathBuf::from("/x/alice.db.uploads")
        );
    }

    #[test]
    fn opening_removes_unrecorded_copies_and_records_without_a_row() {
        let dir = tempfile::tempdir().expect("temp dir");
        let config = StoreConfig::new(dir.path().join("store.db"));
        let mut store = Store::create(&config).expect("store").keep();
        let staging = store.staging_dir().to_owned();
        std::fs::create_dir_all(&staging).expect("dir");
        let kept = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
        let orphan = "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb";
        let partial = format!("{kept}.part");
        for name in [kept, orphan, partial.as_str(), "readme.txt"] {
            std::fs::write(staging.join(name), b"x").expect("write");
        }
        store
            .tx(|tx| -> Result<(), StoreError> {
                tx.push_outbox("u:bob", &[1; 16], b"file", true)?;
                tx.insert_upload(&upload([1; 16], kept))?;
                // A record whose outbox row is gone.
                tx.insert_upload(&upload([2; 16], NAME))?;
                Ok(())
            })
            .expect("records");
        drop(store);

        let mut store = Store::open(&config).expect("reopen");
        let mut left: Vec<String> = std::fs::read_dir(&staging)
            .expect("list")
            .map(|e| e.expect("entry").file_name().into_string().expect("utf-8"))
            .collect();
        left.sort();
        assert_eq!(left, vec![kept.to_owned(), "readme.txt".to_owned()]);
        let names = store.tx(|tx| tx.upload_names()).expect("names");
        assert_eq!(names, vec![kept.to_owned()]);
        let found = store.tx(|tx| tx.pending_upload(&[1; 16])).expect("read");
        assert_eq!(found, Some(upload([1; 16], kept)));
    }

    #[test]
    fn removing_the_outbox_row_removes_its_upload_record() {
        let (_dir, mut store) = crate::store::temporary();
        store
            .tx(|tx| -> Result<(), StoreError> {
                tx.push_outbox("u:bob", &[3; 16], b"file", true)?;
                tx.insert_upload(&upload([3; 16], NAME))?;
                tx.set_upload_attachment_id(&[3; 16], Some(&[7; 16]))?;
                let found = tx.pending_upload(&[3; 16])?.expect("recorded");
                assert_eq!(found.attachment_id, Some(vec![7; 16]));
                let row = tx.outbox()?.remove(0);
                tx.delete_outbox(row.seq)?;
                assert_eq!(tx.pending_upload(&[3; 16])?, None);
                Ok(())
            })
            .expect("tx");
    }
}
