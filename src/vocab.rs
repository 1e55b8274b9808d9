//! The vocabulary of object categories and predicates (§2, §15.3, §17.5).
//!
//! Index 0 is always `__image__` for objects and `__in_image__` for predicates. A model must be
//! used with the vocabulary stored beside its weights, never a regenerated one (§17.5).

use crate::{Error, Result};
use indexmap::IndexMap;
use serde::{Deserialize, Serialize};
use std::path::Path;

/// Name of the dummy object appended to every graph (§2.2).
pub const IMAGE_OBJECT: &str = "__image__";
/// Name of the dummy predicate linking every object to the image object (§2.2).
pub const IN_IMAGE_PREDICATE: &str = "__in_image__";

/// Field order follows the VG `vocab.json` key order; COCO vocabularies have no attributes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Vocab {
    pub object_name_to_idx: IndexMap<String, i64>,
    pub object_idx_to_name: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attribute_name_to_idx: Option<IndexMap<String, i64>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attribute_idx_to_name: Option<Vec<String>>,
    pub pred_name_to_idx: IndexMap<String, i64>,
    pub pred_idx_to_name: Vec<String>,
}

impl Vocab {
    /// Reads a `vocab.json` (VG preprocessing output, or any JSON with the four maps).
    pub fn from_json_file(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        let vocab: Vocab = serde_json::from_str(&text).map_err(|e| Error::json(path, &e))?;
        vocab
            .validate()
            .map_err(|msg| Error::invalid(format!("{}: {msg}", path.display())))?;
        Ok(vocab)
    }

    /// Number of object classes, `len(object_idx_to_name)` (the generator embeds `num_objs + 1`).
    pub fn num_objects(&self) -> usize {
        self.object_idx_to_name.len()
    }

    /// Number of predicates, `len(pred_idx_to_name)`.
    pub fn num_predicates(&self) -> usize {
        self.pred_idx_to_name.len()
    }

    /// Index of the dummy image object [`IMAGE_OBJECT`] appended to every graph.
    pub fn image_object(&self) -> Result<i64> {
        self.object_name_to_idx
            .get(IMAGE_OBJECT)
            .copied()
            .ok_or_else(|| Error::invalid(format!("object_name_to_idx has no {IMAGE_OBJECT:?}")))
    }

    /// Index of the dummy predicate [`IN_IMAGE_PREDICATE`] linking every object to the image.
    pub fn in_image_predicate(&self) -> Result<i64> {
        self.pred_name_to_idx
            .get(IN_IMAGE_PREDICATE)
            .copied()
            .ok_or_else(|| {
                Error::invalid(format!("pred_name_to_idx has no {IN_IMAGE_PREDICATE:?}"))
            })
    }

    /// Checks that every name→index entry is in range, so indexing with it cannot fail later.
    pub fn validate(&self) -> std::result::Result<(), String> {
        for (name, &idx) in &self.object_name_to_idx {
            if idx < 0 || idx as usize >= self.object_idx_to_name.len() {
                return Err(format!(
                    "object_name_to_idx[{name:?}] = {idx} is outside object_idx_to_name (length {})",
                    self.object_idx_to_name.len()
                ));
            }
        }
        for (name, &idx) in &self.pred_name_to_idx {
            if idx < 0 || idx as usize >= self.pred_idx_to_name.len() {
                return Err(format!(
                    "pred_name_to_idx[{name:?}] = {idx} is outside pred_idx_to_name (length {})",
                    self.pred_idx_to_name.len()
                ));
            }
        }
        Ok(())
    }
}
