//! The git side of the push gate: the ref updates a hook receives, a repository opened so
//! that pushed (quarantined) objects are visible, the blobs a push introduces, and reading
//! blobs with bounded memory.

pub mod attr;
mod blob;
pub mod convert;
mod introduced;
mod open;
mod packed;
pub(crate) mod tree;
mod updates;

pub use attr::{Checkout, Crlf};
pub use blob::{BlobReader, ReadBlob};
pub use introduced::{existing_tips, introduced, introduced_with, Introduced, NewBlob, Place, WalkOptions};
pub use open::{GateRepo, GitEnv, ObjectView};
pub use packed::{PackedObjects, Stats as PackedStats};
pub use updates::{parse_updates, RefUpdate, UpdateKind, MAX_INPUT};

pub use gix::hash::Kind as HashKind;
pub use gix::ObjectId;

/// Short (7 hex characters) form of an object id for messages.
pub fn short(id: &ObjectId) -> String {
    let mut s = id.to_hex().to_string();
    s.truncate(7);
    s
}
