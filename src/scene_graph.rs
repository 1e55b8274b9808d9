//! Human-readable JSON scene graphs (§2.4) and their encoding into a packed batch.
//!
//! A file is a JSON array of graphs (a single graph object is accepted too, like the
//! original's `forward_json`). Each graph has `"objects"` (category names) and
//! `"relationships"` (`[s, "predicate", o]`, 0-based indices into its objects). Two optional
//! keys place objects by hand: `"boxes"` (`[[x0, y0, x1, y1], …]` in [0, 1], one per object) and
//! `"masks"` (one `M×M` array of 0/1 or probabilities per object).

use crate::vocab::{IMAGE_OBJECT, IN_IMAGE_PREDICATE, Vocab};
use crate::{Error, Result};
use serde_json::Value;
use std::path::Path;

/// One graph as written in the JSON file.
#[derive(Debug, Clone, PartialEq)]
pub struct SceneGraph {
    pub objects: Vec<String>,
    pub relationships: Vec<(usize, String, usize)>,
    /// Hand-placed boxes, one per object.
    pub boxes: Option<Vec<[f32; 4]>>,
    /// Hand-drawn masks, one `M×M` row-major array per object.
    pub masks: Option<Vec<Vec<f32>>>,
}

/// Graphs encoded with the vocabulary: `__image__` objects and `__in_image__` triples added,
/// indices global (§2.4).
#[derive(Debug, Clone, PartialEq)]
pub struct EncodedGraphs {
    /// `(O,)`.
    pub objs: Vec<i64>,
    /// `(T, 3)`.
    pub triples: Vec<[i64; 3]>,
    /// `(O,)`.
    pub obj_to_img: Vec<i64>,
    /// Per object: the hand-placed box (the image object of a graph with boxes gets `[0,0,1,1]`).
    pub boxes: Vec<Option<[f32; 4]>>,
    /// Per object: the hand-drawn mask (`M×M`), all ones for the image object of a graph with masks.
    pub masks: Vec<Option<Vec<f32>>>,
    /// The graphs as augmented by the encoding (what `--draw_scene_graphs` draws).
    pub graphs: Vec<SceneGraph>,
}

/// Reads a scene-graph JSON file. Errors name the file, the graph, the field and what was expected.
pub fn read_scene_graphs(path: impl AsRef<Path>) -> Result<Vec<SceneGraph>> {
    let path = path.as_ref();
    let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
    let value: Value = serde_json::from_str(&text).map_err(|e| Error::json(path, &e))?;
    parse_scene_graphs(&value, &path.display().to_string())
}

/// Parses the JSON value of a scene-graph file; `what` names the source in errors.
pub fn parse_scene_graphs(value: &Value, what: &str) -> Result<Vec<SceneGraph>> {
    let graphs: Vec<&Value> = match value {
        Value::Array(a) => a.iter().collect(),
        Value::Object(_) => vec![value],
        _ => {
            return Err(Error::invalid(format!(
                "{what}: expected a JSON array of scene graphs (objects with \"objects\" and \"relationships\")"
            )));
        }
    };
    graphs
        .iter()
        .enumerate()
        .map(|(i, g)| parse_graph(g, &format!("{what}: scene graph {i}")))
        .collect()
}

fn parse_graph(g: &Value, at: &str) -> Result<SceneGraph> {
    let obj = g.as_object().ok_or_else(|| {
        Error::invalid(format!(
            "{at}: expected an object with \"objects\" and \"relationships\""
        ))
    })?;
    let objects = obj
        .get("objects")
        .and_then(Value::as_array)
        .ok_or_else(|| Error::invalid(format!("{at}: \"objects\" missing or not a list of names")))?
        .iter()
        .enumerate()
        .map(|(k, v)| {
            v.as_str().map(str::to_string).ok_or_else(|| {
                Error::invalid(format!(
                    "{at}, object {k}: expected a name (string), got {v}"
                ))
            })
        })
        .collect::<Result<Vec<_>>>()?;
    let n = objects.len();
    let rels = match obj.get("relationships") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(a)) => a.clone(),
        Some(v) => {
            return Err(Error::invalid(format!(
                "{at}: \"relationships\" must be a list of [subject, \"predicate\", object], got {v}"
            )));
        }
    };
    let mut relationships = Vec::with_capacity(rels.len());
    for (r, rel) in rels.iter().enumerate() {
        let at_r = format!("{at}, relationship {r}");
        let parts = rel.as_array().filter(|a| a.len() == 3).ok_or_else(|| {
            Error::invalid(format!(
                "{at_r}: expected [subject, \"predicate\", object], got {rel}"
            ))
        })?;
        let index = |v: &Value, role: &str| -> Result<usize> {
            let i = v.as_i64().ok_or_else(|| {
                Error::invalid(format!(
                    "{at_r}: {role} must be an object index (integer), got {v}"
                ))
            })?;
            if i < 0 || i as usize >= n {
                return Err(Error::invalid(format!(
                    "{at_r}: {role} index {i} is out of range (the graph has {n} objects, valid 0..{})",
                    n.saturating_sub(1)
                )));
            }
            Ok(i as usize)
        };
        let s = index(&parts[0], "subject")?;
        let p = parts[1].as_str().ok_or_else(|| {
            Error::invalid(format!(
                "{at_r}: predicate must be a string, got {}",
                parts[1]
            ))
        })?;
        let o = index(&parts[2], "object")?;
        relationships.push((s, p.to_string(), o));
    }
    let boxes = match obj.get("boxes") {
        None | Some(Value::Null) => None,
        Some(v) => Some(parse_boxes(v, n, at)?),
    };
    let masks = match obj.get("masks") {
        None | Some(Value::Null) => None,
        Some(v) => Some(parse_masks(v, n, at)?),
    };
    Ok(SceneGraph {
        objects,
        relationships,
        boxes,
        masks,
    })
}

fn parse_boxes(v: &Value, n: usize, at: &str) -> Result<Vec<[f32; 4]>> {
    let list = v.as_array().filter(|a| a.len() == n).ok_or_else(|| {
        Error::invalid(format!(
            "{at}: \"boxes\" must list one [x0, y0, x1, y1] per object ({n})"
        ))
    })?;
    list.iter()
        .enumerate()
        .map(|(k, b)| {
            let nums: Option<Vec<f64>> = b.as_array().filter(|a| a.len() == 4).map(|a| a.iter().filter_map(Value::as_f64).collect());
            match nums {
                Some(x) if x.len() == 4 => {
                    if x[2] <= x[0] || x[3] <= x[1] {
                        return Err(Error::invalid(format!(
                            "{at}, box {k}: expected x0 < x1 and y0 < y1, got {b} (a zero-size box makes the layout NaN)"
                        )));
                    }
                    Ok([x[0] as f32, x[1] as f32, x[2] as f32, x[3] as f32])
                }
                _ => Err(Error::invalid(format!("{at}, box {k}: expected [x0, y0, x1, y1] numbers, got {b}"))),
            }
        })
        .collect()
}

fn parse_masks(v: &Value, n: usize, at: &str) -> Result<Vec<Vec<f32>>> {
    let list = v.as_array().filter(|a| a.len() == n).ok_or_else(|| {
        Error::invalid(format!(
            "{at}: \"masks\" must list one M×M array per object ({n})"
        ))
    })?;
    let mut out = Vec::with_capacity(n);
    let mut size = None;
    for (k, m) in list.iter().enumerate() {
        let bad = || {
            Error::invalid(format!(
                "{at}, mask {k}: expected an M×M array of numbers in [0, 1]"
            ))
        };
        let rows = m.as_array().ok_or_else(bad)?;
        let mm = rows.len();
        if *size.get_or_insert(mm) != mm {
            return Err(Error::invalid(format!(
                "{at}, mask {k}: all masks must have the same size"
            )));
        }
        let mut flat = Vec::with_capacity(mm * mm);
        for row in rows {
            let row = row.as_array().filter(|r| r.len() == mm).ok_or_else(bad)?;
            for x in row {
                let x = x
                    .as_f64()
                    .filter(|x| (0.0..=1.0).contains(x))
                    .ok_or_else(bad)?;
                flat.push(x as f32);
            }
        }
        out.push(flat);
    }
    Ok(out)
}

/// `encode_scene_graphs` (§2.4): appends `__image__` and the `__in_image__` triples to every
/// graph and maps names through the vocabulary. Unknown names are errors that name the word,
/// the graph and the closest vocabulary entries.
pub fn encode(graphs: &[SceneGraph], vocab: &Vocab, what: &str) -> Result<EncodedGraphs> {
    let model_vocab = |e: Error| Error::invalid(format!("the model's vocabulary: {e}"));
    let image_idx = vocab.image_object().map_err(model_vocab)?;
    let in_image = vocab.in_image_predicate().map_err(model_vocab)?;
    let mut enc = EncodedGraphs {
        objs: Vec::new(),
        triples: Vec::new(),
        obj_to_img: Vec::new(),
        boxes: Vec::new(),
        masks: Vec::new(),
        graphs: Vec::new(),
    };
    for (i, g) in graphs.iter().enumerate() {
        let offset = enc.objs.len() as i64;
        for (k, name) in g.objects.iter().enumerate() {
            let idx = vocab.object_name_to_idx.get(name).ok_or_else(|| {
                Error::invalid(format!(
                    "{what}: scene graph {i}, object {k}: {name:?} is not in the model's vocabulary (closest: {})",
                    closest(name, vocab.object_name_to_idx.keys())
                ))
            })?;
            enc.objs.push(*idx);
            enc.obj_to_img.push(i as i64);
        }
        enc.objs.push(image_idx);
        enc.obj_to_img.push(i as i64);
        let local_image = g.objects.len();
        for (r, (s, p, o)) in g.relationships.iter().enumerate() {
            let pi = vocab.pred_name_to_idx.get(p).ok_or_else(|| {
                Error::invalid(format!(
                    "{what}: scene graph {i}, relationship {r}: predicate {p:?} is not in the model's vocabulary (closest: {})",
                    closest(p, vocab.pred_name_to_idx.keys())
                ))
            })?;
            enc.triples
                .push([*s as i64 + offset, *pi, *o as i64 + offset]);
        }
        for k in 0..local_image {
            enc.triples
                .push([k as i64 + offset, in_image, local_image as i64 + offset]);
        }
        match &g.boxes {
            Some(b) => {
                enc.boxes.extend(b.iter().copied().map(Some));
                enc.boxes.push(Some([0.0, 0.0, 1.0, 1.0]));
            }
            None => enc.boxes.extend(std::iter::repeat_n(None, local_image + 1)),
        }
        match &g.masks {
            Some(m) => {
                let mm = m.first().map_or(0, Vec::len);
                enc.masks.extend(m.iter().cloned().map(Some));
                enc.masks.push(Some(vec![1.0; mm]));
            }
            None => enc.masks.extend(std::iter::repeat_n(None, local_image + 1)),
        }
        let mut augmented = g.clone();
        augmented.objects.push(IMAGE_OBJECT.to_string());
        for k in 0..local_image {
            augmented
                .relationships
                .push((k, IN_IMAGE_PREDICATE.to_string(), local_image));
        }
        enc.graphs.push(augmented);
    }
    Ok(enc)
}

/// Up to three vocabulary words closest to `word` by edit distance, quoted.
fn closest<'a>(word: &str, candidates: impl Iterator<Item = &'a String>) -> String {
    let lower = word.to_lowercase();
    let mut scored: Vec<(usize, &String)> = candidates
        .filter(|c| !c.starts_with("__"))
        .map(|c| (levenshtein(&lower, &c.to_lowercase()), c))
        .collect();
    scored.sort();
    let best: Vec<String> = scored
        .iter()
        .take(3)
        .map(|(_, c)| format!("{c:?}"))
        .collect();
    if best.is_empty() {
        "none".to_string()
    } else {
        best.join(", ")
    }
}

fn levenshtein(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1; b.len() + 1];
        for (j, &cb) in b.iter().enumerate() {
            cur[j + 1] = (prev[j] + usize::from(ca != cb))
                .min(prev[j + 1] + 1)
                .min(cur[j] + 1);
        }
        prev = cur;
    }
    prev[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn edit_distance() {
        assert_eq!(levenshtein("zebra", "zebra"), 0);
        assert_eq!(levenshtein("zebraa", "zebra"), 1);
        assert_eq!(levenshtein("", "abc"), 3);
    }
}
