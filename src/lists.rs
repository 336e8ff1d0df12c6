//! PLACEHOLDER (being written): allow/deny lists and import classification.
use crate::engine::Import;
use crate::finding::Finding;

pub const CODES: &[crate::finding::CodeInfo] = &[];

#[derive(Debug, Clone, Default)]
pub struct Lists {}

impl Lists {
    /// The built-in lists.
    pub fn builtin() -> Lists {
        Lists {}
    }
    /// Add a policy allow entry: `module`, `module.*` or `module.name` (name may be dotted).
    pub fn allow(&mut self, _pattern: &str, _reason: &str) -> Result<(), String> {
        Ok(())
    }
    /// Add a policy deny entry (same pattern syntax); deny always wins over allow.
    pub fn deny(&mut self, _pattern: &str, _reason: &str) -> Result<(), String> {
        Ok(())
    }
    /// Findings for imports that are not allowlisted (suspicious) or are denylisted (dangerous).
    pub fn classify_all(&self, _imports: &[Import]) -> Vec<Finding> {
        Vec::new()
    }
}
