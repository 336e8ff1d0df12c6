//! PLACEHOLDER (being written): allow/deny lists and import classification.
use crate::engine::Import;
use crate::finding::Finding;

pub const CODES: &[crate::finding::CodeInfo] = &[];

#[derive(Debug, Clone, Default)]
pub struct Lists {}

impl Lists {
    pub fn builtin() -> Lists {
        Lists {}
    }
    pub fn classify_all(&self, _imports: &[Import]) -> Vec<Finding> {
        Vec::new()
    }
}
