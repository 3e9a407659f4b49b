//! The mail half of the hand-off: the owned `MailRecord`, address parsing/validation and MIME
//! rendering plus the pre-queue checks.
//!
//! Owns: what a mail *is* once intercepted and how it becomes RFC 5322 bytes. Does not own: how a
//! mail is found in HTTP traffic (`intercept`), stored (`queue`) or delivered (`smtp`, `relay`).

pub mod address;
pub mod build;
pub mod record;

pub use address::{needs_smtputf8, parse_list, parse_mailbox, validate_addr, AddressError};
pub use build::{check, render, BuildError};
pub use record::{
    Attachment, InvalidRecipient, MailRecord, Mailbox, Origin, RecipientField, Rejection,
    RejectionKind, SenderSource, Source,
};
